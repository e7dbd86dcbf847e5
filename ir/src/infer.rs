//! Shape and dtype inference: the output [`TensorType`] of an op from its inputs' types.

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::TensorType;

/// The output type of `op` applied to inputs of types `inputs`, or a clear error naming the op
/// and the offending shapes/dtypes.
pub fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let _ = inputs;
    Err(Error::invalid(op.name(), "shape inference not implemented yet"))
}
