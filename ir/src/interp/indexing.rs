//! Reference semantics of the indexing ops.

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::{Tensor, TensorType, TensorView};

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let _ = (inputs, out);
    Err(Error::invalid(op.name(), "not implemented in the interpreter yet"))
}
