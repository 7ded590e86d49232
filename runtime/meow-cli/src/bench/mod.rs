//! `meow bench`: benchmarks that run against real processes and print figures for BENCHMARKS.md.

pub mod devices;
pub mod group;
pub mod lora;
pub mod matriochka;
pub mod mqtt;
pub mod plugins;
pub mod server;
pub mod vault;

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// The q-quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i] as f64 / 1000.0
    }

    /// Adds the samples of another run.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }
}

/// The resident set size of a process, in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Messages per second.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
