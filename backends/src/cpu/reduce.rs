//! Reduction fast paths: `sum`, `mean` and `max` of f32/f64 over any set of axes.
//!
//! As in the interpreter, sums accumulate in f64 whatever the element type and round once.
//! Over the last axis alone or over all axes they use eight independent accumulators (so the
//! loop vectorizes), a different summation order than the interpreter's sequential one.
//! Over any other set of axes (a bias gradient: every axis but the channels) they are
//! bitwise equal to the interpreter: each output slot folds its elements in row-major order,
//! as the interpreter does, and the speed comes from running many slots' folds side by side
//! ([`reduce_axes`]). `max` propagates NaN (numpy).

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
    // Which axes: all, only the last, or another set (the general path).
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
                return with_real!(x.data, T => {
                    let s = data_of::<T>(x)?;
                    let out = reduce_axes(f, s, dims, &seen)?;
                    let out_dims: Vec<usize> = dims
                        .iter()
                        .zip(&seen)
                        .filter_map(|(&d, &r)| match (r, keepdims) {
                            (false, _) => Some(d),
                            (true, true) => Some(1),
                            (true, false) => None,
                        })
                        .collect();
                    tensor_of(out, &out_dims)
                });
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

/// Output slots folded side by side in [`reduce_axes`] when the reduced axes are innermost.
const SLOTS: usize = 8;

/// A reduction's layout with adjacent axes of the same kind merged and length-1 axes
/// dropped: `(length, reduced)` runs, outermost first, alternating kinds.
fn runs(dims: &[usize], reduced: &[bool]) -> Vec<(usize, bool)> {
    let mut out: Vec<(usize, bool)> = Vec::new();
    for (&d, &r) in dims.iter().zip(reduced) {
        if d == 1 {
            continue;
        }
        match out.last_mut() {
            Some((len, kind)) if *kind == r => *len *= d,
            _ => out.push((d, r)),
        }
    }
    out
}

/// Sum, mean or max of `s` (shape `dims`) over the axes flagged in `reduced` (some but not
/// all of them, or `None` is returned), bitwise equal to the interpreter: every output slot
/// starts from 0 (sum) or -inf (max) in f64 and folds its elements in row-major order.
///
/// The merged layout ends either in a kept run — then consecutive elements go to consecutive
/// slots, and a lane is added slot-wise (independent slots: the loop vectorizes) — or in a
/// reduced run of length `l` after a kept run — then [`SLOTS`] neighbouring slots each fold
/// their own `l` contiguous elements, in lockstep, so the additions of different slots
/// overlap instead of each waiting for the previous one.
pub fn reduce_axes<T: Real>(
    f: ReduceOp,
    s: &[T],
    dims: &[usize],
    reduced: &[bool],
) -> Option<Vec<T>> {
    if !matches!(f, ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max) || dims.len() != reduced.len() {
        return None;
    }
    if checked_numel(dims)? != s.len() {
        return None;
    }
    let out_len: usize = dims
        .iter()
        .zip(reduced)
        .filter(|(_, &r)| !r)
        .map(|(&d, _)| d)
        .product();
    let count: usize = dims
        .iter()
        .zip(reduced)
        .filter(|(_, &r)| r)
        .map(|(&d, _)| d)
        .product();
    if out_len == 0 || s.is_empty() {
        // Nothing to fold: the interpreter defines (or rejects) these.
        return None;
    }
    let is_max = f == ReduceOp::Max;
    let init = if is_max { f64::NEG_INFINITY } else { 0.0 };
    let mut acc = vec![init; out_len];
    let step = |a: f64, v: f64| -> f64 {
        if is_max {
            if a.is_nan() || a >= v {
                a
            } else {
                v
            }
        } else {
            a + v
        }
    };
    let layout = runs(dims, reduced);
    match layout.last() {
        // Every non-trivial axis kept (the reduced ones have length 1): a copy.
        None => acc[0] = step(init, s[0].to_wide()),
        Some(&(_, false)) if layout.len() == 1 => {
            for (a, &v) in acc.iter_mut().zip(s) {
                *a = step(*a, v.to_wide());
            }
        }
        Some(&(l, false)) => {
            // Lanes of `l` consecutive slots; the outer runs pick the lane's first slot.
            let outer = &layout[..layout.len() - 1];
            let mut slot = OuterSlots::new(outer, l);
            for lane in s.chunks_exact(l) {
                let o = slot.next_base();
                for (a, &v) in acc[o..o + l].iter_mut().zip(lane) {
                    *a = step(*a, v.to_wide());
                }
            }
        }
        Some(&(_, true)) if layout.len() == 1 => {
            // The kept axes all have length 1: one slot.
            acc[0] = s.iter().fold(init, |a, &v| step(a, v.to_wide()));
        }
        Some(&(l, true)) => {
            // [.., kept k, reduced l]: a block of k lanes of l elements, lane j -> slot base + j.
            let (k, kept) = layout[layout.len() - 2];
            debug_assert!(!kept);
            let outer = &layout[..layout.len() - 2];
            let mut slot = OuterSlots::new(outer, k);
            for block in s.chunks_exact(k * l) {
                let base = slot.next_base();
                let mut j = 0;
                while j + SLOTS <= k {
                    let mut a: [f64; SLOTS] = std::array::from_fn(|i| acc[base + j + i]);
                    let lanes: [&[T]; SLOTS] =
                        std::array::from_fn(|i| &block[(j + i) * l..(j + i + 1) * l]);
                    // Position p of all SLOTS lanes, then p + 1: indexing keeps the lanes in
                    // lockstep, which an iterator per lane would not.
                    #[allow(clippy::needless_range_loop)]
                    for p in 0..l {
                        for i in 0..SLOTS {
                            a[i] = step(a[i], lanes[i][p].to_wide());
                        }
                    }
                    acc[base + j..base + j + SLOTS].copy_from_slice(&a);
                    j += SLOTS;
                }
                for jj in j..k {
                    let mut a = acc[base + jj];
                    for &v in &block[jj * l..(jj + 1) * l] {
                        a = step(a, v.to_wide());
                    }
                    acc[base + jj] = a;
                }
            }
        }
    }
    let n = count as f64;
    Some(
        acc.into_iter()
            .map(|a| T::from_wide(if f == ReduceOp::Mean { a / n } else { a }))
            .collect(),
    )
}

/// Walks the outer runs of a reduction layout in row-major order, giving the output slot at
/// which each visit's block of `inner` slots starts (reduced runs contribute stride 0).
struct OuterSlots {
    lens: Vec<usize>,
    strides: Vec<usize>,
    index: Vec<usize>,
    offset: usize,
    started: bool,
}

impl OuterSlots {
    fn new(outer: &[(usize, bool)], inner: usize) -> Self {
        let mut strides = vec![0; outer.len()];
        let mut stride = inner;
        for (i, &(len, reduced)) in outer.iter().enumerate().rev() {
            if !reduced {
                strides[i] = stride;
                stride *= len;
            }
        }
        OuterSlots {
            lens: outer.iter().map(|&(l, _)| l).collect(),
            strides,
            index: vec![0; outer.len()],
            offset: 0,
            started: false,
        }
    }

    /// The next visit's first slot (0 on the first call).
    fn next_base(&mut self) -> usize {
        if !self.started {
            self.started = true;
            return 0;
        }
        for d in (0..self.lens.len()).rev() {
            self.index[d] += 1;
            self.offset += self.strides[d];
            if self.index[d] < self.lens[d] {
                return self.offset;
            }
            self.offset -= self.strides[d] * self.lens[d];
            self.index[d] = 0;
        }
        self.offset
    }
}
