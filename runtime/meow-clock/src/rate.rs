//! Rates and budgets as plain state machines over an injected time (milliseconds): token
//! buckets for rates, sliding windows for budgets, and keyed maps of each. No clock is read
//! here, so every limit is tested exactly; the runtime and the server both use them.

use std::collections::{HashMap, VecDeque};

/// A token bucket: `burst` tokens at most, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last_ms: u64,
    per_ms: f64,
    burst: f64,
}

impl Bucket {
    /// A full bucket at `now_ms`.
    pub fn new(per_second: f64, burst: u32, now_ms: u64) -> Self {
        Self::with_burst(per_second, u64::from(burst), now_ms)
    }

    /// [`Bucket::new`] with a large burst (bytes rather than messages, say).
    pub fn with_burst(per_second: f64, burst: u64, now_ms: u64) -> Self {
        Self {
            tokens: burst.max(1) as f64,
            last_ms: now_ms,
            per_ms: per_second.max(0.0) / 1000.0,
            burst: burst.max(1) as f64,
        }
    }

    /// `count` per `window`, all of it available at once.
    pub fn per_window(count: u64, window: std::time::Duration, now_ms: u64) -> Self {
        let secs = window.as_secs_f64().max(0.001);
        Self::with_burst(count as f64 / secs, count, now_ms)
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        self.take_n(1, now_ms)
    }

    /// Takes `n` tokens if there are that many.
    pub fn take_n(&mut self, n: u64, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// At most `max` events in any window of `window_ms`.
#[derive(Debug, Clone)]
pub struct Window {
    times: VecDeque<u64>,
    max: usize,
    window_ms: u64,
}

impl Window {
    /// An empty window.
    pub fn new(max: u32, window_ms: u64) -> Self {
        Self {
            times: VecDeque::new(),
            max: max as usize,
            window_ms,
        }
    }

    /// Counts one event at `now_ms` if the budget allows it.
    pub fn take(&mut self, now_ms: u64) -> bool {
        while self.times.front().is_some_and(|&t| t + self.window_ms <= now_ms) {
            self.times.pop_front();
        }
        if self.times.len() >= self.max {
            return false;
        }
        self.times.push_back(now_ms);
        true
    }

    /// Whether nothing was counted within the window before `now_ms` (the entry can go).
    fn idle(&self, now_ms: u64) -> bool {
        self.times.back().is_none_or(|&t| t + self.window_ms <= now_ms)
    }
}

/// A bucket per key, created full on first use, forgotten when the map grows large.
#[derive(Debug)]
pub struct Buckets<K> {
    map: HashMap<K, Bucket>,
    per_second: f64,
    burst: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    /// Buckets of this rate and burst.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            map: HashMap::new(),
            per_second,
            burst,
        }
    }

    /// Takes a token from `key`'s bucket.
    pub fn take(&mut self, key: &K, now_ms: u64) -> bool {
        if self.map.len() > 100_000 {
            self.map.clear();
        }
        let (rate, burst) = (self.per_second, self.burst);
        self.map
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(rate, burst, now_ms))
            .take(now_ms)
    }
}

/// A window per key.
#[derive(Debug)]
pub struct Windows<K> {
    map: HashMap<K, Window>,
    max: u32,
    window_ms: u64,
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    /// Windows of this budget.
    pub fn new(max: u32, window_ms: u64) -> Self {
        Self {
            map: HashMap::new(),
            max,
            window_ms,
        }
    }

    /// Counts one event for `key` if its budget allows it.
    pub fn take(&mut self, key: &K, now_ms: u64) -> bool {
        if self.map.len() > 10_000 {
            self.map.retain(|_, w| !w.idle(now_ms));
        }
        let (max, window) = (self.max, self.window_ms);
        self.map
            .entry(key.clone())
            .or_insert_with(|| Window::new(max, window))
            .take(now_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::new(10.0, 5, 0);
        assert_eq!((0..20).filter(|_| b.take(0)).count(), 5, "the burst");
        assert!(!b.take(50), "half a token after 50 ms");
        assert!(b.take(100), "one token after 100 ms");
        let allowed = (0..1000).filter(|i| b.take(100 + i * 10)).count();
        assert!((99..=101).contains(&allowed), "10/s over 10 s: {allowed}");
        assert_eq!(
            (0..20).filter(|_| b.take(1_000_000)).count(),
            5,
            "never more than the burst"
        );
    }

    #[test]
    fn a_window_counts_events_in_any_span_of_its_length() {
        let mut w = Window::new(3, 1000);
        assert!(w.take(0) && w.take(10) && w.take(20));
        assert!(!w.take(999), "a fourth within the window");
        assert!(w.take(1000), "the first left the window");
        assert!(!w.take(1005));
        assert!(w.take(1020));
    }

    #[test]
    fn keyed_limits_are_independent() {
        let mut b = Buckets::new(1.0, 2);
        assert!(b.take(&"a", 0) && b.take(&"a", 0) && !b.take(&"a", 0));
        assert!(b.take(&"b", 0), "another key has its own bucket");
        let mut w = Windows::new(1, 100);
        assert!(w.take(&1, 0) && !w.take(&1, 50) && w.take(&2, 50) && w.take(&1, 100));
    }
}
