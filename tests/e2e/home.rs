//! Two homes and a server process, through the `meow` command line (issue: headless node).

use crate::support::{Home, ServerProc, TempDir, free_port, grep};

fn exactly_once(texts: &[String], expected: &[&str]) {
    for e in expected {
        let n = texts.iter().filter(|t| t == e).count();
        assert_eq!(n, 1, "{e:?} received {n} times in {texts:?}");
    }
}

#[test]
fn cards_through_files_messages_both_ways_rotation_in_flight_and_a_server_restart() {
    let tmp = TempDir::new("homes");
    let data = tmp.path().join("server");
    let port = free_port();
    let server = ServerProc::start_on(&data, port, &[]);
    let card = server.card.to_text();
    let alice = Home::init(tmp.path().join("alice"), "alice");
    let bob = Home::init(tmp.path().join("bob"), "bob");
    // A long contact name: a grep of encrypted files cannot match it by chance.
    let bob_name = "bob-the-contact";
    alice.meow(&["servers", "add", &card]).ok();
    bob.meow(&["servers", "add", &card]).ok();

    // Cards through files.
    let inv = tmp.path().join("for-bob.meowcard");
    let ans = tmp.path().join("for-alice.meowcard");
    alice.meow(&["invite", bob_name, "--out", inv.to_str().unwrap()]).ok();
    bob.meow(&[
        "accept",
        inv.to_str().unwrap(),
        "--name",
        "alice",
        "--out",
        ans.to_str().unwrap(),
    ])
    .ok();
    alice.meow(&["accept", ans.to_str().unwrap()]).ok();

    // Both directions.
    alice.meow(&["send", bob_name, "a1: quokka-a1-text"]).ok();
    alice.meow(&["send", bob_name, "a2: quokka-a2-text"]).ok();
    bob.meow(&["send", "alice", "b1: quokka-b1-text"]).ok();

    // Alice rotates while messages are in flight both ways.
    alice.meow(&["rotate", bob_name]).ok();
    alice.meow(&["send", bob_name, "a3: quokka-a3-text"]).ok();
    bob.meow(&["send", "alice", "b2: quokka-b2-text"]).ok(); // sealed to Alice's old keys

    // The server dies in the middle: sends are queued, nothing is lost.
    server.kill9();
    alice
        .meow(&["send", bob_name, "a4: quokka-a4-text"])
        .fails_with(75, "queued");
    bob.meow(&["send", "alice", "b3: quokka-b3-text"])
        .fails_with(75, "queued");
    let server = ServerProc::start_on(&data, port, &[]);

    // Bob reads (his queued b3 goes out first), learns of the rotation, acknowledges, answers.
    bob.meow(&["inbox"]).ok();
    bob.meow(&["send", "alice", "b4: quokka-b4-text"]).ok(); // to Alice's new keys
    alice.meow(&["inbox"]).ok(); // delivers a4, reads b1..b4
    bob.meow(&["inbox"]).ok();

    let at_bob = bob.texts();
    let at_alice = alice.texts();
    exactly_once(
        &at_bob,
        &[
            "a1: quokka-a1-text",
            "a2: quokka-a2-text",
            "a3: quokka-a3-text",
            "a4: quokka-a4-text",
        ],
    );
    exactly_once(
        &at_alice,
        &[
            "b1: quokka-b1-text",
            "b2: quokka-b2-text",
            "b3: quokka-b3-text",
            "b4: quokka-b4-text",
        ],
    );
    assert_eq!(at_bob.len(), 4, "{at_bob:?}");
    assert_eq!(at_alice.len(), 4, "{at_alice:?}");

    let contacts: serde_json::Value = serde_json::from_str(alice.meow(&["contacts", "--json"]).ok()).unwrap();
    assert_eq!(contacts["contacts"][0]["key_serial"], 1, "the rotation took effect");
    assert!(contacts["contacts"][0]["rotation_pending"].is_null());
    drop(server);

    // Nothing readable in the vault: names, texts, secret key bytes.
    let node = meow_node::Node::open(&alice.dir, alice.password.as_bytes()).unwrap();
    let conv = &node.contact(bob_name).unwrap().conversation;
    let secrets = [
        conv.contact_key.seed().to_vec(),
        conv.current().conversation.secret_bytes().to_vec(),
        conv.current().lookup.seed().to_vec(),
    ];
    drop(node);
    for needle in [bob_name.as_bytes(), b"a1: quokka-a1-text", b"b4: quokka-b4-text"]
        .into_iter()
        .chain(secrets.iter().map(Vec::as_slice))
    {
        assert_eq!(
            grep(&alice.dir, needle),
            None,
            "{:?} found in alice's home",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn bad_password_tampered_card_unknown_contact_and_unreachable_server_lose_nothing() {
    let tmp = TempDir::new("errors");
    let data = tmp.path().join("server");
    let port = free_port();
    let server = ServerProc::start_on(&data, port, &[]);
    let alice = Home::init(tmp.path().join("alice"), "alice");
    let bob = Home::init(tmp.path().join("bob"), "bob");
    for h in [&alice, &bob] {
        h.meow(&["servers", "add", &server.card.to_text()]).ok();
    }
    let inv = tmp.path().join("inv.meowcard");
    alice.meow(&["invite", "bob", "--out", inv.to_str().unwrap()]).ok();

    // A tampered card: any changed byte is a bad signature.
    let mut bytes = std::fs::read(&inv).unwrap();
    bytes[40] ^= 0x04;
    let bad = tmp.path().join("bad.meowcard");
    std::fs::write(&bad, &bytes).unwrap();
    bob.meow(&["accept", bad.to_str().unwrap(), "--name", "alice"])
        .fails_with(1, "signature does not verify");
    assert!(bob.meow(&["contacts", "--json"]).ok().contains("\"contacts\": []"));
    bob.meow(&["accept", inv.to_str().unwrap(), "--name", "alice"]).ok();
    alice.meow(&["inbox"]).ok();

    // Wrong password: refused, and the home still opens with the right one.
    let wrong = Home {
        dir: alice.dir.clone(),
        password: "nope".into(),
    };
    wrong.meow(&["contacts"]).fails_with(1, "wrong password");
    assert!(alice.meow(&["contacts"]).ok().contains("bob"));

    // Unknown contact.
    alice
        .meow(&["send", "carol", "hi"])
        .fails_with(1, "unknown contact \"carol\"");

    // Unreachable server: the message waits in the outbox, the inbox says why.
    server.kill9();
    alice
        .meow(&["send", "bob", "kept safe"])
        .fails_with(75, "queued for bob");
    bob.meow(&["inbox"]).fails_with(1, "cannot fetch");
    let _server = ServerProc::start_on(&data, port, &[]);
    alice.meow(&["inbox"]).ok();
    assert_eq!(bob.texts(), vec!["kept safe"]);
}

#[test]
fn help_explains_every_home_command_with_an_example() {
    let h = Home {
        dir: std::env::temp_dir().join("meow-help-unused"),
        password: String::new(),
    };
    let commands: [&[&str]; 13] = [
        &["init"],
        &["servers"],
        &["servers", "add"],
        &["servers", "list"],
        &["servers", "remove"],
        &["invite"],
        &["accept"],
        &["contacts"],
        &["send"],
        &["inbox"],
        &["rotate"],
        &["server"],
        &["server", "card"],
    ];
    for cmd in commands {
        let out = h.meow(&[cmd, &["--help"]].concat());
        let text = out.ok();
        assert!(
            text.contains("Example"),
            "`meow {} --help` has no example:\n{text}",
            cmd.join(" ")
        );
    }
    assert!(h.meow(&["--help"]).ok().contains("Examples"));
}
