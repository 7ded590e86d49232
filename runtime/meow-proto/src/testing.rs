//! A deterministic random generator for tests and test-vector generation. Not for real keys.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

use crate::crypto::sha256;

/// SHA-256 in counter mode over a seed: reproducible bytes for tests and vectors.
#[derive(Debug, Clone)]
pub struct TestRng {
    seed: u64,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl TestRng {
    /// A generator for `seed`; equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            if self.used == 32 {
                self.block = sha256(&[b"meow test rng", &self.seed.to_le_bytes(), &self.counter.to_le_bytes()]);
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for TestRng {}
