//! `meow bench vault`: how long a password takes to try against a home, for a wrong password,
//! a decoy's and a real compartment's, under the default Argon2id parameters. They must not
//! differ beyond noise (docs/HIDDEN.md): the header is tried in constant work and a compartment
//! opens in time proportional to its size, and a decoy is as big as a real one. The baseline in
//! the same invocation is Argon2id alone, which is the floor of every try.

use std::time::Instant;

use meow_node::decoy::Plan;
use meow_node::{InitOptions, Node};
use meow_proto::crypto::{KdfParams, SharedRng};

const REAL: &[u8] = b"the real compartment";
const DECOY: &[u8] = b"a decoy made with a known password";

/// Milliseconds of each try, in rounds.
struct Figures {
    argon: Vec<f64>,
    wrong: Vec<f64>,
    decoy: Vec<f64>,
    real: Vec<f64>,
}

/// Runs the benchmark: `rounds` rounds of `tries` tries of each kind (the median of each round
/// is reported).
pub fn run(rounds: usize, tries: usize) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("meow-bench-vault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let home = base.join("home");
    let opts = InitOptions {
        kdf: KdfParams::DEFAULT,
        display_name: Some("bench".into()),
        decoys: true,
    };
    let started = Instant::now();
    let mut node = Node::init(&home, b"main", opts)?;
    println!(
        "home with decoys made in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let main = node.vault().main();
    node.add_generated(
        main,
        &Plan {
            messages: vec![20, 20, 20],
        },
    )?;
    let secret = node.contacts()[0].name.clone();
    node.hide(&secret, REAL, true)?;
    // A compartment made the way a decoy is, but with a password this benchmark knows.
    let (decoy, _) = node.vault().new_compartment(DECOY, true, &mut SharedRng::os())?;
    node.add_generated(decoy, &Plan::draw(0, &mut SharedRng::os()))?;
    node.lock_all()?;
    let vault = node.vault();
    let mut f = Figures {
        argon: Vec::new(),
        wrong: Vec::new(),
        decoy: Vec::new(),
        real: Vec::new(),
    };
    for _ in 0..rounds {
        let mut a = Vec::new();
        let (mut w, mut d, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..tries {
            let salt = [i as u8; 16];
            let t = Instant::now();
            meow_proto::crypto::argon2id(b"a password", &salt, KdfParams::DEFAULT)?;
            a.push(ms(t));
            let t = Instant::now();
            let failed = vault.unlock(format!("wrong {i}").as_bytes()).is_err();
            w.push(ms(t));
            anyhow::ensure!(failed, "a wrong password opened a compartment");
            for (password, out) in [(DECOY, &mut d), (REAL, &mut r)] {
                let t = Instant::now();
                let c = vault.unlock(password)?;
                out.push(ms(t));
                vault.lock(c);
            }
        }
        f.argon.push(median(a));
        f.wrong.push(median(w));
        f.decoy.push(median(d));
        f.real.push(median(r));
    }
    println!(
        "{rounds} rounds of {tries} tries each, medians per round (Argon2id {} MiB, {} passes):",
        KdfParams::DEFAULT.memory_kib / 1024,
        KdfParams::DEFAULT.iterations
    );
    for (name, v) in [
        ("Argon2id alone (baseline)", &f.argon),
        ("wrong password", &f.wrong),
        ("decoy password", &f.decoy),
        ("real password", &f.real),
    ] {
        println!("  {name:28} {}", range(v));
    }
    let spread = |v: &[f64]| {
        v.iter()
            .zip(&f.argon)
            .map(|(x, a)| (x - a) / a * 100.0)
            .collect::<Vec<_>>()
    };
    println!(
        "  beyond Argon2id, in % of it: wrong {}, decoy {}, real {}",
        range(&spread(&f.wrong)),
        range(&spread(&f.decoy)),
        range(&spread(&f.real))
    );
    drop(vault);
    drop(node);
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.1}–{hi:.1}")
}
