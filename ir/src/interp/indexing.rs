//! Reference semantics of the indexing ops and their gradient helpers.
//!
//! Every op views its data as `[outer, A, inner]` around the indexed axis (`A` its size), so
//! one index selects a contiguous row of `inner` elements. Indices are truncated toward zero
//! and clipped to `[0, A-1]` (MXNet's `mode='clip'`); NaN reads as 0. The scatter-adds
//! accumulate, so repeated indices sum their gradients.

use super::strided::AxisSplit;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::normalize_axis;
use crate::tensor::{DataRef, Element, Storage, Tensor, TensorType, TensorView};
use crate::with_data;

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let name = op.name();
    let storage = match op {
        Op::Take { axis } => {
            let (data, indices) = (&inputs[0], &inputs[1]);
            let a = normalize_axis(*axis, data.shape.rank(), name)?;
            let AxisSplit { outer, len, inner } = AxisSplit::new(data.shape.dims(), a);
            let idx = clipped_indices(indices.data, len);
            with_data!(data.data, T, s => {
                let mut v = Vec::with_capacity(out.shape.numel());
                for o in 0..outer {
                    let block = &s[o * len * inner..];
                    if inner == 1 {
                        v.extend(idx.iter().map(|&k| block[k]));
                    } else {
                        for &k in &idx {
                            v.extend_from_slice(&block[k * inner..(k + 1) * inner]);
                        }
                    }
                }
                T::into_storage(v)
            })
        }
        Op::Pick { axis, .. } => {
            let (data, index) = (&inputs[0], &inputs[1]);
            let a = normalize_axis(*axis, data.shape.rank(), name)?;
            let AxisSplit { outer, len, inner } = AxisSplit::new(data.shape.dims(), a);
            let idx = clipped_indices(index.data, len);
            with_data!(data.data, T, s => {
                let mut v = Vec::with_capacity(outer * inner);
                for o in 0..outer {
                    for i in 0..inner {
                        v.push(s[(o * len + idx[o * inner + i]) * inner + i]);
                    }
                }
                T::into_storage(v)
            })
        }
        Op::OneHot {
            depth,
            on_value,
            off_value,
            dtype,
        } => {
            let idx = inputs[0].data.to_f64_vec();
            let (on, off) = (*on_value, *off_value);
            match dtype {
                DType::F32 => one_hot::<f32>(&idx, *depth, on, off),
                DType::F64 => one_hot::<f64>(&idx, *depth, on, off),
                DType::I32 => one_hot::<i32>(&idx, *depth, on, off),
                DType::I64 => one_hot::<i64>(&idx, *depth, on, off),
                DType::U8 => one_hot::<u8>(&idx, *depth, on, off),
                DType::Bool => one_hot::<bool>(&idx, *depth, on, off),
            }
        }
        Op::Gather { axis } => {
            let (data, indices) = (&inputs[0], &inputs[1]);
            let a = normalize_axis(*axis, data.shape.rank(), name)?;
            let AxisSplit { outer, len, inner } = AxisSplit::new(data.shape.dims(), a);
            let count = indices.shape[a];
            let idx = clipped_indices(indices.data, len);
            with_data!(data.data, T, s => {
                let mut v = Vec::with_capacity(idx.len());
                for o in 0..outer {
                    for j in 0..count {
                        let row = (o * count + j) * inner;
                        for i in 0..inner {
                            v.push(s[(o * len + idx[row + i]) * inner + i]);
                        }
                    }
                }
                T::into_storage(v)
            })
        }
        Op::TakeGrad { axis, shape } => {
            let (indices, dy) = (&inputs[0], &inputs[1]);
            let a = normalize_axis(*axis, shape.rank(), name)?;
            let AxisSplit { outer, len, inner } = AxisSplit::new(shape.dims(), a);
            let idx = clipped_indices(indices.data, len);
            with_data!(dy.data, T, g => {
                let mut dx = vec![T::default(); shape.numel()];
                for o in 0..outer {
                    for (j, &k) in idx.iter().enumerate() {
                        let src = (o * idx.len() + j) * inner;
                        let dst = (o * len + k) * inner;
                        for (d, &v) in dx[dst..dst + inner].iter_mut().zip(&g[src..src + inner]) {
                            d.accumulate(v);
                        }
                    }
                }
                T::into_storage(dx)
            })
        }
        Op::GatherGrad { axis, shape } => {
            let (indices, dy) = (&inputs[0], &inputs[1]);
            let a = normalize_axis(*axis, shape.rank(), name)?;
            let AxisSplit { outer, len, inner } = AxisSplit::new(shape.dims(), a);
            let count = indices.shape[a];
            let idx = clipped_indices(indices.data, len);
            with_data!(dy.data, T, g => {
                let mut dx = vec![T::default(); shape.numel()];
                for o in 0..outer {
                    for j in 0..count {
                        let row = (o * count + j) * inner;
                        for i in 0..inner {
                            dx[(o * len + idx[row + i]) * inner + i].accumulate(g[row + i]);
                        }
                    }
                }
                T::into_storage(dx)
            })
        }
        _ => return Err(Error::invalid(name, "is not an indexing op")),
    };
    Tensor::new(out.shape.clone(), storage)
}

/// Indices truncated toward zero and clipped to `[0, len-1]` (NaN and `len == 0` give 0).
pub(super) fn clipped_indices(indices: DataRef<'_>, len: usize) -> Vec<usize> {
    let max = len.saturating_sub(1);
    with_data!(indices, T, s => s
        .iter()
        .map(|v| {
            let t = v.to_f64().trunc();
            if t.is_nan() || t <= 0.0 {
                0
            } else if t >= max as f64 {
                max
            } else {
                t as usize
            }
        })
        .collect())
}

/// Rows of `depth` off values with `on` at each (truncated) index in `[0, depth)`.
fn one_hot<T: Element>(indices: &[f64], depth: usize, on: f64, off: f64) -> Storage {
    let (on, off) = (T::from_f64(on), T::from_f64(off));
    let mut v = vec![off; indices.len() * depth];
    for (row, &x) in v.chunks_exact_mut(depth.max(1)).zip(indices) {
        let t = x.trunc();
        if t >= 0.0 && t < depth as f64 {
            row[t as usize] = on;
        }
    }
    T::into_storage(v)
}

/// In-place addition for scatter-adds: wrapping for integers (like their kernels), logical
/// or for bool (inference rejects bool gradients; the impl exists for the dtype dispatch).
trait Accumulate {
    fn accumulate(&mut self, v: Self);
}

macro_rules! accumulate_float {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            fn accumulate(&mut self, v: Self) {
                *self += v;
            }
        }
    )*};
}
macro_rules! accumulate_int {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            fn accumulate(&mut self, v: Self) {
                *self = self.wrapping_add(v);
            }
        }
    )*};
}
accumulate_float!(f32, f64);
accumulate_int!(i32, i64, u8);
impl Accumulate for bool {
    fn accumulate(&mut self, v: Self) {
        *self |= v;
    }
}
