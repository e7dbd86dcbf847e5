//! The part of a fused kernel the JIT compiles: a shape-free elementwise program.
//!
//! A [`Program`] is the kernel's elementwise instructions reachable from one value, with
//! inputs deduplicated and same-type casts removed. Every node has a dtype: f32, f64 or i32
//! ([`SUPPORTED`]); a program that is all f32 runs in f32x4 vectors, any other runs in a
//! scalar loop (see [`super::codegen`]). It carries no
//! shapes: the same program runs on any shapes (broadcasting is handled by the layout the
//! kernel is called with), which is what lets a re-trace with a new batch size reuse the
//! compiled code.

use kiln_ir::{BinaryOp, DType, FusedArg, FusedKernel, Op, UnaryOp};
use std::collections::HashMap;

/// The element types a compiled elementwise program handles.
pub(crate) const SUPPORTED: [DType; 3] = [DType::F32, DType::F64, DType::I32];

/// One instruction of a [`Program`]; operands are indices of earlier nodes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// Kernel input `i` (at the current position).
    Input(usize),
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    /// `x ∘ c` (`c ∘ x` when reversed); `c` already converted to the node's dtype (as the
    /// interpreter does) and stored as f64, which holds every f32 and i32 exactly.
    Scalar(BinaryOp, f64, bool, usize),
    /// `cond != 0 ? x : y`.
    Where(usize, usize, usize),
    Clip(f64, f64, usize),
    /// The operand converted to this node's dtype (the interpreter's `Cast`).
    Cast(usize),
}

/// An elementwise program (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Program {
    pub nodes: Vec<Node>,
    /// The dtype of each node's value.
    pub types: Vec<DType>,
    /// The node whose value the program returns.
    pub out: usize,
    /// How many times each node is used as an operand.
    pub uses: Vec<usize>,
}

/// `v` as the interpreter converts a scalar attribute to `dtype` (`as` semantics).
fn convert(v: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::I32 => v as i32 as f64,
        _ => v,
    }
}

impl Program {
    /// The program computing body value `root` of `kernel` from the kernel's inputs, or
    /// `None` when a needed instruction is not an elementwise op on f32 data. `extra` maps
    /// body values to be read as inputs instead (input index given), which is how an epilogue
    /// reads a reduction's result.
    pub fn from_kernel(
        kernel: &FusedKernel,
        root: usize,
        extra: &HashMap<usize, usize>,
    ) -> Option<Program> {
        let mut p = Program {
            nodes: Vec::new(),
            types: Vec::new(),
            out: 0,
            uses: Vec::new(),
        };
        let mut inputs: HashMap<usize, usize> = HashMap::new();
        let mut values: HashMap<usize, usize> = HashMap::new();
        p.out = p.value(kernel, root, extra, &mut inputs, &mut values)?;
        p.uses = vec![0; p.nodes.len()];
        for n in &p.nodes {
            match *n {
                Node::Input(_) => {}
                Node::Unary(_, a)
                | Node::Scalar(_, _, _, a)
                | Node::Clip(_, _, a)
                | Node::Cast(a) => p.uses[a] += 1,
                Node::Binary(_, a, c) => {
                    p.uses[a] += 1;
                    p.uses[c] += 1;
                }
                Node::Where(a, c, d) => {
                    p.uses[a] += 1;
                    p.uses[c] += 1;
                    p.uses[d] += 1;
                }
            }
        }
        Some(p)
    }

    fn push(&mut self, n: Node, dtype: DType) -> usize {
        self.nodes.push(n);
        self.types.push(dtype);
        self.nodes.len() - 1
    }

    /// Whether every value is f32 (the program then runs in f32x4 vectors).
    pub fn all_f32(&self) -> bool {
        self.types.iter().all(|&t| t == DType::F32)
    }

    /// The dtype of the program's result.
    pub fn out_type(&self) -> DType {
        self.types[self.out]
    }

    fn input(&mut self, i: usize, dtype: DType, inputs: &mut HashMap<usize, usize>) -> usize {
        if let Some(&n) = inputs.get(&i) {
            return n;
        }
        let n = self.push(Node::Input(i), dtype);
        inputs.insert(i, n);
        n
    }

    fn arg(
        &mut self,
        kernel: &FusedKernel,
        a: &FusedArg,
        extra: &HashMap<usize, usize>,
        inputs: &mut HashMap<usize, usize>,
        values: &mut HashMap<usize, usize>,
    ) -> Option<usize> {
        match *a {
            FusedArg::Input(i) => {
                let t = kernel.inputs.get(i)?.dtype;
                SUPPORTED.contains(&t).then_some(())?;
                Some(self.input(i, t, inputs))
            }
            FusedArg::Value(j) => self.value(kernel, j, extra, inputs, values),
        }
    }

    fn value(
        &mut self,
        kernel: &FusedKernel,
        j: usize,
        extra: &HashMap<usize, usize>,
        inputs: &mut HashMap<usize, usize>,
        values: &mut HashMap<usize, usize>,
    ) -> Option<usize> {
        if let Some(&i) = extra.get(&j) {
            // A value read back as an input (a reduction's f32 result).
            let t = kernel.body.get(j)?.ty.dtype;
            return Some(self.input(i, t, inputs));
        }
        if let Some(&n) = values.get(&j) {
            return Some(n);
        }
        let inst = kernel.body.get(j)?;
        let t = inst.ty.dtype;
        if !SUPPORTED.contains(&t) {
            return None;
        }
        let mut arg = |p: &mut Program, k: usize| -> Option<usize> {
            p.arg(kernel, inst.args.get(k)?, extra, inputs, values)
        };
        let n = match &inst.op {
            Op::Unary { f } => {
                let a = arg(self, 0)?;
                self.push(Node::Unary(*f, a), t)
            }
            Op::Binary { f } => {
                let a = arg(self, 0)?;
                let c = arg(self, 1)?;
                self.push(Node::Binary(*f, a, c), t)
            }
            Op::Scalar { f, scalar, reverse } => {
                let a = arg(self, 0)?;
                // Comparisons give the operand's dtype too: the constant takes it.
                self.push(Node::Scalar(*f, convert(*scalar, t), *reverse, a), t)
            }
            Op::Where => {
                let c = arg(self, 0)?;
                let x = arg(self, 1)?;
                let y = arg(self, 2)?;
                self.push(Node::Where(c, x, y), t)
            }
            Op::Clip { min, max } => {
                let a = arg(self, 0)?;
                self.push(Node::Clip(convert(*min, t), convert(*max, t), a), t)
            }
            Op::Cast { dtype } => {
                let a = arg(self, 0)?;
                if self.types[a] == *dtype {
                    // A same-type cast is a copy.
                    a
                } else {
                    self.push(Node::Cast(a), *dtype)
                }
            }
            _ => return None,
        };
        values.insert(j, n);
        Some(n)
    }

    /// The kernel inputs the program reads, in node order.
    pub fn inputs(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .filter_map(|n| match n {
                Node::Input(i) => Some(*i),
                _ => None,
            })
            .collect()
    }
}
