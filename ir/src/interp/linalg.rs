//! Reference semantics of the linalg ops: `dot`, `batch_dot`, `fully_connected`.
//!
//! Shapes and dtypes were checked by [`crate::infer`]. Every kernel reads its operands as f64,
//! accumulates products in f64 and rounds once to the output dtype, so the reference is at
//! least as accurate as any backend it judges.

use super::strided::StridedOffsets;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::{Storage, Tensor, TensorType, TensorView};

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let values = match op {
        Op::Dot {
            transpose_a,
            transpose_b,
        } => dot(&inputs[0], &inputs[1], *transpose_a, *transpose_b),
        Op::BatchDot {
            transpose_a,
            transpose_b,
        } => batch_dot(&inputs[0], &inputs[1], *transpose_a, *transpose_b, out),
        Op::FullyConnected { .. } => fully_connected(inputs, out),
        _ => return Err(Error::invalid(op.name(), "not a linear-algebra op")),
    };
    Tensor::new(out.shape.clone(), Storage::F64(values).cast(out.dtype))
}

/// The data of `shape` with its axes reversed (MXNet's `transpose` with no axes): a row-major
/// walk of the reversed dims with the reversed strides.
fn reverse_axes(data: &[f64], shape: &[usize]) -> Vec<f64> {
    let rev_dims: Vec<usize> = shape.iter().rev().copied().collect();
    let rev_strides: Vec<usize> = Shape::new(shape).strides().iter().rev().copied().collect();
    StridedOffsets::new(&rev_dims, &rev_strides)
        .map(|o| data[o])
        .collect()
}

/// `[m, k] · [k, n]`, row-major, f64 accumulation.
fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for kk in 0..k {
            let av = a[i * k + kk];
            for j in 0..n {
                out[i * n + j] += av * b[kk * n + j];
            }
        }
    }
    out
}

/// MXNet `dot`: reverse the operands' axes per flag, then contract `a`'s last axis with `b`'s
/// first: a matrix product of `a` seen as `[m, k]` and `b` seen as `[k, n]`.
fn dot(a: &TensorView<'_>, b: &TensorView<'_>, ta: bool, tb: bool) -> Vec<f64> {
    let mut av = a.data.to_f64_vec();
    let mut bv = b.data.to_f64_vec();
    let mut a_dims = a.shape.dims().to_vec();
    let mut b_dims = b.shape.dims().to_vec();
    if ta {
        av = reverse_axes(&av, &a_dims);
        a_dims.reverse();
    }
    if tb {
        bv = reverse_axes(&bv, &b_dims);
        b_dims.reverse();
    }
    let k = b_dims[0];
    let m: usize = a_dims[..a_dims.len() - 1].iter().product();
    let n: usize = b_dims[1..].iter().product();
    matmul(&av, &bv, m, k, n)
}

/// `batch_dot`: one matrix product per leading index, the flags transposing the last two axes.
fn batch_dot(
    a: &TensorView<'_>,
    b: &TensorView<'_>,
    ta: bool,
    tb: bool,
    out: &TensorType,
) -> Vec<f64> {
    let av = a.data.to_f64_vec();
    let bv = b.data.to_f64_vec();
    let r = out.shape.rank();
    let (n, m) = (out.shape[r - 2], out.shape[r - 1]);
    let k = if ta { a.shape[r - 2] } else { a.shape[r - 1] };
    let batches: usize = out.shape[..r - 2].iter().product();
    let mut res = vec![0.0; batches * n * m];
    for bi in 0..batches {
        let a0 = bi * n * k;
        let b0 = bi * k * m;
        // Element (i, kk) of op(a) and (kk, j) of op(b), honouring the transpose flags.
        let a_at = |i: usize, kk: usize| {
            if ta {
                av[a0 + kk * n + i]
            } else {
                av[a0 + i * k + kk]
            }
        };
        let b_at = |kk: usize, j: usize| {
            if tb {
                bv[b0 + j * k + kk]
            } else {
                bv[b0 + kk * m + j]
            }
        };
        for i in 0..n {
            for j in 0..m {
                res[bi * n * m + i * m + j] = (0..k).map(|kk| a_at(i, kk) * b_at(kk, j)).sum();
            }
        }
    }
    res
}

/// `fully_connected`: `x [rows, in] · w [units, in]ᵀ + b`, where `rows` is the product of all
/// output dims but the last (flatten or not, the data layout is the same).
fn fully_connected(inputs: &[TensorView<'_>], out: &TensorType) -> Vec<f64> {
    let x = inputs[0].data.to_f64_vec();
    let w = inputs[1].data.to_f64_vec();
    let bias = inputs.get(2).map(|b| b.data.to_f64_vec());
    let units = inputs[1].shape[0];
    let fan_in = inputs[1].shape[1];
    let rows = out.shape.numel().checked_div(units).unwrap_or(0);
    let mut res = vec![0.0; rows * units];
    for r in 0..rows {
        for u in 0..units {
            let dot: f64 = (0..fan_in)
                .map(|i| x[r * fan_in + i] * w[u * fan_in + i])
                .sum();
            res[r * units + u] = dot + bias.as_ref().map_or(0.0, |b| b[u]);
        }
    }
    res
}
