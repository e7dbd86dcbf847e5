//! Reduction fast paths: `sum`, `mean` and `max` of f32/f64 over the last axis or over all
//! axes.
//!
//! As in the interpreter, sums accumulate in f64 whatever the element type and round once;
//! here they use eight independent accumulators (so the loop vectorizes), a different
//! summation order than the interpreter's sequential one. `max` propagates NaN (numpy).

use super::{checked_numel, data_of, tensor_of, threads, with_real, Real};
use kiln_ir::shape::normalize_axis;
use kiln_ir::{ReduceOp, Tensor, TensorView};
use rayon::prelude::*;

/// Elements from which a reduction is split across threads.
pub const PAR_MIN: usize = 1 << 16;

/// The sum of `x` in f64, with eight lanes so the compiler vectorizes it.
fn sum_f64<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v.to_wide();
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in tail {
        s += v.to_wide();
    }
    s
}

/// The interpreter's NaN-propagating max step.
#[inline(always)]
fn max_step<T: Real>(a: T, v: T) -> T {
    if a.is_nan() || a >= v {
        a
    } else {
        v
    }
}

/// The max of `x` (NaN if any element is NaN), with eight lanes.
fn max_of<T: Real>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = max_step(*a, v);
        }
    }
    let mut m = T::neg_infinity();
    for v in acc.into_iter().chain(tail.iter().copied()) {
        m = max_step(m, v);
    }
    m
}

/// Reduces one lane.
fn reduce_lane<T: Real>(f: ReduceOp, x: &[T]) -> T {
    match f {
        ReduceOp::Max => max_of(x),
        ReduceOp::Mean => T::from_wide(sum_f64(x) / x.len() as f64),
        _ => T::from_wide(sum_f64(x)),
    }
}

/// Reduces all of `x`, in parallel chunks when large.
fn reduce_all<T: Real>(f: ReduceOp, x: &[T]) -> T {
    if x.len() < PAR_MIN || threads() < 2 {
        return reduce_lane(f, x);
    }
    let c = x.len().div_ceil(threads() * 4).max(4096);
    match f {
        ReduceOp::Max => x
            .par_chunks(c)
            .map(max_of)
            .collect::<Vec<T>>()
            .into_iter()
            .fold(T::neg_infinity(), max_step),
        _ => {
            let s: f64 = x
                .par_chunks(c)
                .map(sum_f64)
                .collect::<Vec<f64>>()
                .iter()
                .sum();
            if f == ReduceOp::Mean {
                T::from_wide(s / x.len() as f64)
            } else {
                T::from_wide(s)
            }
        }
    }
}

/// `Reduce { f, axes, keepdims }` for sum/mean/max on f32/f64 over the last axis or all axes.
pub fn reduce(
    f: ReduceOp,
    axes: Option<&[isize]>,
    keepdims: bool,
    inputs: &[TensorView<'_>],
) -> Option<Tensor> {
    if !matches!(f, ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max) {
        return None;
    }
    let [x] = inputs else { return None };
    let dims = x.shape.dims();
    let rank = dims.len();
    // Which axes: all, or only the last. Anything else goes to the interpreter.
    let all = match axes {
        None => true,
        Some(list) => {
            let mut seen = vec![false; rank];
            for &a in list {
                let a = normalize_axis(a, rank, "reduce").ok()?;
                if std::mem::replace(&mut seen[a], true) {
                    return None;
                }
            }
            let count = seen.iter().filter(|&&s| s).count();
            if count == 0 {
                return None;
            } else if count == rank {
                true
            } else if count == 1 && seen[rank - 1] {
                false
            } else {
                return None;
            }
        }
    };
    with_real!(x.data, T => {
        let s = data_of::<T>(x)?;
        if all {
            // max of nothing has no value, mean of nothing is NaN: leave those to the
            // interpreter (it rejects or defines them).
            if s.is_empty() {
                return None;
            }
            let out_dims = if keepdims { vec![1; rank] } else { Vec::new() };
            tensor_of(vec![reduce_all(f, s)], &out_dims)
        } else {
            let len = dims[rank - 1];
            if len == 0 {
                return None;
            }
            let rows = checked_numel(&dims[..rank - 1])?;
            let out: Vec<T> = if s.len() >= PAR_MIN && rows > 1 && threads() > 1 {
                s.par_chunks(len).map(|lane| reduce_lane(f, lane)).collect()
            } else {
                s.chunks(len).map(|lane| reduce_lane(f, lane)).collect()
            };
            let mut out_dims = dims[..rank - 1].to_vec();
            if keepdims {
                out_dims.push(1);
            }
            debug_assert_eq!(out.len(), rows);
            tensor_of(out, &out_dims)
        }
    })
}
