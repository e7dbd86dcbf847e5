//! Shape/dtype inference for the reduce ops.
//!
//! Dtype policy: the output keeps the input dtype. `norm` needs a float input; `sum`, `mean`,
//! `prod` and `norm` reject bool (arithmetic); `max`/`min` take bool (any/all). `argmax` and
//! `argmin` reject bool and need every index of the reduced extent to be exact in the dtype
//! (at most 256 positions for u8, 2^24 for f32).

use super::common::{axis_of, distinct_axes, expect_inputs, require_float};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{Op, ReduceOp};
use crate::shape::Shape;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let name = op.name();
    match op {
        Op::Reduce { f, axes, keepdims } => {
            expect_inputs(op, inputs, 1)?;
            let x = &inputs[0];
            check_reduce_dtype(name, *f, x)?;
            let reduced = reduced_axes(name, &x.shape, axes.as_deref())?;
            if matches!(f, ReduceOp::Max | ReduceOp::Min) {
                if let Some(&a) = reduced.iter().find(|&&a| x.shape[a] == 0) {
                    return Err(Error::shape(
                        name,
                        format!(
                            "cannot reduce axis {a} of size 0 of {} {} (no identity)",
                            x.dtype, x.shape
                        ),
                    ));
                }
            }
            let shape = reduced_shape(&x.shape, &reduced, *keepdims);
            Ok(TensorType::new(shape, x.dtype))
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            expect_inputs(op, inputs, 1)?;
            let x = &inputs[0];
            if x.dtype == DType::Bool {
                return Err(Error::dtype(
                    name,
                    format!(
                        "is not defined on bool input {} {} (indices are returned in the input dtype)",
                        x.dtype, x.shape
                    ),
                ));
            }
            let (extent, shape) = match axis {
                None => {
                    let shape = if *keepdims {
                        Shape::from(vec![1; x.shape.rank()])
                    } else {
                        Shape::scalar()
                    };
                    (x.shape.numel(), shape)
                }
                Some(a) => {
                    let a = axis_of(name, *a, &x.shape)?;
                    (x.shape[a], reduced_shape(&x.shape, &[a], *keepdims))
                }
            };
            if extent == 0 {
                return Err(Error::shape(
                    name,
                    format!(
                        "cannot take the {name} of an empty extent of {} {}",
                        x.dtype, x.shape
                    ),
                ));
            }
            let max_exact: u64 = match x.dtype {
                DType::U8 => u8::MAX as u64,
                DType::F32 => 1 << 24,
                DType::I32 => i32::MAX as u64,
                _ => u64::MAX,
            };
            if (extent - 1) as u64 > max_exact {
                return Err(Error::dtype(
                    name,
                    format!(
                        "indices up to {} of {} {} are not exact in {} (cast the input first)",
                        extent - 1,
                        x.dtype,
                        x.shape,
                        x.dtype
                    ),
                ));
            }
            Ok(TensorType::new(shape, x.dtype))
        }
        _ => Err(Error::invalid(name, "is not a reduction")),
    }
}

fn check_reduce_dtype(name: &str, f: ReduceOp, x: &TensorType) -> Result<()> {
    match f {
        ReduceOp::Norm => require_float(name, "input", x),
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Prod if x.dtype == DType::Bool => {
            Err(Error::dtype(
                name,
                format!(
                    "is not defined on bool input {} {} (cast it first)",
                    x.dtype, x.shape
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The normalized, sorted axes a reduction removes (`None`: all of them). Out-of-range and
/// duplicate axes (also `1` and `-1` naming one axis) are errors.
fn reduced_axes(name: &str, shape: &Shape, axes: Option<&[isize]>) -> Result<Vec<usize>> {
    let Some(axes) = axes else {
        return Ok((0..shape.rank()).collect());
    };
    let mut out = distinct_axes(name, shape, axes)?;
    out.sort_unstable();
    Ok(out)
}

/// `shape` without the (normalized) `reduced` axes, or with them as 1 when `keepdims`.
fn reduced_shape(shape: &Shape, reduced: &[usize], keepdims: bool) -> Shape {
    let mut dims = Vec::with_capacity(shape.rank());
    for (i, &d) in shape.iter().enumerate() {
        if !reduced.contains(&i) {
            dims.push(d);
        } else if keepdims {
            dims.push(1);
        }
    }
    Shape::from(dims)
}
