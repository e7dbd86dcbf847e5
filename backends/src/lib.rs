//! kiln-backends: engines that execute kiln ops.
//!
//! [`Kernels`] is the seam: eager NDArray ops and graph executors call it. The CPU backend
//! runs tuned kernels (GEMM through the `gemm` crate, convolution by im2col + GEMM,
//! multithreaded elementwise loops) and falls back to the reference interpreter for the rest.

pub mod clif_math;
pub mod cpu;
pub mod jit;

use kiln_ir::{FusedKernel, Op, Result, Tensor, TensorView};

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
    fn execute_fused(&self, kernel: &FusedKernel, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
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
