//! The server's own catalog code, five services on virtual time: each told of one neighbour,
//! all know all within a bounded number of rounds (exchanges as `run` makes them, minus the
//! socket); a server that stops re-issuing drops out of every catalog.

use super::*;
use meow_proto::ServerKey;

const NOW_MS: u64 = 1_800_000_000_000;

struct Node {
    service: CatalogService,
    ip: IpAddr,
    alive: bool,
    _dir: tempfile::TempDir,
}

fn node(i: u8, peer: Option<&ServerCard>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let card = ServerCard {
        name: format!("s{i}"),
        address: format!("10.0.0.{i}:7070").parse().unwrap(),
        key: ServerKey::generate(&mut meow_proto::os_rng()).public(),
    };
    let cfg = GossipConfig {
        peers: peer.into_iter().cloned().collect(),
        ..GossipConfig::default()
    };
    let service = CatalogService::open(dir.path(), cfg, card, None, NOW_MS).unwrap();
    Node {
        service,
        ip: IpAddr::from([10, 0, 0, i]),
        alive: true,
        _dir: dir,
    }
}

/// One round: every live server exchanges with the peer `pick` gives it, as `exchange` does.
fn round(nodes: &[Node], n: u64, now_ms: u64) {
    for me in nodes.iter().filter(|x| x.alive) {
        me.service.refresh(now_ms);
        let Some(peer) = me.service.pick(n) else { continue };
        let Some(them) = nodes.iter().find(|x| x.alive && x.service.card.key == peer.key) else {
            continue;
        };
        let offer = Some(me.service.own().to_bytes());
        match them.service.answer(now_ms, me.ip, offer) {
            Ok(Response::Catalog { descriptors }) => {
                me.service.merge(descriptors, now_ms);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn five_servers_told_of_one_neighbour_converge_and_a_silent_one_expires() {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..5u8 {
        let peer = nodes.last().map(|n| n.service.card.clone());
        nodes.push(node(i, peer.as_ref()));
    }
    let mut now = NOW_MS;
    let mut rounds = 0;
    while nodes.iter().any(|n| n.service.known(now).len() < 4) {
        rounds += 1;
        assert!(rounds <= 12, "no convergence in 12 rounds");
        now += 300_000;
        round(&nodes, rounds, now);
    }
    assert!(rounds >= 2, "a chain of 5 needs more than one round ({rounds})");

    // Server 4 stops; the others gossip on for a descriptor's lifetime (3 h).
    nodes[4].alive = false;
    let gone = nodes[4].service.own().identity;
    for n in 0..40 {
        now += 300_000;
        round(&nodes, rounds + n, now);
    }
    for n in nodes.iter().filter(|n| n.alive) {
        let known = n.service.known(now);
        assert!(known.iter().all(|d| d.identity != gone), "the silent server expired");
        assert_eq!(known.len(), 3);
    }
}

#[test]
fn bad_offers_are_refused_and_the_catalog_survives_a_restart() {
    let a = node(1, None);
    let b = node(2, None);
    let mut garbage = b.service.own().to_bytes();
    garbage[40] ^= 1;
    assert_eq!(
        a.service.answer(NOW_MS, b.ip, Some(garbage)).unwrap_err().0,
        ErrorCode::InvalidEntry
    );
    assert_eq!(
        a.service.answer(NOW_MS, b.ip, Some(vec![1, 2, 3])).unwrap_err().0,
        ErrorCode::Malformed
    );
    a.service
        .answer(NOW_MS, b.ip, Some(b.service.own().to_bytes()))
        .unwrap();
    assert_eq!(a.service.known(NOW_MS).len(), 1);
    // A flood from one address is cut.
    let refused = (0..100)
        .filter(|_| a.service.answer(NOW_MS, b.ip, None).is_err())
        .count();
    assert!(refused > 50, "{refused}");
    a.service.save();
    let dir = a._dir.path().to_owned();
    let again = CatalogService::open(&dir, GossipConfig::default(), a.service.card.clone(), None, NOW_MS).unwrap();
    assert_eq!(again.known(NOW_MS).len(), 1);
    assert_eq!(
        again.own().identity,
        a.service.own().identity,
        "the same identity after a restart"
    );
}
