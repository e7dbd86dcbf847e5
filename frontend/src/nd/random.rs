//! MXNet's `nd.random.*`: sampling ops. Each call draws a fresh seed from the global generator,
//! so `kiln::random::seed(n)` makes a program's samples repeat exactly.
//!
//! ```
//! use kiln_frontend::nd;
//! kiln_frontend::random::seed(7);
//! let a = nd::random::uniform(0.0, 1.0, [3])?;
//! kiln_frontend::random::seed(7);
//! let b = nd::random::uniform(0.0, 1.0, [3])?;
//! assert_eq!(a.to_vec::<f32>()?, b.to_vec::<f32>()?);
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

use super::Opts;
use crate::ndarray::{apply, apply_on, NDArray};
use crate::random::next_seed;
use kiln_ir::{DType, Op, Result, Shape};

/// f32 samples uniform on `[low, high)`.
pub fn uniform(low: f64, high: f64, shape: impl Into<Shape>) -> Result<NDArray> {
    uniform_with(low, high, shape, Opts::new())
}

/// Uniform samples of the given dtype and device.
pub fn uniform_with(
    low: f64,
    high: f64,
    shape: impl Into<Shape>,
    opts: impl Into<Opts>,
) -> Result<NDArray> {
    let opts = opts.into();
    let op = Op::RandomUniform {
        low,
        high,
        shape: shape.into(),
        dtype: opts.dtype,
        seed: next_seed(),
    };
    apply_on(op, &[], opts.ctx)
}

/// f32 samples from the normal distribution with mean `loc` and standard deviation `scale`.
pub fn normal(loc: f64, scale: f64, shape: impl Into<Shape>) -> Result<NDArray> {
    normal_with(loc, scale, shape, Opts::new())
}

/// Normal samples of the given dtype and device.
pub fn normal_with(
    loc: f64,
    scale: f64,
    shape: impl Into<Shape>,
    opts: impl Into<Opts>,
) -> Result<NDArray> {
    let opts = opts.into();
    let op = Op::RandomNormal {
        loc,
        scale,
        shape: shape.into(),
        dtype: opts.dtype,
        seed: next_seed(),
    };
    apply_on(op, &[], opts.ctx)
}

/// f32 samples that are 1 with probability `p`, else 0.
pub fn bernoulli(p: f64, shape: impl Into<Shape>) -> Result<NDArray> {
    bernoulli_with(p, shape, Opts::new())
}

/// Bernoulli samples of the given dtype and device.
pub fn bernoulli_with(p: f64, shape: impl Into<Shape>, opts: impl Into<Opts>) -> Result<NDArray> {
    let opts = opts.into();
    let op = Op::RandomBernoulli {
        p,
        shape: shape.into(),
        dtype: opts.dtype,
        seed: next_seed(),
    };
    apply_on(op, &[], opts.ctx)
}

/// i32 integers uniform on `[low, high)` (MXNet's default dtype for `randint`).
pub fn randint(low: i64, high: i64, shape: impl Into<Shape>) -> Result<NDArray> {
    randint_with(low, high, shape, DType::I32)
}

/// Random integers of the given dtype and device.
pub fn randint_with(
    low: i64,
    high: i64,
    shape: impl Into<Shape>,
    opts: impl Into<Opts>,
) -> Result<NDArray> {
    let opts = opts.into();
    let op = Op::RandomRandint {
        low,
        high,
        shape: shape.into(),
        dtype: opts.dtype,
        seed: next_seed(),
    };
    apply_on(op, &[], opts.ctx)
}

/// `num_samples` category indices (i64) per row of the unnormalized probabilities `probs`
/// `[.., K]`: the result is `[.., num_samples]`.
pub fn multinomial(probs: &NDArray, num_samples: usize) -> Result<NDArray> {
    apply(
        Op::Multinomial {
            num_samples,
            seed: next_seed(),
        },
        &[probs],
    )
}

/// MXNet's `sample_multinomial(probs, shape)`: draws `shape` category indices (i64) per row
/// of `probs` `[.., K]`; the result is `[.., *shape]`.
///
/// ```
/// use kiln_frontend::nd;
/// let dice = nd::full([6], 1.0 / 6.0)?;
/// let rolls = nd::random::sample_multinomial(&dice, [5, 10])?;
/// assert_eq!(rolls.shape().dims(), &[5, 10]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
pub fn sample_multinomial(probs: &NDArray, shape: impl Into<Shape>) -> Result<NDArray> {
    let shape = shape.into();
    let flat = multinomial(probs, shape.numel())?;
    let mut dims: Vec<i64> = flat.shape()[..flat.shape().rank() - 1]
        .iter()
        .map(|&d| d as i64)
        .collect();
    dims.extend(shape.iter().map(|&d| d as i64));
    flat.reshape(&dims)
}

/// A copy of `x` with its first axis randomly permuted.
pub fn shuffle(x: &NDArray) -> Result<NDArray> {
    apply(Op::Shuffle { seed: next_seed() }, &[x])
}
