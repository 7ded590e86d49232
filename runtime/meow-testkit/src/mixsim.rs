//! A global passive observer against Matriochka routes, on virtual time: what `meow bench
//! matriochka` reports as the privacy the per-hop delays buy.
//!
//! The model: `senders` users, each sending to a recipient of its own at Poisson times (rate
//! `rate_per_sender`), each message through `hops` distinct relays drawn at random among
//! `relays`, each relay holding it for an exponential delay of mean `mean_delay_ms`, every
//! link taking `link_ms`. Every packet has the same size (Sphinx: one size per class), so the
//! observer, who logs every packet on every link (time, from, to), has only times and links.
//!
//! The observer's attack is the best one for this mix (a continuous-time, Stop-and-Go mix,
//! Kesdogan et al. 1998; Danezis 2004): for a message delivered by relay X at time t, every
//! packet that entered X before t is its predecessor with a probability proportional to the
//! delay density, `exp(-(t - t_in) / mean)`; tracing back hop by hop (knowing routes have
//! exactly `hops` relays, so the first relay's input comes from a sender and the others' from
//! relays) gives a distribution over senders. Its guess is the most likely sender; we report
//! how often that guess is right (against `1 / senders` for a blind guess) and the entropy of
//! the distribution (the anonymity set is `2^entropy` senders; `log2(senders)` is perfect).
//! Intersection attacks over many messages of one pair are beyond this model.

/// The simulated network and its traffic.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Users sending, each to its own recipient.
    pub senders: usize,
    /// Relays.
    pub relays: usize,
    /// Relays per route.
    pub hops: usize,
    /// Messages per second per sender (Poisson).
    pub rate_per_sender: f64,
    /// Mean per-hop delay, ms (exponential); 0 for none.
    pub mean_delay_ms: f64,
    /// Latency of every link, ms.
    pub link_ms: f64,
    /// Simulated time, s.
    pub seconds: f64,
    /// Seed of the traffic.
    pub seed: u64,
}

/// What the observer achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linkability {
    /// Messages delivered and traced.
    pub messages: usize,
    /// How often the most likely sender was the true one.
    pub accuracy: f64,
    /// A blind guess's accuracy: `1 / senders`.
    pub baseline: f64,
    /// Mean entropy of the observer's distribution over senders, bits.
    pub entropy_bits: f64,
    /// The most the entropy can be: `log2(senders)`.
    pub max_entropy_bits: f64,
}

/// splitmix64: a small deterministic generator for the traffic (no secrets here).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        -(1.0 - self.unit()).ln() * mean
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A packet entering a relay, as the observer logs it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: f64,
    from: From,
}

#[derive(Debug, Clone, Copy)]
enum From {
    Sender(usize),
    Relay(usize),
}

/// A message leaving its last relay: when, from which relay, and (for scoring only) its sender.
struct Delivery {
    departed: f64,
    relay: usize,
    sender: usize,
}

/// Weights below this (relative to the strongest candidate) are dropped while tracing.
const PRUNE: f64 = 1e-4;
/// Candidates followed per relay per step at most.
const MAX_CANDIDATES: usize = 48;

/// Generates the traffic: every relay's inputs, and the deliveries.
fn traffic(s: &Scenario) -> (Vec<Vec<Arrival>>, Vec<Delivery>) {
    let mut rng = Rng(s.seed);
    let mut inputs: Vec<Vec<Arrival>> = vec![Vec::new(); s.relays];
    let mut deliveries = Vec::new();
    let ms = 1000.0 * s.seconds;
    for sender in 0..s.senders {
        let mut t = rng.exponential(1000.0 / s.rate_per_sender);
        while t < ms {
            let mut route: Vec<usize> = (0..s.relays).collect();
            for i in 0..s.hops {
                let j = i + rng.below(s.relays - i);
                route.swap(i, j);
            }
            let mut at = t + s.link_ms;
            let mut from = From::Sender(sender);
            for &relay in &route[..s.hops] {
                inputs[relay].push(Arrival { at, from });
                let departed = at + rng.exponential(s.mean_delay_ms);
                from = From::Relay(relay);
                at = departed + s.link_ms;
            }
            deliveries.push(Delivery {
                departed: at - s.link_ms,
                relay: route[s.hops - 1],
                sender,
            });
            t += rng.exponential(1000.0 / s.rate_per_sender);
        }
    }
    for list in &mut inputs {
        list.sort_by(|a, b| a.at.total_cmp(&b.at));
    }
    (inputs, deliveries)
}

/// Runs the observer against the scenario's traffic.
pub fn observe(s: &Scenario) -> Linkability {
    let (inputs, deliveries) = traffic(s);
    let mut right = 0.0;
    let mut entropy = 0.0;
    let mut counted = 0usize;
    let mut senders = vec![0.0; s.senders];
    for d in &deliveries {
        senders.iter_mut().for_each(|p| *p = 0.0);
        trace(s, &inputs, d.relay, d.departed, s.hops, 1.0, &mut senders);
        let total: f64 = senders.iter().sum();
        if total <= 0.0 {
            continue;
        }
        counted += 1;
        let top = senders.iter().copied().fold(0.0, f64::max);
        let tied = senders.iter().filter(|p| top - **p < 1e-12).count();
        // Ties are broken by a coin toss: count the expected value.
        if top - senders[d.sender] < 1e-12 {
            right += 1.0 / tied as f64;
        }
        entropy += senders
            .iter()
            .map(|p| p / total)
            .filter(|p| *p > 0.0)
            .map(|p| -p * p.log2())
            .sum::<f64>();
    }
    Linkability {
        messages: counted,
        accuracy: right / counted.max(1) as f64,
        baseline: 1.0 / s.senders as f64,
        entropy_bits: entropy / counted.max(1) as f64,
        max_entropy_bits: (s.senders as f64).log2(),
    }
}

/// Adds to `senders` the observer's probability of each sender for a packet that left `relay`
/// at `departed`, `hops_left` relays back to the sender (this one included): every earlier
/// input of the relay is a candidate, weighted by the delay density.
fn trace(
    s: &Scenario,
    inputs: &[Vec<Arrival>],
    relay: usize,
    departed: f64,
    hops_left: usize,
    weight: f64,
    senders: &mut [f64],
) {
    let list = &inputs[relay];
    let end = list.partition_point(|a| a.at <= departed + 1e-9);
    let window = if s.mean_delay_ms > 0.0 {
        30.0 * s.mean_delay_ms
    } else {
        1e-6
    };
    let first_hop = hops_left == 1;
    let mut found: Vec<(Arrival, f64)> = list[..end]
        .iter()
        .rev()
        .take_while(|a| departed - a.at <= window)
        .filter(|a| matches!(a.from, From::Sender(_)) == first_hop)
        .map(|a| {
            let w = if s.mean_delay_ms > 0.0 {
                (-(departed - a.at) / s.mean_delay_ms).exp()
            } else {
                1.0
            };
            (*a, w)
        })
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    found.truncate(MAX_CANDIDATES);
    let strongest = found.first().map_or(0.0, |c| c.1);
    found.retain(|c| c.1 >= strongest * PRUNE);
    let total: f64 = found.iter().map(|c| c.1).sum();
    for (a, w) in found {
        let w = weight * w / total;
        match a.from {
            From::Sender(i) => senders[i] += w,
            From::Relay(r) => trace(s, inputs, r, a.at - s.link_ms, hops_left - 1, w, senders),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(mean_delay_ms: f64) -> Scenario {
        Scenario {
            senders: 16,
            relays: 5,
            hops: 3,
            rate_per_sender: 1.0,
            mean_delay_ms,
            link_ms: 1.0,
            seconds: 20.0,
            seed: 7,
        }
    }

    #[test]
    fn without_delays_the_observer_links_everything_and_delays_hide_senders() {
        let none = observe(&scenario(0.0));
        assert!(none.messages > 200);
        assert!(none.accuracy > 0.95, "{none:?}");
        let long = observe(&scenario(500.0));
        assert!(long.accuracy < none.accuracy / 2.0, "{long:?}");
        assert!(long.entropy_bits > none.entropy_bits + 1.0, "{long:?} vs {none:?}");
        assert!(long.entropy_bits <= long.max_entropy_bits + 1e-9);
    }
}
