//! Fused kernels: several ops that run as one kernel, in a backend-neutral form.
//!
//! The fusion pass replaces a group of graph nodes by one [`Op::Fused`] node whose
//! [`FusedKernel`] is a small SSA program: each [`FusedInst`] is an ordinary [`Op`] reading the
//! kernel's inputs ([`FusedArg::Input`]) or earlier instructions ([`FusedArg::Value`]). Because
//! the body is made of the IR's own ops, every backend can run a fused node op by op (the
//! reference interpreter does exactly that, see [`FusedKernel::eval`]); a code generator
//! compiles the [`FusedKind`]s it knows into single native kernels.
//!
//! A kernel may return several values (*multi-output*, made by horizontal fusion of siblings
//! that read one input): [`FusedKernel::extra_outputs`] lists them after the main one. A
//! graph node still has one value — the fused node's is output 0 — and each further output is
//! a node of its own, [`Op::FusedOutput`] `{ index, ty }`, whose one input is the fused node.
//! Runners fill it from [`FusedKernel::eval_all`] (backends: `Kernels::execute_fused`);
//! [`FusedKernel::eval`] refuses a multi-output kernel rather than drop values, and
//! [`FusedKernel::output_slice`] cuts out one output as a single-output kernel.
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
    /// The index in `body` of the value the kernel returns (output 0, the fused node's own
    /// value).
    pub output: usize,
    /// Further outputs (a *multi-output* kernel, made by horizontal fusion): indices in
    /// `body` of values the kernel also returns, as outputs 1, 2, ... Each is read in the
    /// graph through an [`Op::FusedOutput`] node whose one input is the fused node. Empty for
    /// a single-output kernel, and then left out of the serialized form (so single-output
    /// kernels serialize, and key caches, exactly as before multi-output kernels existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_outputs: Vec<usize>,
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
        FusedKernel::with_outputs(inputs, body, vec![output])
    }

    /// A checked kernel returning several values: `outputs[0]` is the fused node's value,
    /// `outputs[1..]` are read through [`Op::FusedOutput`] nodes (see [`FusedKernel::new`]
    /// for the checks; outputs must be distinct body indices).
    pub fn with_outputs(
        inputs: Vec<TensorType>,
        body: Vec<FusedInst>,
        outputs: Vec<usize>,
    ) -> Result<Self> {
        let Some((&output, extra)) = outputs.split_first() else {
            return Err(Error::invalid("fused", "a fused kernel needs an output"));
        };
        let kernel = FusedKernel {
            inputs,
            body,
            output,
            extra_outputs: extra.to_vec(),
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
        for (k, &o) in self.extra_outputs.iter().enumerate() {
            if o >= self.body.len() {
                return Err(Error::invalid(
                    "fused",
                    format!(
                        "output {} is ${o}, out of range ({} instructions)",
                        k + 1,
                        self.body.len()
                    ),
                ));
            }
            if o == self.output || self.extra_outputs[..k].contains(&o) {
                return Err(Error::invalid(
                    "fused",
                    format!("output {} (${o}) repeats an earlier output", k + 1),
                ));
            }
        }
        for (j, inst) in self.body.iter().enumerate() {
            if matches!(inst.op, Op::Fused { .. } | Op::FusedOutput { .. }) {
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

    /// The type of the value the kernel returns (output 0, the fused node's value).
    pub fn output_type(&self) -> &TensorType {
        &self.body[self.output].ty
    }

    /// Every output's body index: `output`, then `extra_outputs`.
    pub fn outputs(&self) -> Vec<usize> {
        let mut all = Vec::with_capacity(1 + self.extra_outputs.len());
        all.push(self.output);
        all.extend_from_slice(&self.extra_outputs);
        all
    }

    /// How many values the kernel returns (1 for a single-output kernel).
    pub fn num_outputs(&self) -> usize {
        1 + self.extra_outputs.len()
    }

    /// Whether the kernel returns more than one value.
    pub fn is_multi_output(&self) -> bool {
        !self.extra_outputs.is_empty()
    }

    /// The type of output `k` (0 is the fused node's own value), if there is one.
    pub fn output_type_of(&self, k: usize) -> Option<&TensorType> {
        let j = if k == 0 {
            self.output
        } else {
            *self.extra_outputs.get(k - 1)?
        };
        Some(&self.body[j].ty)
    }

    /// The kernel's shape (see [`FusedKind`]).
    ///
    /// A multi-output kernel is [`FusedKind::Elementwise`] when every instruction is
    /// elementwise and all outputs have one shape that every instruction broadcasts to (one
    /// loop writing several outputs), and [`FusedKind::Reduction`] when its reduction-like
    /// instructions are all [`Op::Reduce`] over the same input shape, axes and `keepdims`
    /// (one pass over the reduced extent computing several reductions, see
    /// [`FusedKernel::reductions`]), the instructions that do not depend on a reduction
    /// broadcast to that input shape, those that do have the reduced shape, and every output
    /// is a reduction or depends on one. Anything else is [`FusedKind::Generic`].
    pub fn kind(&self) -> FusedKind {
        if self.is_multi_output() {
            return self.multi_output_kind();
        }
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

    /// [`FusedKernel::kind`] for a multi-output kernel.
    fn multi_output_kind(&self) -> FusedKind {
        let out_shape = &self.output_type().shape;
        if self.body.iter().all(|i| i.op.is_elementwise()) {
            let same = self
                .extra_outputs
                .iter()
                .all(|&o| &self.body[o].ty.shape == out_shape);
            if same && self.output_is_widest() {
                return FusedKind::Elementwise;
            }
            return FusedKind::Generic;
        }
        if self.multi_reduction_ok() {
            return FusedKind::Reduction;
        }
        FusedKind::Generic
    }

    /// The check behind a multi-output [`FusedKind::Reduction`] (see [`FusedKernel::kind`]).
    fn multi_reduction_ok(&self) -> bool {
        let reds = self.reductions();
        let Some(&first) = reds.first() else {
            return false;
        };
        let sig = |j: usize| -> Option<(Vec<usize>, bool, &TensorType)> {
            let Op::Reduce { axes, keepdims, .. } = &self.body[j].op else {
                return None;
            };
            let in_ty = match self.body[j].args.first()? {
                FusedArg::Input(i) => self.inputs.get(*i)?,
                FusedArg::Value(k) => &self.body.get(*k)?.ty,
            };
            let rank = in_ty.shape.rank();
            let mut axes: Vec<usize> = match axes {
                None => (0..rank).collect(),
                Some(a) => a
                    .iter()
                    .map(|&x| {
                        let x = if x < 0 { x + rank as isize } else { x };
                        usize::try_from(x).ok().filter(|&x| x < rank)
                    })
                    .collect::<Option<_>>()?,
            };
            axes.sort_unstable();
            axes.dedup();
            Some((axes, *keepdims, in_ty))
        };
        let Some((axes0, keep0, in0)) = sig(first) else {
            return false;
        };
        let reduced = &self.body[first].ty.shape;
        // after[j]: instruction j is (or depends on) a reduction.
        let mut after = vec![false; self.body.len()];
        for (j, inst) in self.body.iter().enumerate() {
            if reds.contains(&j) {
                match sig(j) {
                    Some((axes, keep, ty))
                        if axes == axes0 && keep == keep0 && ty.shape == in0.shape => {}
                    _ => return false,
                }
                after[j] = true;
                continue;
            }
            if !inst.op.is_elementwise() {
                return false;
            }
            after[j] = inst
                .args
                .iter()
                .any(|a| matches!(a, FusedArg::Value(k) if after[*k]));
            let fits = if after[j] {
                &inst.ty.shape == reduced
            } else {
                inst.ty.shape.broadcasts_to(&in0.shape)
            };
            if !fits {
                return false;
            }
        }
        self.outputs().iter().all(|&o| after[o])
    }

    /// Whether every instruction's shape broadcasts to the output's without widening it.
    fn output_is_widest(&self) -> bool {
        let out = &self.output_type().shape;
        self.body.iter().all(|i| i.ty.shape.broadcasts_to(out))
    }

    /// For a [`FusedKind::Reduction`] kernel, the index of its reduction-like instruction:
    /// exactly one such instruction, elementwise instructions before it, and after it only
    /// elementwise instructions whose shape is the reduction's output shape. (A multi-output
    /// kernel may hold several reductions: see [`FusedKernel::reductions`].)
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

    /// The indices of every reduction-like instruction, in body order.
    pub fn reductions(&self) -> Vec<usize> {
        (0..self.body.len())
            .filter(|&j| is_reduction_like(&self.body[j].op))
            .collect()
    }

    /// Runs the kernel op by op and returns its one value: `exec` computes each instruction
    /// from its operand views (the interpreter passes [`crate::interp::eval`], a backend its
    /// own kernels). Errors when the inputs do not have the kernel's input types, and for a
    /// multi-output kernel, whose value is not one tensor (use [`FusedKernel::eval_all`]).
    pub fn eval(
        &self,
        inputs: &[TensorView<'_>],
        exec: &mut dyn FnMut(&Op, &[TensorView<'_>]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if self.is_multi_output() {
            return Err(Error::invalid(
                "fused",
                format!(
                    "this kernel returns {} values ({}); run it with FusedKernel::eval_all \
                     (Kernels::execute_fused in a backend)",
                    self.num_outputs(),
                    self.summary()
                ),
            ));
        }
        let mut all = self.eval_all(inputs, exec)?;
        all.pop()
            .ok_or_else(|| Error::invalid("fused", "the kernel returned no value"))
    }

    /// Runs the kernel op by op (see [`FusedKernel::eval`]) and returns every output, in
    /// order: output 0 (the fused node's value), then the extra outputs.
    pub fn eval_all(
        &self,
        inputs: &[TensorView<'_>],
        exec: &mut dyn FnMut(&Op, &[TensorView<'_>]) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
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
        let outputs = self.outputs();
        // Each value is dropped after its last use, as the graph runner does; outputs are kept.
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
                    if last_use[k] == j && !outputs.contains(&k) {
                        values[k] = None;
                    }
                }
            }
        }
        outputs
            .iter()
            .map(|&o| {
                values[o]
                    .take()
                    .ok_or_else(|| Error::invalid("fused", format!("output ${o} was freed")))
            })
            .collect()
    }

    /// Output `k` alone, as a single-output kernel: the instructions it depends on
    /// (renumbered, in body order) and the kernel inputs they read, with the indices of
    /// those inputs in this kernel's input list. Running every output's slice gives the
    /// same values as [`FusedKernel::eval_all`] (each instruction a slice holds runs on the
    /// same operands); a backend that compiles only single-output kernels runs a
    /// multi-output one this way.
    pub fn output_slice(&self, k: usize) -> Result<(FusedKernel, Vec<usize>)> {
        let root = if k == 0 {
            self.output
        } else {
            *self.extra_outputs.get(k - 1).ok_or_else(|| {
                Error::invalid(
                    "fused",
                    format!("output {k} out of range ({} outputs)", self.num_outputs()),
                )
            })?
        };
        let bad = || Error::invalid("fused", "operand out of range (validate the kernel)");
        let mut needed = vec![false; self.body.len()];
        *needed.get_mut(root).ok_or_else(bad)? = true;
        for j in (0..=root).rev() {
            if !needed[j] {
                continue;
            }
            for arg in &self.body[j].args {
                if let FusedArg::Value(v) = *arg {
                    if v >= j {
                        return Err(bad());
                    }
                    needed[v] = true;
                }
            }
        }
        let mut new_index = vec![0usize; self.body.len()];
        let mut input_map: Vec<usize> = Vec::new();
        let mut body = Vec::new();
        for j in (0..=root).filter(|&j| needed[j]) {
            let inst = &self.body[j];
            let mut args = Vec::with_capacity(inst.args.len());
            for a in &inst.args {
                args.push(match *a {
                    FusedArg::Value(v) => FusedArg::Value(new_index[v]),
                    FusedArg::Input(i) => {
                        if i >= self.inputs.len() {
                            return Err(bad());
                        }
                        let p = match input_map.iter().position(|&x| x == i) {
                            Some(p) => p,
                            None => {
                                input_map.push(i);
                                input_map.len() - 1
                            }
                        };
                        FusedArg::Input(p)
                    }
                });
            }
            new_index[j] = body.len();
            body.push(FusedInst::new(inst.op.clone(), args, inst.ty.clone()));
        }
        let inputs = input_map.iter().map(|&i| self.inputs[i].clone()).collect();
        let output = body.len() - 1;
        // A slice of a valid kernel is valid (the same instructions on the same operands,
        // renumbered in order), so it skips re-inference: backends slice on every call.
        let slice = FusedKernel {
            inputs,
            body,
            output,
            extra_outputs: Vec::new(),
        };
        Ok((slice, input_map))
    }

    /// The body, one instruction a line: `$1 = tanh($0) : f32[4,5]` (attributes in braces as
    /// in the graph text form); the output is marked `(output)` when it is not the last
    /// instruction; in a multi-output kernel every output is marked with its number,
    /// `(output 0)`, `(output 1)`, ...
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
            if self.is_multi_output() {
                if let Some(k) = self.outputs().iter().position(|&o| o == j) {
                    s.push_str(&format!("  (output {k})"));
                }
            } else if j == self.output && j + 1 != self.body.len() {
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

/// Shape inference for [`Op::FusedOutput`]: one input (the fused node, whose kernel the
/// graph checks when the node is added, see [`crate::Graph::add_op`]); the type is the
/// op's own.
pub(crate) fn infer_fused_output(
    index: usize,
    ty: &TensorType,
    inputs: &[TensorType],
) -> Result<TensorType> {
    if inputs.len() != 1 {
        return Err(Error::invalid(
            "fused_output",
            format!("takes one input (a fused node), {} given", inputs.len()),
        ));
    }
    if index == 0 {
        return Err(Error::invalid(
            "fused_output",
            "index 0 is the fused node's own value; extra outputs are numbered from 1",
        ));
    }
    Ok(ty.clone())
}
