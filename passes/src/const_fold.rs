//! Constant folding: an op whose inputs are all known is evaluated now, by the reference
//! interpreter, and replaced by a constant.
//!
//! "Known" inputs are constants and the creation ops without randomness (`full`, `arange`,
//! `linspace`). Those creation ops are not folded on their own: a `full` is smaller than the
//! constant it would become. Random ops are never folded (the frontend may substitute their
//! seeds at run time). A result with more than [`ConstFold::max_elements`] elements stays an
//! op, so folding never grows the graph by more than that many values per node. An op the
//! interpreter rejects (the maximum of an empty set) is left for the run to report.
//!
//! Results are exactly the interpreter's: the backend would compute the same op.
//!
//! # Example
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, Tensor, TensorType, UnaryOp};
//! use kiln_passes::{ConstFold, Pass};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([3], DType::F32))?;
//! let c = g.add_const(Tensor::from_vec(vec![1.0f32, 4.0, 9.0], [3])?)?;
//! let s = g.add_op(Op::Unary { f: UnaryOp::Sqrt }, &[c])?;
//! let y = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[x, s])?;
//! g.set_outputs(vec![y])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[3]
//! %1 = const [1, 4, 9] : f32[3]
//! %2 = sqrt(%1) : f32[3]
//! %3 = mul(%0, %2) : f32[3]
//! return %3
//! ");
//! ConstFold::default().run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[3]
//! %1 = const [1, 2, 3] : f32[3]
//! %2 = mul(%0, %1) : f32[3]
//! return %2
//! ");
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::util::replace_and_clean;
use crate::{Firings, Pass, PassReport};
use kiln_ir::graph::NodeKind;
use kiln_ir::interp::eval_typed;
use kiln_ir::{Graph, NodeId, Op, Result, Tensor};

/// Constant folding (pass name `fold`).
#[derive(Clone, Debug)]
pub struct ConstFold {
    /// Results with more elements than this are not folded.
    pub max_elements: usize,
}

impl Default for ConstFold {
    fn default() -> Self {
        ConstFold { max_elements: 4096 }
    }
}

/// A creation op whose value is known without running the graph.
fn is_known_creation(op: &Op) -> bool {
    matches!(
        op,
        Op::Full { .. } | Op::Arange { .. } | Op::Linspace { .. }
    )
}

/// The value of a node that is a constant or a known creation op.
fn known_value(g: &Graph, id: NodeId) -> Option<Tensor> {
    let node = g.node(id).ok()?;
    match &node.kind {
        NodeKind::Const(t) => Some(t.clone()),
        NodeKind::Op(op) if is_known_creation(op) => eval_typed(op, &[], &node.ty).ok(),
        _ => None,
    }
}

/// Evaluates op node `id` if all its inputs are known, it is not random, and its result
/// has at most `max_elements` elements (`None`: no limit).
pub(crate) fn try_fold(
    g: &Graph,
    id: NodeId,
    max_elements: Option<usize>,
) -> Result<Option<Tensor>> {
    let node = g.node(id)?;
    let NodeKind::Op(op) = &node.kind else {
        return Ok(None);
    };
    if op.is_random() || max_elements.is_some_and(|m| node.ty.shape.numel() > m) {
        return Ok(None);
    }
    let inputs = g.inputs_of(id)?;
    if inputs.is_empty() {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(inputs.len());
    for i in inputs {
        match known_value(g, i) {
            Some(t) => values.push(t),
            None => return Ok(None),
        }
    }
    let views: Vec<_> = values.iter().map(Tensor::view).collect();
    Ok(eval_typed(op, &views, &node.ty).ok())
}

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "fold"
    }
    fn description(&self) -> &'static str {
        "evaluates ops whose inputs are all constants (results up to a size limit)"
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let mut firings = Firings::default();
        for id in graph.topo_order() {
            if !graph.contains(id) {
                continue;
            }
            if let Some(value) = try_fold(graph, id, Some(self.max_elements))? {
                let name = graph.op(id)?.map_or("op", Op::name).to_string();
                let c = graph.add_const(value)?;
                replace_and_clean(graph, id, c)?;
                firings.bump(&format!("fold-{name}"));
            }
        }
        Ok(PassReport::new(before, graph.len(), firings.into_vec()))
    }
}
