//! Common-subexpression elimination: two nodes computing the same op on the same inputs
//! become one, and so do two equal constants.
//!
//! Ops are compared by their full attributes (in a form that tells `-0.0` from `0.0`) and
//! their inputs in order; constants by dtype, shape and the bits of every value. Random ops
//! are never merged, even with equal seeds: two `dropout`s are two masks as far as the
//! program is concerned (the frontend may give them different seeds at run time). Inputs and
//! parameters are bound by name and never merged.
//!
//! Nodes are visited in topological order, so once two producers merge, their users become
//! equal and merge in the same sweep. Results are unchanged exactly.
//!
//! # Example
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType, UnaryOp};
//! use kiln_passes::{Cse, Pass};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([4], DType::F32))?;
//! let a = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
//! let b = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
//! let d1 = g.add_op(Op::Dropout { p: 0.5, seed: 1 }, &[a])?;
//! let d2 = g.add_op(Op::Dropout { p: 0.5, seed: 1 }, &[b])?;
//! let y = g.add_op(Op::Binary { f: BinaryOp::Add }, &[d1, d2])?;
//! g.set_outputs(vec![y])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[4]
//! %1 = exp(%0) : f32[4]
//! %2 = exp(%0) : f32[4]
//! %3 = dropout(%1) {p=0.5, seed=1} : f32[4]
//! %4 = dropout(%2) {p=0.5, seed=1} : f32[4]
//! %5 = add(%3, %4) : f32[4]
//! return %5
//! ");
//! Cse.run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[4]
//! %1 = exp(%0) : f32[4]
//! %2 = dropout(%1) {p=0.5, seed=1} : f32[4]
//! %3 = dropout(%1) {p=0.5, seed=1} : f32[4]
//! %4 = add(%2, %3) : f32[4]
//! return %4
//! ");
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::util::{const_key, op_key, replace_and_clean};
use crate::{Firings, Pass, PassReport};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Graph, NodeId, Result};
use std::collections::HashMap;

/// Common-subexpression elimination (pass name `cse`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }
    fn description(&self) -> &'static str {
        "merges nodes computing the same op on the same inputs (never random ops)"
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let mut firings = Firings::default();
        let mut seen: HashMap<String, NodeId> = HashMap::new();
        for id in graph.topo_order() {
            if !graph.contains(id) {
                continue;
            }
            let key = match &graph.node(id)?.kind {
                NodeKind::Input { .. } | NodeKind::Param { .. } => continue,
                NodeKind::Op(op) if op.is_random() => continue,
                NodeKind::Const(t) => format!("const {}", const_key(t)),
                NodeKind::Op(op) => {
                    let inputs: Vec<usize> =
                        graph.inputs_of(id)?.iter().map(|i| i.index()).collect();
                    format!("{} {inputs:?}", op_key(op))
                }
            };
            match seen.get(&key) {
                Some(&first) => {
                    let what = graph.node(id)?.kind.describe();
                    replace_and_clean(graph, id, first)?;
                    firings.bump(&format!("cse-{what}"));
                }
                None => {
                    seen.insert(key, id);
                }
            }
        }
        Ok(PassReport::new(before, graph.len(), firings.into_vec()))
    }
}
