//! kiln-backends: engines that execute kiln ops.
//!
//! [`Kernels`] is the seam: eager NDArray ops and graph executors call it. The CPU backend
//! runs tuned kernels (GEMM through the `gemm` crate, convolution by im2col + GEMM,
//! multithreaded elementwise loops) and falls back to the reference interpreter for the rest.

pub mod clif_math;
pub mod cpu;
pub mod jit;

use kiln_ir::{Op, Result, Tensor, TensorView};
use std::sync::Arc;

/// An op specialised once for one set of input types (see [`Kernels::prepare`]) and run
/// many times: a graph executor keeps one per step, so per-call work such as looking up a
/// compiled function or working out loop layouts is done once.
pub trait PreparedKernel: Send + Sync + std::fmt::Debug {
    /// Runs the op on inputs of the types it was prepared for (the caller guarantees them).
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Tensor>;

    /// [`PreparedKernel::run`] offered `out` as memory to reuse, as
    /// [`Kernels::execute_into`] is; the default ignores it.
    fn run_into(&self, inputs: &[TensorView<'_>], out: Tensor) -> Result<Tensor> {
        drop(out);
        self.run(inputs)
    }

    /// [`PreparedKernel::run`] writing the result over input `target`'s allocation, as
    /// [`Kernels::execute_overwriting`] does; the default computes into a fresh allocation.
    fn run_overwriting(
        &self,
        others: &[TensorView<'_>],
        target: usize,
        buf: Tensor,
    ) -> Result<Tensor> {
        let full = with_target(others, target, &buf);
        self.run(&full)
    }
}

/// `others` with `buf`'s view inserted at position `target` (clamped to the end).
pub fn with_target<'a>(
    others: &[TensorView<'a>],
    target: usize,
    buf: &'a Tensor,
) -> Vec<TensorView<'a>> {
    let mut full = Vec::with_capacity(others.len() + 1);
    full.extend_from_slice(&others[..target.min(others.len())]);
    full.push(buf.view());
    full.extend_from_slice(&others[target.min(others.len())..]);
    full
}

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

    /// Runs the elementwise `op` with `buf` as its input number `target` and the result
    /// written over `buf`'s own allocation (true in-place execution): `others` are the
    /// remaining inputs in order, without `target`. The result equals [`Kernels::execute`]
    /// on the full input list, bitwise.
    ///
    /// Executors call this only when the memory plan runs the step in place and nothing
    /// else reads `buf` afterwards (`buf` is owned, so no other reader can exist). A
    /// backend that cannot compute in place computes into a fresh allocation (the
    /// default).
    fn execute_overwriting(
        &self,
        op: &Op,
        others: &[TensorView<'_>],
        target: usize,
        buf: Tensor,
    ) -> Result<Tensor> {
        let full = with_target(others, target, &buf);
        self.execute(op, &full)
    }

    /// Prepares `op` for repeated runs on inputs of `inputs`' types (the values do not
    /// matter): `None` when the backend has nothing to prepare (the default), and the
    /// caller then uses [`Kernels::execute`]. Running the prepared kernel gives the same
    /// results as `execute`.
    fn prepare(&self, op: &Op, inputs: &[TensorView<'_>]) -> Option<Arc<dyn PreparedKernel>> {
        let _ = (op, inputs);
        None
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
