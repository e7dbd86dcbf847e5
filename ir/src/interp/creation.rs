//! Reference semantics of the creation and random ops.
//!
//! Values are computed in f64 and converted with [`crate::tensor::Element::from_f64`] (truncation toward zero
//! for integer dtypes, as numpy's `astype`).
//!
//! Random ops are pure functions of `seed`: each builds one generator with
//! [`crate::random::op_rng`] and draws in row-major order of its output, so a seed fixes every
//! value on every platform:
//! - `random_uniform`: one `f64` from `[0, 1)` per element (`rand`'s `StandardUniform`, 53
//!   bits), `x = low + (high - low) * u` rounded to the dtype; a value that rounds up to `high`
//!   is redrawn, so results stay in `[low, high)`;
//! - `random_normal`: one `rand_distr::StandardNormal` `f64` `z` per element,
//!   `x = loc + scale * z`;
//! - `random_bernoulli`: one `f64` `u` from `[0, 1)` per element, 1 when `u < p` (so `p = 0`
//!   never and `p = 1` always gives 1);
//! - `random_randint`: one `rng.random_range(low..high)` over `i64` per element;
//! - `multinomial`: per row of `probs` (row-major over the leading axes), per sample, one `f64`
//!   `u` from `[0, 1)`; the sample is the first category whose cumulative sum exceeds
//!   `u * Σ probs` (inverse CDF; zero-probability categories are never drawn);
//! - `shuffle`: the row indices `0..n` of the first axis are permuted by `rand`'s
//!   `SliceRandom::shuffle` (Fisher-Yates); output row `i` is input row `perm[i]`.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::random::op_rng;
use crate::tensor::{Storage, Tensor, TensorType, TensorView};
use crate::with_data;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let name = op.name();
    let n = out.shape.numel();
    let values: Vec<f64> = match op {
        Op::Full { value, .. } => return Ok(Tensor::full(out.shape.clone(), out.dtype, *value)),
        Op::Arange { start, step, .. } => (0..n).map(|i| start + i as f64 * step).collect(),
        Op::Linspace {
            start,
            stop,
            num,
            endpoint,
            ..
        } => linspace(*start, *stop, *num, *endpoint),
        Op::RandomUniform {
            low, high, seed, ..
        } => {
            let mut rng = op_rng(*seed);
            let width = high - low;
            // Compare in the output dtype: an f64 below `high` can still round up to it in f32.
            let high_in_dtype = round_to(out.dtype, *high);
            (0..n)
                .map(|_| loop {
                    let x = round_to(out.dtype, low + width * rng.random::<f64>());
                    if x < high_in_dtype {
                        break x;
                    }
                })
                .collect()
        }
        Op::RandomNormal {
            loc, scale, seed, ..
        } => {
            let mut rng = op_rng(*seed);
            (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    loc + scale * z
                })
                .collect()
        }
        Op::RandomBernoulli { p, seed, .. } => {
            let mut rng = op_rng(*seed);
            (0..n)
                .map(|_| if rng.random::<f64>() < *p { 1.0 } else { 0.0 })
                .collect()
        }
        Op::RandomRandint {
            low, high, seed, ..
        } => {
            let mut rng = op_rng(*seed);
            let v: Vec<i64> = (0..n).map(|_| rng.random_range(*low..*high)).collect();
            // Inference checked that the whole range is exact in the dtype.
            let data = match out.dtype {
                DType::I64 => Storage::I64(v),
                DType::I32 => Storage::I32(v.into_iter().map(|x| x as i32).collect()),
                DType::U8 => Storage::U8(v.into_iter().map(|x| x as u8).collect()),
                DType::F32 => Storage::F32(v.into_iter().map(|x| x as f32).collect()),
                DType::F64 => Storage::F64(v.into_iter().map(|x| x as f64).collect()),
                DType::Bool => return Err(Error::dtype(name, "needs a numeric dtype, got bool")),
            };
            return Tensor::new(out.shape.clone(), data);
        }
        Op::Multinomial { num_samples, seed } => {
            let probs = inputs[0].data.to_f64_vec();
            let samples = multinomial(name, &probs, inputs[0].shape.dims(), *num_samples, *seed)?;
            return Tensor::from_vec(samples, out.shape.clone());
        }
        Op::Shuffle { seed } => return shuffle(&inputs[0], *seed),
        _ => return Err(Error::invalid(name, "is not a creation op")),
    };
    let f = Tensor::from_vec(values, out.shape.clone())?;
    Ok(if out.dtype == DType::F64 {
        f
    } else {
        f.cast(out.dtype)
    })
}

/// `v` as stored in `dtype`, read back as f64.
fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        _ => v,
    }
}

/// numpy's `linspace`: `start + i * step` with `step = (stop - start) / (num - 1)` (or `/ num`
/// without the endpoint); with the endpoint the last value is `stop` exactly.
fn linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    let step = if div > 0 {
        (stop - start) / div as f64
    } else {
        0.0
    };
    let mut v: Vec<f64> = (0..num).map(|i| start + i as f64 * step).collect();
    if endpoint && num > 1 {
        v[num - 1] = stop;
    }
    v
}

fn multinomial(
    name: &str,
    probs: &[f64],
    shape: &[usize],
    num_samples: usize,
    seed: u64,
) -> Result<Vec<i64>> {
    let k = shape.last().copied().unwrap_or(0);
    if k == 0 {
        return Err(Error::shape(name, "needs at least one category"));
    }
    let mut rng = op_rng(seed);
    let mut out = Vec::with_capacity(probs.len() / k * num_samples);
    let mut cumulative = vec![0.0; k];
    for (r, row) in probs.chunks(k).enumerate() {
        let mut total = 0.0;
        for (c, &p) in row.iter().enumerate() {
            if !(p >= 0.0 && p.is_finite()) {
                return Err(Error::invalid(
                    name,
                    format!(
                        "probabilities must be finite and non-negative, got {p} at row {r}, \
                         category {c} of {shape:?}"
                    ),
                ));
            }
            total += p;
            cumulative[c] = total;
        }
        if !(total > 0.0 && total.is_finite()) {
            return Err(Error::invalid(
                name,
                format!("row {r} of probabilities {shape:?} sums to {total}, not a positive finite number"),
            ));
        }
        for _ in 0..num_samples {
            let u = rng.random::<f64>() * total;
            // u < total == cumulative[k - 1], so a category is always found; the fallback only
            // guards against rounding.
            let c = cumulative.iter().position(|&cp| cp > u).unwrap_or(k - 1);
            out.push(c as i64);
        }
    }
    Ok(out)
}

fn shuffle(x: &TensorView<'_>, seed: u64) -> Result<Tensor> {
    let rows = x.shape[0];
    let mut perm: Vec<usize> = (0..rows).collect();
    perm.shuffle(&mut op_rng(seed));
    let row_len = x.data.len().checked_div(rows).unwrap_or(0);
    with_data!(x.data, T, s => {
        let mut v: Vec<T> = Vec::with_capacity(s.len());
        for &r in &perm {
            v.extend_from_slice(&s[r * row_len..(r + 1) * row_len]);
        }
        Tensor::from_vec(v, x.shape.clone())
    })
}
