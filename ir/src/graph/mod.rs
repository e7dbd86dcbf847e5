//! Dataflow graphs of ops over petgraph, with text, DOT and JSON forms and a runner.
//!
//! A [`Graph`] is a directed acyclic graph whose nodes are graph inputs, parameters, constants
//! or ops, and whose edges carry a value from producer to consumer, labelled with the consumer's
//! input position. Every node knows its [`TensorType`], computed by [`crate::infer::infer`] when
//! the node is added, so a graph that builds is a graph whose shapes check.
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType};
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([2, 3], DType::F32)).unwrap();
//! let b = g.add_param("b", TensorType::new([3], DType::F32)).unwrap();
//! let y = g.add_op(Op::Binary { f: BinaryOp::Add }, &[x, b]).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! assert_eq!(g.ty(y).unwrap(), &TensorType::new([2, 3], DType::F32));
//! assert_eq!(
//!     g.to_text(),
//!     "%0 = input \"x\" : f32[2,3]\n%1 = param \"b\" : f32[3]\n%2 = add(%0, %1) : f32[2,3]\nreturn %2\n"
//! );
//! ```
//!
//! Readable forms: [`Graph::to_text`] (also `Display`), [`Graph::to_dot`] (Graphviz) and
//! [`Graph::to_json`] / [`Graph::from_json`] (the versioned exchange format documented in
//! [`json`]; [`Graph::save_json`] / [`Graph::load_json`] for files). All three number nodes
//! `%0, %1, ...` in [`Graph::topo_order`], which need not equal the [`NodeId`]s once passes
//! have removed nodes.
//!
//! Running: [`Graph::run`] on the reference interpreter, [`Graph::run_with`] on a backend's
//! kernels.

mod dot;
pub mod json;
mod run;
pub mod testing;
mod text;

pub(crate) use text::attrs_text as op_attrs_text;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::infer::infer;
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorType};
use crate::vjp::VjpBuilder;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub use json::{FORMAT_TAG, FORMAT_VERSION};

/// A node's id in a [`Graph`]. Ids stay valid while other nodes are removed.
pub type NodeId = NodeIndex<u32>;

/// What a node is.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A graph input fed at run time (data, labels...).
    Input {
        /// The name it is bound by; unique among a graph's inputs and parameters.
        name: String,
    },
    /// A parameter: an input too, bound by name, but holding a model's weights (hybridize
    /// binds a block's parameters this way).
    Param {
        /// The name it is bound by; unique among a graph's inputs and parameters.
        name: String,
    },
    /// A constant stored in the graph (meant for small values).
    Const(Tensor),
    /// An op applied to the node's inputs.
    Op(Op),
}

impl NodeKind {
    /// The bound name of an input or parameter.
    pub fn name(&self) -> Option<&str> {
        match self {
            NodeKind::Input { name } | NodeKind::Param { name } => Some(name),
            NodeKind::Const(_) | NodeKind::Op(_) => None,
        }
    }

    /// The op, when this is an op node.
    pub fn op(&self) -> Option<&Op> {
        match self {
            NodeKind::Op(op) => Some(op),
            _ => None,
        }
    }

    /// A short description for messages: the op's name, `input "x"`, `param "w"` or `const`.
    pub fn describe(&self) -> String {
        match self {
            NodeKind::Input { name } => format!("input {name:?}"),
            NodeKind::Param { name } => format!("param {name:?}"),
            NodeKind::Const(_) => "const".to_string(),
            NodeKind::Op(op) => op.name().to_string(),
        }
    }
}

/// A node: what it is and the type of the value it produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// The type of its value, checked by shape inference when the node was added.
    pub ty: TensorType,
}

/// A dataflow graph of ops: nodes in a petgraph [`StableDiGraph`], edges weighted by the
/// consumer's input position, plus the ordered list of outputs.
///
/// Invariants kept by every method: the graph is acyclic, every op node has exactly one edge
/// per input position `0..n`, every node's type is what inference gives for its inputs, and
/// input/parameter names are unique.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableDiGraph<Node, usize, u32>,
    /// Inputs and parameters in the order they were added (their binding order).
    named: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    // ----- building --------------------------------------------------------------------------

    /// Adds a graph input bound by `name` at run time. Errors on an empty or duplicate name.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> Result<NodeId> {
        let name = name.into();
        self.check_new_name(&name)?;
        let id = self.insert(NodeKind::Input { name }, ty)?;
        self.named.push(id);
        Ok(id)
    }

    /// Adds a parameter bound by `name` at run time. Errors on an empty or duplicate name.
    pub fn add_param(&mut self, name: impl Into<String>, ty: TensorType) -> Result<NodeId> {
        let name = name.into();
        self.check_new_name(&name)?;
        let id = self.insert(NodeKind::Param { name }, ty)?;
        self.named.push(id);
        Ok(id)
    }

    /// Adds a constant.
    pub fn add_const(&mut self, value: Tensor) -> Result<NodeId> {
        let ty = value.ty();
        self.insert(NodeKind::Const(value), ty)
    }

    /// Adds `op` applied to `inputs` (in order). Its type is inferred now: bad shapes or dtypes
    /// give inference's error, which names the op and the shapes.
    pub fn add_op(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let mut types = Vec::with_capacity(inputs.len());
        for (pos, &id) in inputs.iter().enumerate() {
            let node = self.g.node_weight(id).ok_or_else(|| {
                Error::Graph(format!(
                    "{}: input {pos} is node {}, which is not in this graph",
                    op.name(),
                    id.index()
                ))
            })?;
            types.push(node.ty.clone());
        }
        let ty = infer(&op, &types)?;
        if let Op::FusedOutput { index, ty } = &op {
            self.check_fused_output(*index, ty, inputs[0])?;
        }
        let id = self.insert(NodeKind::Op(op), ty)?;
        for (pos, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, id, pos);
        }
        Ok(id)
    }

    /// A `fused_output` node must read a fused node whose kernel has output `index` of type
    /// `ty` (inference sees only types, so the graph checks the producer itself).
    fn check_fused_output(&self, index: usize, ty: &TensorType, src: NodeId) -> Result<()> {
        let node = self.node(src)?;
        let Some(Op::Fused { kernel }) = node.kind.op() else {
            return Err(Error::Graph(format!(
                "fused_output: input is node {} ({}), not a fused node",
                src.index(),
                node.kind.describe()
            )));
        };
        match kernel.output_type_of(index) {
            Some(t) if t == ty => Ok(()),
            Some(t) => Err(Error::Graph(format!(
                "fused_output: output {index} of node {} has type {t}, not {ty}",
                src.index()
            ))),
            None => Err(Error::Graph(format!(
                "fused_output: node {} has {} output(s), no output {index}",
                src.index(),
                kernel.num_outputs()
            ))),
        }
    }

    /// Sets the graph's outputs, in order (a node may appear more than once).
    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) -> Result<()> {
        for (i, &id) in outputs.iter().enumerate() {
            self.check(id).map_err(|_| {
                Error::Graph(format!(
                    "output {i} is node {}, which is not in this graph",
                    id.index()
                ))
            })?;
        }
        self.outputs = outputs;
        Ok(())
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::Graph(
                "an input or parameter needs a non-empty name".into(),
            ));
        }
        if self.input_id(name).is_some() {
            return Err(Error::Graph(format!(
                "an input or parameter named {name:?} already exists"
            )));
        }
        Ok(())
    }

    fn insert(&mut self, kind: NodeKind, ty: TensorType) -> Result<NodeId> {
        // Sizes must fit in memory: later code (kernels, memory planning) multiplies dims
        // without checking.
        let bytes = ty
            .shape
            .iter()
            .try_fold(ty.dtype.size_of(), |acc, &d| acc.checked_mul(d));
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return Err(Error::Graph(format!(
                "{}: type {} is too large to hold",
                kind.describe(),
                ty
            )));
        }
        self.g
            .try_add_node(Node { kind, ty })
            .map_err(|e| Error::Graph(format!("cannot add a node: {e}")))
    }

    // ----- reading ---------------------------------------------------------------------------

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// True when `id` is a node of this graph.
    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.g
            .node_weight(id)
            .ok_or_else(|| Error::Graph(format!("no node {} in this graph", id.index())))
    }

    /// The type of node `id`'s value.
    pub fn ty(&self, id: NodeId) -> Result<&TensorType> {
        Ok(&self.node(id)?.ty)
    }

    /// The op of node `id`, or `None` for inputs, parameters and constants.
    pub fn op(&self, id: NodeId) -> Result<Option<&Op>> {
        Ok(self.node(id)?.kind.op())
    }

    /// The inputs of node `id`, in input-position order.
    pub fn inputs_of(&self, id: NodeId) -> Result<Vec<NodeId>> {
        self.check(id)?;
        Ok(self.inputs_unchecked(id))
    }

    fn inputs_unchecked(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort_unstable_by_key(|&(pos, _)| pos);
        edges.into_iter().map(|(_, src)| src).collect()
    }

    /// The nodes that use node `id` as an input, each once, in id order.
    pub fn users(&self, id: NodeId) -> Result<Vec<NodeId>> {
        self.check(id)?;
        let mut users: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }

    /// Number of uses of node `id`: input edges into other nodes plus appearances among the
    /// outputs. A node with no uses is dead.
    pub fn use_count(&self, id: NodeId) -> Result<usize> {
        self.check(id)?;
        Ok(self.g.edges_directed(id, Direction::Outgoing).count()
            + self.outputs.iter().filter(|&&o| o == id).count())
    }

    /// Graph inputs (not parameters), as (name, id), in the order they were added.
    pub fn inputs(&self) -> Vec<(&str, NodeId)> {
        self.named_of(|k| matches!(k, NodeKind::Input { .. }))
    }

    /// Parameters, as (name, id), in the order they were added.
    pub fn params(&self) -> Vec<(&str, NodeId)> {
        self.named_of(|k| matches!(k, NodeKind::Param { .. }))
    }

    /// Inputs and parameters together, as (name, id), in the order they were added.
    pub fn bindings(&self) -> Vec<(&str, NodeId)> {
        self.named_of(|_| true)
    }

    fn named_of(&self, keep: impl Fn(&NodeKind) -> bool) -> Vec<(&str, NodeId)> {
        self.named
            .iter()
            .filter_map(|&id| {
                let node = self.g.node_weight(id)?;
                match node.kind.name() {
                    Some(name) if keep(&node.kind) => Some((name, id)),
                    _ => None,
                }
            })
            .collect()
    }

    /// The input or parameter bound by `name`.
    pub fn input_id(&self, name: &str) -> Option<NodeId> {
        self.named.iter().copied().find(|&id| {
            self.g
                .node_weight(id)
                .and_then(|n| n.kind.name())
                .is_some_and(|n| n == name)
        })
    }

    /// The outputs, in order.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// Every node id, in id order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    /// Every node in a topological order (inputs before their users): first the inputs and
    /// parameters in binding order, then the other nodes, the lowest id first among those
    /// ready. Deterministic, so the readable forms are too.
    pub fn topo_order(&self) -> Vec<NodeId> {
        let bound = self.g.node_bound();
        let mut pending = vec![0usize; bound];
        let mut order = Vec::with_capacity(self.len());
        let mut ready = BinaryHeap::new();
        let mut is_named = vec![false; bound];
        for &id in &self.named {
            is_named[id.index()] = true;
        }
        for id in self.g.node_indices() {
            pending[id.index()] = self.g.edges_directed(id, Direction::Incoming).count();
            if pending[id.index()] == 0 && !is_named[id.index()] {
                ready.push(Reverse(id));
            }
        }
        let mut release = |id: NodeId, ready: &mut BinaryHeap<Reverse<NodeId>>| {
            for user in self.g.neighbors_directed(id, Direction::Outgoing) {
                // One decrement per edge: a node using `id` twice waits for both.
                pending[user.index()] -= 1;
                if pending[user.index()] == 0 {
                    ready.push(Reverse(user));
                }
            }
        };
        for &id in &self.named {
            order.push(id);
            release(id, &mut ready);
        }
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            release(id, &mut ready);
        }
        order
    }

    /// The nodes the outputs depend on (outputs included), as a mask indexed by node index.
    pub(crate) fn live_mask(&self) -> Vec<bool> {
        let mut live = vec![false; self.g.node_bound()];
        let mut stack: Vec<NodeId> = self.outputs.clone();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(self.g.neighbors_directed(id, Direction::Incoming));
            }
        }
        live
    }

    pub(crate) fn check(&self, id: NodeId) -> Result<()> {
        self.node(id).map(|_| ())
    }

    // ----- rewriting (for passes) --------------------------------------------------------------

    /// Removes node `id`, which must have no uses (see [`Graph::use_count`]); returns it.
    pub fn remove_node(&mut self, id: NodeId) -> Result<Node> {
        let uses = self.use_count(id)?;
        if uses > 0 {
            let desc = self.node(id)?.kind.describe();
            return Err(Error::Graph(format!(
                "cannot remove node {} ({desc}): it still has {uses} use(s)",
                id.index()
            )));
        }
        self.named.retain(|&n| n != id);
        self.g
            .remove_node(id)
            .ok_or_else(|| Error::Graph(format!("no node {} in this graph", id.index())))
    }

    /// Makes every user of `old` (and every output slot holding `old`) use `new` instead,
    /// keeping input positions. `new` itself keeps using `old` if it does (so `x` can be
    /// replaced by `f(x)`). Errors if the types differ or if the rewrite would create a cycle
    /// (a user of `old` that `new` depends on).
    ///
    /// The `fused_output` nodes of a multi-output fused node read its kernel's other
    /// outputs, not its value: they move to `new` only when `new` is a fused node with the
    /// same kernel, and otherwise stay on `old` (which then keeps computing them).
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) -> Result<()> {
        let (old_ty, new_ty) = (self.ty(old)?, self.ty(new)?);
        if old_ty != new_ty {
            return Err(Error::Graph(format!(
                "cannot replace node {} ({old_ty}) by node {} ({new_ty}): types differ",
                old.index(),
                new.index()
            )));
        }
        if old == new {
            return Ok(());
        }
        let ancestors = self.ancestors(new);
        let same_kernel = match (self.op(old)?, self.op(new)?) {
            (Some(Op::Fused { kernel: a }), Some(Op::Fused { kernel: b })) => a == b,
            _ => false,
        };
        let is_projection = |n: NodeId| {
            matches!(
                self.g.node_weight(n).map(|w| &w.kind),
                Some(NodeKind::Op(Op::FusedOutput { .. }))
            )
        };
        let uses: Vec<(petgraph::stable_graph::EdgeIndex<u32>, NodeId, usize)> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .filter(|e| e.target() != new)
            .filter(|e| same_kernel || !is_projection(e.target()))
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        if let Some(&(_, user, _)) = uses.iter().find(|(_, user, _)| ancestors[user.index()]) {
            return Err(Error::Graph(format!(
                "cannot replace node {} by node {}: node {} uses the former and the latter depends on it",
                old.index(),
                new.index(),
                user.index()
            )));
        }
        for (edge, user, pos) in uses {
            self.g.remove_edge(edge);
            self.g.add_edge(new, user, pos);
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
        Ok(())
    }

    /// Everything `id` depends on, including itself, as a mask indexed by node index.
    fn ancestors(&self, id: NodeId) -> Vec<bool> {
        let mut seen = vec![false; self.g.node_bound()];
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut seen[n.index()], true) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        seen
    }

    /// The underlying petgraph graph, for read-only use of petgraph's algorithms. Edge
    /// weights are input positions.
    pub fn petgraph(&self) -> &StableDiGraph<Node, usize, u32> {
        &self.g
    }
}

/// Building backward graphs: each VJP's `apply` appends a node.
///
/// `shape`/`dtype` of an id that is not in the graph read as a scalar f32 (the trait cannot
/// fail); `apply` then rejects that id with an error.
impl VjpBuilder for Graph {
    type Value = NodeId;

    fn apply(&mut self, op: Op, inputs: &[&NodeId]) -> Result<NodeId> {
        let ids: Vec<NodeId> = inputs.iter().map(|&&id| id).collect();
        self.add_op(op, &ids)
    }

    fn shape(&self, v: &NodeId) -> Shape {
        self.ty(*v).map(|t| t.shape.clone()).unwrap_or_default()
    }

    fn dtype(&self, v: &NodeId) -> DType {
        self.ty(*v).map(|t| t.dtype).unwrap_or(DType::F32)
    }
}

/// Dense numbering of nodes in topological order: `(order, number)` where `number[id.index()]`
/// is the node's position in `order` (the `%k` of the readable forms).
pub(crate) fn numbering(g: &Graph) -> (Vec<NodeId>, Vec<usize>) {
    let order = g.topo_order();
    let mut number = vec![usize::MAX; g.g.node_bound()];
    for (k, id) in order.iter().enumerate() {
        number[id.index()] = k;
    }
    (order, number)
}
