//! Hidden compartments and decoys, as an examiner holding the files and the main password
//! would try them (docs/HIDDEN.md).
//!
//! The statistical test: homes in two groups, made the same way except that in one the user
//! hid contacts under a password of their own. For each feature an examiner can read without
//! another password, a two-sample Kolmogorov–Smirnov test must not separate the groups at a
//! family-wise significance of 1 % (Bonferroni over the features). Every home comes from a
//! seeded generator, so the test is deterministic. The same test does separate the groups when
//! homes have no decoys (the design of tools that only hide in the interface): that control
//! shows it can fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meow_node::decoy::Plan;
use meow_node::{Env, InitOptions, Node, Table};
use meow_proto::crypto::KdfParams;
use meow_proto::testing::TestRng;
use meow_store::testing::grep;
use meow_store::vault::{self, Examination};

const HOMES_PER_GROUP: usize = 60;
const MAIN_PASSWORD: &[u8] = b"main password";

fn opts(decoys: bool) -> InitOptions {
    InitOptions {
        kdf: KdfParams::TESTING,
        display_name: Some("me".into()),
        decoys,
    }
}

/// A fixed virtual clock and a seeded generator (a home opened twice gets two seeds, or its
/// nonces would repeat).
fn env(seed: u64) -> Env {
    Env {
        clock: meow_clock::VirtualClock::new(1_800_000_000_000).shared(),
        rng: meow_proto::crypto::SharedRng::seeded(seed),
        transports: meow_net::Transports::system(),
    }
}

/// A home whose user has some contacts, and with `hidden`, one or two more that they hid.
fn make_home(dir: &std::path::Path, seed: u64, hidden: bool, decoys: bool) -> Examination {
    let home = dir.join(format!("home-{seed}"));
    let mut rng = TestRng::new(seed ^ 0x5eed);
    let mut node = Node::init_with(&home, MAIN_PASSWORD, opts(decoys), env(seed)).unwrap();
    let main = node.vault().main();
    node.add_generated(main, &Plan::draw(0, &mut rng)).unwrap();
    if hidden {
        let extra = Plan::draw(0, &mut rng).messages.len().min(2);
        let before: Vec<String> = node.contacts().iter().map(|c| c.name.clone()).collect();
        node.add_generated(
            main,
            &Plan {
                messages: (0..extra).map(|i| 5 + i * 7).collect(),
            },
        )
        .unwrap();
        let new: Vec<String> = node
            .contacts()
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| !before.contains(n))
            .collect();
        assert!(!new.is_empty());
        for name in new {
            node.hide(&name, b"my hidden contacts", true).unwrap();
            assert!(node.compartment_of(&name).unwrap().is_some());
        }
        node.lock_all().unwrap();
    }
    drop(node);
    vault::examine(&home, Some(MAIN_PASSWORD)).unwrap()
}

/// The features an examiner would use, by name.
fn features(e: &Examination) -> Vec<(&'static str, f64)> {
    let all: Vec<usize> = e.units.iter().flat_map(|u| u.records.iter().map(|(_, s)| *s)).collect();
    let others: Vec<&vault::Unit> = e.units.iter().filter(|u| !u.main).collect();
    let other_sizes: Vec<usize> = others.iter().map(|u| u.records.len()).collect();
    let bucket = |b: usize| all.iter().filter(|&&s| s == b).count() as f64;
    let header_ones = e.header.iter().map(|b| b.count_ones() as f64).sum::<f64>() / e.header.len() as f64;
    let key_byte = e
        .units
        .iter()
        .flat_map(|u| u.records.iter().map(|(k, _)| f64::from(k[4])))
        .sum::<f64>()
        / all.len().max(1) as f64;
    vec![
        ("file bytes", e.file_bytes as f64),
        ("header length", e.header.len() as f64),
        ("header bits set", header_ones),
        ("records", all.len() as f64),
        ("bytes of records", all.iter().sum::<usize>() as f64),
        ("records of 128 bytes", bucket(128)),
        ("records of 512 bytes", bucket(512)),
        ("records of 2048 bytes", bucket(2048)),
        ("records of 8192 bytes", bucket(8192)),
        ("units besides the main one", others.len() as f64),
        (
            "records outside the main unit",
            other_sizes.iter().sum::<usize>() as f64,
        ),
        (
            "largest other unit",
            other_sizes.iter().copied().max().unwrap_or(0) as f64,
        ),
        (
            "smallest other unit",
            other_sizes.iter().copied().min().unwrap_or(0) as f64,
        ),
        ("mean key byte", key_byte),
    ]
}

/// The two-sample Kolmogorov–Smirnov statistic and its asymptotic p-value (Numerical Recipes
/// §14.3: the Kolmogorov distribution with Stephens' small-sample correction).
fn ks(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    let ne = (a.len() * b.len()) as f64 / (a.len() + b.len()) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    if lambda < 1e-3 {
        return (d, 1.0);
    }
    let p: f64 = (1..=100)
        .map(|k| {
            let k = f64::from(k);
            2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp()
        })
        .sum();
    (d, p.clamp(0.0, 1.0))
}

/// For each feature, its KS statistic and p-value between the two groups.
fn compare(a: &[Examination], b: &[Examination]) -> Vec<(&'static str, f64, f64)> {
    let fa: Vec<_> = a.iter().map(features).collect();
    let fb: Vec<_> = b.iter().map(features).collect();
    (0..fa[0].len())
        .map(|f| {
            let xa: Vec<f64> = fa.iter().map(|v| v[f].1).collect();
            let xb: Vec<f64> = fb.iter().map(|v| v[f].1).collect();
            let (d, p) = ks(&xa, &xb);
            (fa[0][f].0, d, p)
        })
        .collect()
}

fn groups(decoys: bool, seed: u64) -> (Vec<Examination>, Vec<Examination>, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix("meow-hidden-").tempdir().unwrap();
    let plain = (0..HOMES_PER_GROUP as u64)
        .map(|i| make_home(dir.path(), seed + 2 * i, false, decoys))
        .collect();
    let hiding = (0..HOMES_PER_GROUP as u64)
        .map(|i| make_home(dir.path(), seed + 2 * i + 1, true, decoys))
        .collect();
    (plain, hiding, dir)
}

#[test]
fn an_examiner_cannot_tell_homes_with_hidden_contacts_from_homes_with_decoys_only() {
    let (plain, hiding, _dir) = groups(true, 1_000);
    let results = compare(&plain, &hiding);
    let threshold = 0.01 / results.len() as f64;
    for (name, d, p) in &results {
        println!("{name:32} D = {d:.3}  p = {p:.3}");
    }
    for (name, d, p) in &results {
        assert!(
            *p > threshold,
            "{name} separates the groups: D = {d:.3}, p = {p:.2e} <= {threshold:.1e}"
        );
    }
}

#[test]
fn without_decoys_the_same_test_separates_the_groups() {
    let (plain, hiding, _dir) = groups(false, 5_000);
    let results = compare(&plain, &hiding);
    let threshold = 0.01 / results.len() as f64;
    let separating: Vec<_> = results
        .iter()
        .filter(|(_, _, p)| *p <= threshold)
        .map(|(n, _, _)| *n)
        .collect();
    assert!(
        separating.contains(&"units besides the main one"),
        "the control must be caught: {results:?}"
    );
}

#[test]
fn the_main_password_shows_nothing_of_a_hidden_contact_and_the_files_hold_no_plaintext() {
    let dir = tempfile::Builder::new().prefix("meow-hidden-").tempdir().unwrap();
    let home = dir.path().join("home");
    let mut node = Node::init_with(&home, MAIN_PASSWORD, opts(true), env(7)).unwrap();
    let main = node.vault().main();
    node.add_generated(main, &Plan { messages: vec![3, 4] }).unwrap();
    assert_eq!(node.contacts().len(), 2);
    let secret = node.contacts()[0].name.clone();
    let kv_key = format!("echo\0count/{secret}");
    let vault = node.vault();
    let mut b = vault.batch();
    b.put(Table::Kv, kv_key.as_bytes(), b"7", &mut meow_proto::os_rng());
    b.put(Table::Kv, b"echo\0count/someone-else", b"1", &mut meow_proto::os_rng());
    b.commit().unwrap();
    drop(vault);
    node.create_group("friends").unwrap();
    node.group_add("friends", &secret).unwrap();
    let waiting = node.outbox_len(None);
    assert!(waiting > 0);
    let messages = node.inbox(false).unwrap().iter().filter(|i| i.from == secret).count();
    assert!(messages >= 3);
    let hidden = node.hide(&secret, b"second password", true).unwrap();
    assert!(hidden.created && hidden.moved >= 4, "{hidden:?}");
    assert_eq!(node.compartment_of(&secret).unwrap(), Some(hidden.compartment));
    assert!(matches!(
        node.hide(&secret, b"typo", false),
        Err(meow_node::NodeError::NoCompartment)
    ));
    node.lock_all().unwrap();
    assert!(node.contact(&secret).is_err(), "locked: gone from memory");
    drop(node);

    let mut node = Node::open_with(&home, MAIN_PASSWORD, env(8)).unwrap();
    assert_eq!(
        node.contacts().len(),
        1,
        "{:?}",
        node.contacts().iter().map(|c| (&c.name, c.id)).collect::<Vec<_>>()
    );
    assert!(node.contact(&secret).is_err());
    assert!(node.inbox(false).unwrap().iter().all(|i| i.from != secret));
    assert!(node.groups().unwrap().is_empty(), "its group went with it");
    assert_eq!(node.outbox_len(None), 0, "and the group invitation waiting for it");
    assert_eq!(
        node.vault().keys(Table::Kv),
        vec![b"echo\0count/someone-else".to_vec()],
        "plugin state about it moved"
    );
    assert!(
        node.vault()
            .scan(Table::Seen)
            .unwrap()
            .iter()
            .all(|(k, _)| node.contacts().iter().any(|c| k[..8] == c.id.to_be_bytes()))
    );
    let (c, n) = node.unlock(b"second password").unwrap();
    assert_eq!((c, n), (hidden.compartment, 1));
    assert_eq!(
        node.inbox(false).unwrap().iter().filter(|i| i.from == secret).count(),
        messages
    );
    assert_eq!(
        node.vault()
            .get(Table::Kv, kv_key.as_bytes())
            .unwrap()
            .unwrap()
            .as_slice(),
        b"7"
    );
    assert_eq!(node.groups().unwrap().len(), 1);
    assert_eq!(node.outbox_len(None), waiting);
    node.lock(c).unwrap();
    drop(node);
    for needle in [secret.as_bytes(), b"second password".as_slice(), MAIN_PASSWORD] {
        assert!(
            !grep(&home, needle),
            "{} is in the files",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn without_decoys_a_new_compartment_never_replaces_a_locked_one() {
    let dir = tempfile::Builder::new().prefix("meow-hidden-").tempdir().unwrap();
    let mut node = Node::init_with(&dir.path().join("home"), MAIN_PASSWORD, opts(false), env(9)).unwrap();
    let main = node.vault().main();
    node.add_generated(main, &Plan { messages: vec![1, 1] }).unwrap();
    let names: Vec<String> = node.contacts().iter().map(|c| c.name.clone()).collect();
    node.hide(&names[0], b"first", true).unwrap();
    node.lock_all().unwrap();
    let second = node.hide(&names[1], b"second", true).unwrap();
    assert!(second.created);
    node.lock_all().unwrap();
    assert_eq!(node.unlock(b"first").unwrap().1, 1, "the first compartment is intact");
    assert_eq!(node.unlock(b"second").unwrap().1, 1);
    assert_eq!(node.contacts().len(), 2);
}

#[test]
fn two_compartments_open_at_once_keep_their_own_cover() {
    let dir = tempfile::Builder::new().prefix("meow-hidden-").tempdir().unwrap();
    let mut node = Node::init_with(&dir.path().join("home"), MAIN_PASSWORD, opts(true), env(11)).unwrap();
    let main = node.vault().main();
    node.add_generated(main, &Plan { messages: vec![1, 1] }).unwrap();
    let names: Vec<String> = node.contacts().iter().map(|c| c.name.clone()).collect();
    // The second is made while the first is unlocked.
    node.hide(&names[0], b"first", true).unwrap();
    node.hide(&names[1], b"second", true).unwrap();
    node.lock_all().unwrap();
    for password in [b"first".as_slice(), b"second"] {
        let (c, shown) = node.unlock(password).unwrap();
        assert_eq!(shown, 1, "only the hidden contact is shown, not the generated cover");
        node.lock(c).unwrap();
    }
}
