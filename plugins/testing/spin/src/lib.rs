//! A hostile plugin for tests: loops forever when it receives "spin", sleeps for an hour in a
//! WASI call (where no epoch deadline reaches) when it receives "sleep", prints a line to
//! stdout and one to stderr on "print", 10 000 lines on "flood", and panics on "panic".

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
        match msg.text.as_deref() {
            Some("print") => {
                println!("hello from the guest");
                eprintln!("and a word on stderr");
            }
            Some("flood") => {
                for i in 0..10_000 {
                    println!("line {i}");
                }
            }
            Some("panic") => panic!("the guest gave up"),
            _ => {}
        }
        Ok(())
    }
}

export_bot!(Spin);
