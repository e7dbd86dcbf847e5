//! VJPs of the reductions: the gradient is broadcast back over the reduced axes.

use super::{expect_inputs, normalize_axes, VjpBuilder};
use crate::error::{Error, Result};
use crate::op::{BinaryOp, Op, ReduceOp};

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    y: &B::Value,
    g: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    expect_inputs(op, inputs, 1)?;
    let x = &inputs[0];
    let (f, axes) = match op {
        Op::Reduce { f, axes, .. } => (*f, axes),
        // The index of an extremum is piecewise constant.
        Op::ArgReduce { .. } => return Ok(vec![None]),
        _ => return Err(Error::invalid(op.name(), "not a reduction")),
    };
    let xs = b.shape(x);
    let axes = match axes {
        None => (0..xs.rank()).collect(),
        Some(a) => normalize_axes(a, xs.rank(), op)?,
    };
    // The output's shape with the reduced axes kept as size 1: g and y reshaped to it
    // broadcast against x.
    let mut kept = xs.clone();
    for &a in &axes {
        kept[a] = 1;
    }
    let gk = b.reshape(g, &kept)?;
    let gx = match f {
        ReduceOp::Sum => b.broadcast_to(&gk, &xs)?,
        ReduceOp::Mean => {
            let count: usize = axes.iter().map(|&a| xs[a]).product();
            let t = b.scalar(BinaryOp::Div, &gk, count as f64)?;
            b.broadcast_to(&t, &xs)?
        }
        ReduceOp::Max | ReduceOp::Min => {
            // Every element equal to the extremum gets the whole gradient (ties not split).
            let yk = b.reshape(y, &kept)?;
            let mask = b.binary(BinaryOp::Eq, x, &yk)?;
            b.binary(BinaryOp::Mul, &mask, &gk)?
        }
        ReduceOp::Prod => {
            // d/dx_i prod(x) = prod(x) / x_i (not finite where x_i == 0).
            let yk = b.reshape(y, &kept)?;
            let t = b.binary(BinaryOp::Mul, &gk, &yk)?;
            b.binary(BinaryOp::Div, &t, x)?
        }
        ReduceOp::Norm => {
            // d/dx sqrt(sum(x^2)) = x / norm (not finite where the norm is 0).
            let yk = b.reshape(y, &kept)?;
            let t = b.binary(BinaryOp::Div, &gk, &yk)?;
            b.binary(BinaryOp::Mul, x, &t)?
        }
    };
    Ok(vec![Some(gx)])
}
