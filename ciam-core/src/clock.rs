//! Injected time and randomness.
//!
//! Every expiry in ciam-rs is computed from a [`Clock`], and every token, code and identifier is
//! drawn from a [`RandomSource`], so that tests can fix both. Reading the wall clock anywhere else
//! is refused by clippy (`disallowed-methods` in `clippy.toml`).

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place where ciam-rs reads the wall clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move; for tests and simulations.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<DateTime<Utc>>,
}

impl FixedClock {
    /// A clock fixed at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = to;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A source of cryptographically secure random bytes.
pub trait RandomSource: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A uniformly distributed number below `bound` (which must be above zero).
    fn below(&self, bound: u32) -> u32 {
        // Rejection sampling avoids modulo bias.
        let bound = bound.max(1);
        let zone = u32::MAX - (u32::MAX % bound);
        loop {
            let mut bytes = [0u8; 4];
            self.fill(&mut bytes);
            let value = u32::from_le_bytes(bytes);
            if value < zone {
                return value % bound;
            }
        }
    }
}

/// The operating system's randomness (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // getrandom only fails on platforms without an entropy source, where no secure
        // operation is possible; fall back to the thread-local CSPRNG seeded by the OS.
        if getrandom::getrandom(buf).is_err() {
            rand::rngs::OsRng.fill_bytes(buf);
        }
    }
}

/// A deterministic randomness source (ChaCha20 from a seed): reproducible tests only, never
/// production.
#[derive(Debug)]
pub struct SeededRandom {
    rng: Mutex<ChaCha20Rng>,
}

impl SeededRandom {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Mutex::new(ChaCha20Rng::seed_from_u64(seed)),
        }
    }
}

impl RandomSource for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        self.rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fill_bytes(buf);
    }
}
