//! The pass pipeline every compiled graph goes through before a backend runs it.
//!
//! Forward, backward and predict graphs all take kiln's *training* pipeline (simplify, fold,
//! CSE, DCE, fuse, plan memory): the inference-only rewrites (dropout removal, batch-norm
//! folding) are for exported models, and a hybridized block in predict mode traces no dropout
//! anyway. `KILN_PASSES`, `KILN_DUMP` and `KILN_DUMP_DIR` apply (see `kiln_passes::env`), so
//! `KILN_PASSES=none` runs the traced graph as it was recorded.
//!
//! The passes keep a graph's calling convention: its inputs and parameters (by name) and its
//! outputs (in order), which the executor binds.

use kiln_ir::{Graph, Result};
use kiln_passes::{PassManager, Pipeline, StatsTable};

/// `graph` optimized by the pass pipeline, with the pipeline's statistics. The graph is taken
/// by value and rewritten in place: a caller that keeps the traced graph passes a clone.
pub fn optimize(mut graph: Graph) -> Result<(Graph, StatsTable)> {
    let manager = PassManager::from_env(Pipeline::Training)?;
    let stats = manager.run(&mut graph)?;
    Ok((graph, stats))
}
