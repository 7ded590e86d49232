//! Time as an input. Everything above the protocol core that needs the time or a timer takes a
//! [`Clock`]: the [`SystemClock`] in production, a [`VirtualClock`] in tests, which moves only
//! when the test says so, so that a 14-day expiry or an hour of backoff runs in microseconds.
//!
//! ```
//! use std::time::Duration;
//! use meow_clock::{Clock, VirtualClock};
//!
//! let clock = VirtualClock::new(1_000);
//! let mut sleep = clock.sleep(Duration::from_secs(60));
//! assert!(smol::future::block_on(smol::future::poll_once(&mut sleep)).is_none());
//! clock.advance(Duration::from_secs(60));
//! assert!(smol::future::block_on(smol::future::poll_once(&mut sleep)).is_some());
//! assert_eq!(clock.now_ms(), 61_000);
//! ```

#![forbid(unsafe_code)]

pub mod rate;

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A timer's future.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The time, and timers on it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// A future ready once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Sleep;
    /// Now, Unix seconds.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
    /// A future ready at `at_ms` (Unix ms) on this clock.
    fn sleep_until(&self, at_ms: u64) -> Sleep {
        self.sleep(Duration::from_millis(at_ms.saturating_sub(self.now_ms())))
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// `fut`'s output, or `None` if `d` passes on `clock` first.
pub async fn timeout<T>(clock: &dyn Clock, d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        clock.sleep(d).await;
        None
    })
    .await
}

/// The operating system's clock and smol's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(async move {
            smol::Timer::after(d).await;
        })
    }
}

#[derive(Debug, Default)]
struct Timers {
    next_id: u64,
    /// (deadline, id) -> waker of the sleep waiting for it.
    waiting: BTreeMap<(u64, u64), Option<Waker>>,
}

/// A clock that moves only when told to. Sleeps complete when the clock is advanced past their
/// deadline; [`VirtualClock::next_deadline`] tells a test driver where to jump when nothing else
/// can run.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now: Arc<AtomicU64>,
    timers: Arc<Mutex<Timers>>,
}

impl VirtualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
            timers: Arc::default(),
        }
    }

    /// This clock, shared.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Moves the clock forward by `d`, waking every sleep that is due.
    pub fn advance(&self, d: Duration) {
        self.set(self.now_ms() + d.as_millis() as u64);
    }

    /// Moves the clock to `at_ms` (never backwards), waking every sleep that is due.
    pub fn set(&self, at_ms: u64) {
        self.now.fetch_max(at_ms, Ordering::AcqRel);
        let now = self.now_ms();
        let due: Vec<Waker> = {
            let mut t = self.timers.lock();
            let later = t.waiting.split_off(&(now + 1, 0));
            let due = std::mem::replace(&mut t.waiting, later);
            due.into_values().flatten().collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// The earliest deadline a sleep waits for, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.lock().waiting.keys().next().map(|(at, _)| *at)
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.now_ms() + d.as_millis() as u64;
        let id = {
            let mut t = self.timers.lock();
            t.next_id += 1;
            t.next_id
        };
        Box::pin(VirtualSleep {
            clock: self.clone(),
            key: (deadline, id),
        })
    }
}

struct VirtualSleep {
    clock: VirtualClock,
    key: (u64, u64),
}

impl Future for VirtualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now_ms() >= self.key.0 {
            self.clock.timers.lock().waiting.remove(&self.key);
            return Poll::Ready(());
        }
        self.clock
            .timers
            .lock()
            .waiting
            .insert(self.key, Some(cx.waker().clone()));
        // The clock may have moved between the check and the registration.
        if self.clock.now_ms() >= self.key.0 {
            self.clock.timers.lock().waiting.remove(&self.key);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        self.clock.timers.lock().waiting.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sleeps_finish_in_deadline_order_when_the_clock_moves() {
        let clock = VirtualClock::new(0);
        let order = Arc::new(Mutex::new(Vec::new()));
        let ex = smol::LocalExecutor::new();
        for (name, secs) in [("b", 20), ("a", 10), ("c", 30)] {
            let (c, o) = (clock.clone(), order.clone());
            ex.spawn(async move {
                c.sleep(Duration::from_secs(secs)).await;
                o.lock().push(name);
            })
            .detach();
        }
        while ex.try_tick() {}
        assert_eq!(clock.next_deadline(), Some(10_000));
        clock.advance(Duration::from_secs(15));
        while ex.try_tick() {}
        assert_eq!(*order.lock(), ["a"]);
        clock.set(30_000);
        while ex.try_tick() {}
        assert_eq!(*order.lock(), ["a", "b", "c"]);
        assert_eq!(clock.next_deadline(), None);
    }

    #[test]
    fn a_dropped_sleep_is_forgotten() {
        let clock = VirtualClock::new(0);
        let mut s = clock.sleep(Duration::from_secs(5));
        assert!(smol::future::block_on(smol::future::poll_once(&mut s)).is_none());
        assert_eq!(clock.next_deadline(), Some(5000));
        drop(s);
        assert_eq!(clock.next_deadline(), None);
    }
}
