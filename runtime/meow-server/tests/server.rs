//! The server in-process: sessions, mailboxes, quotas, broadcast, directory, datagrams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use meow_net::ServerClient;
use meow_proto::broadcast::Broadcast;
use meow_proto::card::{Card, CardBody, CardRole};
use meow_proto::directory::{DirectoryEntry, Withdrawal};
use meow_proto::padding::LORA_CLASS;
use meow_proto::testing::TestRng;
use meow_proto::wire::{ErrorCode, Request, Response};
use meow_proto::*;
use meow_server::{Server, ServerConfig, ServerHandle};

/// A folder removed when the returned guard drops.
fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("meow-server-{tag}-"))
        .tempdir()
        .unwrap()
}

/// A server in a fresh folder; the folder goes when the guard drops (keep it first in a `let`
/// pattern, so that it outlives the server).
fn start(tag: &str, f: impl FnOnce(&mut ServerConfig)) -> (tempfile::TempDir, ServerHandle) {
    let dir = tempdir(tag);
    let mut cfg = ServerConfig::new(dir.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    cfg.listen_udp = Some("127.0.0.1:0".parse().unwrap());
    f(&mut cfg);
    (dir, Server::start(cfg).unwrap())
}

async fn client(s: &ServerHandle) -> ServerClient {
    ServerClient::connect(&s.card().address, &s.card().key).await.unwrap()
}

fn envelope(fill: u8) -> Vec<u8> {
    let mut e = vec![fill; LORA_CLASS];
    e[0] = 1;
    e
}

#[test]
fn deposit_poll_ack_and_long_poll() {
    let (_dir, server) = start("basic", |_| {});
    smol::block_on(async {
        let c = client(&server).await;
        let key = LookupKey::generate(&mut TestRng::new(1));
        let mailbox = MailboxId::of(&key.public());
        c.deposit(mailbox, envelope(2)).await.unwrap();
        c.deposit(mailbox, envelope(3)).await.unwrap();
        let got = c.poll(&[&key], 10, Duration::ZERO, 0).await.unwrap();
        assert_eq!(got.messages.len(), 2);
        assert_eq!(got.messages[0].envelope[1], 2, "oldest first");
        let seqs: Vec<u64> = got.messages.iter().map(|m| m.seq).collect();
        c.ack(&[(&key, seqs.clone())]).await.unwrap();
        c.ack(&[(&key, seqs)]).await.unwrap(); // idempotent
        assert!(
            c.poll(&[&key], 10, Duration::ZERO, 0)
                .await
                .unwrap()
                .messages
                .is_empty()
        );

        // A long poll returns as soon as a deposit lands.
        let c2 = client(&server).await;
        let start = std::time::Instant::now();
        let (polled, ()) = futures_lite::future::zip(c.poll(&[&key], 10, Duration::from_secs(20), 0), async {
            smol::Timer::after(Duration::from_millis(200)).await;
            c2.deposit(mailbox, envelope(4)).await.unwrap();
        })
        .await;
        assert_eq!(polled.unwrap().messages.len(), 1);
        assert!(start.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn polls_need_a_proof_bound_to_the_session() {
    let (_dir, server) = start("auth", |_| {});
    smol::block_on(async {
        let c = client(&server).await;
        let key = LookupKey::generate(&mut TestRng::new(2));
        // A proof made for another binding (a replay from another session) is refused.
        let forged = wire::MailboxAuth::prove(&key, &[0u8; 32]);
        let req = Request::Poll {
            mailboxes: vec![forged],
            limit: 1,
            wait_ms: 0,
            broadcasts_after: 0,
        };
        let resp = c.request(req, Duration::ZERO).await.unwrap();
        assert!(
            matches!(
                resp,
                Response::Error {
                    code: ErrorCode::NotAuthorized,
                    ..
                }
            ),
            "{resp:?}"
        );
        let req = Request::Poll {
            mailboxes: vec![wire::MailboxAuth::proven(&key)],
            limit: 1,
            wait_ms: 0,
            broadcasts_after: 0,
        };
        let resp = c.request(req, Duration::ZERO).await.unwrap();
        assert!(matches!(
            resp,
            Response::Error {
                code: ErrorCode::NotAuthorized,
                ..
            }
        ));
        c.poll(&[&key], 1, Duration::ZERO, 0).await.unwrap();
    });
}

#[test]
fn quotas_and_bad_envelopes_get_clear_errors() {
    let (_dir, server) = start("quota", |cfg| cfg.limits.max_messages_per_mailbox = 3);
    smol::block_on(async {
        let c = client(&server).await;
        let mailbox = MailboxId([5; 16]);
        for _ in 0..3 {
            c.deposit(mailbox, envelope(1)).await.unwrap();
        }
        let err = c.deposit(mailbox, envelope(1)).await.unwrap_err();
        assert!(
            matches!(
                err,
                meow_net::ClientError::Server {
                    code: ErrorCode::MailboxFull,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("mailbox full"));
        let err = c.deposit(MailboxId([6; 16]), vec![1; 100]).await.unwrap_err();
        assert!(
            matches!(
                err,
                meow_net::ClientError::Server {
                    code: ErrorCode::InvalidEnvelope,
                    ..
                }
            ),
            "{err}"
        );
    });
}

#[test]
fn broadcasts_reach_pollers_and_users_need_permission() {
    let mut rng = TestRng::new(3);
    let operator = BroadcastKey::generate(&mut rng);
    let op_pub = operator.public();
    let (_dir, server) = start("broadcast", |cfg| cfg.operators = vec![op_pub]);
    smol::block_on(async {
        let c = client(&server).await;
        let now = meow_net::now_secs();
        let id = c
            .broadcast(Broadcast::sign(&operator, now, "flood: go uphill"))
            .await
            .unwrap();
        let user = BroadcastKey::generate(&mut rng);
        let err = c.broadcast(Broadcast::sign(&user, now, "hi all")).await.unwrap_err();
        assert!(
            matches!(
                err,
                meow_net::ClientError::Server {
                    code: ErrorCode::BroadcastRefused,
                    ..
                }
            ),
            "{err}"
        );
        let key = LookupKey::generate(&mut rng);
        let got = c.poll(&[&key], 10, Duration::ZERO, 0).await.unwrap();
        assert_eq!(got.broadcasts.len(), 1);
        assert_eq!(got.broadcasts[0].id, id);
        assert!(got.broadcasts[0].from_operator);
        assert_eq!(
            got.broadcasts[0].broadcast.clone().check().unwrap().text,
            "flood: go uphill"
        );
        assert!(
            c.poll(&[&key], 10, Duration::ZERO, id)
                .await
                .unwrap()
                .broadcasts
                .is_empty(),
            "shown once"
        );
    });
    drop(server);

    let (_dir, server) = start("broadcast-open", |cfg| cfg.allow_broadcast = true);
    smol::block_on(async {
        let c = client(&server).await;
        let user = BroadcastKey::generate(&mut rng);
        for i in 0..3 {
            c.broadcast(Broadcast::sign(&user, meow_net::now_secs(), &format!("n{i}")))
                .await
                .unwrap();
        }
        let err = c
            .broadcast(Broadcast::sign(&user, meow_net::now_secs(), "too many"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                meow_net::ClientError::Server {
                    code: ErrorCode::RateLimited,
                    ..
                }
            ),
            "{err}"
        );
    });
}

#[test]
fn directory_publish_search_random_withdraw() {
    let (_dir, server) = start("directory", |_| {});
    let mut rng = TestRng::new(4);
    let now = meow_net::now_secs();
    let key = ContactKey::generate(&mut rng);
    let card = Card::sign(
        &key,
        CardBody {
            role: CardRole::Public,
            conversation: ConversationKey::generate(&mut rng).public(),
            lookup: LookupKey::generate(&mut rng).public(),
            servers: vec![server.card().server_ref()],
            nickname: Some("weatherbot".into()),
            created: now,
            expires: now + 86_400,
            answers: None,
            classical_start: false,
        },
    );
    let entry = DirectoryEntry::sign(&key, card, "I answer weather questions", &["bot".into()], now + 3600);
    smol::block_on(async {
        let c = client(&server).await;
        c.directory_publish(entry.clone()).await.unwrap();
        let hits = c.directory_search("weather", 10).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].clone().check(now).unwrap(), entry);
        assert!(c.directory_search("chess", 10).await.unwrap().is_empty());
        assert_eq!(c.directory_random(5).await.unwrap().len(), 1);
        let err = c.directory_withdraw(Withdrawal::sign(&key, [0; 32])).await.unwrap_err();
        assert!(matches!(
            err,
            meow_net::ClientError::Server {
                code: ErrorCode::NotFound,
                ..
            }
        ));
        c.directory_withdraw(Withdrawal::sign(&key, entry.id())).await.unwrap();
        assert!(c.directory_search("weather", 10).await.unwrap().is_empty());
    });
}

#[test]
fn sealed_datagrams_deposit_and_poll_and_replays_do_nothing() {
    let (_dir, server) = start("udp", |_| {});
    let udp = meow_proto::Address::Udp(server.udp_addr().unwrap().to_string());
    let key = LookupKey::generate(&mut TestRng::new(5));
    let mailbox = MailboxId::of(&key.public());
    smol::block_on(async {
        let resp = meow_net::datagram::request(
            &udp,
            &server.card().key,
            &[],
            |_| Request::Deposit {
                mailbox,
                envelope: envelope(7),
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(resp, Response::Deposited);
        let resp = meow_net::datagram::request(
            &udp,
            &server.card().key,
            &[&key],
            |auths| Request::Poll {
                mailboxes: auths,
                limit: 10,
                wait_ms: 0,
                broadcasts_after: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let Response::Messages { items, .. } = resp else {
            panic!("{resp:?}")
        };
        assert_eq!(items.len(), 1);
    });
}

#[test]
fn messages_survive_a_restart() {
    let dir = tempdir("restart");
    let key = LookupKey::generate(&mut TestRng::new(6));
    let mailbox = MailboxId::of(&key.public());
    let cfg = ServerConfig::new(dir.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    let server = Server::start(cfg.clone()).unwrap();
    let server_key = server.card().key;
    smol::block_on(async {
        let c = client(&server).await;
        c.deposit(mailbox, envelope(9)).await.unwrap();
    });
    server.shutdown();
    let server = Server::start(cfg).unwrap();
    assert_eq!(server.card().key, server_key, "the key persists");
    smol::block_on(async {
        let c = client(&server).await;
        let got = c.poll(&[&key], 10, Duration::ZERO, 0).await.unwrap();
        assert_eq!(got.messages.len(), 1);
        assert_eq!(got.messages[0].envelope, envelope(9));
    });
}

/// The size of every file under `dir`.
fn disk_usage(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        disk_usage(&p)
                    } else {
                        // Blocks really used: the journal is preallocated sparse.
                        std::os::unix::fs::MetadataExt::blocks(&e.metadata().unwrap()) * 512
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn code(e: &meow_net::ClientError) -> Option<ErrorCode> {
    match e {
        meow_net::ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn one_session_cannot_store_more_than_its_budget() {
    // Default limits: a session spraying the largest envelopes into made-up mailboxes. The
    // server's clock stands still, so the budget does not refill while the test runs.
    let clock = meow_clock::VirtualClock::new(1_800_000_000_000);
    let (dir, server) = start("session-budget", |cfg| cfg.clock = clock.shared());
    let before = disk_usage(dir.path());
    let budget = server_budget();
    smol::block_on(async {
        let c = client(&server).await;
        let mut big = vec![7u8; meow_proto::padding::MAX_ENVELOPE];
        big[0] = 1;
        let mut stored = 0u64;
        let mut refusal = None;
        for i in 0..2000u32 {
            let mut m = [0u8; 16];
            m[..4].copy_from_slice(&i.to_be_bytes());
            match c.deposit(MailboxId(m), big.clone()).await {
                Ok(()) => stored += big.len() as u64,
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
        let e = refusal.expect("the session was cut off");
        assert_eq!(code(&e), Some(ErrorCode::RateLimited), "{e}");
        assert!(e.to_string().contains("one session may deposit"), "{e}");
        assert!(stored <= budget, "{stored} bytes stored, budget {budget}");
        // The refusal is per session and per address, not the end of the session.
        assert!(c.info().await.is_ok());
    });
    let grown = disk_usage(dir.path()).saturating_sub(before);
    assert!(grown < budget + budget / 2, "the data folder grew by {grown} bytes");
}

fn server_budget() -> u64 {
    meow_server::Limits::default().session_deposits.bytes
}

#[test]
fn new_mailboxes_and_the_whole_store_have_their_own_budgets() {
    let (_dir, server) = start("store-budgets", |cfg| {
        cfg.limits.new_mailboxes_per_hour = 20;
        cfg.limits.max_store_bytes = 64 * 1024;
    });
    smol::block_on(async {
        let c = client(&server).await;
        let mailbox = |i: u8| MailboxId([i; 16]);
        for i in 0..20 {
            c.deposit(mailbox(i), envelope(i)).await.unwrap();
        }
        let e = c.deposit(mailbox(200), envelope(1)).await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::RateLimited), "{e}");
        assert!(e.to_string().contains("mailboxes per hour"), "{e}");
        // Existing mailboxes still take mail, until the store's quota is reached.
        let mut refused = None;
        for n in 0..1000 {
            if let Err(e) = c.deposit(mailbox((n % 20) as u8), envelope(3)).await {
                refused = Some(e);
                break;
            }
        }
        let e = refused.expect("the store quota was reached");
        assert_eq!(code(&e), Some(ErrorCode::StorageFull), "{e}");
        assert!(e.to_string().contains("storage quota"), "{e}");
    });
}

/// The conversation lease (PROTOCOL §25): of many devices racing from their own connections for
/// the same epoch, exactly one wins; the others learn the holder and the epoch; a lease needs the
/// proof of its lookup key; the lease survives a restart.
#[test]
fn a_lease_has_one_holder_whoever_races_and_survives_a_restart() {
    use meow_proto::lease::LeaseOp;
    use meow_proto::sync::DeviceId;
    let dir = tempdir("lease");
    let cfg = ServerConfig::new(dir.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    let key = LookupKey::generate(&mut TestRng::new(7));
    let server = Server::start(cfg.clone()).unwrap();
    let winner = smol::block_on(async {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(client(&server).await);
        }
        let races = clients
            .iter()
            .enumerate()
            .map(|(i, c)| c.lease(&key, DeviceId([i as u8 + 1; 8]), 0, LeaseOp::Take));
        // All eight requests are in flight at once, on their own connections.
        let ex = smol::LocalExecutor::new();
        let tasks: Vec<_> = races.map(|f| ex.spawn(f)).collect();
        let answers: Vec<_> = ex
            .run(async {
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out
            })
            .await;
        let granted: Vec<_> = answers.iter().filter(|a| a.granted).collect();
        assert_eq!(granted.len(), 1, "exactly one device holds the lease: {answers:?}");
        let holder = granted[0].holder.unwrap();
        for a in &answers {
            assert_eq!((a.epoch, a.holder), (1, Some(holder)), "every device learns the holder");
        }
        // A second take by another device at the current epoch is refused while the holder is
        // not silent; the holder releases, and the other takes it at once.
        let other = DeviceId(if holder.0[0] == 1 { [2; 8] } else { [1; 8] });
        let c = &clients[0];
        assert!(!c.lease(&key, other, 1, LeaseOp::Take).await.unwrap().granted);
        assert!(c.lease(&key, holder, 1, LeaseOp::Release).await.unwrap().granted);
        let taken = c.lease(&key, other, 1, LeaseOp::Take).await.unwrap();
        assert!(taken.granted);
        assert_eq!((taken.epoch, taken.holder), (2, Some(other)));

        // Without the lookup key's proof, no lease.
        let stranger = client(&server).await;
        let forged = Request::Lease {
            auth: meow_proto::wire::MailboxAuth::proven(&key),
            device: DeviceId([9; 8]),
            expect: 2,
            op: LeaseOp::Take,
        };
        match stranger.request(forged, Duration::ZERO).await {
            Ok(Response::Error { code, .. }) => assert_eq!(code, ErrorCode::NotAuthorized),
            Err(e) => assert_eq!(code(&e), Some(ErrorCode::NotAuthorized), "{e}"),
            other => panic!("a lease without a proof: {other:?}"),
        }
        other
    });
    server.shutdown();
    let server = Server::start(cfg).unwrap();
    smol::block_on(async {
        let c = client(&server).await;
        let after = c.lease(&key, DeviceId([9; 8]), 2, LeaseOp::Take).await.unwrap();
        assert!(!after.granted, "the lease held before the restart is still held");
        assert_eq!((after.epoch, after.holder), (2, Some(winner)));
    });
}
