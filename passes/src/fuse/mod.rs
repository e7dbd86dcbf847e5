//! Fusion: groups of nodes become one `fused` node, a kernel whose body is the same ops run
//! as one unit (see [`kiln_ir::FusedKernel`]), so a backend launches one kernel and keeps the
//! intermediate values out of memory.
//!
//! # The rules
//!
//! Nodes are visited consumers first (reverse topological order). An unvisited fusible op
//! starts a group as its *root* (the value the kernel returns); the group then absorbs its
//! members' producers, again and again until nothing more joins. A producer `p` joins when
//!
//! 1. **every use of `p` is inside the group** and `p` is not a graph output: a value is
//!    computed once, inside exactly one kernel, and never recomputed (so a fused graph never
//!    does more arithmetic than the unfused one; a producer shared by two kernels stays its
//!    own node and both kernels read it);
//! 2. it fits the group's shape of iteration:
//!    - **elementwise chains** (`unary`, binary ops, `*_scalar`, `where`, `clip`, `cast`): an
//!      elementwise producer with the kernel's output shape joins the chain. Inputs of any
//!      broadcastable shape are fine (they are the kernel's inputs, broadcast as the ops
//!      do); a smaller *computed* value (say `exp(bias)` of shape `[5]` in a `[4,5]` chain)
//!      stays a node of its own, so no value is computed once per broadcast copy;
//!    - **reductions** (`sum`/`mean`/... `reduce`, `softmax`, `log_softmax`,
//!      `softmax_cross_entropy`): at most one per kernel. Elementwise producers of its first
//!      input with that input's shape form the *prologue*; elementwise consumers with the
//!      reduced shape form the *epilogue* (a kernel rooted at the last of them). Mean and
//!      variance, softmax of a computed value, cross-entropy of scaled logits and the
//!      batch-norm statistics (`mean((x - m)^2)`) each become one kernel of kind
//!      [`FusedKind::Reduction`](kiln_ir::FusedKind::Reduction);
//!    - **epilogues of library kernels** (`dot`, `batch_dot`, `fully_connected`,
//!      `convolution`): an elementwise chain with the library op's output shape (bias add,
//!      `relu`/`tanh`/`sigmoid`, residual add) takes the library op as body\[0\]
//!      ([`FusedKind::Epilogue`](kiln_ir::FusedKind::Epilogue)); the library op's own inputs
//!      stay kernel inputs (nothing is fused *into* a GEMM or convolution);
//! 3. the grown kernel reads at most [`MAX_KERNEL_INPUTS`] distinct values (the cap keeps
//!    generated code within backend limits on arguments); a producer that would exceed it
//!    stays outside, and the pass counts `input_cap`.
//!
//! Never fused: random ops (a fused body must be a pure function of its inputs), shape ops
//! (`reshape`, `transpose`, ... stay nodes: they move data, and a backend may make them
//! views), indexing, pooling, normalization layers and `fused` nodes themselves, so running
//! the pass twice changes nothing the second time.
//!
//! 4. **horizontal fusion** (after the groups above are fused): *siblings* — kernels that
//!    read one same value — with the same iteration space become one **multi-output**
//!    kernel that reads the shared value once ([`FusedKernel::extra_outputs`]; the first
//!    sibling's value is the fused node's, each further output is read through an
//!    [`Op::FusedOutput`] node). Siblings are elementwise ops or kernels with one output
//!    shape (`exp(x)`, `tanh(x)`, `x * y` of one shape), or `reduce`s and reduction kernels
//!    over the same input shape, axes and `keepdims` (the bias gradient `sum(dy, 0)` and the
//!    batch-norm gradient terms `sum(dy * xhat, 0)`). A sibling joins only when no path leads
//!    from it to another member or back (that path would run through the merged node and
//!    make it its own ancestor), when the merged kernel stays within the input cap (else
//!    `input_cap` counts it), and when the merged kernel is of a kind a code generator
//!    knows. Nothing is recomputed: each sibling's body appears once. The merge repeats
//!    until no siblings are left, so a second run of the pass changes nothing.
//!
//! Each kernel is counted by kind in the report: `elementwise_chain`, `reduction_prologue`,
//! `reduction_epilogue`, `reduction_prologue_epilogue`, `epilogue`, and each horizontal
//! merge as `horizontal_elementwise` or `horizontal_reduction`. The fused body runs the
//! same ops in the same order on the same values, so results are equal bit for bit on the
//! interpreter.
//!
//! # Example
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType, UnaryOp};
//! use kiln_passes::{Fuse, Pass};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([4, 8], DType::F32))?;
//! let w = g.add_param("w", TensorType::new([8, 3], DType::F32))?;
//! let b = g.add_param("b", TensorType::new([3], DType::F32))?;
//! let d = g.add_op(Op::Dot { transpose_a: false, transpose_b: false }, &[x, w])?;
//! let y = g.add_op(Op::Binary { f: BinaryOp::Add }, &[d, b])?;
//! let r = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[y])?;
//! let e = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[r])?;
//! let s = g.add_op(Op::Reduce { f: kiln_ir::ReduceOp::Sum, axes: Some(vec![1]), keepdims: false }, &[e])?;
//! let l = g.add_op(Op::Unary { f: UnaryOp::Log }, &[s])?;
//! g.set_outputs(vec![r, l])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[4,8]
//! %1 = param \"w\" : f32[8,3]
//! %2 = param \"b\" : f32[3]
//! %3 = dot(%0, %1) {transpose_a=false, transpose_b=false} : f32[4,3]
//! %4 = add(%3, %2) : f32[4,3]
//! %5 = relu(%4) : f32[4,3]
//! %6 = exp(%5) : f32[4,3]
//! %7 = sum(%6) {axes=[1], keepdims=false} : f32[4]
//! %8 = log(%7) : f32[4]
//! return %5, %8
//! ");
//! // relu's value is an output, so the reduction kernel reads it instead of absorbing it,
//! // and it closes the dot's epilogue kernel instead.
//! let report = Fuse::default().run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[4,8]
//! %1 = param \"w\" : f32[8,3]
//! %2 = param \"b\" : f32[3]
//! %3 = fused.epilogue(%0, %1, %2) : f32[4,3]
//!     $0 = dot(in0, in1) {transpose_a=false, transpose_b=false} : f32[4,3]
//!     $1 = add($0, in2) : f32[4,3]
//!     $2 = relu($1) : f32[4,3]
//! %4 = fused.reduction(%3) : f32[4]
//!     $0 = exp(in0) : f32[4,3]
//!     $1 = sum($0) {axes=[1], keepdims=false} : f32[4]
//!     $2 = log($1) : f32[4]
//! return %3, %4
//! ");
//! assert_eq!(report.firings, vec![
//!     ("reduction_prologue_epilogue".to_string(), 1),
//!     ("epilogue".to_string(), 1),
//! ]);
//! # Ok::<(), kiln_ir::Error>(())
//! ```
//!
//! Horizontal fusion: a dense layer's bias gradient `sum(dy, 0)` and a batch-norm-style
//! `sum(dy * x, 0)` reduce over the same space and both read `dy`, so they become one
//! kernel with two outputs; `sum(dy, 1)` reduces other axes and stays apart.
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, ReduceOp, TensorType};
//! use kiln_passes::{Fuse, Pass};
//!
//! let sum = |axes: Vec<isize>| Op::Reduce { f: ReduceOp::Sum, axes: Some(axes), keepdims: false };
//! let mut g = Graph::new();
//! let dy = g.add_input("dy", TensorType::new([6, 3], DType::F32))?;
//! let x = g.add_input("x", TensorType::new([6, 3], DType::F32))?;
//! let db = g.add_op(sum(vec![0]), &[dy])?;
//! let p = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[dy, x])?;
//! let dg = g.add_op(sum(vec![0]), &[p])?;
//! let r = g.add_op(sum(vec![1]), &[dy])?;
//! g.set_outputs(vec![db, dg, r])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"dy\" : f32[6,3]
//! %1 = input \"x\" : f32[6,3]
//! %2 = sum(%0) {axes=[0], keepdims=false} : f32[3]
//! %3 = mul(%0, %1) : f32[6,3]
//! %4 = sum(%3) {axes=[0], keepdims=false} : f32[3]
//! %5 = sum(%0) {axes=[1], keepdims=false} : f32[6]
//! return %2, %4, %5
//! ");
//! let report = Fuse::default().run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"dy\" : f32[6,3]
//! %1 = input \"x\" : f32[6,3]
//! %2 = fused.reduction(%0, %1) : f32[3]
//!     $0 = sum(in0) {axes=[0], keepdims=false} : f32[3]  (output 0)
//!     $1 = mul(in0, in1) : f32[6,3]
//!     $2 = sum($1) {axes=[0], keepdims=false} : f32[3]  (output 1)
//! %3 = fused_output(%2) {index=1} : f32[3]
//! %4 = sum(%0) {axes=[1], keepdims=false} : f32[6]
//! return %2, %3, %4
//! ");
//! assert_eq!(report.firings, vec![
//!     ("reduction_prologue".to_string(), 1),
//!     ("horizontal_reduction".to_string(), 1),
//! ]);
//! # Ok::<(), kiln_ir::Error>(())
//! ```

mod horizontal;
mod plan;

use crate::util::remove_if_dead;
use crate::{Firings, Pass, PassReport};
use kiln_ir::{FusedArg, FusedInst, FusedKernel, FusedKind, Graph, Op, Result};
use plan::{plan, Group, Region};

/// The default cap on a fused kernel's distinct inputs (see the module docs, rule 3).
pub const MAX_KERNEL_INPUTS: usize = 16;

/// Fusion (pass name `fuse`); see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct Fuse {
    max_inputs: usize,
}

impl Default for Fuse {
    fn default() -> Self {
        Fuse {
            max_inputs: MAX_KERNEL_INPUTS,
        }
    }
}

impl Fuse {
    /// Fusion with at most `max_inputs` distinct inputs per kernel (at least 1).
    pub fn with_max_inputs(max_inputs: usize) -> Self {
        Fuse {
            max_inputs: max_inputs.max(1),
        }
    }

    /// The cap on a kernel's distinct inputs.
    pub fn max_inputs(&self) -> usize {
        self.max_inputs
    }
}

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn description(&self) -> &'static str {
        "groups elementwise chains, reductions with their prologue/epilogue, and GEMM/conv epilogues into fused kernels; merges sibling kernels reading one value into multi-output kernels"
    }

    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let mut firings = Firings::default();
        let order = graph.topo_order();
        let bound = order.iter().map(|n| n.index() + 1).max().unwrap_or(0);
        let mut rank = vec![0usize; bound];
        for (k, id) in order.iter().enumerate() {
            rank[id.index()] = k;
        }
        let planned = plan(graph, self.max_inputs)?;
        // Consumers' groups come first: when a producer group is rewritten later, replacing
        // its root rewires the consumer's fused node, so no id goes stale.
        for group in &planned.groups {
            if group.capped {
                firings.bump("input_cap");
            }
            if let Some(name) = fuse_group(graph, group, &rank)? {
                firings.bump(name);
            }
        }
        horizontal::fuse_siblings(graph, self.max_inputs, &mut firings)?;
        Ok(PassReport::new(before, graph.len(), firings.into_vec()))
    }
}

/// Builds the kernel of `group`, replaces its root by one fused node and removes the
/// members. Returns the firing name, or `None` when the kernel was not accepted (the group
/// then stays unfused).
fn fuse_group(g: &mut Graph, group: &Group, rank: &[usize]) -> Result<Option<&'static str>> {
    let body_ids = group.body_order(rank);
    let inputs = group.external_inputs(g, &body_ids)?;
    let mut input_types = Vec::with_capacity(inputs.len());
    for &i in &inputs {
        input_types.push(g.ty(i)?.clone());
    }
    let mut body = Vec::with_capacity(body_ids.len());
    for &m in &body_ids {
        let node = g.node(m)?;
        let Some(op) = node.kind.op() else {
            return Ok(None);
        };
        let mut args = Vec::new();
        for a in g.inputs_of(m)? {
            args.push(match body_ids.iter().position(|&b| b == a) {
                Some(j) => FusedArg::Value(j),
                None => match inputs.iter().position(|&i| i == a) {
                    Some(k) => FusedArg::Input(k),
                    None => return Ok(None),
                },
            });
        }
        body.push(FusedInst {
            op: op.clone(),
            args,
            ty: node.ty.clone(),
        });
    }
    let Some(output) = body_ids.iter().position(|&b| b == group.root) else {
        return Ok(None);
    };
    let Ok(kernel) = FusedKernel::new(input_types, body, output) else {
        return Ok(None);
    };
    let name = firing_name(group, &kernel);
    let fused = g.add_op(
        Op::Fused {
            kernel: Box::new(kernel),
        },
        &inputs,
    )?;
    g.replace_all_uses(group.root, fused)?;
    remove_if_dead(g, group.root)?;
    Ok(Some(name))
}

/// The report's name for a fusion decision.
fn firing_name(group: &Group, kernel: &FusedKernel) -> &'static str {
    let has = |r: Region| group.members.iter().any(|&(_, x)| x == r);
    match kernel.kind() {
        FusedKind::Elementwise => "elementwise_chain",
        FusedKind::Epilogue => "epilogue",
        FusedKind::Reduction => match (has(Region::Pre), has(Region::Post)) {
            (true, true) => "reduction_prologue_epilogue",
            (false, true) => "reduction_epilogue",
            _ => "reduction_prologue",
        },
        FusedKind::Generic => "generic",
    }
}
