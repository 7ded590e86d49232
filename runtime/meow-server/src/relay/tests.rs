//! Relay keys, replays and delays: a replay is refused even after a restart, a packet for
//! another key is refused, delays are capped, and keys (with their tags) go when their epoch ends.

use super::*;
use meow_proto::onion::RouteHop;

const NOW_MS: u64 = 1_800_000_000_000;

fn config() -> RelayConfig {
    RelayConfig {
        max_delay: Duration::from_millis(500),
        ..RelayConfig::default()
    }
}

fn packet_for(relay: &Relay, now_ms: u64, delay_ms: u32) -> Vec<u8> {
    let key = relay.info(now_ms).keys[0].1;
    let route = [RouteHop {
        relay: key,
        instruction: Instruction::Deliver {
            delay_ms,
            target: None,
            mailbox: MailboxId([3; 16]),
            envelope: vec![0; 176],
        },
    }];
    onion::wrap(&route, &mut meow_proto::os_rng()).unwrap().into_bytes()
}

#[test]
fn a_replay_is_refused_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::open(dir.path(), config(), NOW_MS).unwrap();
    let packet = packet_for(&relay, NOW_MS, 10);
    relay.accept(NOW_MS, packet.clone()).unwrap();
    assert_eq!(
        relay.accept(NOW_MS + 1, packet.clone()).unwrap_err().0,
        ErrorCode::Replayed
    );
    drop(relay);
    let again = Relay::open(dir.path(), config(), NOW_MS + 2).unwrap();
    assert_eq!(again.accept(NOW_MS + 2, packet).unwrap_err().0, ErrorCode::Replayed);
    assert_eq!(again.stats().replays, 1);
}

#[test]
fn a_packet_for_another_relay_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = Relay::open(a.path(), config(), NOW_MS).unwrap();
    let rb = Relay::open(b.path(), config(), NOW_MS).unwrap();
    let packet = packet_for(&ra, NOW_MS, 0);
    assert_eq!(rb.accept(NOW_MS, packet).unwrap_err().0, ErrorCode::NotAuthorized);
    assert_eq!(
        rb.accept(NOW_MS, vec![1, 0, 3]).unwrap_err().0,
        ErrorCode::Malformed,
        "garbage"
    );
    assert_eq!(rb.stats().refused, 2);
}

#[test]
fn delays_are_capped_and_jobs_come_due_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::open(dir.path(), config(), NOW_MS).unwrap();
    relay.accept(NOW_MS, packet_for(&relay, NOW_MS, 60_000)).unwrap();
    relay.accept(NOW_MS, packet_for(&relay, NOW_MS, 100)).unwrap();
    let (due, next) = relay.due(NOW_MS + 99);
    assert!(due.is_empty());
    assert_eq!(next, Some(NOW_MS + 100));
    assert_eq!(relay.due(NOW_MS + 100).0.len(), 1);
    let (due, next) = relay.due(NOW_MS + 500);
    assert_eq!(due.len(), 1, "60 s was cut to the relay's 500 ms");
    assert_eq!(next, None);
}

#[test]
fn keys_and_tags_go_when_their_epoch_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::open(dir.path(), config(), NOW_MS).unwrap();
    let first = relay.info(NOW_MS).keys[0].0;
    assert_eq!(relay.info(NOW_MS).keys.len(), 4, "this epoch and three ahead");
    let packet = packet_for(&relay, NOW_MS, 0);
    relay.accept(NOW_MS, packet.clone()).unwrap();
    let later = NOW_MS + 3 * 3_600_000;
    relay.rotate(later).unwrap();
    assert!(!dir.path().join(format!("relay/epoch-{first}.key")).exists());
    assert!(!dir.path().join(format!("relay/tags-{first}")).exists());
    assert_eq!(
        relay.accept(later, packet).unwrap_err().0,
        ErrorCode::NotAuthorized,
        "the key that opened it is gone: it opens nowhere any more"
    );
}

#[test]
fn the_rate_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RelayConfig {
        per_second: 2,
        ..config()
    };
    let relay = Relay::open(dir.path(), cfg, NOW_MS).unwrap();
    let packets: Vec<_> = (0..3).map(|_| packet_for(&relay, NOW_MS, 0)).collect();
    let results: Vec<_> = packets.into_iter().map(|p| relay.accept(NOW_MS, p)).collect();
    assert!(results[0].is_ok() && results[1].is_ok());
    assert_eq!(results[2].as_ref().unwrap_err().0, ErrorCode::RateLimited);
}

#[test]
fn held_packets_survive_a_restart_until_handed_on() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::open(dir.path(), config(), NOW_MS).unwrap();
    for delay in [10, 20, 30] {
        relay.accept(NOW_MS, packet_for(&relay, NOW_MS, delay)).unwrap();
    }
    let (due, _) = relay.due(NOW_MS + 15);
    assert_eq!(due.len(), 1);
    relay.finish(due[0].0);
    drop(relay); // killed: the two others were never handed on

    let again = Relay::open(dir.path(), config(), NOW_MS + 100).unwrap();
    assert_eq!(again.held(), 2, "what was held goes on after the restart");
    let (due, next) = again.due(NOW_MS + 100);
    assert_eq!((due.len(), next), (2, None));
    assert!(matches!(&due[0].1, Job::Deposit { mailbox, .. } if *mailbox == MailboxId([3; 16])));
    for (order, _) in &due {
        again.finish(*order);
    }
    // A record cut short by a crash is ignored, not an error.
    let segment = std::fs::read_dir(dir.path().join("relay"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("held-"))
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[1, 0, 0, 0])
        .unwrap();
    drop(again);
    let third = Relay::open(dir.path(), config(), NOW_MS + 200).unwrap();
    assert_eq!(third.held(), 0, "everything handed on stays handed on");
    let segments = std::fs::read_dir(dir.path().join("relay"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("held-"))
        .count();
    assert_eq!(segments, 1, "old segments with nothing pending are deleted");
}
