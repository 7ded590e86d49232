//! Embeds the meow runtime in a program of its own: a home with its in-process server, and a
//! native Rust handler that answers every message in capitals. No plugin engine is linked.
//!
//! ```sh
//! MEOW_PASSWORD=secret cargo run -p meow-embed-example -- ./shouter
//! ```
//!
//! It prints its server card, and writes an invitation for a first contact to
//! `HOME/invitation.txt` (accept it with `meow accept`, then talk to it).

use std::path::PathBuf;

use meow_node::{InitOptions, Node};
use meow_plugin::{Capability, Event, Host};
use meow_runtime::native::Handler;
use meow_runtime::{RunConfig, Runtime};

/// The bot: replies to each text in capitals.
struct Shout;

impl Handler for Shout {
    fn handle(&mut self, host: &Host, event: &Event) -> Result<(), String> {
        if let Event::Message(m) = event
            && let Some(text) = &m.text
        {
            host.reply(&m.id, &text.to_uppercase()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let home = PathBuf::from(std::env::args().nth(1).ok_or("usage: meow-embed HOME")?);
    let password = std::env::var("MEOW_PASSWORD").map_err(|_| "set MEOW_PASSWORD")?;
    let node = if Node::exists(&home) {
        Node::open(&home, password.as_bytes())?
    } else {
        Node::init(&home, password.as_bytes(), InitOptions::default())?
    };
    let mut config = RunConfig::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    smol::block_on(async {
        let runtime = Runtime::builder(&home, node, config)
            .native("shout", &[Capability::Messaging], || Shout)
            .start()
            .await?;
        let card = runtime.server_card().ok_or("no embedded server")?.to_text();
        let invitation = runtime.node().lock().await.invite("friend", false)?;
        std::fs::write(home.join("invitation.txt"), invitation.to_text())?;
        println!("{card}");
        runtime.run_until_stopped().await?;
        Ok(())
    })
}
