//! kiln-backends: engines that execute kiln ops.
//!
//! [`Kernels`] is the seam: eager NDArray ops and graph executors call it. The CPU backend
//! runs tuned kernels (GEMM through the `gemm` crate, convolution by im2col + GEMM,
//! multithreaded elementwise loops) and falls back to the reference interpreter for the rest.

pub mod clif_math;
pub mod cpu;
pub mod jit;

use kiln_ir::{FusedKernel, Op, Result, Tensor, TensorView};
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

    /// Runs a fused kernel and returns every output, in order: output 0 (the fused node's
    /// value), then [`FusedKernel::extra_outputs`] (which executors hand to the graph's
    /// `fused_output` nodes). Works for single-output kernels too (one value).
    ///
    /// The default runs each output's [`FusedKernel::output_slice`] through
    /// [`Kernels::execute`] as a single-output fused kernel (one op alone runs as that op),
    /// so a backend that compiles single-output kernels compiles each slice. Horizontal
    /// fusion merges independent kernels, so the slices share no instructions and nothing
    /// is computed twice; every instruction runs on the same operands as in
    /// [`FusedKernel::eval_all`], so results are the same.
    fn execute_fused(
        &self,
        kernel: &FusedKernel,
        inputs: &[TensorView<'_>],
    ) -> Result<Vec<Tensor>> {
        if !kernel.is_multi_output() {
            let op = Op::Fused {
                kernel: Box::new(kernel.clone()),
            };
            return Ok(vec![self.execute(&op, inputs)?]);
        }
        let mut outputs = Vec::with_capacity(kernel.num_outputs());
        for k in 0..kernel.num_outputs() {
            let (slice, used) = kernel.output_slice(k)?;
            let mut views = Vec::with_capacity(used.len());
            for &i in &used {
                views.push(inputs.get(i).cloned().ok_or_else(|| {
                    kiln_ir::Error::invalid(
                        "fused",
                        format!("{} inputs given, the kernel reads input {i}", inputs.len()),
                    )
                })?);
            }
            let value = if let [inst] = slice.body.as_slice() {
                // One op alone: its operands are kernel inputs (possibly one used twice).
                let mut args = Vec::with_capacity(inst.args.len());
                for a in &inst.args {
                    match *a {
                        kiln_ir::FusedArg::Input(p) if p < views.len() => {
                            args.push(views[p].clone())
                        }
                        _ => {
                            return Err(kiln_ir::Error::invalid(
                                "fused",
                                format!("{}: operand {a} is not a kernel input", inst.op.name()),
                            ))
                        }
                    }
                }
                self.execute(&inst.op, &args)?
            } else {
                self.execute(
                    &Op::Fused {
                        kernel: Box::new(slice),
                    },
                    &views,
                )?
            };
            outputs.push(value);
        }
        Ok(outputs)
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
