//! The global random generator: `kiln::random::seed(42)` makes runs reproducible.
//!
//! Random ops are pure functions of a seed attribute (see `kiln_ir::op`); each eager random
//! op draws a fresh seed from this generator.

use rand::{RngCore, SeedableRng};
use std::sync::{Mutex, OnceLock};

type GlobalRng = rand_pcg::Pcg64Mcg;

fn global() -> &'static Mutex<GlobalRng> {
    static RNG: OnceLock<Mutex<GlobalRng>> = OnceLock::new();
    RNG.get_or_init(|| Mutex::new(GlobalRng::seed_from_u64(0x6b69_6c6e)))
}

/// Reseeds the global generator: the random ops that follow repeat exactly.
///
/// ```
/// kiln_frontend::random::seed(42);
/// let a = kiln_frontend::random::next_seed();
/// kiln_frontend::random::seed(42);
/// assert_eq!(a, kiln_frontend::random::next_seed());
/// ```
pub fn seed(seed: u64) {
    let mut g = global().lock().unwrap_or_else(|e| e.into_inner());
    *g = GlobalRng::seed_from_u64(seed);
}

/// Draws the seed for the next random op.
///
/// While a hybridize trace runs on this thread it draws nothing and returns 0: the traced op
/// gets a seed placeholder, and the compiled graph draws the real seed each time it runs.
pub fn next_seed() -> u64 {
    if crate::hybrid::trace::is_tracing() {
        return 0;
    }
    let mut g = global().lock().unwrap_or_else(|e| e.into_inner());
    g.next_u64()
}
