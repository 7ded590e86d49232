//! The embed example runs and answers a message from a second home.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meow_node::sync;
use meow_node::{InitOptions, Node, NodeEvent};
use meow_proto::ContentType;
use meow_proto::crypto::KdfParams;
use smol::lock::Mutex;

#[test]
fn the_embedded_runtime_answers_a_second_home() {
    let dir = tempfile::tempdir().unwrap();
    let mut bot = Command::new(env!("CARGO_BIN_EXE_meow-embed"))
        .arg(dir.path().join("bot"))
        .env("MEOW_PASSWORD", "embed")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut card = String::new();
    std::io::BufReader::new(bot.stdout.take().unwrap())
        .read_line(&mut card)
        .unwrap();
    let invitation = std::fs::read_to_string(dir.path().join("bot/invitation.txt")).unwrap();

    let opts = InitOptions {
        kdf: KdfParams::TESTING,
        display_name: Some("friend".into()),
        decoys: true,
    };
    let me = Mutex::new(Node::init(&dir.path().join("friend"), b"pw", opts).unwrap());
    let answer = smol::block_on(async {
        me.lock().await.add_server(card.trim()).unwrap();
        me.lock().await.accept(invitation.as_bytes(), Some("bot")).unwrap();
        sync::flush_outbox(&me, false).await.unwrap();
        sync::send(&me, "bot", ContentType::TEXT, b"hello there".to_vec())
            .await
            .unwrap();
        let start = Instant::now();
        loop {
            let report = sync::fetch(&me, Duration::from_secs(2)).await.unwrap();
            for e in report.events {
                if let NodeEvent::Message(m) = e {
                    return String::from_utf8(m.content).unwrap();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no answer from the embedded bot"
            );
        }
    });
    assert_eq!(answer, "HELLO THERE");
    let _ = Command::new("kill").args(["-TERM", &bot.id().to_string()]).status();
    assert!(bot.wait().unwrap().success(), "a clean stop on SIGTERM");
}
