//! kiln-passes: graph-to-graph transformations.
//!
//! - [`Pass`]: a named, switchable transformation of a [`Graph`]; [`PassManager`] runs an
//!   ordered list of them with statistics, a verifier between passes and dumps
//!   (see [`manager`] and, for the environment variables, [`mod@env`]);
//! - [`rewrite`]: a small declarative pattern language over the IR, one named rule a line;
//! - the passes: [`simplify`] (algebraic rules), [`const_fold`], [`cse`], [`dce`], [`fuse`]
//!   (fusion into kernels), [`memory`] (memory planning: buffer reuse and in-place updates),
//!   and the inference rewrites [`inference`] (dropout removal, batch-norm folding);
//! - [`mod@verify`]: graph invariants and shape/dtype re-inference;
//! - [`autodiff`]: a graph into a forward and a backward graph;
//! - `testing` (cargo feature `testing`): the random-graph generator and property-test
//!   helpers shared by the test suites of this crate, the backends and the root crate.

pub mod autodiff;
pub mod const_fold;
pub mod cse;
pub mod dce;
pub mod env;
pub mod fuse;
pub mod inference;
pub mod manager;
pub mod memory;
pub mod rewrite;
pub mod simplify;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod util;
pub mod verify;

pub use autodiff::{differentiate, differentiate_outputs, Differentiated};
pub use const_fold::ConstFold;
pub use cse::Cse;
pub use dce::Dce;
pub use fuse::Fuse;
pub use inference::{FoldBatchNorm, RemoveDropout};
pub use manager::{DumpOptions, PassManager, Pipeline};
pub use memory::{MemoryPlan, PlanMemory};
pub use simplify::Simplify;
pub use stats::{MemoryStats, PassStats, StatsTable};
pub use verify::verify;

use kiln_ir::{Graph, Result};

/// What a pass reports after running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Nodes before the pass.
    pub nodes_before: usize,
    /// Nodes after the pass.
    pub nodes_after: usize,
    /// Whether the graph changed.
    pub changed: bool,
    /// How often each rewrite fired, as `(rule or rewrite name, count)`, in first-firing
    /// order (empty for passes without named rewrites).
    pub firings: Vec<(String, usize)>,
    /// Memory the pass planned (only `plan_memory` reports it).
    pub memory: Option<MemoryStats>,
    /// Extra text the pass produced, as `(file suffix, text)`: the manager's dumps write it
    /// to `NN-pass.SUFFIX` (`plan_memory` gives `("plan.txt", plan)`).
    pub artifacts: Vec<(String, String)>,
}

impl PassReport {
    /// A report for a pass that went from `before` to `after` nodes with `firings`; the graph
    /// changed when any rewrite fired or the node count moved.
    pub fn new(before: usize, after: usize, firings: Vec<(String, usize)>) -> Self {
        let changed = before != after || firings.iter().any(|(_, n)| *n > 0);
        PassReport {
            nodes_before: before,
            nodes_after: after,
            changed,
            firings,
            memory: None,
            artifacts: Vec::new(),
        }
    }

    /// Total rewrites fired.
    pub fn total_firings(&self) -> usize {
        self.firings.iter().map(|(_, n)| n).sum()
    }
}

/// A named, switchable graph transformation.
pub trait Pass {
    /// A short, unique name (`cse`, `fuse`), used to switch the pass on and off.
    fn name(&self) -> &'static str;
    /// One line on what the pass does.
    fn description(&self) -> &'static str;
    /// Runs the pass on `graph`.
    fn run(&self, graph: &mut Graph) -> Result<PassReport>;
    /// False for passes a pipeline needs for correct results (`KILN_PASSES=none` keeps them).
    fn optional(&self) -> bool {
        true
    }
}

/// Counts firings by name, keeping first-firing order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Firings(Vec<(String, usize)>);

impl Firings {
    pub(crate) fn bump(&mut self, name: &str) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => self.0.push((name.to_string(), 1)),
        }
    }

    pub(crate) fn into_vec(self) -> Vec<(String, usize)> {
        self.0
    }
}
