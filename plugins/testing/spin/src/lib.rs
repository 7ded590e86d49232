//! A hostile plugin for tests: loops forever when it receives "spin".

use meow_sdk::{Bot, Message, export_bot};

struct Spin;

impl Bot for Spin {
    fn on_message(msg: Message) -> Result<(), String> {
        if msg.text.as_deref() == Some("spin") {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        Ok(())
    }
}

export_bot!(Spin);
