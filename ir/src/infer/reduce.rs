//! Shape/dtype inference for the reduce ops.

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let _ = inputs;
    Err(Error::invalid(op.name(), "shape inference not implemented yet"))
}
