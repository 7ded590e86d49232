//! Matriochka end to end: three relay servers and a mailbox server on 127.0.0.1 learn of each
//! other by gossip; two homes whose policy for each other is `matriochka` talk through onion
//! routes; every relay sees packets of one size; a replayed packet is dropped; with every relay
//! down, messages wait in the outbox and never go straight to the mailbox server.

use std::path::Path;
use std::time::Duration;

use meow_proto::Decode;
use meow_proto::catalog::UncheckedDescriptor;
use meow_proto::onion::{self, Instruction, RouteHop};
use meow_proto::wire::{ErrorCode, Request, Response};

use crate::offgrid::{contacts_on, wait_for_stored};
use crate::support::{Home, ServerProc, TempDir, free_port, wait_for};

/// A log line without its terminal colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

fn field(line: &str, name: &str) -> Option<usize> {
    line.split(&format!("{name}="))
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The (class, size) of each packet a relay's log says it accepted.
fn logged_sizes(log: &Path) -> Vec<(usize, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(plain)
        .filter(|l| l.contains("onion packet accepted"))
        .filter_map(|l| Some((field(&l, "class")?, field(&l, "size")?)))
        .collect()
}

fn catalog_json(home: &Home) -> serde_json::Value {
    serde_json::from_str(home.meow(&["servers", "catalog", "--refresh", "--json"]).ok()).unwrap()
}

fn stored(home: &Home) -> Vec<String> {
    home.meow(&["inbox"]).ok();
    home.texts()
}

/// Waits until every text in `want` is stored (relays' delays reorder messages).
fn wait_for_all(home: &Home, want: &[&str]) -> Vec<String> {
    wait_for("every message", Duration::from_secs(30), || {
        let texts = stored(home);
        want.iter().all(|w| texts.iter().any(|t| t == w)).then_some(texts)
    })
}

#[test]
fn two_homes_talk_through_three_relays_and_wait_when_the_relays_are_down() {
    let tmp = TempDir::new("matriochka");
    let mailbox = ServerProc::start(
        &tmp.path().join("mailbox"),
        &["--name", "mailbox", "--gossip-interval", "1s"],
    );
    let mailbox_card = mailbox.card.to_text();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let relay = |i: usize| {
        let name = format!("relay{i}");
        let args = [
            "--name",
            name.as_str(),
            "--relay",
            "--relay-max-delay",
            "500ms",
            "--gossip-interval",
            "1s",
            "--peer",
            mailbox_card.as_str(),
        ];
        let log = tmp.path().join(format!("relay{i}.log"));
        ServerProc::start_logged(&tmp.path().join(&name), ports[i], &args, &log)
    };
    let relays: Vec<ServerProc> = (0..3).map(relay).collect();
    let (alice, bob) = contacts_on(&tmp, &mailbox, "alice", "bob", None);

    // The catalog: the mailbox server learnt the relays by gossip; the homes fetch it from there.
    wait_for("the catalog to list the three relays", Duration::from_secs(30), || {
        let v = catalog_json(&alice);
        let relaying = v["servers"].as_array()?.iter().filter(|s| s["relays"] == true).count();
        (relaying == 3).then_some(())
    });
    bob.meow(&["servers", "catalog", "--refresh"]).ok();
    let listed = alice.meow(&["servers", "catalog"]);
    assert!(listed.ok().contains("relay (delays up to 500 ms)"), "{}", listed.stdout);
    // The mailbox server does not relay: routes must start at a relay the person trusts.
    alice
        .meow(&[
            "contacts",
            "policy",
            "bob",
            "matriochka",
            "--hops",
            "3",
            "--delay",
            "20ms",
        ])
        .ok();
    alice
        .meow(&["send", "bob", "too early"])
        .fails_with(75, "no trusted relay");
    for home in [&alice, &bob] {
        let out = home.meow(&["servers", "trust", "relay0"]);
        assert!(out.ok().contains("relay0 is trusted"), "{}", out.stdout);
    }
    let shown = bob.meow(&["contacts", "policy", "alice", "matriochka", "--delay", "20ms"]);
    assert!(
        shown
            .ok()
            .contains("alice: matriochka, 3 hops, mean delay 20 ms (was server)"),
        "{}",
        shown.stdout
    );
    assert!(
        alice
            .meow(&["contacts"])
            .ok()
            .contains("matriochka, 3 hops, mean delay 20 ms")
    );
    let json: serde_json::Value = serde_json::from_str(alice.meow(&["contacts", "--json"]).ok()).unwrap();
    let bob_view = &json["contacts"][0];
    assert_eq!(bob_view["policy"], "matriochka", "{bob_view}");
    assert_eq!(
        (bob_view["hops"].as_u64(), bob_view["mean_delay_ms"].as_u64()),
        (Some(3), Some(20))
    );

    for i in 1..=3 {
        alice.meow(&["send", "bob", &format!("onion {i}")]).ok();
    }
    bob.meow(&["send", "alice", "onion reply"]).ok();
    let all_sent = ["too early", "onion 1", "onion 2", "onion 3"];
    let texts = wait_for_all(&bob, &all_sent);
    for want in all_sent {
        assert_eq!(texts.iter().filter(|t| *t == want).count(), 1, "{want} once: {texts:?}");
    }
    wait_for_stored(&alice, "onion reply");

    // Every relay carried packets (3 hops, 3 relays), all of one size: one class, every hop.
    let logs: Vec<Vec<(usize, usize)>> = (0..3)
        .map(|i| logged_sizes(&tmp.path().join(format!("relay{i}.log"))))
        .collect();
    for (i, sizes) in logs.iter().enumerate() {
        let log = std::fs::read_to_string(tmp.path().join(format!("relay{i}.log"))).unwrap_or_default();
        assert!(!sizes.is_empty(), "relay{i} relayed nothing; its log:\n{log}");
    }
    // One size per class, whichever relay and whichever hop it was (the first message also
    // carries the X-Wing upgrade offer: a larger class).
    let mut by_class = std::collections::BTreeMap::<usize, std::collections::BTreeSet<usize>>::new();
    for (class, size) in logs.iter().flatten() {
        by_class.entry(*class).or_default().insert(*size);
    }
    for (class, sizes) in &by_class {
        assert_eq!(sizes.len(), 1, "class {class}: one size at every hop: {sizes:?}");
        let size = *sizes.first().unwrap();
        assert!(onion::is_packet_len(size));
        assert_eq!(Some(size), onion::packet_len(*class as u8));
    }

    replay_is_dropped(&mailbox, &relays[0]);

    // Every relay down: nothing goes straight to the mailbox server (which is up).
    let mut relay_data = Vec::new();
    for (i, r) in relays.into_iter().enumerate() {
        relay_data.push(tmp.path().join(format!("relay{i}")));
        r.kill9();
    }
    alice.meow(&["send", "bob", "held back"]).fails_with(75, "relay");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !stored(&bob).contains(&"held back".to_owned()),
        "went around the relays"
    );

    // They come back (same keys): the outbox goes out through them.
    let restart = || -> Vec<ServerProc> {
        (0..3)
            .map(|i| {
                let name = format!("relay{i}");
                let args = ["--name", name.as_str(), "--relay", "--relay-max-delay", "500ms"];
                ServerProc::start_on(&relay_data[i], ports[i], &args)
            })
            .collect()
    };
    let relays = restart();
    alice.meow(&["send", "bob", "after"]).ok();
    let texts = wait_for_all(&bob, &["after", "held back"]);
    assert_eq!(texts.iter().filter(|t| *t == "after").count(), 1);

    // A message held by a relay (long delays now) when every relay is killed: taken means
    // journaled, so it arrives once they are back, and once only.
    alice
        .meow(&["contacts", "policy", "bob", "matriochka", "--delay", "400ms"])
        .ok();
    alice.meow(&["send", "bob", "in flight"]).ok();
    for r in relays {
        r.kill9();
    }
    let _relays = restart();
    let texts = wait_for_all(&bob, &["in flight"]);
    assert_eq!(texts.iter().filter(|t| *t == "in flight").count(), 1, "{texts:?}");
}

/// A packet sent twice to a relay: taken once, then refused as a replay.
fn replay_is_dropped(mailbox: &ServerProc, relay: &ServerProc) {
    smol::block_on(async {
        let client = meow_net::ServerClient::connect(&mailbox.card.address, &mailbox.card.key)
            .await
            .unwrap();
        let Response::Catalog { descriptors } = client
            .request(Request::Catalog { offer: None }, Duration::ZERO)
            .await
            .unwrap()
        else {
            panic!("no catalog")
        };
        let now = meow_net::now_ms();
        let d = descriptors
            .iter()
            .filter_map(|b| UncheckedDescriptor::from_bytes(b).ok()?.check(now / 1000).ok())
            .find(|d| d.body.session_key == relay.card.key)
            .expect("the relay's descriptor");
        let key = d.body.relay.as_ref().unwrap().key_at(now).unwrap();
        let route = [RouteHop {
            relay: key,
            instruction: Instruction::Deliver {
                delay_ms: 0,
                target: Some((mailbox.card.key, mailbox.card.address.clone())),
                mailbox: meow_proto::MailboxId([9; 16]),
                envelope: vec![0; 176],
            },
        }];
        let packet = onion::wrap(&route, &mut meow_proto::os_rng()).unwrap().into_bytes();
        let to_relay = meow_net::ServerClient::connect(&relay.card.address, &relay.card.key)
            .await
            .unwrap();
        let first = to_relay
            .request(Request::Forward { packet: packet.clone() }, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(first, Response::Forwarded);
        let again = to_relay
            .request(Request::Forward { packet }, Duration::ZERO)
            .await
            .unwrap();
        assert!(
            matches!(
                again,
                Response::Error {
                    code: ErrorCode::Replayed,
                    ..
                }
            ),
            "{again:?}"
        );
    });
}
