//! A hostile plugin for tests: loops forever when it receives "spin", and sleeps for an hour in
//! a WASI call (where no epoch deadline reaches) when it receives "sleep".

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
        if msg.text.as_deref() == Some("sleep") {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        Ok(())
    }
}

export_bot!(Spin);
