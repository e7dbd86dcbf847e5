//! Shape/dtype inference for the indexing ops (`take`, `pick`, `one_hot`, `gather`) and their
//! gradient helpers (`take_grad`, `gather_grad`).
//!
//! Indices may be of any numeric dtype (floats truncate toward zero); `bool` indices are
//! rejected. Gathered values keep the data's dtype, scattered gradients keep `dy`'s. Indexing
//! into an empty axis is an error whenever the output would need a value from it.

use super::common::{axis_of, check_size, expect_inputs, require_numeric};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let name = op.name();
    match op {
        Op::Take { axis } => {
            expect_inputs(op, inputs, 2)?;
            let (data, indices) = (&inputs[0], &inputs[1]);
            require_numeric(name, "indices", indices)?;
            let a = axis_of(name, *axis, &data.shape)?;
            let shape = take_shape(&data.shape, a, &indices.shape);
            nonempty_axis(name, &data.shape, a, shape.numel(), &indices.shape)?;
            Ok(TensorType::new(shape, data.dtype))
        }
        Op::Pick { axis, keepdims } => {
            expect_inputs(op, inputs, 2)?;
            let (data, index) = (&inputs[0], &inputs[1]);
            require_numeric(name, "index", index)?;
            let a = axis_of(name, *axis, &data.shape)?;
            let mut kept = data.shape.clone();
            kept[a] = 1;
            let mut dropped = data.shape.to_vec();
            dropped.remove(a);
            let dropped = Shape::from(dropped);
            if index.shape != kept && index.shape != dropped {
                return Err(Error::shape(
                    name,
                    format!(
                        "index shape {} must be data shape {} without axis {axis} ({dropped}) \
                         or with it as size 1 ({kept})",
                        index.shape, data.shape
                    ),
                ));
            }
            nonempty_axis(name, &data.shape, a, kept.numel(), &index.shape)?;
            let shape = if *keepdims { kept } else { dropped };
            Ok(TensorType::new(shape, data.dtype))
        }
        Op::OneHot { depth, dtype, .. } => {
            expect_inputs(op, inputs, 1)?;
            let indices = &inputs[0];
            require_numeric(name, "indices", indices)?;
            let mut dims = indices.shape.to_vec();
            dims.push(*depth);
            let shape = Shape::from(dims);
            check_size(name, &shape, *dtype)?;
            Ok(TensorType::new(shape, *dtype))
        }
        Op::Gather { axis } => {
            expect_inputs(op, inputs, 2)?;
            let (data, indices) = (&inputs[0], &inputs[1]);
            require_numeric(name, "indices", indices)?;
            let a = axis_of(name, *axis, &data.shape)?;
            along_axis(name, &data.shape, a, &indices.shape, "data")?;
            nonempty_axis(name, &data.shape, a, indices.shape.numel(), &indices.shape)?;
            Ok(TensorType::new(indices.shape.clone(), data.dtype))
        }
        Op::TakeGrad { axis, shape } => {
            expect_inputs(op, inputs, 2)?;
            let (indices, dy) = (&inputs[0], &inputs[1]);
            require_numeric(name, "indices", indices)?;
            require_numeric(name, "dy", dy)?;
            let a = axis_of(name, *axis, shape)?;
            let expected = take_shape(shape, a, &indices.shape);
            if dy.shape != expected {
                return Err(Error::shape(
                    name,
                    format!(
                        "dy has shape {} but take from {shape} with indices {} along axis {axis} \
                         gives {expected}",
                        dy.shape, indices.shape
                    ),
                ));
            }
            check_size(name, shape, dy.dtype)?;
            nonempty_axis(name, shape, a, dy.shape.numel(), &indices.shape)?;
            Ok(TensorType::new(shape.clone(), dy.dtype))
        }
        Op::GatherGrad { axis, shape } => {
            expect_inputs(op, inputs, 2)?;
            let (indices, dy) = (&inputs[0], &inputs[1]);
            require_numeric(name, "indices", indices)?;
            require_numeric(name, "dy", dy)?;
            if indices.shape != dy.shape {
                return Err(Error::shape(
                    name,
                    format!(
                        "indices {} and dy {} must have one shape",
                        indices.shape, dy.shape
                    ),
                ));
            }
            let a = axis_of(name, *axis, shape)?;
            along_axis(name, shape, a, &indices.shape, "shape")?;
            check_size(name, shape, dy.dtype)?;
            nonempty_axis(name, shape, a, dy.shape.numel(), &indices.shape)?;
            Ok(TensorType::new(shape.clone(), dy.dtype))
        }
        _ => Err(Error::invalid(name, "is not an indexing op")),
    }
}

/// `data [d0.., A, ..dn]` taken with `indices [i..]` along `axis`: `[d0.., i.., ..dn]`.
fn take_shape(data: &Shape, axis: usize, indices: &Shape) -> Shape {
    let mut dims = data[..axis].to_vec();
    dims.extend_from_slice(indices);
    dims.extend_from_slice(&data[axis + 1..]);
    dims.into()
}

/// Checks that `indices` has `data`'s rank and dims except along `axis` (take_along_axis).
fn along_axis(name: &str, data: &Shape, axis: usize, indices: &Shape, what: &str) -> Result<()> {
    let ok = indices.rank() == data.rank()
        && indices
            .iter()
            .zip(data.iter())
            .enumerate()
            .all(|(k, (i, d))| k == axis || i == d);
    if ok {
        Ok(())
    } else {
        Err(Error::shape(
            name,
            format!(
                "indices {indices} must have the rank and dims of {what} {data} except along \
                 axis {axis}"
            ),
        ))
    }
}

/// An axis of size 0 has nothing to index; that is an error only when some element needs it.
fn nonempty_axis(
    name: &str,
    data: &Shape,
    axis: usize,
    needed: usize,
    indices: &Shape,
) -> Result<()> {
    if data[axis] == 0 && needed > 0 {
        return Err(Error::shape(
            name,
            format!("cannot index axis {axis} of size 0 in {data} with indices {indices}"),
        ));
    }
    Ok(())
}
