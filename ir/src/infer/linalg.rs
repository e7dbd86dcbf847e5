//! Shape/dtype inference for the linalg ops: `dot`, `batch_dot`, `fully_connected`.
//!
//! All operands must be floating point (f32 or f64) and share one dtype, which the output keeps.

use super::common::{expect_inputs, same_float};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    match op {
        Op::Dot {
            transpose_a,
            transpose_b,
        } => {
            expect_inputs(op, inputs, 2)?;
            same_float(op, &named(inputs))?;
            let shape = dot_shape(
                op,
                &inputs[0].shape,
                &inputs[1].shape,
                *transpose_a,
                *transpose_b,
            )?;
            Ok(TensorType::new(shape, inputs[0].dtype))
        }
        Op::BatchDot {
            transpose_a,
            transpose_b,
        } => {
            expect_inputs(op, inputs, 2)?;
            same_float(op, &named(inputs))?;
            let shape = batch_dot_shape(
                op,
                &inputs[0].shape,
                &inputs[1].shape,
                *transpose_a,
                *transpose_b,
            )?;
            Ok(TensorType::new(shape, inputs[0].dtype))
        }
        Op::FullyConnected { flatten, no_bias } => {
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            same_float(op, &named(inputs))?;
            let shape = fc_shape(op, inputs, *flatten)?;
            Ok(TensorType::new(shape, inputs[0].dtype))
        }
        _ => Err(Error::invalid(op.name(), "not a linear-algebra op")),
    }
}

/// The shape of an operand after MXNet's `transpose` flag: all axes reversed.
fn reversed_if(shape: &Shape, flag: bool) -> Shape {
    let mut dims: Vec<usize> = shape.dims().to_vec();
    if flag {
        dims.reverse();
    }
    Shape::from(dims)
}

/// MXNet `dot`: contracts the last axis of (possibly reversed) `a` with the first axis of
/// (possibly reversed) `b`; 1-D·1-D gives a scalar.
fn dot_shape(op: &Op, a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<Shape> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err(Error::shape(
            op.name(),
            format!("needs operands of rank >= 1, got {a} and {b}"),
        ));
    }
    let a2 = reversed_if(a, ta);
    let b2 = reversed_if(b, tb);
    let ka = a2[a2.rank() - 1];
    let kb = b2[0];
    if ka != kb {
        return Err(Error::shape(
            op.name(),
            format!(
                "cannot contract {a2} with {b2} ({ka} != {kb}){}",
                transpose_note(a, b, ta, tb)
            ),
        ));
    }
    let mut dims: Vec<usize> = a2[..a2.rank() - 1].to_vec();
    dims.extend_from_slice(&b2[1..]);
    Ok(Shape::from(dims))
}

/// Mentions the original shapes when a transpose flag changed them, so the message is clear.
fn transpose_note(a: &Shape, b: &Shape, ta: bool, tb: bool) -> String {
    if ta || tb {
        format!(" [inputs {a} and {b}, transpose_a={ta}, transpose_b={tb}]")
    } else {
        String::new()
    }
}

/// `batch_dot`: equal ranks >= 3, equal leading (batch) dims, a matrix product on the last two.
fn batch_dot_shape(op: &Op, a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<Shape> {
    if a.rank() < 3 || a.rank() != b.rank() {
        return Err(Error::shape(
            op.name(),
            format!("needs two operands of one rank >= 3, got {a} and {b}"),
        ));
    }
    let r = a.rank();
    if a[..r - 2] != b[..r - 2] {
        return Err(Error::shape(
            op.name(),
            format!(
                "batch dims differ: {} vs {} (inputs {a} and {b})",
                Shape::new(&a[..r - 2]),
                Shape::new(&b[..r - 2])
            ),
        ));
    }
    let (n, ka) = if ta {
        (a[r - 1], a[r - 2])
    } else {
        (a[r - 2], a[r - 1])
    };
    let (kb, m) = if tb {
        (b[r - 1], b[r - 2])
    } else {
        (b[r - 2], b[r - 1])
    };
    if ka != kb {
        return Err(Error::shape(
            op.name(),
            format!(
                "cannot contract {a} with {b} ({ka} != {kb}, transpose_a={ta}, transpose_b={tb})"
            ),
        ));
    }
    let mut dims: Vec<usize> = a[..r - 2].to_vec();
    dims.push(n);
    dims.push(m);
    Ok(Shape::from(dims))
}

/// `fully_connected`: `x · wᵀ + b` with `w [units, in]`.
fn fc_shape(op: &Op, inputs: &[TensorType], flatten: bool) -> Result<Shape> {
    let x = &inputs[0].shape;
    let w = &inputs[1].shape;
    if x.rank() == 0 {
        return Err(Error::shape(
            op.name(),
            format!("needs an input of rank >= 1, got {x}"),
        ));
    }
    if w.rank() != 2 {
        return Err(Error::shape(
            op.name(),
            format!("weight must be [units, in], got {w}"),
        ));
    }
    let units = w[0];
    let (lead, inner): (Vec<usize>, usize) = if flatten {
        let inner = x[1..]
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::shape(op.name(), format!("input {x} has too many features")))?;
        (vec![x[0]], inner)
    } else {
        (x[..x.rank() - 1].to_vec(), x[x.rank() - 1])
    };
    if w[1] != inner {
        return Err(Error::shape(
            op.name(),
            format!(
                "weight {w} expects {} input features, input {x} has {inner} (flatten={flatten})",
                w[1]
            ),
        ));
    }
    if let Some(b) = inputs.get(2) {
        if b.shape.dims() != [units] {
            return Err(Error::shape(
                op.name(),
                format!("bias must be [{units}] for weight {w}, got {}", b.shape),
            ));
        }
    }
    let mut dims = lead;
    dims.push(units);
    Ok(Shape::from(dims))
}

/// The operands named for dtype errors: `a` and `b`, or fully_connected's data, weight, bias.
fn named(inputs: &[TensorType]) -> Vec<(&'static str, &TensorType)> {
    let names: &[&'static str] = if inputs.len() == 2 {
        &["a", "b"]
    } else {
        &["data", "weight", "bias"]
    };
    names.iter().copied().zip(inputs).collect()
}
