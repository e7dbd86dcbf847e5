//! Imperative autograd: `record`, the tape, `backward`.
//!
//! [`crate::ndarray::apply`] calls [`record_op`] for every op run while recording; `backward`
//! walks the tape in reverse, calling each op's VJP (`kiln_ir::vjp`) with an eager builder.

use crate::ndarray::NDArray;
use kiln_ir::Op;

/// Per-array autograd state (gradient buffer, grad_req, the tape entry that produced it).
#[derive(Debug, Default)]
pub struct AutogradMeta {}

/// True inside [`record`] (and not inside `pause`).
pub fn is_recording() -> bool {
    false
}

/// True when layers should behave as in training (dropout active, batch statistics).
pub fn is_training() -> bool {
    false
}

/// Puts one executed op on the tape (called by `apply` only while recording).
pub(crate) fn record_op(op: &Op, inputs: &[&NDArray], output: &NDArray) {
    let _ = (op, inputs, output);
}
