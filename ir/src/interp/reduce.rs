//! Reference semantics of the reduce ops.
//!
//! How values are computed (what backends must match, up to float rounding):
//! - float inputs accumulate in f64 whatever their type (f32 sums of many elements stay
//!   accurate) and round once to the element type; `norm` is `sqrt(Σ x²)` in f64;
//! - integer inputs accumulate in i128 with wrap-around and are truncated to the element type
//!   (numpy's wrap on overflow); `mean` divides the exact sum, truncating toward zero;
//! - over an empty set: `sum` is 0, `prod` is 1, `mean` is NaN for floats (0/0) and 0 for
//!   integers ("integer division by zero gives 0"), `norm` is 0; `max`/`min` are rejected by
//!   inference;
//! - `max`/`min` propagate NaN (numpy); on bool they are any/all;
//! - `argmax`/`argmin`: ties take the first index, and a NaN counts as the extremum for both,
//!   so the first NaN's index is returned (numpy).

use super::elementwise::Compute;
use super::strided::{AxisSplit, StridedOffsets};
use crate::error::{Error, Result};
use crate::op::{ArgReduceOp, Op, ReduceOp};
use crate::shape::{normalize_axis, Shape};
use crate::tensor::{DataRef, Element, Tensor, TensorType, TensorView};
use crate::with_data;

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let name = op.name();
    let x = &inputs[0];
    match op {
        Op::Reduce { f, axes, .. } => {
            let reduced: Vec<usize> = match axes {
                None => (0..x.shape.rank()).collect(),
                Some(axes) => axes
                    .iter()
                    .map(|&a| normalize_axis(a, x.shape.rank(), name))
                    .collect::<Result<_>>()?,
            };
            let layout = ReduceLayout::new(&x.shape, &reduced);
            let out_shape = out.shape.clone();
            match x.data {
                DataRef::F32(s) => reduce_float(*f, s, &layout, out_shape),
                DataRef::F64(s) => reduce_float(*f, s, &layout, out_shape),
                DataRef::I32(s) => reduce_int(*f, s, &layout, out_shape),
                DataRef::I64(s) => reduce_int(*f, s, &layout, out_shape),
                DataRef::U8(s) => reduce_int(*f, s, &layout, out_shape),
                DataRef::Bool(s) => reduce_int(*f, s, &layout, out_shape),
            }
        }
        Op::ArgReduce { f, axis, .. } => {
            // View the input as [outer, extent, inner] around the reduced axis (the flattened
            // array is [1, numel, 1]).
            let split = match axis {
                None => AxisSplit::new(&[x.shape.numel()], 0),
                Some(a) => AxisSplit::new(&x.shape, normalize_axis(*a, x.shape.rank(), name)?),
            };
            with_data!(x.data, T, s => {
                let v: Vec<T> = arg_reduce(*f, s, split)
                    .into_iter()
                    .map(|k| T::from_f64(k as f64))
                    .collect();
                Tensor::from_vec(v, out.shape.clone())
            })
        }
        _ => Err(Error::invalid(name, "is not a reduction")),
    }
}

/// Where each input element goes in a reduction: walking the input in row-major order with
/// `strides` (0 on reduced axes) gives the output slot of every element.
struct ReduceLayout {
    dims: Vec<usize>,
    strides: Vec<usize>,
    out_numel: usize,
    /// Elements folded into each output slot.
    count: usize,
}

impl ReduceLayout {
    fn new(shape: &Shape, reduced: &[usize]) -> Self {
        let kept: Vec<usize> = (0..shape.rank()).filter(|a| !reduced.contains(a)).collect();
        let kept_shape = Shape::from(kept.iter().map(|&a| shape[a]).collect::<Vec<_>>());
        let kept_strides = kept_shape.strides();
        let mut strides = vec![0; shape.rank()];
        for (k, &a) in kept.iter().enumerate() {
            strides[a] = kept_strides[k];
        }
        ReduceLayout {
            dims: shape.to_vec(),
            strides,
            out_numel: kept_shape.numel(),
            count: reduced.iter().map(|&a| shape[a]).product(),
        }
    }

    /// Folds every input element into its output slot.
    fn fold<T: Copy, A: Copy>(&self, s: &[T], init: A, step: impl Fn(A, T) -> A) -> Vec<A> {
        let mut acc = vec![init; self.out_numel];
        for (&v, o) in s.iter().zip(StridedOffsets::new(&self.dims, &self.strides)) {
            acc[o] = step(acc[o], v);
        }
        acc
    }
}

fn reduce_float<T: Compute<Wide = f64>>(
    f: ReduceOp,
    s: &[T],
    layout: &ReduceLayout,
    shape: Shape,
) -> Result<Tensor> {
    let acc = match f {
        ReduceOp::Sum | ReduceOp::Mean => layout.fold(s, 0.0, |a, v| a + v.to_wide()),
        ReduceOp::Prod => layout.fold(s, 1.0, |a, v| a * v.to_wide()),
        ReduceOp::Norm => layout.fold(s, 0.0, |a, v| {
            let w = v.to_wide();
            a + w * w
        }),
        ReduceOp::Max => layout.fold(s, f64::NEG_INFINITY, |a: f64, v| {
            let w = v.to_wide();
            if a.is_nan() || a >= w {
                a
            } else {
                w
            }
        }),
        ReduceOp::Min => layout.fold(s, f64::INFINITY, |a: f64, v| {
            let w = v.to_wide();
            if a.is_nan() || a <= w {
                a
            } else {
                w
            }
        }),
    };
    let count = layout.count as f64;
    let v: Vec<T> = acc
        .into_iter()
        .map(|a| {
            T::narrow(match f {
                ReduceOp::Mean => a / count,
                ReduceOp::Norm => a.sqrt(),
                _ => a,
            })
        })
        .collect();
    Tensor::from_vec(v, shape)
}

fn reduce_int<T: Compute<Wide = i64>>(
    f: ReduceOp,
    s: &[T],
    layout: &ReduceLayout,
    shape: Shape,
) -> Result<Tensor> {
    let wide = |v: T| v.to_wide() as i128;
    let acc = match f {
        ReduceOp::Sum | ReduceOp::Mean => layout.fold(s, 0i128, |a, v| a.wrapping_add(wide(v))),
        ReduceOp::Prod => layout.fold(s, 1i128, |a, v| a.wrapping_mul(wide(v))),
        ReduceOp::Norm => layout.fold(s, 0i128, |a, v| a.wrapping_add(wide(v) * wide(v))),
        ReduceOp::Max => layout.fold(s, i128::MIN, |a, v| a.max(wide(v))),
        ReduceOp::Min => layout.fold(s, i128::MAX, |a, v| a.min(wide(v))),
    };
    let count = layout.count as i128;
    let v: Vec<T> = acc
        .into_iter()
        .map(|a| {
            let r = match f {
                ReduceOp::Mean if count == 0 => 0,
                ReduceOp::Mean => a / count,
                // Inference admits norm on floats only; integers would get the truncated root.
                ReduceOp::Norm => (a as f64).sqrt() as i128,
                _ => a,
            };
            // Truncating i128 -> i64 -> T keeps the value modulo 2^bits: wrap-around.
            T::narrow(r as i64)
        })
        .collect();
    Tensor::from_vec(v, shape)
}

fn is_nan<T: PartialOrd>(v: T) -> bool {
    v.partial_cmp(&v).is_none()
}

/// The index along the axis of the max/min of every lane of `split`.
fn arg_reduce<T: Element>(f: ArgReduceOp, s: &[T], split: AxisSplit) -> Vec<usize> {
    let better = |v: T, best: T| match f {
        ArgReduceOp::Argmax => v > best,
        ArgReduceOp::Argmin => v < best,
    };
    split
        .lanes()
        .map(|(o, i)| {
            let mut lane = split.lane(o, i).map(|k| s[k]).enumerate();
            let Some((mut best_k, mut best)) = lane.next() else {
                return 0;
            };
            if !is_nan(best) {
                for (k, v) in lane {
                    if is_nan(v) {
                        best_k = k;
                        break;
                    }
                    if better(v, best) {
                        best_k = k;
                        best = v;
                    }
                }
            }
            best_k
        })
        .collect()
}
