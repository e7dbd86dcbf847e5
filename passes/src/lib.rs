//! kiln-passes: graph-to-graph transformations.
//!
//! The pass manager and the optimizations arrive with their own issue; this crate holds the
//! [`Pass`] seam they plug into so the rest of kiln can already name it, and [`autodiff`],
//! which turns a graph into a forward and a backward graph.

pub mod autodiff;

pub use autodiff::{differentiate, differentiate_outputs, Differentiated};

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
}

/// A named, switchable graph transformation.
pub trait Pass {
    /// A short, unique name (`cse`, `fuse`), used to switch the pass on and off.
    fn name(&self) -> &'static str;
    /// One line on what the pass does.
    fn description(&self) -> &'static str;
    /// Runs the pass on `graph`.
    fn run(&self, graph: &mut Graph) -> Result<PassReport>;
}
