//! Fused kernels: several ops that run as one kernel, in a backend-neutral form.
//!
//! The fusion pass replaces a group of graph nodes by one [`Op::Fused`] node whose
//! [`FusedKernel`] is a small SSA program: each [`FusedInst`] is an ordinary [`Op`] reading the
//! kernel's inputs ([`FusedArg::Input`]) or earlier instructions ([`FusedArg::Value`]). Because
//! the body is made of the IR's own ops, every backend can run a fused node op by op (the
//! reference interpreter does exactly that, see [`FusedKernel::eval`]); a code generator
//! compiles the [`FusedKind`]s it knows into single native kernels.
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, FusedArg, FusedInst, FusedKernel, FusedKind, Op, TensorType, UnaryOp};
//! let t = TensorType::new([4, 5], DType::F32);
//! let b = TensorType::new([5], DType::F32);
//! // tanh(x + b)
//! let kernel = FusedKernel::new(
//!     vec![t.clone(), b],
//!     vec![
//!         FusedInst::new(Op::Binary { f: BinaryOp::Add }, vec![FusedArg::Input(0), FusedArg::Input(1)], t.clone()),
//!         FusedInst::new(Op::Unary { f: UnaryOp::Tanh }, vec![FusedArg::Value(0)], t.clone()),
//!     ],
//!     1,
//! )?;
//! assert_eq!(kernel.kind(), FusedKind::Elementwise);
//! assert_eq!(kernel.body_text(), "$0 = add(in0, in1) : f32[4,5]\n$1 = tanh($0) : f32[4,5]\n");
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::infer::infer;
use crate::op::Op;
use crate::tensor::{Tensor, TensorType, TensorView};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an instruction's operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusedArg {
    /// The kernel's input `i` (the fused node's input edge `i`).
    Input(usize),
    /// The value of body instruction `j` (always an earlier one).
    Value(usize),
}

impl fmt::Display for FusedArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FusedArg::Input(i) => write!(f, "in{i}"),
            FusedArg::Value(j) => write!(f, "${j}"),
        }
    }
}

/// One instruction of a fused kernel: an op, its operands and its (inferred) type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedInst {
    /// The op (never [`Op::Fused`], never a random op).
    pub op: Op,
    /// Its operands, in the op's input order.
    pub args: Vec<FusedArg>,
    /// The type of its value.
    pub ty: TensorType,
}

impl FusedInst {
    /// An instruction; [`FusedKernel::new`] checks it.
    pub fn new(op: Op, args: Vec<FusedArg>, ty: TensorType) -> Self {
        FusedInst { op, args, ty }
    }
}

/// The shape of a fused kernel, which tells a code generator how to lower it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FusedKind {
    /// Every instruction is elementwise ([`Op::is_elementwise`]) and the output has the
    /// iteration shape (the broadcast of all operands): one loop over the output.
    Elementwise,
    /// Elementwise instructions, then one reduction-like instruction ([`Op::Reduce`],
    /// [`Op::Softmax`], [`Op::LogSoftmax`], [`Op::SoftmaxCrossEntropy`]) that may read them,
    /// then elementwise instructions on its result (and on kernel inputs): one pass over the
    /// reduced extent per output row. [`FusedKernel::reduction`] gives its index.
    Reduction,
    /// The first instruction is a library kernel ([`Op::Dot`], [`Op::BatchDot`],
    /// [`Op::FullyConnected`], [`Op::Convolution`]); every later one is elementwise with the
    /// library kernel's output shape: the epilogue (bias, activation, residual add).
    Epilogue,
    /// Anything else; runnable op by op.
    Generic,
}

impl FusedKind {
    /// The lowercase name used in text forms (`elementwise`, `reduction`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FusedKind::Elementwise => "elementwise",
            FusedKind::Reduction => "reduction",
            FusedKind::Epilogue => "epilogue",
            FusedKind::Generic => "generic",
        }
    }
}

/// A kernel made of several ops (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedKernel {
    /// The types of the kernel's inputs, in the fused node's edge order.
    pub inputs: Vec<TensorType>,
    /// The instructions, in execution order.
    pub body: Vec<FusedInst>,
    /// The index in `body` of the value the kernel returns.
    pub output: usize,
}

/// Whether `op` is reduction-like for [`FusedKind::Reduction`].
fn is_reduction_like(op: &Op) -> bool {
    matches!(
        op,
        Op::Reduce { .. } | Op::Softmax { .. } | Op::LogSoftmax { .. } | Op::SoftmaxCrossEntropy
    )
}

/// Whether `op` is a library kernel that can carry an elementwise epilogue.
fn is_library_kernel(op: &Op) -> bool {
    matches!(
        op,
        Op::Dot { .. } | Op::BatchDot { .. } | Op::FullyConnected { .. } | Op::Convolution { .. }
    )
}

impl FusedKernel {
    /// A checked kernel: every operand refers to a kernel input or an earlier instruction,
    /// every instruction's type is what inference gives for its operands, `output` is in
    /// range, and no instruction is itself fused or random (a random op's seed slot must stay
    /// visible in the graph). Errors name the instruction.
    pub fn new(inputs: Vec<TensorType>, body: Vec<FusedInst>, output: usize) -> Result<Self> {
        let kernel = FusedKernel {
            inputs,
            body,
            output,
        };
        kernel.validate()?;
        Ok(kernel)
    }

    /// Re-checks the invariants of [`FusedKernel::new`] (a deserialized kernel is untrusted).
    pub fn validate(&self) -> Result<()> {
        if self.body.is_empty() {
            return Err(Error::invalid(
                "fused",
                "a fused kernel needs at least one op",
            ));
        }
        if self.output >= self.body.len() {
            return Err(Error::invalid(
                "fused",
                format!(
                    "output ${} out of range ({} instructions)",
                    self.output,
                    self.body.len()
                ),
            ));
        }
        for (j, inst) in self.body.iter().enumerate() {
            if matches!(inst.op, Op::Fused { .. }) {
                return Err(Error::invalid(
                    "fused",
                    format!("${j}: nested fused kernel"),
                ));
            }
            if inst.op.is_random() {
                return Err(Error::invalid(
                    "fused",
                    format!("${j}: random op {} cannot be fused", inst.op.name()),
                ));
            }
            let mut types = Vec::with_capacity(inst.args.len());
            for arg in &inst.args {
                let ty = match *arg {
                    FusedArg::Input(i) => self.inputs.get(i),
                    FusedArg::Value(k) if k < j => Some(&self.body[k].ty),
                    FusedArg::Value(_) => None,
                };
                let ty = ty.ok_or_else(|| {
                    Error::invalid(
                        "fused",
                        format!(
                            "${j} = {}: operand {arg} is not a kernel input or an earlier value",
                            inst.op.name()
                        ),
                    )
                })?;
                types.push(ty.clone());
            }
            let want = infer(&inst.op, &types)?;
            if want != inst.ty {
                return Err(Error::invalid(
                    "fused",
                    format!(
                        "${j} = {}: declared type {} but its operands give {want}",
                        inst.op.name(),
                        inst.ty
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The type of the value the kernel returns.
    pub fn output_type(&self) -> &TensorType {
        &self.body[self.output].ty
    }

    /// The kernel's shape (see [`FusedKind`]).
    pub fn kind(&self) -> FusedKind {
        if self.body.iter().all(|i| i.op.is_elementwise()) {
            // The output is the iteration space: no instruction may be wider than it.
            if self.output_is_widest() {
                return FusedKind::Elementwise;
            }
            return FusedKind::Generic;
        }
        if self.reduction().is_some() {
            return FusedKind::Reduction;
        }
        if is_library_kernel(&self.body[0].op)
            && self.body[1..]
                .iter()
                .all(|i| i.op.is_elementwise() && i.ty.shape == self.body[0].ty.shape)
        {
            return FusedKind::Epilogue;
        }
        FusedKind::Generic
    }

    /// Whether every instruction's shape broadcasts to the output's without widening it.
    fn output_is_widest(&self) -> bool {
        let out = &self.output_type().shape;
        self.body.iter().all(|i| i.ty.shape.broadcasts_to(out))
    }

    /// For a [`FusedKind::Reduction`] kernel, the index of its reduction-like instruction:
    /// exactly one such instruction, elementwise instructions before it, and after it only
    /// elementwise instructions whose shape is the reduction's output shape.
    pub fn reduction(&self) -> Option<usize> {
        let mut found = None;
        for (j, inst) in self.body.iter().enumerate() {
            if is_reduction_like(&inst.op) {
                if found.is_some() {
                    return None;
                }
                found = Some(j);
            } else if !inst.op.is_elementwise() {
                return None;
            }
        }
        let r = found?;
        let reduced = &self.body[r].ty.shape;
        self.body[r + 1..]
            .iter()
            .all(|i| &i.ty.shape == reduced)
            .then_some(r)
    }

    /// Runs the kernel op by op: `exec` computes each instruction from its operand views
    /// (the interpreter passes [`crate::interp::eval`], a backend its own kernels). Errors
    /// when the inputs do not have the kernel's input types.
    pub fn eval(
        &self,
        inputs: &[TensorView<'_>],
        exec: &mut dyn FnMut(&Op, &[TensorView<'_>]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::invalid(
                "fused",
                format!(
                    "{} inputs given, the kernel takes {}",
                    inputs.len(),
                    self.inputs.len()
                ),
            ));
        }
        for (i, (v, want)) in inputs.iter().zip(&self.inputs).enumerate() {
            if &v.ty() != want {
                return Err(Error::invalid(
                    "fused",
                    format!("input {i} has type {} but the kernel takes {want}", v.ty()),
                ));
            }
        }
        // Each value is dropped after its last use, as the graph runner does.
        let mut last_use = vec![0usize; self.body.len()];
        for (j, inst) in self.body.iter().enumerate() {
            for arg in &inst.args {
                if let FusedArg::Value(k) = *arg {
                    last_use[k] = j;
                }
            }
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.body.len()];
        for (j, inst) in self.body.iter().enumerate() {
            let out = {
                let mut views = Vec::with_capacity(inst.args.len());
                for arg in &inst.args {
                    views.push(match *arg {
                        FusedArg::Input(i) => inputs[i].clone(),
                        FusedArg::Value(k) => values[k]
                            .as_ref()
                            .ok_or_else(|| {
                                Error::invalid("fused", format!("${j}: ${k} was already freed"))
                            })?
                            .view(),
                    });
                }
                exec(&inst.op, &views)?
            };
            if out.ty() != inst.ty {
                return Err(Error::invalid(
                    "fused",
                    format!(
                        "${j} = {}: the backend returned {} for declared {}",
                        inst.op.name(),
                        out.ty(),
                        inst.ty
                    ),
                ));
            }
            values[j] = Some(out);
            for arg in &inst.args {
                if let FusedArg::Value(k) = *arg {
                    if last_use[k] == j && k != self.output {
                        values[k] = None;
                    }
                }
            }
        }
        values[self.output]
            .take()
            .ok_or_else(|| Error::invalid("fused", "the output value was freed"))
    }

    /// The body, one instruction a line: `$1 = tanh($0) : f32[4,5]` (attributes in braces as
    /// in the graph text form); the output is marked when it is not the last instruction.
    pub fn body_text(&self) -> String {
        let mut s = String::new();
        for (j, inst) in self.body.iter().enumerate() {
            let args: Vec<String> = inst.args.iter().map(|a| a.to_string()).collect();
            s.push_str(&format!("${j} = {}({})", inst.op.name(), args.join(", ")));
            let attrs = crate::graph::op_attrs_text(&inst.op);
            if !attrs.is_empty() {
                s.push_str(&format!(" {{{attrs}}}"));
            }
            s.push_str(&format!(" : {}", inst.ty));
            if j == self.output && j + 1 != self.body.len() {
                s.push_str("  (output)");
            }
            s.push('\n');
        }
        s
    }

    /// A structural key: equal for kernels with the same ops, attributes, operands and types
    /// (a compiled-kernel cache keys on it).
    pub fn cache_key(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{self:?}"))
    }

    /// The names of the body's ops joined by `+` (`add+tanh`), for short labels.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.body.iter().map(|i| i.op.name()).collect();
        names.join("+")
    }
}

/// Shape inference for [`Op::Fused`]: the inputs must have the kernel's input types.
pub(crate) fn infer_fused(kernel: &FusedKernel, inputs: &[TensorType]) -> Result<TensorType> {
    if inputs != kernel.inputs.as_slice() {
        let given: Vec<String> = inputs.iter().map(|t| t.to_string()).collect();
        let want: Vec<String> = kernel.inputs.iter().map(|t| t.to_string()).collect();
        return Err(Error::shape(
            "fused",
            format!(
                "inputs ({}) do not match the kernel's ({})",
                given.join(", "),
                want.join(", ")
            ),
        ));
    }
    kernel.validate()?;
    Ok(kernel.output_type().clone())
}
