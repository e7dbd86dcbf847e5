//! The reference interpreter: the semantics every backend must match.
//!
//! Written for clarity over speed; backends are tested against it.

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::{Tensor, TensorView};

/// Evaluates one op on concrete inputs.
pub fn eval(op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor> {
    let _ = inputs;
    Err(Error::invalid(op.name(), "not implemented in the interpreter yet"))
}
