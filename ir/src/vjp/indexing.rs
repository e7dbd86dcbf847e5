//! VJPs of the indexing ops: scatter-adds back into the data's shape; indices get `None`.

use super::{expect_inputs, VjpBuilder};
use crate::error::{Error, Result};
use crate::op::Op;

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    g: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    match op {
        Op::Take { axis } => {
            expect_inputs(op, inputs, 2)?;
            let shape = b.shape(&inputs[0]);
            let gd = b.apply(Op::TakeGrad { axis: *axis, shape }, &[&inputs[1], g])?;
            Ok(vec![Some(gd), None])
        }
        Op::Gather { axis } => {
            expect_inputs(op, inputs, 2)?;
            let shape = b.shape(&inputs[0]);
            let gd = b.apply(Op::GatherGrad { axis: *axis, shape }, &[&inputs[1], g])?;
            Ok(vec![Some(gd), None])
        }
        Op::Pick { axis, keepdims } => {
            expect_inputs(op, inputs, 2)?;
            let (data, index) = (&inputs[0], &inputs[1]);
            let shape = b.shape(data);
            let ax = shape.axis(*axis, op.name())?;
            // GatherGrad wants index and gradient with the data's rank: put `axis` back.
            let index = if b.shape(index).rank() < shape.rank() {
                b.apply(Op::ExpandDims { axis: ax as isize }, &[index])?
            } else {
                index.clone()
            };
            let g = if *keepdims {
                g.clone()
            } else {
                b.apply(Op::ExpandDims { axis: ax as isize }, &[g])?
            };
            let gd = b.apply(
                Op::GatherGrad {
                    axis: ax as isize,
                    shape,
                },
                &[&index, &g],
            )?;
            Ok(vec![Some(gd), None])
        }
        Op::OneHot { .. } => {
            expect_inputs(op, inputs, 1)?;
            Ok(vec![None])
        }
        // Both scatter-adds are linear in dy; their adjoints are the gathers they invert.
        Op::TakeGrad { axis, .. } => {
            expect_inputs(op, inputs, 2)?;
            let gdy = b.apply(Op::Take { axis: *axis }, &[g, &inputs[0]])?;
            Ok(vec![None, Some(gdy)])
        }
        Op::GatherGrad { axis, .. } => {
            expect_inputs(op, inputs, 2)?;
            let gdy = b.apply(Op::Gather { axis: *axis }, &[g, &inputs[0]])?;
            Ok(vec![None, Some(gdy)])
        }
        _ => Err(Error::invalid(op.name(), "not an indexing op")),
    }
}
