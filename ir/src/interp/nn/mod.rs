//! Reference semantics of the nn ops.
//!
//! Shapes and dtypes were checked by [`crate::infer`]. Every kernel reads its operands as f64,
//! computes and accumulates in f64, and rounds once to the output dtype (f32 or f64): one
//! kernel per op for both float types, at least as accurate as any backend it judges.
//!
//! - [`conv`]: convolution, deconvolution and the convolution weight gradient, all three
//!   written over one enumeration of the convolution's taps so they are exact adjoints;
//! - [`pool`]: pooling and its gradient, over one enumeration of the windows;
//! - this module: softmax family, batch/layer normalization and dropout.

mod conv;
mod pool;

use super::indexing::clipped_indices;
use super::strided::AxisSplit;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::random::op_rng;
use crate::tensor::{Storage, Tensor, TensorType, TensorView};
use rand::RngCore;

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let values = match op {
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let x = &inputs[0];
            let ax = x.shape.axis(*axis, op.name())?;
            let log = matches!(op, Op::LogSoftmax { .. });
            softmax(
                &x.data.to_f64_vec(),
                &AxisSplit::new(x.shape.dims(), ax),
                log,
            )
        }
        Op::SoftmaxCrossEntropy => softmax_cross_entropy(&inputs[0], &inputs[1]),
        Op::Convolution { .. } | Op::Deconvolution { .. } | Op::ConvGradWeight { .. } => {
            conv::eval(op, inputs, out)?
        }
        Op::Pooling { .. } => pool::pooling(op, &inputs[0], out)?,
        Op::PoolingGrad { .. } => pool::pooling_grad(op, &inputs[0], &inputs[1], out)?,
        Op::BatchNorm {
            eps,
            axis,
            use_batch_stats,
        } => batch_norm(op, inputs, *axis, *eps, *use_batch_stats)?,
        Op::LayerNorm { axis, eps } => layer_norm(op, inputs, *axis, *eps)?,
        Op::Dropout { p, seed } => dropout(&inputs[0].data.to_f64_vec(), *p, *seed),
        _ => return Err(Error::invalid(op.name(), "not a neural-network op")),
    };
    finish(values, out)
}

/// `(height, width)` of a per-spatial-dim attribute list (or of a shape's spatial dims), so
/// that 1-D ops run as 2-D ones: a 1-D list is `(lift, w)`, where `lift` is the neutral value
/// (size 1, stride 1, pad 0, dilation 1). [`crate::infer`] guarantees the lengths; an empty
/// list only reaches here for global pooling, which does not read it.
fn hw(v: &[usize], lift: usize) -> (usize, usize) {
    match v {
        [] => (lift, lift),
        [w] => (lift, *w),
        [h, w, ..] => (*h, *w),
    }
}

/// Rounds f64 results to the output dtype.
fn finish(values: Vec<f64>, out: &TensorType) -> Result<Tensor> {
    Tensor::new(out.shape.clone(), Storage::F64(values).cast(out.dtype))
}

/// Softmax (or its log) along each lane, with the lane's max subtracted first so `exp` never
/// overflows: `log_softmax(x) = x - max - log(sum(exp(x - max)))`.
fn softmax(x: &[f64], split: &AxisSplit, log: bool) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (o, j) in split.lanes() {
        let max = split
            .lane(o, j)
            .map(|i| x[i])
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = split.lane(o, j).map(|i| (x[i] - max).exp()).sum();
        for i in split.lane(o, j) {
            y[i] = if log {
                x[i] - max - sum.ln()
            } else {
                (x[i] - max).exp() / sum
            };
        }
    }
    y
}

/// `-log_softmax(logits)[i, label_i]` per row; labels are read as indices are (truncated
/// toward zero, clipped to `[0, C-1]`, NaN as 0).
fn softmax_cross_entropy(logits: &TensorView<'_>, labels: &TensorView<'_>) -> Vec<f64> {
    let (n, c) = (logits.shape[0], logits.shape[1]);
    let log_p = softmax(&logits.data.to_f64_vec(), &AxisSplit::new(&[n, c], 1), true);
    clipped_indices(labels.data, c)
        .into_iter()
        .enumerate()
        .map(|(i, label)| -log_p[i * c + label])
        .collect()
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` per channel `c` of `axis`; `stats(c)` gives
/// the channel's mean and variance.
fn normalize(
    x: &[f64],
    split: &AxisSplit,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    stats: impl Fn(usize) -> (f64, f64),
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for c in 0..split.len {
        let (mean, var) = stats(c);
        let scale = gamma[c] / (var + eps).sqrt();
        for o in 0..split.outer {
            for j in 0..split.inner {
                let i = (o * split.len + c) * split.inner + j;
                y[i] = (x[i] - mean) * scale + beta[c];
            }
        }
    }
    y
}

/// The mean and biased (divide by `n`) variance of some values; (0, 0) when there are none.
fn mean_var(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    // Two passes (not E[x²] - E[x]²) so the reference has no cancellation error.
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    (mean, var)
}

/// Batch normalization over channel `axis`. With batch statistics, each channel's mean and
/// biased variance are taken over every other axis; otherwise inputs 3 and 4 (running mean
/// and variance) are used.
fn batch_norm(
    op: &Op,
    inputs: &[TensorView<'_>],
    axis: isize,
    eps: f64,
    use_batch_stats: bool,
) -> Result<Vec<f64>> {
    let x = inputs[0].data.to_f64_vec();
    let ax = inputs[0].shape.axis(axis, op.name())?;
    let split = AxisSplit::new(inputs[0].shape.dims(), ax);
    let [gamma, beta, run_mean, run_var] = [1, 2, 3, 4].map(|i| inputs[i].data.to_f64_vec());
    let y = if use_batch_stats {
        normalize(&x, &split, &gamma, &beta, eps, |c| {
            let channel: Vec<f64> = (0..split.outer)
                .flat_map(|o| {
                    let base = (o * split.len + c) * split.inner;
                    x[base..base + split.inner].iter().copied()
                })
                .collect();
            mean_var(&channel)
        })
    } else {
        normalize(&x, &split, &gamma, &beta, eps, |c| {
            (run_mean[c], run_var[c])
        })
    };
    Ok(y)
}

/// Layer normalization: each lane along `axis` is normalized by its own mean and biased
/// variance, then scaled by `gamma[i]` and shifted by `beta[i]` (i the position on the axis).
fn layer_norm(op: &Op, inputs: &[TensorView<'_>], axis: isize, eps: f64) -> Result<Vec<f64>> {
    let x = inputs[0].data.to_f64_vec();
    let ax = inputs[0].shape.axis(axis, op.name())?;
    let split = AxisSplit::new(inputs[0].shape.dims(), ax);
    let gamma = inputs[1].data.to_f64_vec();
    let beta = inputs[2].data.to_f64_vec();
    let mut y = vec![0.0; x.len()];
    for (o, j) in split.lanes() {
        let (mean, var) = mean_var(&split.lane(o, j).map(|i| x[i]).collect::<Vec<_>>());
        let inv_std = 1.0 / (var + eps).sqrt();
        for (pos, i) in split.lane(o, j).enumerate() {
            y[i] = (x[i] - mean) * inv_std * gamma[pos] + beta[pos];
        }
    }
    Ok(y)
}

/// The keep-mask of `Op::Dropout { p, seed }` over `n` elements (row-major): `true` where the
/// element survives.
///
/// This is the rule every backend must reproduce exactly. Element `i` uses the `i`-th 64-bit
/// output `r` of [`crate::random::op_rng`]`(seed)` (`next_u64`), turned into the uniform
/// `u = (r >> 11) as f64 * 2^-53` in `[0, 1)`; it is dropped when `u < p`. So `p = 0` keeps
/// everything and `p = 1` drops everything.
///
/// ```
/// use kiln_ir::{interp::eval, Op, Tensor};
/// let x = Tensor::from_vec(vec![1.0f64; 4], [4]).unwrap();
/// let y = eval(&Op::Dropout { p: 0.0, seed: 3 }, &[x.view()]).unwrap();
/// assert_eq!(y.to_f64_vec(), vec![1.0; 4]);
/// ```
pub fn dropout_mask(seed: u64, n: usize, p: f64) -> Vec<bool> {
    let mut rng = op_rng(seed);
    let scale = 1.0 / (1u64 << 53) as f64;
    (0..n)
        .map(|_| ((rng.next_u64() >> 11) as f64 * scale) >= p)
        .collect()
}

/// Inverted dropout: survivors of [`dropout_mask`] are scaled by `1/(1-p)`, the rest are 0.
/// With `p = 1` every element is dropped and the output is all zeros (no division by zero).
fn dropout(x: &[f64], p: f64, seed: u64) -> Vec<f64> {
    let keep = dropout_mask(seed, x.len(), p);
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    x.iter()
        .zip(keep)
        .map(|(&v, k)| if k { v * scale } else { 0.0 })
        .collect()
}
