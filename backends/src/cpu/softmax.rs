//! `softmax` / `log_softmax` over the last axis, for f32 and f64.
//!
//! Each row is computed in f64 exactly as the interpreter does (max subtracted, `exp`, a
//! sequential sum, then a division or `x - max - ln(sum)`) and rounded once, so the results
//! agree bit for bit; the speed comes from working on contiguous rows with one buffer per
//! row instead of index arithmetic, and from splitting rows across threads.

use super::{data_of, tensor_of, threads, with_real, zeros, Real};
use kiln_ir::shape::normalize_axis;
use kiln_ir::{Tensor, TensorView};
use rayon::prelude::*;

/// Elements from which rows are split across threads (each element costs an `exp`).
pub const PAR_MIN: usize = 1 << 13;

/// One row: `y = softmax(x)` or `log_softmax(x)`, using `buf` for the shifted values.
fn row<T: Real>(x: &[T], y: &mut [T], log: bool, buf: &mut Vec<f64>) {
    let max = x
        .iter()
        .map(|v| v.to_wide())
        .fold(f64::NEG_INFINITY, f64::max);
    buf.clear();
    buf.extend(x.iter().map(|v| v.to_wide() - max));
    let sum: f64 = buf.iter().map(|d| d.exp()).sum();
    if log {
        let ln_sum = sum.ln();
        for (y, &d) in y.iter_mut().zip(buf.iter()) {
            *y = T::from_wide(d - ln_sum);
        }
    } else {
        for (y, &d) in y.iter_mut().zip(buf.iter()) {
            *y = T::from_wide(d.exp() / sum);
        }
    }
}

/// `Softmax { axis }` / `LogSoftmax { axis }` when `axis` is the last one.
pub fn softmax(axis: isize, log: bool, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [x] = inputs else { return None };
    let dims = x.shape.dims();
    let ax = normalize_axis(axis, dims.len(), "softmax").ok()?;
    if ax + 1 != dims.len() {
        return None;
    }
    let len = dims[ax];
    with_real!(x.data, T => {
        let s = data_of::<T>(x)?;
        let mut out = zeros::<T>(s.len());
        if len > 0 {
            if s.len() >= PAR_MIN && s.len() > len && threads() > 1 {
                out.par_chunks_mut(len)
                    .zip(s.par_chunks(len))
                    .for_each_init(Vec::new, |buf, (y, x)| row(x, y, log, buf));
            } else {
                let mut buf = Vec::with_capacity(len);
                for (y, x) in out.chunks_mut(len).zip(s.chunks(len)) {
                    row(x, y, log, &mut buf);
                }
            }
        }
        tensor_of(out, dims)
    })
}
