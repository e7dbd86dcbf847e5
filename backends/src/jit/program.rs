//! The part of a fused kernel the JIT compiles: a shape-free elementwise program.
//!
//! A [`Program`] is the kernel's elementwise instructions reachable from one value, with
//! inputs deduplicated, same-type casts removed and constants resolved to f32. It carries no
//! shapes: the same program runs on any shapes (broadcasting is handled by the layout the
//! kernel is called with), which is what lets a re-trace with a new batch size reuse the
//! compiled code.

use kiln_ir::{BinaryOp, DType, FusedArg, FusedKernel, Op, UnaryOp};
use std::collections::HashMap;

/// One instruction of a [`Program`]; operands are indices of earlier nodes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// Kernel input `i` (at the current position).
    Input(usize),
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    /// `x ∘ c` (`c ∘ x` when reversed).
    Scalar(BinaryOp, f32, bool, usize),
    /// `cond != 0 ? x : y`.
    Where(usize, usize, usize),
    Clip(f32, f32, usize),
}

/// An elementwise f32 program (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Program {
    pub nodes: Vec<Node>,
    /// The node whose value the program returns.
    pub out: usize,
    /// How many times each node is used as an operand.
    pub uses: Vec<usize>,
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
                Node::Unary(_, a) | Node::Scalar(_, _, _, a) | Node::Clip(_, _, a) => {
                    p.uses[a] += 1
                }
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

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn input(&mut self, i: usize, inputs: &mut HashMap<usize, usize>) -> usize {
        if let Some(&n) = inputs.get(&i) {
            return n;
        }
        let n = self.push(Node::Input(i));
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
                (kernel.inputs.get(i)?.dtype == DType::F32).then_some(())?;
                Some(self.input(i, inputs))
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
            return Some(self.input(i, inputs));
        }
        if let Some(&n) = values.get(&j) {
            return Some(n);
        }
        let inst = kernel.body.get(j)?;
        if inst.ty.dtype != DType::F32 {
            return None;
        }
        let mut arg = |p: &mut Program, k: usize| -> Option<usize> {
            p.arg(kernel, inst.args.get(k)?, extra, inputs, values)
        };
        let n = match &inst.op {
            Op::Unary { f } => {
                let a = arg(self, 0)?;
                self.push(Node::Unary(*f, a))
            }
            Op::Binary { f } => {
                let a = arg(self, 0)?;
                let c = arg(self, 1)?;
                self.push(Node::Binary(*f, a, c))
            }
            Op::Scalar { f, scalar, reverse } => {
                let a = arg(self, 0)?;
                self.push(Node::Scalar(*f, *scalar as f32, *reverse, a))
            }
            Op::Where => {
                let c = arg(self, 0)?;
                let x = arg(self, 1)?;
                let y = arg(self, 2)?;
                self.push(Node::Where(c, x, y))
            }
            Op::Clip { min, max } => {
                let a = arg(self, 0)?;
                self.push(Node::Clip(*min as f32, *max as f32, a))
            }
            // The instruction's type is f32, so is its input after the checks above: a copy.
            Op::Cast { dtype: DType::F32 } => arg(self, 0)?,
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
