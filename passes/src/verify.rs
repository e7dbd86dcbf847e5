//! The verifier: the invariants every pass must keep, checked between passes.
//!
//! [`verify`] checks that
//! - the graph is acyclic and every node is reachable in [`Graph::topo_order`];
//! - every op node has exactly one input edge per position `0..n`;
//! - shape/dtype inference, run again on every op node from its inputs' *current* types,
//!   gives the type the node records (so a pass cannot change a value's shape or dtype
//!   without the verifier noticing), and every constant's type is its tensor's;
//! - input and parameter names are non-empty and unique, and every output is a node.
//!
//! Shape inference itself runs when a node is added ([`Graph::add_op`]); the verifier is the
//! same inference run over the whole graph, so it doubles as the pipeline's
//! shape/dtype-inference pass.

use kiln_ir::graph::NodeKind;
use kiln_ir::infer::infer;
use kiln_ir::{Error, Graph, Result};
use petgraph::Direction;
use std::collections::HashSet;

/// Checks `g`'s invariants (see the module docs); the error names the offending node as in
/// the text form (`%k`) and what is wrong.
pub fn verify(g: &Graph) -> Result<()> {
    let order = g.topo_order();
    if order.len() != g.len() {
        return Err(Error::Graph(format!(
            "verify: the graph has a cycle ({} of {} nodes are in topological order)",
            order.len(),
            g.len()
        )));
    }
    let pg = g.petgraph();
    let mut number = vec![usize::MAX; order.iter().map(|n| n.index() + 1).max().unwrap_or(0)];
    for (k, id) in order.iter().enumerate() {
        number[id.index()] = k;
    }
    let mut names = HashSet::new();
    for &id in &order {
        let node = g.node(id)?;
        let k = number[id.index()];
        let mut positions: Vec<usize> = pg
            .edges_directed(id, Direction::Incoming)
            .map(|e| *e.weight())
            .collect();
        positions.sort_unstable();
        match &node.kind {
            NodeKind::Input { name } | NodeKind::Param { name } => {
                if name.is_empty() || !names.insert(name.clone()) {
                    return Err(Error::Graph(format!(
                        "verify: %{k}: binding name {name:?} is empty or used twice"
                    )));
                }
                if !positions.is_empty() {
                    return Err(Error::Graph(format!(
                        "verify: %{k} ({}) has input edges",
                        node.kind.describe()
                    )));
                }
            }
            NodeKind::Const(t) => {
                if !positions.is_empty() || t.ty() != node.ty {
                    return Err(Error::Graph(format!(
                        "verify: %{k} (const) records {} but holds {} with {} input edge(s)",
                        node.ty,
                        t.ty(),
                        positions.len()
                    )));
                }
            }
            NodeKind::Op(op) => {
                if positions.iter().enumerate().any(|(i, &p)| i != p) {
                    return Err(Error::Graph(format!(
                        "verify: %{k} ({}) has input positions {positions:?}, expected 0..{}",
                        op.name(),
                        positions.len()
                    )));
                }
                let types = g
                    .inputs_of(id)?
                    .iter()
                    .map(|&i| g.ty(i).cloned())
                    .collect::<Result<Vec<_>>>()?;
                let ty = infer(op, &types).map_err(|e| {
                    Error::Graph(format!(
                        "verify: %{k} ({}) no longer infers: {e}",
                        op.name()
                    ))
                })?;
                if ty != node.ty {
                    return Err(Error::Graph(format!(
                        "verify: %{k} ({}) records type {} but its inputs now give {}",
                        op.name(),
                        node.ty,
                        ty
                    )));
                }
            }
        }
    }
    for (i, &o) in g.outputs().iter().enumerate() {
        if !g.contains(o) {
            return Err(Error::Graph(format!(
                "verify: output {i} is node {}, which is not in the graph",
                o.index()
            )));
        }
    }
    Ok(())
}
