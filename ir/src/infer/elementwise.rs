//! Shape/dtype inference for the elementwise ops.
//!
//! Dtype policy (shared with the interpreter in `crate::interp`):
//! - float-only unary ops (`UnaryOp::needs_float`) reject integer and bool inputs;
//! - bool tensors take only `logical_not`, `eq`, `ne`, `maximum`, `minimum` (logical or/and),
//!   `where` (as the condition or as both branches) and `cast`: arithmetic, ordering and
//!   `clip` on bool are dtype errors;
//! - binary ops and `where`'s branches need one dtype on both sides (no implicit promotion).

use super::common::{check_size, expect_inputs, require_float};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let name = op.name();
    match op {
        Op::Unary { f } => {
            expect_inputs(op, inputs, 1)?;
            let x = &inputs[0];
            check_unary_dtype(name, *f, x)?;
            Ok(x.clone())
        }
        Op::Binary { f } => {
            expect_inputs(op, inputs, 2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            one_dtype(name, "inputs", a, b)?;
            check_binary_dtype(name, *f, a)?;
            let shape = a.shape.broadcast(&b.shape, name)?;
            check_size(name, &shape, a.dtype)?;
            Ok(TensorType::new(shape, a.dtype))
        }
        Op::Scalar { f, .. } => {
            expect_inputs(op, inputs, 1)?;
            check_binary_dtype(name, *f, &inputs[0])?;
            Ok(inputs[0].clone())
        }
        Op::Where => {
            expect_inputs(op, inputs, 3)?;
            let (c, x, y) = (&inputs[0], &inputs[1], &inputs[2]);
            one_dtype(name, "x and y", x, y)?;
            let shape = c
                .shape
                .broadcast(&x.shape, name)
                .and_then(|s| s.broadcast(&y.shape, name))
                .map_err(|_| {
                    Error::shape(
                        name,
                        format!(
                            "cannot broadcast shapes {} (cond), {} (x) and {} (y)",
                            c.shape, x.shape, y.shape
                        ),
                    )
                })?;
            check_size(name, &shape, x.dtype)?;
            Ok(TensorType::new(shape, x.dtype))
        }
        Op::Clip { min, max } => {
            expect_inputs(op, inputs, 1)?;
            let x = &inputs[0];
            if min > max || min.is_nan() || max.is_nan() {
                return Err(Error::invalid(
                    name,
                    format!("needs min <= max, got min={min} max={max}"),
                ));
            }
            if x.dtype == DType::Bool {
                return Err(Error::dtype(
                    name,
                    format!("is not defined on bool input {} {}", x.dtype, x.shape),
                ));
            }
            Ok(x.clone())
        }
        Op::Cast { dtype } => {
            expect_inputs(op, inputs, 1)?;
            Ok(TensorType::new(inputs[0].shape.clone(), *dtype))
        }
        _ => Err(Error::invalid(name, "is not an elementwise op")),
    }
}

fn check_unary_dtype(name: &str, f: UnaryOp, x: &TensorType) -> Result<()> {
    if x.dtype == DType::Bool && f != UnaryOp::LogicalNot {
        return Err(Error::dtype(
            name,
            format!(
                "is not defined on bool input {} {} (cast it first)",
                x.dtype, x.shape
            ),
        ));
    }
    if f.needs_float() {
        require_float(name, "input", x)?;
    }
    Ok(())
}

/// True when binary op `f` is defined on bool operands.
pub(crate) fn binary_allows_bool(f: BinaryOp) -> bool {
    matches!(
        f,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Maximum | BinaryOp::Minimum
    )
}

fn check_binary_dtype(name: &str, f: BinaryOp, x: &TensorType) -> Result<()> {
    if x.dtype == DType::Bool && !binary_allows_bool(f) {
        return Err(Error::dtype(
            name,
            format!(
                "is not defined on bool input {} {} (only eq, ne, maximum and minimum are)",
                x.dtype, x.shape
            ),
        ));
    }
    Ok(())
}

/// Errors unless `a` and `b` (named together by `what`) share a dtype: no implicit promotion.
fn one_dtype(name: &str, what: &str, a: &TensorType, b: &TensorType) -> Result<()> {
    if a.dtype != b.dtype {
        return Err(Error::dtype(
            name,
            format!(
                "{what} must have one dtype, got {} {} and {} {}",
                a.dtype, a.shape, b.dtype, b.shape
            ),
        ));
    }
    Ok(())
}
