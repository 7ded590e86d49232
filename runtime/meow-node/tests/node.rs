//! Two homes and an in-process server: cards, messages both ways, rotation with messages in
//! flight, duplicates, forged senders, the outbox when the server is down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use meow_node::sync::{self, Delivery};
use meow_node::{Accepted, InitOptions, Node, NodeEvent};
use meow_proto::conversation::VersionStatus;
use meow_proto::crypto::KdfParams;
use meow_proto::envelope::ContentType;
use meow_server::{Server, ServerConfig, ServerHandle};
use smol::lock::Mutex;

#[path = "node/devices.rs"]
mod devices;

/// A folder removed when the returned guard drops.
fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("meow-node-{tag}-"))
        .tempdir()
        .unwrap()
}

fn server(dir: &std::path::Path, port: u16) -> ServerHandle {
    Server::start(ServerConfig::new(
        dir.join("server"),
        format!("127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap()
}

fn home(dir: &std::path::Path, name: &str, server: &ServerHandle) -> Mutex<Node> {
    let opts = InitOptions {
        kdf: KdfParams::TESTING,
        display_name: Some(name.into()),
        decoys: true,
    };
    let mut n = Node::init(&dir.join(name), b"pw", opts).unwrap();
    n.add_server(&server.card().to_text()).unwrap();
    Mutex::new(n)
}

fn texts(events: &[NodeEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Message(i) => Some(String::from_utf8_lossy(&i.content).into_owned()),
            _ => None,
        })
        .collect()
}

/// Alice invites Bob; Bob's answer travels through Alice's mailbox.
async fn pair(alice: &Mutex<Node>, bob: &Mutex<Node>) {
    let card = alice.lock().await.invite("bob", false).unwrap();
    let accepted = bob.lock().await.accept(card.to_text().as_bytes(), None).unwrap();
    assert!(matches!(accepted, Accepted::Answered { ref name, .. } if name == "alice"));
    sync::flush_outbox(bob, false).await.unwrap();
    let got = sync::fetch(alice, Duration::ZERO).await.unwrap();
    assert!(
        got.events.contains(&NodeEvent::ContactAdded {
            name: "bob".into(),
            via_public_card: false
        }),
        "{:?}",
        got.events
    );
}

#[test]
fn talk_both_ways_and_rotate_with_messages_in_flight() {
    let dir = tempdir("talk");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
        let d = sync::send(&alice, "bob", ContentType::TEXT, b"hello bob".to_vec())
            .await
            .unwrap();
        assert!(matches!(d, Delivery::Delivered { .. }));
        sync::send(&bob, "alice", ContentType::TEXT, b"hi alice".to_vec())
            .await
            .unwrap();
        assert_eq!(
            texts(&sync::fetch(&bob, Duration::ZERO).await.unwrap().events),
            vec!["hello bob"]
        );
        assert_eq!(
            texts(&sync::fetch(&alice, Duration::ZERO).await.unwrap().events),
            vec!["hi alice"]
        );

        // Alice rotates; both send before either reads.
        alice.lock().await.rotate("bob").unwrap();
        sync::send(&alice, "bob", ContentType::TEXT, b"a1 with offer".to_vec())
            .await
            .unwrap();
        sync::send(&bob, "alice", ContentType::TEXT, b"b1 to old keys".to_vec())
            .await
            .unwrap();
        sync::send(&bob, "alice", ContentType::TEXT, b"b2 to old keys".to_vec())
            .await
            .unwrap();
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert_eq!(texts(&got.events), vec!["a1 with offer"]);
        assert!(
            got.events
                .iter()
                .any(|e| matches!(e, NodeEvent::PeerRotated { serial: 1, .. }))
        );
        sync::send(&bob, "alice", ContentType::TEXT, b"b3 to new keys".to_vec())
            .await
            .unwrap();
        let got = sync::fetch(&alice, Duration::ZERO).await.unwrap();
        let mut t = texts(&got.events);
        t.sort();
        assert_eq!(t, vec!["b1 to old keys", "b2 to old keys", "b3 to new keys"]);
        {
            let a = alice.lock().await;
            let conv = &a.contact("bob").unwrap().conversation;
            assert_eq!(conv.current().serial, 1, "rotation confirmed");
            assert!(conv.pending().is_none());
        }

        // Meanwhile both offered version 2 (crossed offers): one more exchange settles it.
        for _ in 0..2 {
            sync::fetch(&bob, Duration::ZERO).await.unwrap();
            sync::fetch(&alice, Duration::ZERO).await.unwrap();
        }
        for (home, peer) in [(&alice, "bob"), (&bob, "alice")] {
            let status = home.lock().await.contact(peer).unwrap().conversation.version_status();
            assert_eq!(status, VersionStatus::V2 { post_quantum: true }, "{peer}'s contact");
        }
        sync::send(&alice, "bob", ContentType::TEXT, b"ratcheted".to_vec())
            .await
            .unwrap();
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert_eq!(texts(&got.events), vec!["ratcheted"]);
    });
}

#[test]
fn a_card_that_asks_for_a_classical_start_gets_one_from_the_contact() {
    let dir = tempdir("classical");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    // Alice is behind a small link: her card says so, and Bob (post-quantum by default) offers
    // her the small classical start rather than 1.2 KB of X-Wing.
    alice.lock_blocking().set_post_quantum_upgrades(false);
    smol::block_on(async {
        pair(&alice, &bob).await;
        // Bob read it on her card; Alice's own card asked for it.
        assert!(bob.lock().await.contact("alice").unwrap().classical_start);
        assert!(alice.lock().await.contact("bob").unwrap().classical_start);
        sync::send(&bob, "alice", ContentType::TEXT, b"hi".to_vec())
            .await
            .unwrap();
        for _ in 0..3 {
            sync::fetch(&alice, Duration::ZERO).await.unwrap();
            sync::send(&alice, "bob", ContentType::TEXT, b"ok".to_vec())
                .await
                .unwrap();
            sync::fetch(&bob, Duration::ZERO).await.unwrap();
            sync::send(&bob, "alice", ContentType::TEXT, b"ok".to_vec())
                .await
                .unwrap();
        }
        for (home, peer) in [(&alice, "bob"), (&bob, "alice")] {
            let status = home.lock().await.contact(peer).unwrap().conversation.version_status();
            assert_eq!(status, VersionStatus::V2 { post_quantum: false }, "{peer}'s contact");
        }
    });
}

#[test]
fn outbox_keeps_messages_while_the_server_is_down() {
    let dir = tempdir("outbox");
    let srv = server(dir.path(), 0);
    let port = srv.local_addr().port();
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
    });
    srv.shutdown();
    smol::block_on(async {
        let d = sync::send(&alice, "bob", ContentType::TEXT, b"while down".to_vec())
            .await
            .unwrap();
        assert!(matches!(d, Delivery::Queued { .. }), "{d:?}");
        // The message, behind the offer to move the conversation to version 2.
        let outbox = alice.lock().await.outbox(false).unwrap();
        assert_eq!(outbox.len(), 2);
        assert!(outbox[0].label.starts_with(meow_node::AUTOMATIC), "{}", outbox[0].label);
    });
    let _srv = server(dir.path(), port);
    smol::block_on(async {
        let report = sync::flush_outbox(&alice, false).await.unwrap();
        assert_eq!(
            (report.delivered, report.automatic),
            (1, 1),
            "the message, and the offer"
        );
        assert_eq!(
            texts(&sync::fetch(&bob, Duration::ZERO).await.unwrap().events),
            vec!["while down"]
        );
    });
}

#[test]
fn wrong_password_and_unknown_contact_are_clear_errors() {
    let dir = tempdir("errors");
    let srv = server(dir.path(), 0);
    let alice = home(dir.path(), "alice", &srv);
    let err = smol::block_on(sync::send(&alice, "nobody", ContentType::TEXT, vec![])).unwrap_err();
    assert_eq!(err.to_string(), "unknown contact \"nobody\" (see `meow contacts`)");
    drop(alice);
    let err = Node::open(&dir.path().join("alice"), b"wrong").unwrap_err();
    assert_eq!(err.to_string(), "wrong password");
}

#[test]
fn duplicates_and_messages_not_signed_by_the_contact_are_dropped() {
    let dir = tempdir("forged");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
        // The same envelope deposited twice (a retry, or a replaying server) arrives once.
        let items = bob
            .lock()
            .await
            .queue_message("alice", ContentType::TEXT, b"once".to_vec())
            .unwrap();
        let client = meow_net::ServerClient::connect(&srv.card().address, &srv.card().key)
            .await
            .unwrap();
        for item in &items {
            client.deposit(item.mailbox, item.envelope.clone()).await.unwrap();
        }
        let item = items.last().unwrap().clone();
        let item = &item;
        client.deposit(item.mailbox, item.envelope.clone()).await.unwrap();
        assert_eq!(
            texts(&sync::fetch(&alice, Duration::ZERO).await.unwrap().events),
            vec!["once"]
        );

        // A message to Alice's mailbox for Bob, sealed properly but signed by someone else.
        let (mailbox, conversation) = {
            let a = alice.lock().await;
            let c = &a.contact("bob").unwrap().conversation;
            (c.current().mailbox(), c.current().conversation.public())
        };
        let mallory = meow_proto::ContactKey::generate(&mut meow_proto::os_rng());
        let forged = meow_proto::Message {
            id: meow_proto::MessageId([9; 16]),
            sent_at_ms: meow_node::now_ms(),
            content_type: ContentType::TEXT,
            content: b"send me your keys".to_vec(),
            rotation: None,
            rotation_ack: None,
            automatic: false,
            reply_to: None,
        };
        let env = meow_proto::envelope::seal(&forged, &mallory, &conversation, &mut meow_proto::os_rng()).unwrap();
        client.deposit(mailbox, env).await.unwrap();
        let got = sync::fetch(&alice, Duration::ZERO).await.unwrap();
        assert!(texts(&got.events).is_empty());
        assert!(
            got.events
                .iter()
                .any(|e| matches!(e, NodeEvent::Dropped { contact, .. } if contact == "bob"))
        );
        assert_eq!(alice.lock().await.contact("bob").unwrap().dropped_unsigned, 1);
        // It was deleted at the server: the next fetch finds nothing.
        assert!(sync::fetch(&alice, Duration::ZERO).await.unwrap().events.is_empty());
    });
}

/// A signed relay descriptor of a made-up server (its address refuses connections).
fn relay_descriptor(name: &str, session_key: meow_proto::ServerPublic, port: u16) -> Vec<u8> {
    use meow_proto::catalog::{DescriptorBody, RelayInfo, ServerDescriptor};
    use meow_proto::codec::Encode;
    let mut rng = meow_proto::os_rng();
    let now = meow_node::now_ms() / 1000;
    let body = DescriptorBody {
        name: name.into(),
        addresses: vec![format!("127.0.0.1:{port}").parse().unwrap()],
        session_key,
        issued_at: now,
        sequence: 1,
        expires_at: now + 3 * 3600,
        relay: Some(RelayInfo {
            max_delay_ms: 60_000,
            epoch_secs: 3600,
            keys: (0..4)
                .map(|e| (now / 3600 + e, meow_proto::RelayKey::generate(&mut rng).public()))
                .collect(),
        }),
    };
    ServerDescriptor::sign(&meow_proto::ServerIdentity::generate(&mut rng), body).to_bytes()
}

/// Routes start at a trusted relay (switching among them at random), never put the home's own
/// or the contact's server in the middle, and end at the contact's server when it relays; with
/// no route, or a first relay that is down, the message waits: it never goes to the server.
#[test]
fn matriochka_routes_follow_the_rules_and_never_fall_back() {
    let dir = tempdir("matriochka");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
        let mut a = alice.lock().await;
        let fresh = || meow_proto::ServerKey::generate(&mut meow_proto::os_rng()).public();
        let mut catalog = vec![relay_descriptor("home", srv.card().key, srv.local_addr().port())];
        for name in ["trusted", "m1", "m2", "m3"] {
            catalog.push(relay_descriptor(name, fresh(), 1));
        }
        assert_eq!(a.take_catalog(&catalog).unwrap(), 5);
        a.set_policy("bob", meow_node::PrivacyPolicy::Matriochka).unwrap();
        let items = a
            .queue_message("bob", ContentType::TEXT, b"via onions".to_vec())
            .unwrap();
        let item = items.last().unwrap().clone();
        let item = &item;

        // Only my own server is trusted so far: every route starts there.
        let plan = a.onion_plan(item).unwrap();
        assert_eq!(plan.relays.len(), 3);
        assert_eq!(plan.relays[0], "home");
        a.set_trust("trusted", true).unwrap();
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..60 {
            let plan = a.onion_plan(item).unwrap();
            assert_eq!(plan.relays.len(), 3, "{:?}", plan.relays);
            firsts.insert(plan.relays[0].clone());
            if plan.relays[0] == "trusted" {
                assert_eq!(plan.relays[2], "home", "the contact's server ends the route");
            }
            assert!(!plan.relays[1].contains("home"), "{:?}", plan.relays);
            assert_eq!(plan.packet.len(), meow_proto::onion::packet_len(0).unwrap());
        }
        assert_eq!(
            firsts.len(),
            2,
            "the first relay switches among trusted ones: {firsts:?}"
        );
        // Untrusting my own server leaves only the other one.
        a.set_trust("home", false).unwrap();
        assert!((0..20).all(|_| a.onion_plan(item).unwrap().relays[0] == "trusted"));
        a.set_trust("trusted", false).unwrap();
        assert!(a.onion_plan(item).unwrap_err().contains("no trusted relay"));
        a.set_trust("trusted", true).unwrap();
        drop(a);

        // The trusted relay is down (nothing listens there): the message waits in the outbox,
        // and the server (up, and bob's) never sees it.
        let d = sync::deliver_all(&alice, items).await.unwrap();
        assert!(
            matches!(d.last(), Some(Delivery::Queued { reason }) if reason.contains("first relay")),
            "{d:?}"
        );
        let waiting = alice.lock().await.outbox(false).unwrap();
        assert!(
            waiting.iter().any(|w| w.message == item.message),
            "it waits in the outbox"
        );
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert!(texts(&got.events).is_empty(), "{:?}", got.events);
    });
}

/// The description of each file that arrived whole.
fn files(events: &[NodeEvent]) -> Vec<serde_json::Value> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Message(i) if i.content_type == ContentType::FILE => {
                Some(serde_json::from_slice(&i.content).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn dropped(events: &[NodeEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Dropped { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_file_arrives_whole_through_a_server_restart_and_a_receiver_restart() {
    let dir = tempdir("file");
    let srv = server(dir.path(), 0);
    let port = srv.local_addr().port();
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let meta = smol::block_on(async {
        pair(&alice, &bob).await;
        let (meta, items) = alice
            .lock()
            .await
            .queue_file("bob", "data.bin", "application/octet-stream", &data, None)
            .unwrap();
        assert_eq!(meta.chunks(), 46);
        // Half of the chunks now; the rest wait in the outbox.
        let half = items.len() / 2;
        sync::deliver_all(&alice, items[..half].to_vec()).await.unwrap();

        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert!(files(&got.events).is_empty());
        let partial = bob.lock().await.file(&meta.id.to_hex()).unwrap();
        assert!(!partial.complete() && partial.received > 0, "{partial:?}");
        let err = bob.lock().await.read_file(&partial).unwrap_err();
        assert!(err.to_string().contains("still on its way in"), "{err}");
        meta
    });
    // Both the server and Bob's home restart between the halves.
    srv.shutdown();
    drop(bob);
    let srv = server(dir.path(), port);
    let bob = Mutex::new(Node::open(&dir.path().join("bob"), b"pw").unwrap());
    smol::block_on(async {
        sync::flush_outbox(&alice, false).await.unwrap();
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        let arrived = files(&got.events);
        assert_eq!(arrived.len(), 1, "{:?}", got.events.len());
        assert_eq!(arrived[0]["name"], "data.bin");
        assert_eq!(arrived[0]["size"], data.len() as u64);
        let b = bob.lock().await;
        let record = b.file(&arrived[0]["file"].as_str().unwrap()[..8]).unwrap();
        assert_eq!(record.meta, meta);
        assert!(b.read_file(&record).unwrap() == data, "the file is not what was sent");
        let range = meow_node::files::read_range(&b.vault(), &record, 114_000, 10_000).unwrap();
        assert_eq!(range, data[114_000..124_000]);
        let tail = meow_node::files::read_range(&b.vault(), &record, data.len() as u64 - 5, 100).unwrap();
        assert_eq!(tail, data[data.len() - 5..]);
    });
    // Deleting it removes its chunks.
    let mut b = smol::block_on(bob.lock());
    let record = b.file(&meta.id.to_hex()).unwrap();
    b.delete_file(&record).unwrap();
    assert!(b.file_records(None).unwrap().is_empty());
    assert_eq!(b.vault().count(meow_node::Table::Files), 0);
    drop(srv);
}

#[test]
fn files_over_the_limit_forged_chunks_and_bad_digests_are_dropped() {
    use meow_proto::codec::Encode;
    use meow_proto::file::{FileChunk, FileMeta, TransferId};
    let dir = tempdir("file-bad");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
        bob.lock().await.set_file_limit(200_000);
        // Over Bob's limit: refused at its first chunk, not stored.
        sync::send_file(
            &alice,
            "bob",
            ("big.bin", "application/octet-stream"),
            &[1; 300_000],
            None,
        )
        .await
        .unwrap();
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        let reasons = dropped(&got.events);
        assert!(
            reasons.iter().all(|r| r.contains("larger than this home takes")),
            "{reasons:?}"
        );
        assert_eq!(reasons.len(), 3, "each chunk is refused: {reasons:?}");
        assert_eq!(bob.lock().await.vault().count(meow_node::Table::Files), 0);

        // A file whose chunks do not add up to its digest: dropped when it completes.
        let data = vec![5u8; 150_000];
        let meta = FileMeta::describe(TransferId([3; 16]), "x.bin", "application/octet-stream", &data).unwrap();
        let mut chunks = FileChunk::split(&meta, &data);
        chunks[1].data[0] ^= 1;
        // And a chunk of the same transfer that says another size.
        let mut liar = chunks[0].clone();
        liar.meta.size = 150_001;
        liar.meta.digest = [0; 32];
        for c in [&chunks[0], &liar, &chunks[1]] {
            sync::send(&alice, "bob", ContentType::FILE, c.to_bytes())
                .await
                .unwrap();
        }
        // Garbage of the file type.
        sync::send(&alice, "bob", ContentType::FILE, b"not a chunk".to_vec())
            .await
            .unwrap();
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert!(files(&got.events).is_empty());
        let reasons = dropped(&got.events);
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].contains("disagrees with the file's description"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("does not match its SHA-256"), "{reasons:?}");
        assert!(reasons[2].starts_with("file chunk:"), "{reasons:?}");
        assert_eq!(
            bob.lock().await.vault().count(meow_node::Table::Files),
            0,
            "nothing of it is kept"
        );

        // Bad names are refused at the sender.
        let err = alice
            .lock()
            .await
            .queue_file("bob", "up/../x.txt", "text/plain", b"x", None)
            .unwrap_err();
        assert!(err.to_string().contains("must not hold a slash"), "{err}");
    });
}

#[test]
fn a_reply_names_the_message_it_answers() {
    let dir = tempdir("reply");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
        sync::send(&alice, "bob", ContentType::TEXT, b"dinner at 8?".to_vec())
            .await
            .unwrap();
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        let question = got
            .events
            .iter()
            .find_map(|e| match e {
                NodeEvent::Message(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(question.reply_to, None);
        let items = bob
            .lock()
            .await
            .queue_reply("alice", (ContentType::TEXT, b"yes".to_vec()), question.message, None)
            .unwrap();
        sync::deliver_all(&bob, items).await.unwrap();
        let got = sync::fetch(&alice, Duration::ZERO).await.unwrap();
        let answer = got
            .events
            .iter()
            .find_map(|e| match e {
                NodeEvent::Message(i) if i.content == b"yes" => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(answer.reply_to, Some(question.message));
        // Stored with it: the inbox read back still says what it answers.
        let stored = alice.lock().await.inbox(false).unwrap();
        assert_eq!(stored.last().unwrap().reply_to, Some(question.message));
    });
}

#[test]
fn a_contact_has_at_most_8_files_on_their_way_in() {
    use meow_proto::codec::Encode;
    use meow_proto::file::{FileChunk, FileMeta, TransferId};
    let dir = tempdir("file-flood");
    let srv = server(dir.path(), 0);
    let (alice, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&alice, &bob).await;
        // Nine files of two chunks each, of which only the first chunk is ever sent.
        let data = vec![1u8; meow_proto::file::CHUNK_LEN + 1];
        for i in 0..9u8 {
            let meta = FileMeta::describe(TransferId([i; 16]), "part.bin", "application/octet-stream", &data).unwrap();
            let first = FileChunk::split(&meta, &data).remove(0);
            sync::send(&alice, "bob", ContentType::FILE, first.to_bytes())
                .await
                .unwrap();
        }
        let got = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        let reasons = dropped(&got.events);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("already has 8 files on their way in"),
            "{reasons:?}"
        );
        let b = bob.lock().await;
        let partial = b.file_records(None).unwrap();
        assert_eq!(partial.len(), 8);
        assert!(partial.iter().all(|r| r.received == 1 && !r.complete()));
    });
}
