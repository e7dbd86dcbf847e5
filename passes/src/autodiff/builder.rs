//! The [`VjpBuilder`] that appends a VJP's ops to the backward graph under construction.

use kiln_ir::graph::NodeKind;
use kiln_ir::vjp::VjpBuilder;
use kiln_ir::{DType, Error, Graph, NodeId, Op, Result, Shape, TensorType};
use std::collections::HashMap;

/// A value a VJP works with: a node of the forward graph (an input or output of the op being
/// differentiated) or a node of the backward graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// A forward value; it enters the backward graph only when an op reads it.
    Fwd(NodeId),
    /// A backward value.
    Bwd(NodeId),
}

/// Builds the backward graph. Forward values enter it lazily: constants and non-random
/// creation ops are copied, anything else becomes a saved-value input, once per value.
pub(crate) struct BackwardBuilder<'a> {
    fwd: &'a Graph,
    bwd: Graph,
    /// Forward value -> its node in the backward graph (copy or saved input).
    imported: HashMap<NodeId, NodeId>,
    /// Saved values in the order they were first read: (forward node, backward input).
    saved: Vec<(NodeId, NodeId)>,
    /// Head-gradient inputs: (user output index, backward input), in output order.
    heads: Vec<(usize, NodeId)>,
    /// Backward node -> the forward value it imports.
    exported: HashMap<NodeId, NodeId>,
    /// The forward graph's ops with inputs, by (op and attributes, inputs); built on first use.
    fwd_ops: Option<HashMap<(String, Vec<NodeId>), NodeId>>,
}

impl<'a> BackwardBuilder<'a> {
    pub(crate) fn new(fwd: &'a Graph) -> Self {
        BackwardBuilder {
            fwd,
            bwd: Graph::new(),
            imported: HashMap::new(),
            saved: Vec::new(),
            heads: Vec::new(),
            exported: HashMap::new(),
            fwd_ops: None,
        }
    }

    pub(crate) fn graph(&self) -> &Graph {
        &self.bwd
    }

    pub(crate) fn graph_mut(&mut self) -> &mut Graph {
        &mut self.bwd
    }

    /// Adds the head-gradient input of user output `j` (called in increasing `j`).
    pub(crate) fn head_input(&mut self, j: usize, ty: TensorType) -> Result<NodeId> {
        let id = self
            .bwd
            .add_input(super::Differentiated::head_name(j), ty)?;
        self.heads.push((j, id));
        Ok(id)
    }

    /// The backward node of `v`, importing a forward value on first use.
    pub(crate) fn materialize(&mut self, v: &Value) -> Result<NodeId> {
        let id = match *v {
            Value::Bwd(id) => return Ok(id),
            Value::Fwd(id) => id,
        };
        if let Some(&b) = self.imported.get(&id) {
            return Ok(b);
        }
        let node = self.fwd.node(id)?;
        let b = match &node.kind {
            NodeKind::Const(t) => self.bwd.add_const(t.clone())?,
            // Recomputing a creation op costs less than keeping its value alive.
            NodeKind::Op(op) if !op.is_random() && self.fwd.inputs_of(id)?.is_empty() => {
                self.bwd.add_op(op.clone(), &[])?
            }
            _ => {
                // A provisional name: `finish` renames the saved inputs it keeps.
                let name = format!("saved:{}", self.saved.len());
                let b = self.bwd.add_input(name, node.ty.clone())?;
                self.saved.push((id, b));
                b
            }
        };
        self.imported.insert(id, b);
        self.exported.insert(b, id);
        Ok(b)
    }

    /// The forward node computing `op` from `inputs` when there is one: a VJP that needs a
    /// value the forward already computes (softmax cross-entropy's softmax, say) reads it
    /// instead of computing it again.
    fn forward_twin(&mut self, op: &Op, inputs: &[&Value]) -> Result<Option<NodeId>> {
        if inputs.is_empty() {
            return Ok(None);
        }
        let mut fwd_inputs = Vec::with_capacity(inputs.len());
        for v in inputs {
            let f = match **v {
                Value::Fwd(id) => Some(id),
                Value::Bwd(id) => self.exported.get(&id).copied(),
            };
            match f {
                Some(f) => fwd_inputs.push(f),
                None => return Ok(None),
            }
        }
        if self.fwd_ops.is_none() {
            let mut index = HashMap::new();
            for id in self.fwd.node_ids() {
                let Some(op) = self.fwd.op(id)? else {
                    continue;
                };
                let inputs = self.fwd.inputs_of(id)?;
                if !inputs.is_empty() {
                    index.entry((op_key(op), inputs)).or_insert(id);
                }
            }
            self.fwd_ops = Some(index);
        }
        Ok(self
            .fwd_ops
            .as_ref()
            .and_then(|index| index.get(&(op_key(op), fwd_inputs)).copied()))
    }

    /// The finished backward graph with `outputs`, keeping only the nodes they depend on, and
    /// the forward nodes it saves (in the order of its `saved:{i}` inputs). The inputs come
    /// first: the saved values, then every head (used or not).
    pub(crate) fn finish(self, outputs: Vec<NodeId>) -> Result<(Graph, Vec<NodeId>)> {
        let src = self.bwd;
        let bound = src
            .node_ids()
            .iter()
            .map(|id| id.index() + 1)
            .max()
            .unwrap_or(0);
        let mut live = vec![false; bound];
        let mut stack = outputs.clone();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(src.inputs_of(id)?);
            }
        }

        let mut out = Graph::new();
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        let mut saved = Vec::new();
        for &(fwd_id, b) in &self.saved {
            if live[b.index()] {
                let ty = src.ty(b)?.clone();
                let name = super::Differentiated::saved_name(saved.len());
                map.insert(b, out.add_input(name, ty)?);
                saved.push(fwd_id);
            }
        }
        for &(j, h) in &self.heads {
            let ty = src.ty(h)?.clone();
            map.insert(h, out.add_input(super::Differentiated::head_name(j), ty)?);
        }
        for id in src.topo_order() {
            if !live[id.index()] || map.contains_key(&id) {
                continue;
            }
            let new = match &src.node(id)?.kind {
                NodeKind::Const(t) => out.add_const(t.clone())?,
                NodeKind::Op(op) => {
                    let inputs = src
                        .inputs_of(id)?
                        .iter()
                        .map(|i| map.get(i).copied().ok_or_else(|| unmapped(*i)))
                        .collect::<Result<Vec<_>>>()?;
                    out.add_op(op.clone(), &inputs)?
                }
                NodeKind::Input { name } | NodeKind::Param { name } => {
                    return Err(Error::Graph(format!(
                        "autodiff: unexpected binding {name:?} in the backward graph"
                    )))
                }
            };
            map.insert(id, new);
        }
        let outputs = outputs
            .iter()
            .map(|o| map.get(o).copied().ok_or_else(|| unmapped(*o)))
            .collect::<Result<Vec<_>>>()?;
        out.set_outputs(outputs)?;
        Ok((out, saved))
    }
}

/// An op with its attributes, as a map key.
fn op_key(op: &Op) -> String {
    format!("{}{{{}}}", op.name(), op.attrs_text())
}

fn unmapped(id: NodeId) -> Error {
    Error::Graph(format!(
        "autodiff: backward node {} was not copied before its use",
        id.index()
    ))
}

/// `shape`/`dtype` of an id in neither graph read as a scalar f32 (the trait cannot fail);
/// `apply` then rejects it with an error.
impl VjpBuilder for BackwardBuilder<'_> {
    type Value = Value;

    fn apply(&mut self, op: Op, inputs: &[&Value]) -> Result<Value> {
        if let Some(id) = self.forward_twin(&op, inputs)? {
            return Ok(Value::Fwd(id));
        }
        let ids = inputs
            .iter()
            .map(|v| self.materialize(v))
            .collect::<Result<Vec<_>>>()?;
        Ok(Value::Bwd(self.bwd.add_op(op, &ids)?))
    }

    /// Backward values, bindings, constants, the forward's user outputs and values already
    /// imported are kept; any other forward value would become a new saved value.
    fn is_kept(&self, v: &Value) -> bool {
        let id = match *v {
            Value::Bwd(_) => return true,
            Value::Fwd(id) => id,
        };
        if self.imported.contains_key(&id) || self.fwd.outputs().contains(&id) {
            return true;
        }
        match self.fwd.node(id) {
            Ok(node) => !matches!(node.kind, NodeKind::Op(_)),
            Err(_) => false,
        }
    }

    fn shape(&self, v: &Value) -> Shape {
        self.ty(v).map(|t| t.shape.clone()).unwrap_or_default()
    }

    fn dtype(&self, v: &Value) -> DType {
        self.ty(v).map(|t| t.dtype).unwrap_or(DType::F32)
    }
}

impl BackwardBuilder<'_> {
    fn ty(&self, v: &Value) -> Result<&TensorType> {
        match *v {
            Value::Fwd(id) => self.fwd.ty(id),
            Value::Bwd(id) => self.bwd.ty(id),
        }
    }
}
