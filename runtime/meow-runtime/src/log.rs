//! Logging that a flood cannot drown: a `tracing` layer that lets each kind of line through at
//! most [`LINES_PER_INTERVAL`] times per [`INTERVAL_MS`], per source, and then says in one line
//! how many it held back. A line's kind is its place in the code; its source is the value of its
//! `plugin`, `instance`, `recipe`, `contact`, `peer` or `server` field, so one noisy plugin does
//! not silence the others.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The interval over which lines are counted.
pub const INTERVAL_MS: u64 = 10_000;
/// Lines of one kind and source let through per interval.
pub const LINES_PER_INTERVAL: u32 = 10;
/// The target of the summary lines (never held back themselves).
const SUMMARY_TARGET: &str = "meow::log";
/// Fields that name the source of a line.
const SOURCE_FIELDS: [&str; 6] = ["plugin", "instance", "recipe", "contact", "peer", "server"];

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    interval: u64,
    lines: u32,
    held: u64,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Let it through.
    pub pass: bool,
    /// Lines of its kind held back in the last interval, to report first.
    pub held_before: u64,
}

/// The counting, without `tracing`: per key, lines per interval.
#[derive(Debug, Default)]
pub struct LineLimiter {
    counts: HashMap<(usize, String), Count>,
}

impl LineLimiter {
    /// Counts a line of `kind` from `source` at `now_ms`.
    pub fn check(&mut self, kind: usize, source: &str, now_ms: u64) -> Verdict {
        if self.counts.len() > 10_000 {
            self.counts.clear();
        }
        let interval = now_ms / INTERVAL_MS;
        let c = self.counts.entry((kind, source.to_owned())).or_default();
        let mut held_before = 0;
        if c.interval != interval {
            held_before = c.held;
            *c = Count {
                interval,
                lines: 0,
                held: 0,
            };
        }
        if c.lines < LINES_PER_INTERVAL {
            c.lines += 1;
            Verdict {
                pass: true,
                held_before,
            }
        } else {
            c.held += 1;
            Verdict {
                pass: false,
                held_before,
            }
        }
    }
}

/// The `tracing` layer over [`LineLimiter`].
#[derive(Debug)]
pub struct RateLimitLayer {
    limiter: Mutex<LineLimiter>,
    start: Instant,
}

impl Default for RateLimitLayer {
    fn default() -> Self {
        Self {
            limiter: Mutex::new(LineLimiter::default()),
            start: Instant::now(),
        }
    }
}

#[derive(Default)]
struct SourceVisitor(String);

impl Visit for SourceVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.0.is_empty() && SOURCE_FIELDS.contains(&field.name()) {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.0.is_empty() && SOURCE_FIELDS.contains(&field.name()) {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for RateLimitLayer {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() == SUMMARY_TARGET {
            return true;
        }
        let mut source = SourceVisitor::default();
        event.record(&mut source);
        let kind = meta as *const _ as usize;
        let now = self.start.elapsed().as_millis() as u64;
        let verdict = self.limiter.lock().check(kind, &source.0, now);
        if verdict.held_before > 0 {
            let place = format!("{}:{}", meta.file().unwrap_or("?"), meta.line().unwrap_or(0));
            let from = if source.0.is_empty() {
                String::new()
            } else {
                format!(" from {}", source.0)
            };
            tracing::warn!(
                target: SUMMARY_TARGET,
                "{} more line(s) like the one logged at {place}{from} were held back in the last {} s",
                verdict.held_before,
                INTERVAL_MS / 1000
            );
        }
        verdict.pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_per_kind_and_source_and_reported_once_per_interval() {
        let mut l = LineLimiter::default();
        let passed = (0..1000).filter(|i| l.check(1, "spam", *i).pass).count();
        assert_eq!(passed, LINES_PER_INTERVAL as usize);
        assert!(l.check(1, "quiet", 5).pass, "another source is not held back");
        assert!(l.check(2, "spam", 5).pass, "another kind is not held back");
        let next = l.check(1, "spam", INTERVAL_MS + 1);
        assert_eq!(
            next,
            Verdict {
                pass: true,
                held_before: 1000 - LINES_PER_INTERVAL as u64
            }
        );
        assert_eq!(l.check(1, "spam", INTERVAL_MS + 2).held_before, 0, "reported once");
    }
}
