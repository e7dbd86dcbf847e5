//! Seeded randomness: every random op is a pure function of its `seed` attribute.

use rand::SeedableRng;

/// The generator random ops draw from, built from an op's seed.
///
/// PCG-64 (MCG variant) is fixed here so a seed gives the same numbers on every platform and
/// in every kiln version that keeps this function.
pub type OpRng = rand_pcg::Pcg64Mcg;

/// The generator for one random op's `seed`.
///
/// ```
/// use rand::Rng;
/// let a: f64 = kiln_ir::random::op_rng(7).random();
/// let b: f64 = kiln_ir::random::op_rng(7).random();
/// assert_eq!(a, b);
/// ```
pub fn op_rng(seed: u64) -> OpRng {
    OpRng::seed_from_u64(seed)
}
