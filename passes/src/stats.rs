//! Per-pass statistics, as a table value with a text rendering.

use crate::util::bytes;
use kiln_ir::graph::NodeKind;
use kiln_ir::{Graph, Op};
use std::fmt;
use std::time::Duration;

/// Cost measures of a graph that the statistics compare before and after each pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphCost {
    /// Nodes (inputs, parameters and constants included).
    pub nodes: usize,
    /// Op nodes: the kernels one run launches. Before fusion each op is its own kernel;
    /// a `fused` node is one kernel however many ops its body holds (and however many
    /// outputs it has: its `fused_output` nodes are not kernels).
    pub kernels: usize,
    /// Estimated bytes moved by one run: every op node reads each of its inputs and writes
    /// its output once. A `fused` node counts only its own inputs and outputs: the values
    /// its body computes in between never go through memory.
    pub bytes_moved: usize,
    /// Fused nodes among the kernels (see `crate::fuse`).
    pub fused_kernels: usize,
}

impl GraphCost {
    /// Measures `g`.
    pub fn of(g: &Graph) -> GraphCost {
        let mut cost = GraphCost {
            nodes: g.len(),
            ..GraphCost::default()
        };
        for id in g.node_ids() {
            let Ok(node) = g.node(id) else { continue };
            let op = match &node.kind {
                NodeKind::Op(Op::FusedOutput { .. }) | NodeKind::Input { .. } => continue,
                NodeKind::Param { .. } | NodeKind::Const(_) => continue,
                NodeKind::Op(op) => op,
            };
            cost.kernels += 1;
            let mut written = bytes(&node.ty);
            if let Op::Fused { kernel } = op {
                cost.fused_kernels += 1;
                // A multi-output kernel writes each of its outputs.
                written = (1..kernel.num_outputs())
                    .filter_map(|k| kernel.output_type_of(k))
                    .map(bytes)
                    .fold(written, usize::saturating_add);
            }
            let inputs: usize = g
                .inputs_of(id)
                .unwrap_or_default()
                .iter()
                .filter_map(|&i| g.ty(i).ok())
                .map(bytes)
                .sum();
            cost.bytes_moved = cost
                .bytes_moved
                .saturating_add(inputs)
                .saturating_add(written);
        }
        cost
    }
}

/// What the memory planner planned (see [`crate::memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of all planned buffers together.
    pub peak_bytes: usize,
    /// Bytes with one buffer per op value.
    pub naive_bytes: usize,
    /// Buffers planned.
    pub buffers: usize,
    /// Ops planned to run in place.
    pub in_place: usize,
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq)]
pub struct PassStats {
    /// The pass's name.
    pub pass: String,
    /// The graph before the pass.
    pub before: GraphCost,
    /// The graph after the pass.
    pub after: GraphCost,
    /// Rewrites fired, by name.
    pub firings: Vec<(String, usize)>,
    /// Wall time of the pass (verification and dumps not included).
    pub time: Duration,
    /// Planned memory (the `plan_memory` row only).
    pub memory: Option<MemoryStats>,
}

impl PassStats {
    /// Total rewrites fired.
    pub fn total_firings(&self) -> usize {
        self.firings.iter().map(|(_, n)| n).sum()
    }
}

/// The statistics of one pipeline run: one row per pass that ran, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsTable {
    /// The rows.
    pub rows: Vec<PassStats>,
}

impl StatsTable {
    /// The row of pass `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&PassStats> {
        self.rows.iter().find(|r| r.pass == name)
    }

    /// Planned peak bytes and one-buffer-per-value bytes, when `plan_memory` ran.
    pub fn memory(&self) -> Option<MemoryStats> {
        self.rows.iter().rev().find_map(|r| r.memory)
    }

    /// Total time over all passes.
    pub fn total_time(&self) -> Duration {
        self.rows.iter().map(|r| r.time).sum()
    }
}

impl fmt::Display for StatsTable {
    /// A fixed-width table, then one line per pass listing its rule firings, then the memory
    /// plan's bytes when `plan_memory` ran:
    ///
    /// ```text
    /// pass        nodes        kernels      bytes moved          fired  time
    /// simplify    9 -> 5       6 -> 2       144 -> 48            4      0.021 ms
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10}  {:<11}  {:<11}  {:<19}  {:>5}  time",
            "pass", "nodes", "kernels", "bytes moved", "fired"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<10}  {:<11}  {:<11}  {:<19}  {:>5}  {:.3} ms",
                r.pass,
                format!("{} -> {}", r.before.nodes, r.after.nodes),
                format!("{} -> {}", r.before.kernels, r.after.kernels),
                format!("{} -> {}", r.before.bytes_moved, r.after.bytes_moved),
                r.total_firings(),
                r.time.as_secs_f64() * 1e3
            )?;
        }
        for r in self.rows.iter().filter(|r| !r.firings.is_empty()) {
            let parts: Vec<String> = r.firings.iter().map(|(n, c)| format!("{n} x{c}")).collect();
            writeln!(f, "  {}: {}", r.pass, parts.join(", "))?;
        }
        for r in &self.rows {
            if let Some(m) = r.memory {
                writeln!(
                    f,
                    "  {}: peak {} bytes planned vs {} bytes naive, {} buffers, {} in place",
                    r.pass, m.peak_bytes, m.naive_bytes, m.buffers, m.in_place
                )?;
            }
        }
        Ok(())
    }
}
