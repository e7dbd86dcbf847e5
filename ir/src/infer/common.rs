//! Checks shared by every inference family: input count, output size, axis normalization and
//! dtype requirements. Each error names the op and the shapes/dtypes involved.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::TensorType;

/// Checks the number of inputs.
pub(crate) fn expect_inputs(op: &Op, inputs: &[TensorType], n: usize) -> Result<()> {
    if inputs.len() != n {
        return Err(Error::invalid(
            op.name(),
            format!("expects {n} input(s), got {}", inputs.len()),
        ));
    }
    Ok(())
}

/// Rejects shapes whose element count or byte size does not fit in memory addressing
/// (`Shape::numel` would overflow, an allocation would abort). A shape with a 0 dim still has
/// to have a representable product of the others, so `numel` never overflows.
pub(crate) fn check_size(name: &str, shape: &Shape, dtype: DType) -> Result<()> {
    let bytes = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size_of()));
    match bytes {
        Some(b) if b <= isize::MAX as usize => Ok(()),
        _ => Err(Error::shape(
            name,
            format!("output {dtype} {shape} is too large to allocate"),
        )),
    }
}

/// The output type `shape`/`dtype`, after [`check_size`].
pub(crate) fn sized(name: &str, shape: Shape, dtype: DType) -> Result<TensorType> {
    check_size(name, &shape, dtype)?;
    Ok(TensorType::new(shape, dtype))
}

/// Normalizes `axis` against `shape`, with an error that names the shape.
pub(crate) fn axis_of(name: &str, axis: isize, shape: &Shape) -> Result<usize> {
    let r = shape.rank() as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::shape(
            name,
            format!(
                "axis {axis} is out of range for {shape} of rank {}",
                shape.rank()
            ),
        ))
    }
}

/// Normalizes `axes`, rejecting repeats (as numpy does).
pub(crate) fn distinct_axes(name: &str, shape: &Shape, axes: &[isize]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &axis in axes {
        let a = axis_of(name, axis, shape)?;
        if out.contains(&a) {
            return Err(Error::invalid(
                name,
                format!("axis {axis} is repeated in {axes:?} (input {shape})"),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

/// Errors unless `t` is f32 or f64; `what` names the operand ("input", "probabilities").
pub(crate) fn require_float(name: &str, what: &str, t: &TensorType) -> Result<()> {
    if !t.dtype.is_float() {
        return Err(Error::dtype(
            name,
            format!("needs a floating-point {what}, got {} {}", t.dtype, t.shape),
        ));
    }
    Ok(())
}

/// Errors when `t` is bool; `what` names the operand ("indices", "dy").
pub(crate) fn require_numeric(name: &str, what: &str, t: &TensorType) -> Result<()> {
    if t.dtype == DType::Bool {
        return Err(Error::dtype(
            name,
            format!("{what} must be numeric, got bool {}", t.shape),
        ));
    }
    Ok(())
}

/// Checks that every named input is f32 or f64 and that they all share the first one's dtype.
pub(crate) fn same_float(op: &Op, inputs: &[(&str, &TensorType)]) -> Result<()> {
    let (first, t0) = inputs[0];
    if !t0.dtype.is_float() {
        return Err(Error::dtype(
            op.name(),
            format!("needs f32 or f64 data, got {} {first}", t0.dtype),
        ));
    }
    for (name, t) in &inputs[1..] {
        if t.dtype != t0.dtype {
            return Err(Error::dtype(
                op.name(),
                format!(
                    "inputs must share one dtype, got {} {first} and {} {name}",
                    t0.dtype, t.dtype
                ),
            ));
        }
    }
    Ok(())
}
