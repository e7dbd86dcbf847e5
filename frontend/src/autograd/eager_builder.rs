//! The VJP builder of eager backward: each op runs at once.

use crate::context::Context;
use crate::ndarray::{apply, apply_on, NDArray};
use kiln_ir::vjp::VjpBuilder;
use kiln_ir::{DType, Op, Result, Shape};

/// Runs the ops of a VJP immediately on `ctx`'s kernels. Backward calls it with recording
/// paused, so the gradients it produces carry no history (no second-order tape).
pub(crate) struct EagerBuilder {
    /// The device for ops without inputs (a VJP's `Full`).
    pub(crate) ctx: Context,
}

impl VjpBuilder for EagerBuilder {
    type Value = NDArray;

    fn apply(&mut self, op: Op, inputs: &[&NDArray]) -> Result<NDArray> {
        if inputs.is_empty() {
            apply_on(op, inputs, self.ctx)
        } else {
            apply(op, inputs)
        }
    }

    fn shape(&self, v: &NDArray) -> Shape {
        v.shape().clone()
    }

    fn dtype(&self, v: &NDArray) -> DType {
        v.dtype()
    }
}
