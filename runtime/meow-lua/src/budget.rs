//! One call's budget: instructions and wall-clock time. The instruction hook, every host
//! function and the pattern matcher charge it. Once it is exhausted it stays exhausted until the
//! next call: every later hook and host call raises again, and the sandbox's `pcall`, `xpcall`
//! and `coroutine` wrappers re-raise instead of catching, so a plugin cannot loop on the error.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The message of the error the budget raises.
pub const EXHAUSTED: &str = "meow: call budget exhausted";

/// A call's budget.
#[derive(Debug)]
pub struct Budget {
    instructions: i64,
    call: Duration,
    left: AtomicI64,
    /// When the budget was made: `started_ns` counts from it.
    base: Instant,
    started_ns: AtomicU64,
    exhausted: AtomicBool,
    timed_out: AtomicBool,
    yield_tried: AtomicBool,
}

impl Budget {
    /// A budget of `instructions` and `call` per call.
    pub fn new(instructions: u64, call: Duration) -> Self {
        Self {
            instructions: instructions.min(i64::MAX as u64) as i64,
            call,
            left: AtomicI64::new(instructions.min(i64::MAX as u64) as i64),
            base: Instant::now(),
            started_ns: AtomicU64::new(0),
            exhausted: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            yield_tried: AtomicBool::new(false),
        }
    }

    /// Starts a call: a full budget.
    pub fn arm(&self) {
        self.left.store(self.instructions, Ordering::Relaxed);
        self.exhausted.store(false, Ordering::Relaxed);
        self.timed_out.store(false, Ordering::Relaxed);
        self.yield_tried.store(false, Ordering::Relaxed);
        self.started_ns.store(self.now_ns(), Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// Charges `n` units without looking at the clock (host calls: a script that loops on them
    /// runs instructions between them, and the hook watches the time); `Ok` while the budget
    /// lasts, the budget error once it is gone.
    pub fn charge(&self, n: i64) -> mlua::Result<()> {
        if self.exhausted.load(Ordering::Relaxed) {
            return Err(mlua::Error::RuntimeError(EXHAUSTED.into()));
        }
        if self.left.fetch_sub(n, Ordering::Relaxed) - n <= 0 {
            return self.exhaust();
        }
        Ok(())
    }

    /// Charges `n` units and checks the wall clock (the instruction hook, the pattern matcher).
    pub fn tick(&self, n: i64) -> mlua::Result<()> {
        self.charge(n)?;
        let spent = self.now_ns().saturating_sub(self.started_ns.load(Ordering::Relaxed));
        if u128::from(spent) > self.call.as_nanos() {
            self.timed_out.store(true, Ordering::Relaxed);
            return self.exhaust();
        }
        Ok(())
    }

    fn exhaust(&self) -> mlua::Result<()> {
        self.exhausted.store(true, Ordering::Relaxed);
        Err(mlua::Error::RuntimeError(EXHAUSTED.into()))
    }

    /// Whether the hook may still try to suspend a coroutine this call (once only: a yield that
    /// Lua ignores must not be asked for again).
    pub fn try_yield(&self) -> bool {
        !self.yield_tried.swap(true, Ordering::Relaxed)
    }

    /// Whether this call ran out.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Whether it ran out of time (rather than instructions).
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// The pattern matcher's view of the budget.
pub struct Matching<'a>(pub &'a Budget);

impl crate::patterns::Steps for Matching<'_> {
    fn charge(&mut self, n: u64) -> bool {
        self.0.tick(n.min(i64::MAX as u64) as i64).is_ok()
    }
}
