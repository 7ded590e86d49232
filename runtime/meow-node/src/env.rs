//! What a home takes from the world: the time and random bytes. Both are inputs, so a home can
//! run on a virtual clock with a seeded generator (the test kit) and behave the same every time.

use meow_clock::{SharedClock, SystemClock};
use meow_net::{ClientOptions, Transports};
use meow_proto::crypto::SharedRng;

/// A home's clock, random generator and transports.
#[derive(Debug, Clone)]
pub struct Env {
    /// The clock.
    pub clock: SharedClock,
    /// The random generator: keys, nonces of vault records and envelopes. Anything but the
    /// operating system's (`SharedRng::os`) is for simulations only: a seeded stream replays its
    /// nonces when the home is opened again, which breaks the vault's encryption.
    pub rng: SharedRng,
    /// How servers are reached, by address kind.
    pub transports: Transports,
}

impl Env {
    /// The system clock and the operating system's generator.
    pub fn system() -> Self {
        Self {
            clock: SystemClock::shared(),
            rng: SharedRng::os(),
            transports: Transports::system(),
        }
    }

    /// What server sessions take from it.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transports: self.transports.clone(),
            clock: self.clock.clone(),
            rng: self.rng.clone(),
        }
    }

    /// Now, Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// A handle on the generator.
    pub fn rng(&self) -> SharedRng {
        self.rng.clone()
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::system()
    }
}
