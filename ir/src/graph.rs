//! Graphs of ops over petgraph, with text, DOT and JSON forms.

use petgraph::graph::NodeIndex;

/// A node's id in a [`Graph`].
pub type NodeId = NodeIndex<u32>;

/// A dataflow graph of ops (to be filled in).
#[derive(Clone, Debug, Default)]
pub struct Graph {}
