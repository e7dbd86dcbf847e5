//! Dead-code elimination: nodes no output depends on are removed.
//!
//! Inputs and parameters stay even when unused: they are the graph's calling convention
//! (a caller still binds them by name). Results are unchanged exactly.
//!
//! # Example
//!
//! ```
//! use kiln_ir::{DType, Graph, Op, TensorType, UnaryOp};
//! use kiln_passes::{Dce, Pass};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([2], DType::F32))?;
//! let dead = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
//! g.add_op(Op::Unary { f: UnaryOp::Log }, &[dead])?;
//! let y = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[x])?;
//! g.set_outputs(vec![y])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[2]
//! %1 = exp(%0) : f32[2]
//! %2 = log(%1) : f32[2]
//! %3 = tanh(%0) : f32[2]
//! return %3
//! ");
//! let report = Dce.run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[2]
//! %1 = tanh(%0) : f32[2]
//! return %1
//! ");
//! assert_eq!((report.nodes_before, report.nodes_after), (4, 2));
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::{Firings, Pass, PassReport};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Graph, Result};

/// Dead-code elimination (pass name `dce`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }
    fn description(&self) -> &'static str {
        "removes nodes that no output depends on (inputs and parameters stay)"
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let mut live = vec![
            false;
            graph
                .node_ids()
                .iter()
                .map(|n| n.index() + 1)
                .max()
                .unwrap_or(0)
        ];
        let mut stack: Vec<_> = graph.outputs().to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(graph.inputs_of(id)?);
            }
        }
        let mut firings = Firings::default();
        // Users come after their inputs in topological order: removing in reverse order
        // removes every dead user before its dead input.
        for id in graph.topo_order().into_iter().rev() {
            let node = graph.node(id)?;
            if live[id.index()]
                || matches!(node.kind, NodeKind::Input { .. } | NodeKind::Param { .. })
            {
                continue;
            }
            graph.remove_node(id)?;
            firings.bump("dce-remove");
        }
        Ok(PassReport::new(before, graph.len(), firings.into_vec()))
    }
}
