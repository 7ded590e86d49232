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

#[test]
fn a_damaged_home_or_server_store_is_refused_with_one_line_and_doctor_says_why() {
    for truncate in [true, false] {
        let tmp = TempDir::new("damaged");
        let data = tmp.path().join("server");
        let server = ServerProc::start(&data, &[]);
        let (home, friend) = crate::support::contacts_through(&tmp, &server, "home", "friend");
        for i in 0..30 {
            // Deposits waiting in the server's store, and records in the home's vault.
            friend.meow(&["send", "home", &format!("note {i}")]).ok();
            home.meow(&["invite", &format!("friend-{i}")]).ok();
        }
        server.kill9();
        meow_store::testing::damage_journal(&home.dir, truncate);
        let refused = home.meow(&["contacts"]);
        assert_eq!(refused.code, 1, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("is damaged: its journal lost"),
            "{}",
            refused.stderr
        );
        let doctor = home.meow(&["doctor"]);
        assert_eq!(doctor.code, 1, "{}{}", doctor.stdout, doctor.stderr);
        assert!(
            doctor.stdout.contains("problem: the vault: its journal lost"),
            "{}",
            doctor.stdout
        );
        if !truncate && refused.stderr.contains("does not read") {
            // Overwritten inside a batch: fjall refuses the whole journal (its checksum fails),
            // so there is nothing to accept; the doctor says so.
            assert!(
                doctor.stdout.contains("only a backup can bring it back"),
                "{}",
                doctor.stdout
            );
        } else {
            assert!(
                refused.stderr.contains("lost its last"),
                "truncate={truncate}: {}",
                refused.stderr
            );
            home.meow(&["doctor", "--accept-loss"]).ok();
            let listed = home.meow(&["contacts", "--json"]);
            let v: serde_json::Value = serde_json::from_str(listed.ok()).unwrap();
            let kept = v["invitations"].as_array().unwrap().len();
            assert!(kept < 31, "truncate={truncate}: {kept} invitations kept");
            assert!(home.meow(&["doctor"]).ok().contains("no problem found"));
        }

        // The server's store: refused at start, explained by the doctor.
        meow_store::testing::damage_journal(&data, truncate);
        let out = home.run_raw(&[
            "-q",
            "server",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains("is damaged: its journal lost"), "{}", out.stderr);
        let doctor = home.run_raw(&["doctor", "--server", data.to_str().unwrap()]);
        assert_eq!(doctor.code, 1, "{}", doctor.stdout);
        assert!(
            doctor.stdout.contains("problem: the store: its journal lost"),
            "{}",
            doctor.stdout
        );
    }
}

/// `tests/fixtures/legacy-v1` was made by the release before typed addresses, durable events and
/// integrity marks: two homes (password `legacy`) and their server on 127.0.0.1:17391, with a
/// message waiting at the server, one in bob's outbox, and a key rotation of alice's in flight.
#[test]
fn homes_made_by_the_previous_release_keep_talking() {
    let tmp = TempDir::new("legacy");
    meow_store::testing::copy_tree(&crate::support::repo().join("tests/fixtures/legacy-v1"), tmp.path());
    let _server = ServerProc::start_on(&tmp.path().join("server"), 17391, &[]);
    let home = |name: &str| Home {
        dir: tmp.path().join(name),
        password: "legacy".into(),
    };
    let (alice, bob) = (home("alice"), home("bob"));
    let waiting = bob.meow(&["inbox"]);
    assert!(
        waiting
            .ok()
            .contains("alice: sealed before the upgrade, waiting at the server"),
        "{}",
        waiting.stdout
    );
    assert!(
        waiting.stderr.contains("delivered 1 queued message"),
        "{}",
        waiting.stderr
    );
    crate::support::wait_for_text(&alice, "bob's queued message", |t| {
        t == "queued in the outbox while the server is down"
    });
    alice.meow(&["send", "bob", "after the upgrade"]).ok();
    crate::support::wait_for_text(&bob, "a message sealed by the new release", |t| {
        t == "after the upgrade"
    });
    bob.meow(&["send", "alice", "and back"]).ok();
    crate::support::wait_for_text(&alice, "the answer", |t| t == "and back");
    // On the way the two moved their conversation to version 2 in band (offer, accept, first
    // version-2 message), with no new card exchange; the ratchet carries the next messages.
    alice.meow(&["send", "bob", "ratcheted"]).ok();
    crate::support::wait_for_text(&bob, "a version-2 message", |t| t == "ratcheted");
    bob.meow(&["send", "alice", "ratcheted back"]).ok();
    crate::support::wait_for_text(&alice, "a version-2 answer", |t| t == "ratcheted back");
    for (h, other) in [(&alice, "bob"), (&bob, "alice")] {
        let c: serde_json::Value = serde_json::from_str(h.meow(&["contacts", "--json"]).ok()).unwrap();
        assert_eq!(c["contacts"][0]["name"], other);
        assert_eq!(
            c["contacts"][0]["protocol"], "v2 (double ratchet, post-quantum start)",
            "{other}'s contact"
        );
        assert!(h.meow(&["contacts"]).ok().contains("v2 (double ratchet"));
        assert!(h.meow(&["doctor"]).ok().contains("no problem found"));
    }
}

/// A sensor behind a LoRa link answers the hub's card with `--classical-start`: both sides then
/// move their conversation to version 2 with the small classical exchange, and say so.
#[test]
fn a_home_behind_a_small_link_asks_for_a_classical_start_on_its_card() {
    let tmp = TempDir::new("classical");
    let server = ServerProc::start_on(&tmp.path().join("server"), free_port(), &[]);
    let hub = Home::init(tmp.path().join("hub"), "hub");
    let sensor = Home::init(tmp.path().join("sensor"), "sensor");
    for h in [&hub, &sensor] {
        h.meow(&["servers", "add", &server.card.to_text()]).ok();
    }
    let inv = tmp.path().join("for-sensor.meowcard");
    hub.meow(&["invite", "sensor", "--out", inv.to_str().unwrap()]).ok();
    sensor
        .meow(&["accept", inv.to_str().unwrap(), "--name", "hub", "--classical-start"])
        .ok();
    hub.meow(&["inbox"]).ok();
    for i in 0..3 {
        hub.meow(&["send", "sensor", &format!("h{i}")]).ok();
        crate::support::wait_for_text(&sensor, "the hub's message", |t| t == format!("h{i}"));
        sensor.meow(&["send", "hub", &format!("s{i}")]).ok();
        crate::support::wait_for_text(&hub, "the sensor's message", |t| t == format!("s{i}"));
    }
    for (h, other) in [(&hub, "sensor"), (&sensor, "hub")] {
        let c: serde_json::Value = serde_json::from_str(h.meow(&["contacts", "--json"]).ok()).unwrap();
        assert_eq!(c["contacts"][0]["name"], other);
        assert_eq!(
            c["contacts"][0]["protocol"], "v2 (double ratchet, classical start)",
            "{other}'s contact"
        );
    }
}

/// The names of a home's contacts (`meow contacts --json`), with extra environment variables.
fn contact_names(home: &Home, vars: &[(&str, &str)]) -> Vec<String> {
    let out = home.meow_env(vars, &["contacts", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    v["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_hidden_contact_talks_while_unlocked_and_its_messages_wait_while_locked() {
    let tmp = TempDir::new("hidden");
    let (hub, homes, config, _) = crate::support::hub_with_contacts(&tmp, &["alice", "carol"]);
    let (alice, carol) = (&homes[0], &homes[1]);
    let secret = [("MEOW_COMPARTMENT_PASSWORD", "a second password")];
    let typo = [("MEOW_COMPARTMENT_PASSWORD", "a second pasword")];

    // Hidden on the home itself (no daemon): gone under the main password.
    let hidden = hub.meow_env(&secret, &["hide", "alice", "--new"]);
    assert!(
        hidden.ok().contains("alice is hidden in a new compartment"),
        "{}",
        hidden.stdout
    );
    assert_eq!(contact_names(&hub, &[]), vec!["carol"]);
    assert_eq!(contact_names(&hub, &secret), vec!["alice", "carol"]);
    hub.meow_env(&typo, &["hide", "carol"])
        .fails_with(1, "no compartment opens with this password");
    hub.meow_env(&secret, &["hide", "hub-no-such-contact"])
        .fails_with(1, "unknown contact");
    assert_eq!(contact_names(&hub, &[]), vec!["carol"], "a failed hide changes nothing");
    let listed: serde_json::Value = serde_json::from_str(hub.meow_env(&secret, &["contacts", "--json"]).ok()).unwrap();
    let hidden: Vec<bool> = listed["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hidden"].as_bool().unwrap())
        .collect();
    assert_eq!(hidden, vec![true, false], "alice is marked hidden, carol is not");
    hub.meow_env(&secret, &["unlock"])
        .fails_with(1, "no `meow run` holds this home");

    // Locked in the daemon: alice's message waits at the server, carol's arrives.
    let daemon = crate::support::Daemon::start(&hub, &config);
    alice.meow(&["send", "hub", "sent while locked"]).ok();
    carol.meow(&["send", "hub", "carol is here"]).ok();
    let texts = crate::support::wait_for_text(&hub, "carol's message", |t| t == "carol is here");
    assert!(!texts.iter().any(|t| t == "sent while locked"), "{texts:?}");
    assert!(
        !daemon.log_text().contains("alice"),
        "a locked contact is in the log:\n{}",
        daemon.log_text()
    );

    // Unlocked: the waiting message arrives, and alice is a contact like any other.
    let out = hub.meow_env(&secret, &["unlock"]);
    assert!(out.ok().contains("unlocked a compartment: 1 contact"), "{}", out.stdout);
    crate::support::wait_for_text(&hub, "alice's waiting message", |t| t == "sent while locked");
    hub.meow(&["send", "alice", "hello, hidden friend"]).ok();
    crate::support::wait_for_text(alice, "the hub's answer", |t| t == "hello, hidden friend");
    assert_eq!(
        contact_names(&hub, &[]),
        vec!["alice", "carol"],
        "unlocked in the daemon"
    );

    // Locked again: gone from the daemon, and its next message waits again.
    let locked = hub.meow(&["lock"]);
    assert!(
        locked.ok().contains("locked 1 compartment(s): 1 contact(s)"),
        "{}",
        locked.stdout
    );
    assert_eq!(contact_names(&hub, &[]), vec!["carol"]);
    alice.meow(&["send", "hub", "second while locked"]).ok();
    carol.meow(&["send", "hub", "carol again"]).ok();
    let texts = crate::support::wait_for_text(&hub, "carol's second message", |t| t == "carol again");
    assert!(!texts.iter().any(|t| t.contains("locked")), "{texts:?}");

    // One command with the compartment password sees it all (and fetches what waited).
    let all = hub.meow_env(&secret, &["inbox", "--all", "--json"]);
    for text in ["sent while locked", "second while locked", "carol again"] {
        assert!(all.ok().contains(text), "{text} missing: {}", all.stdout);
    }
    assert_eq!(
        contact_names(&hub, &[]),
        vec!["carol"],
        "locked again after that command"
    );
    assert_eq!(daemon.terminate(), 0);
    for needle in ["alice", "sent while locked", "a second password"] {
        assert_eq!(
            crate::support::grep(&hub.dir, needle.as_bytes()),
            None,
            "{needle} is in a file"
        );
    }
}

/// The messages of `home`, as `meow inbox --all --json` gives them.
fn messages(home: &Home) -> Vec<serde_json::Value> {
    home.json_list(&["inbox", "--all", "--json"])
}

/// Threads: `meow send --reply-to` (an id's start is enough) names the message it answers; the
/// other side's inbox shows it, and a plugin's `reply` does the same.
#[test]
fn a_reply_names_the_message_it_answers_from_the_cli_and_from_a_plugin() {
    let tmp = TempDir::new("threads");
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let (alice, bob) = crate::support::contacts_through(&tmp, &server, "alice", "bob");
    alice.meow(&["inbox"]).ok();
    alice.meow(&["send", "bob", "dinner at 8?"]).ok();
    alice.meow(&["send", "bob", "or at 9?"]).ok();
    bob.meow(&["inbox"]).ok();
    let asked = messages(&bob);
    let first = asked.iter().find(|m| m["text"] == "dinner at 8?").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.meow(&["send", "alice", "yes, at 8", "--reply-to", &first[..6]])
        .ok();
    let shown = alice.meow(&["inbox"]);
    assert!(
        shown.ok().contains(&format!("bob (re {}): yes, at 8", &first[..8])),
        "{}",
        shown.stdout
    );
    let answer = messages(&alice).into_iter().find(|m| m["text"] == "yes, at 8").unwrap();
    assert_eq!(answer["reply_to"], first.as_str());
    // An id that names no message from that contact is refused, and nothing is sent.
    bob.meow(&["send", "alice", "hm", "--reply-to", "zz"])
        .fails_with(1, "no message from alice in the inbox has an id starting so");
    assert_eq!(messages(&alice).len(), 1);
}
