//! Time-dependent behaviour on virtual time: expiry after the real 14-day TTL, long polls, rate
//! budgets that refill, an outbox that retries after its backoff. No test sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use meow_clock::{Clock, VirtualClock};
use meow_node::sync;
use meow_proto::crypto::CounterRng;
use meow_proto::padding::LORA_CLASS;
use meow_proto::wire::{ErrorCode, MailboxAuth, Request, Response};
use meow_proto::{ContentType, LookupKey, MailboxId};
use meow_testkit::World;
use meow_testkit::sim::{Reply, SimServer};

const DAY: Duration = Duration::from_secs(86_400);
const START: u64 = 1_800_000_000_000;

fn envelope(fill: u8) -> Vec<u8> {
    let mut e = vec![fill; LORA_CLASS];
    e[0] = 1;
    e
}

fn poll(key: &LookupKey, binding: [u8; 32], wait_ms: u32) -> Request {
    Request::Poll {
        mailboxes: vec![MailboxAuth::prove(key, &binding)],
        limit: 10,
        wait_ms,
        broadcasts_after: 0,
    }
}

fn messages(r: &Response) -> usize {
    match r {
        Response::Messages { items, .. } => items.len(),
        other => panic!("not messages: {other:?}"),
    }
}

#[test]
fn a_message_expires_after_the_fourteen_day_ttl_in_microseconds() {
    let wall = Instant::now();
    let clock = VirtualClock::new(START);
    let mut server = SimServer::new(&clock, |cfg| cfg.limits.max_messages_per_mailbox = 1);
    let key = LookupKey::generate(&mut CounterRng::new(1));
    let peer = server.peer([1; 32]);
    let deposit = |fill| Request::Deposit {
        mailbox: MailboxId::of(&key.public()),
        envelope: envelope(fill),
    };
    assert_eq!(server.request(&peer, deposit(7)), Reply::Now(Response::Deposited));
    let Reply::Now(Response::Error { code, .. }) = server.request(&peer, deposit(8)) else {
        panic!()
    };
    assert_eq!(code, ErrorCode::MailboxFull, "the quota of one is used");
    server.run_for(13 * DAY);
    let Reply::Now(r) = server.request(&peer, poll(&key, [1; 32], 0)) else {
        panic!()
    };
    assert_eq!(messages(&r), 1, "kept for thirteen days");
    server.run_for(DAY + Duration::from_secs(120));
    let Reply::Now(r) = server.request(&peer, poll(&key, [1; 32], 0)) else {
        panic!()
    };
    assert_eq!(messages(&r), 0, "expired and swept after fourteen");
    assert_eq!(
        server.request(&peer, deposit(9)),
        Reply::Now(Response::Deposited),
        "its quota freed"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(1),
        "{:?} of wall time",
        wall.elapsed()
    );
}

#[test]
fn a_long_poll_answers_when_mail_arrives_or_at_its_deadline() {
    let clock = VirtualClock::new(START);
    let mut server = SimServer::new(&clock, |_| {});
    let key = LookupKey::generate(&mut CounterRng::new(2));
    let (reader, writer) = (server.peer([2; 32]), server.peer([3; 32]));
    let Reply::Later(id) = server.request(&reader, poll(&key, [2; 32], 30_000)) else {
        panic!("nothing there yet: parked")
    };
    assert!(server.step().is_empty(), "nothing yet");
    let deposit = Request::Deposit {
        mailbox: MailboxId::of(&key.public()),
        envelope: envelope(8),
    };
    server.request(&writer, deposit);
    let answered = server.step();
    assert_eq!(answered.len(), 1);
    assert_eq!(
        (answered[0].0, messages(&answered[0].1)),
        (id, 1),
        "woken by the deposit"
    );
    assert_eq!(clock.now_ms(), START, "at once");

    let other = LookupKey::generate(&mut CounterRng::new(3));
    let Reply::Later(id) = server.request(&reader, poll(&other, [2; 32], 25_000)) else {
        panic!()
    };
    let answered = server.run_until_quiet();
    assert_eq!(
        (answered[0].0, messages(&answered[0].1)),
        (id, 0),
        "empty at the deadline"
    );
    assert_eq!(clock.now_ms(), START + 25_000);
}

#[test]
fn a_deposit_budget_refills_over_virtual_time() {
    let clock = VirtualClock::new(START);
    let mut server = SimServer::new(&clock, |cfg| {
        cfg.limits.session_deposits.count = 3;
    });
    let peer = server.peer([4; 32]);
    let deposit = |i: u8| Request::Deposit {
        mailbox: MailboxId([i; 16]),
        envelope: envelope(i),
    };
    for i in 0..3 {
        assert_eq!(server.request(&peer, deposit(i)), Reply::Now(Response::Deposited));
    }
    let Reply::Now(Response::Error { code, .. }) = server.request(&peer, deposit(9)) else {
        panic!("a fourth deposit in the minute is refused")
    };
    assert_eq!(code, ErrorCode::RateLimited);
    server.run_for(Duration::from_secs(20));
    assert_eq!(
        server.request(&peer, deposit(10)),
        Reply::Now(Response::Deposited),
        "one back after 20 s"
    );
}

#[test]
fn an_outbox_retries_after_its_backoff_on_virtual_time() {
    let wall = Instant::now();
    let world = World::new(START, 7);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub-data");
    let hub = world.server_at("hub", &data, |_| {});
    let card = hub.card().clone();
    let alice = smol::lock::Mutex::new(world.home(dir.path(), "alice", 1));
    let bob = smol::lock::Mutex::new(world.home(dir.path(), "bob", 2));
    smol::block_on(async {
        for h in [&alice, &bob] {
            h.lock().await.ensure_server(&card).unwrap();
        }
        let inv = alice.lock().await.invite("bob", false).unwrap();
        bob.lock()
            .await
            .accept(inv.to_text().as_bytes(), Some("alice"))
            .unwrap();
        sync::flush_outbox(&bob, false).await.unwrap();
        sync::fetch(&alice, Duration::ZERO).await.unwrap();
        assert_eq!(alice.lock().await.contacts().len(), 1, "the answer arrived");
    });
    drop(hub); // the server goes away

    smol::block_on(async {
        let d = sync::send(&alice, "bob", ContentType::TEXT, b"are you there?".to_vec())
            .await
            .unwrap();
        assert!(matches!(d, sync::Delivery::Queued { .. }), "{d:?}");
        let early = sync::flush_outbox(&alice, true).await.unwrap();
        assert_eq!(early.queued.len(), 0, "not due again before its backoff");
        let _hub = world.server_at("hub", &data, |_| {});
        world.clock.advance(Duration::from_millis(900));
        assert_eq!(
            sync::flush_outbox(&alice, true).await.unwrap().delivered,
            0,
            "still backing off"
        );
        world.clock.advance(Duration::from_secs(2));
        assert_eq!(
            sync::flush_outbox(&alice, true).await.unwrap().delivered,
            1,
            "retried after the backoff"
        );
        let report = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        let got: Vec<String> = report
            .events
            .iter()
            .filter_map(|e| match e {
                meow_node::NodeEvent::Message(m) => Some(String::from_utf8_lossy(&m.content).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(got, ["are you there?"]);
    });
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "{:?} of wall time",
        wall.elapsed()
    );
}
