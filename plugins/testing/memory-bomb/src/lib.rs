//! A hostile plugin for tests: allocates without end when it receives "bomb".

use meow_sdk::{Bot, Message, export_bot};

struct Bomb;

impl Bot for Bomb {
    fn on_message(msg: Message) -> Result<(), String> {
        if msg.text.as_deref() == Some("bomb") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Ok(())
    }
}

export_bot!(Bomb);
