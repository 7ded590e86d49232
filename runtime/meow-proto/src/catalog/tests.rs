//! Descriptors: round trips, every check; the catalog: merging, expiry, and gossip that
//! converges.

use super::*;
use crate::keys::{RelayKey, ServerKey};
use crate::testing::TestRng;

const NOW: u64 = 1_800_000_000;

fn body(rng: &mut TestRng, name: &str, sequence: u64) -> DescriptorBody {
    DescriptorBody {
        name: name.into(),
        addresses: vec![Address::Tcp(format!("{name}.example:7070"))],
        session_key: ServerKey::generate(rng).public(),
        issued_at: NOW,
        sequence,
        expires_at: NOW + 3 * 3600,
        relay: Some(RelayInfo {
            max_delay_ms: 60_000,
            epoch_secs: 3600,
            keys: (0..4)
                .map(|e| (NOW / 3600 + e, RelayKey::generate(rng).public()))
                .collect(),
        }),
    }
}

fn unchecked(d: &ServerDescriptor) -> UncheckedDescriptor {
    UncheckedDescriptor::from_bytes(&d.to_bytes()).unwrap()
}

#[test]
fn a_descriptor_round_trips_and_checks() {
    let mut rng = TestRng::new(1);
    let id = ServerIdentity::generate(&mut rng);
    let d = ServerDescriptor::sign(&id, body(&mut rng, "alpha", 1));
    let back = unchecked(&d).check(NOW).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.to_bytes(), d.to_bytes(), "canonical");
    let relay = back.body.relay.as_ref().unwrap();
    assert_eq!(relay.key_at(NOW * 1000), Some(relay.keys[0].1));
    assert_eq!(relay.key_at((NOW + 3600) * 1000), Some(relay.keys[1].1));
    assert_eq!(relay.key_at((NOW + 5 * 3600) * 1000), None);
}

#[test]
fn every_check_refuses_what_it_should() {
    let mut rng = TestRng::new(2);
    let id = ServerIdentity::generate(&mut rng);
    let good = body(&mut rng, "alpha", 1);
    let sign = |b: DescriptorBody| unchecked(&ServerDescriptor::sign(&id, b));
    let mut bytes = ServerDescriptor::sign(&id, good.clone()).to_bytes();
    bytes[40] ^= 1; // a letter of the name
    assert_eq!(
        UncheckedDescriptor::from_bytes(&bytes).unwrap().check(NOW),
        Err(DescriptorError::BadSignature)
    );
    assert_eq!(sign(good.clone()).check(NOW + 3 * 3600), Err(DescriptorError::Expired));
    let long = DescriptorBody {
        expires_at: NOW + MAX_LIFETIME_SECS + 1,
        ..good.clone()
    };
    assert_eq!(sign(long).check(NOW), Err(DescriptorError::Expired));
    let future = DescriptorBody {
        issued_at: NOW + CLOCK_SKEW_SECS + 1,
        expires_at: NOW + 7200,
        ..good.clone()
    };
    assert_eq!(sign(future).check(NOW), Err(DescriptorError::FromTheFuture));
    let mut unordered = good.clone();
    if let Some(r) = unordered.relay.as_mut() {
        r.keys.swap(0, 1);
    }
    assert_eq!(sign(unordered).check(NOW), Err(DescriptorError::BadRelayKeys));
    let nowhere = DescriptorBody {
        addresses: vec![],
        ..good
    };
    assert_eq!(sign(nowhere).check(NOW), Err(DescriptorError::NoAddress));
    assert!(matches!(
        UncheckedDescriptor::from_bytes(b"MEOWD\x02"),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn the_catalog_keeps_the_newest_descriptor_and_forgets_expired_ones() {
    let mut rng = TestRng::new(3);
    let id = ServerIdentity::generate(&mut rng);
    let mut catalog = Catalog::new(2);
    let first = ServerDescriptor::sign(&id, body(&mut rng, "alpha", 1));
    let second = ServerDescriptor::sign(&id, body(&mut rng, "alpha", 2));
    assert_eq!(catalog.offer(unchecked(&first), NOW), Offer::Added);
    assert_eq!(catalog.offer(unchecked(&second), NOW), Offer::Updated);
    assert_eq!(catalog.offer(unchecked(&first), NOW), Offer::Stale);
    assert_eq!(catalog.get(&id.public()).unwrap().body.sequence, 2);
    assert!(catalog.by_session_key(&second.body.session_key).is_some());
    let other = ServerDescriptor::sign(&ServerIdentity::generate(&mut rng), body(&mut rng, "beta", 1));
    let third = ServerDescriptor::sign(&ServerIdentity::generate(&mut rng), body(&mut rng, "gamma", 1));
    assert_eq!(catalog.offer(unchecked(&other), NOW), Offer::Added);
    assert_eq!(catalog.offer(unchecked(&third), NOW), Offer::Full);
    assert_eq!(catalog.expire(NOW + 3 * 3600).len(), 2);
    assert!(catalog.is_empty());
}

/// A server in the gossip simulation: its identity, the descriptor it re-issues, its catalog.
struct Gossiper {
    identity: ServerIdentity,
    body: DescriptorBody,
    catalog: Catalog,
    alive: bool,
}

impl Gossiper {
    fn reissue(&mut self, now: u64) {
        self.body.sequence += 1;
        self.body.issued_at = now;
        self.body.expires_at = now + 3 * 3600;
        let d = ServerDescriptor::sign(&self.identity, self.body.clone());
        let _ = self.catalog.offer(d.into(), now);
    }
}

/// One round of push-pull gossip: every live server picks a known peer at random, offers its
/// own descriptor and takes the peer's whole catalog.
fn gossip_round(servers: &mut [Gossiper], now: u64, rng: &mut TestRng) {
    for i in 0..servers.len() {
        if !servers[i].alive {
            continue;
        }
        let me = servers[i].identity.public();
        let Some(peer) = servers[i].catalog.pick_peer(&me, rng).map(|d| d.identity) else {
            continue;
        };
        let Some(j) = servers.iter().position(|s| s.identity.public() == peer && s.alive) else {
            continue;
        };
        let mine: Vec<UncheckedDescriptor> = servers[i].catalog.descriptors().cloned().map(Into::into).collect();
        let theirs: Vec<UncheckedDescriptor> = servers[j].catalog.descriptors().cloned().map(Into::into).collect();
        for d in mine {
            let _ = servers[j].catalog.offer(d, now);
        }
        for d in theirs {
            let _ = servers[i].catalog.offer(d, now);
        }
    }
}

#[test]
fn gossip_converges_and_a_silent_server_disappears() {
    let mut rng = TestRng::new(4);
    let mut now = NOW;
    let mut servers: Vec<Gossiper> = (0..5)
        .map(|i| Gossiper {
            identity: ServerIdentity::generate(&mut rng),
            body: body(&mut rng, &format!("s{i}"), 0),
            catalog: Catalog::new(512),
            alive: true,
        })
        .collect();
    for s in &mut servers {
        s.reissue(now);
    }
    // Each is told of one neighbour only (a chain: the hardest start).
    for i in 1..servers.len() {
        let d = servers[i - 1]
            .catalog
            .get(&servers[i - 1].identity.public())
            .unwrap()
            .clone();
        let _ = servers[i].catalog.offer(d.into(), now);
    }
    let mut rounds = 0;
    while servers.iter().any(|s| s.catalog.len() < servers.len()) {
        rounds += 1;
        assert!(rounds <= 10, "no convergence in 10 rounds");
        now += 600;
        gossip_round(&mut servers, now, &mut rng);
    }
    // A chain of 5 cannot converge in fewer than 2 rounds.
    assert!(rounds >= 2, "converged in {rounds} rounds");

    // Server 4 stops; the others re-issue hourly and keep gossiping for a descriptor's lifetime.
    servers[4].alive = false;
    let gone = servers[4].identity.public();
    for _ in 0..20 {
        now += 600;
        for s in servers.iter_mut().filter(|s| s.alive) {
            if now % 3600 < 600 {
                s.reissue(now);
            }
            s.catalog.expire(now);
        }
        gossip_round(&mut servers, now, &mut rng);
    }
    for s in servers.iter().filter(|s| s.alive) {
        assert!(s.catalog.get(&gone).is_none(), "the silent server's descriptor expired");
        assert_eq!(s.catalog.len(), 4);
    }
}
