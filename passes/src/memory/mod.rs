//! Memory planning: liveness-based buffer reuse and in-place elementwise updates.
//!
//! The planner walks the graph in the executor's order ([`Graph::topo_order`]) and gives
//! every op's value a buffer:
//!
//! - a value's buffer is free again right after the value's last use, and a later value takes
//!   the smallest free buffer that is large enough (best fit, as MXNet's nnvm planner does),
//!   or a new buffer when none is;
//! - an elementwise op (see [`writes_elementwise`]) whose input is used for the last time by
//!   that op and has the same element count and element size writes into the input's buffer
//!   (*in place*);
//! - graph inputs, parameters and constants are never written, and a graph output's buffer is
//!   never reused (the caller receives it);
//! - a multi-output fused kernel (horizontal fusion) writes all its outputs when it runs:
//!   each `fused_output` value gets a buffer of its own at the fused node's step (listed
//!   `written by` the fused node) and lives to its own last use. A `fused_output` node does
//!   not read the fused node's value, so that value (output 0) may die at once, and such a
//!   kernel never runs in place (its other outputs still read the input).
//!
//! The buffer an op writes is chosen while its inputs are still being read, so only the
//! in-place case lets an output share memory with an input.
//!
//! The pass ([`PlanMemory`], name `plan_memory`) does not change the graph: it reports the
//! planned peak bytes against one buffer per value in the statistics table, and the manager
//! writes the plan as `NN-plan_memory.plan.txt` next to the graph dumps. Executors plan the
//! graph they run the same way ([`plan`]).
//!
//! # Example
//!
//! ```
//! use kiln_ir::{DType, Graph, Op, TensorType, UnaryOp};
//! use kiln_passes::memory::{plan, PlanMemory};
//! use kiln_passes::Pass;
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([2, 2], DType::F32))?;
//! let a = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
//! let dot = Op::Dot { transpose_a: false, transpose_b: false };
//! let b = g.add_op(dot.clone(), &[a, a])?;
//! let c = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[b])?;
//! let d = g.add_op(dot, &[c, c])?;
//! g.set_outputs(vec![d])?;
//! // Before (and after: the pass only plans):
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[2,2]
//! %1 = exp(%0) : f32[2,2]
//! %2 = dot(%1, %1) {transpose_a=false, transpose_b=false} : f32[2,2]
//! %3 = tanh(%2) : f32[2,2]
//! %4 = dot(%3, %3) {transpose_a=false, transpose_b=false} : f32[2,2]
//! return %4
//! ");
//! // exp's buffer is free once the first dot has read it; tanh overwrites its input.
//! assert_eq!(plan(&g)?.to_string(), "\
//! buf0: 16 bytes
//! buf1: 16 bytes
//! %1 -> buf0
//! %2 -> buf1
//! %3 -> buf1 (in place of %2)
//! %4 -> buf0
//! peak 32 bytes planned vs 64 bytes one buffer per value (50.0%); 4 values in 2 buffers, 1 in place
//! ");
//! let report = PlanMemory.run(&mut g)?;
//! assert!(!report.changed);
//! let memory = report.memory.expect("plan_memory reports memory");
//! assert_eq!((memory.peak_bytes, memory.naive_bytes), (32, 64));
//! # Ok::<(), kiln_ir::Error>(())
//! ```

mod plan;

pub use plan::{plan, writes_elementwise, BufferId, BufferInfo, MemoryPlan};

use crate::stats::MemoryStats;
use crate::{Pass, PassReport};
use kiln_ir::{Graph, Result};

/// Memory planning (pass name `plan_memory`): plans buffers, reports bytes, changes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanMemory;

impl Pass for PlanMemory {
    fn name(&self) -> &'static str {
        "plan_memory"
    }
    fn description(&self) -> &'static str {
        "plans buffer reuse and in-place updates; reports peak bytes vs one buffer per value"
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let p = plan(graph)?;
        let mut report = PassReport::new(graph.len(), graph.len(), Vec::new());
        report.memory = Some(MemoryStats {
            peak_bytes: p.peak_bytes,
            naive_bytes: p.naive_bytes,
            buffers: p.buffers.len(),
            in_place: p.in_place.len(),
        });
        report
            .artifacts
            .push(("plan.txt".to_string(), p.to_string()));
        Ok(report)
    }
}

/// Whether the process environment leaves memory planning on (`KILN_PASSES` does not turn
/// `plan_memory` off), which is when executors reuse buffers according to the plan.
/// An unparsable environment is an error.
pub fn enabled_by_env() -> Result<bool> {
    let pm = crate::PassManager::from_env(crate::Pipeline::Training)?;
    Ok(pm.enabled_names().contains(&"plan_memory"))
}
