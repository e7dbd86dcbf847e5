//! kiln-backends: engines that execute kiln ops.
//!
//! [`Kernels`] is the seam: eager NDArray ops and graph executors call it. The CPU backend
//! runs tuned kernels (GEMM through the `gemm` crate, convolution by im2col + GEMM,
//! multithreaded elementwise loops) and falls back to the reference interpreter for the rest.

pub mod clif_math;
pub mod cpu;
pub mod jit;

use kiln_ir::{Op, Result, Tensor, TensorView};

/// An engine that executes single ops on host tensors.
pub trait Kernels: Send + Sync {
    /// The backend's name (`cpu`, `interp`).
    fn name(&self) -> &'static str;
    /// Runs `op` on `inputs`, returning its output.
    fn execute(&self, op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor>;

    /// [`Kernels::execute`], offered `out` as memory to reuse: a backend may build the result
    /// in `out`'s allocation (its shape and contents do not matter; it needs the result's
    /// dtype and enough capacity) instead of allocating. The result is the same either way.
    ///
    /// Executors pass a recycled buffer here (see the memory plan in `kiln_passes::memory`).
    /// The default ignores `out`.
    fn execute_into(&self, op: &Op, inputs: &[TensorView<'_>], out: Tensor) -> Result<Tensor> {
        drop(out);
        self.execute(op, inputs)
    }
}

/// The reference interpreter as a backend: slow, simple, the semantics others must match.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interpreter;

impl Kernels for Interpreter {
    fn name(&self) -> &'static str {
        "interp"
    }
    fn execute(&self, op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor> {
        kiln_ir::interp::eval(op, inputs)
    }
}

pub use cpu::CpuBackend;
