//! The planner: liveness over the execution order, best-fit buffer reuse, in-place updates.

use crate::util::bytes;
use kiln_ir::graph::NodeKind;
use kiln_ir::{FusedKind, Graph, NodeId, Op, Result};
use std::fmt;

/// A buffer's index in [`MemoryPlan::buffers`].
pub type BufferId = usize;

/// One planned buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferInfo {
    /// Its size: the largest value it ever holds.
    pub bytes: usize,
}

/// Where each op's value lives while a graph runs (see the [module docs](super)).
///
/// Only op values are planned: graph inputs, parameters and constants belong to the caller
/// (or to the graph) and are never written. Ops no output depends on are not planned (an
/// executor skips them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The buffers, numbered in order of first use.
    pub buffers: Vec<BufferInfo>,
    /// Each planned op node and its buffer, in execution order.
    pub assignment: Vec<(NodeId, BufferId)>,
    /// `(node, input)`: `node` writes its result into `input`'s buffer (`input` is used for
    /// the last time by `node`, which is elementwise).
    pub in_place: Vec<(NodeId, NodeId)>,
    /// `(fused_output node, fused node)`: values a multi-output fused node writes besides
    /// its own. Each has its own buffer, taken when the fused node runs (listed right after
    /// it in `assignment`) and free after the value's own last use.
    pub fused_outputs: Vec<(NodeId, NodeId)>,
    /// Bytes of all buffers together: the memory the plan needs for op values.
    pub peak_bytes: usize,
    /// Bytes with one buffer per op value (no reuse).
    pub naive_bytes: usize,
    /// The most bytes of op values alive at once: a lower bound for any plan in this order.
    pub live_bytes: usize,
    /// `%k` numbers for the text form: the position of each node in [`Graph::topo_order`].
    numbers: Vec<(NodeId, usize)>,
}

impl MemoryPlan {
    /// The buffer of node `id`'s value, if it was planned.
    pub fn buffer_of(&self, id: NodeId) -> Option<BufferId> {
        self.assignment
            .iter()
            .find(|(n, _)| *n == id)
            .map(|&(_, b)| b)
    }

    /// The input whose buffer node `id` writes into, if it runs in place.
    pub fn in_place_of(&self, id: NodeId) -> Option<NodeId> {
        self.in_place
            .iter()
            .find(|(n, _)| *n == id)
            .map(|&(_, i)| i)
    }

    /// The peak as a fraction of the naive bytes (1.0 for an empty plan).
    pub fn ratio(&self) -> f64 {
        if self.naive_bytes == 0 {
            1.0
        } else {
            self.peak_bytes as f64 / self.naive_bytes as f64
        }
    }

    fn number(&self, id: NodeId) -> String {
        self.numbers
            .iter()
            .find(|(n, _)| *n == id)
            .map_or_else(|| format!("{id:?}"), |(_, k)| format!("%{k}"))
    }
}

impl fmt::Display for MemoryPlan {
    /// The buffers, one line per planned value in execution order, and a summary:
    ///
    /// ```text
    /// buf0: 80 bytes
    /// buf1: 80 bytes
    /// %1 -> buf0
    /// %2 -> buf1
    /// %3 -> buf1 (in place of %2)
    /// peak 160 bytes planned vs 240 bytes one buffer per value (66.7%); 3 values in 2 buffers, 1 in place
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.buffers.iter().enumerate() {
            writeln!(f, "buf{i}: {} bytes", b.bytes)?;
        }
        for &(id, b) in &self.assignment {
            if let Some(&(_, fused)) = self.fused_outputs.iter().find(|(n, _)| *n == id) {
                writeln!(
                    f,
                    "{} -> buf{b} (written by {})",
                    self.number(id),
                    self.number(fused)
                )?;
                continue;
            }
            match self.in_place_of(id) {
                Some(input) => writeln!(
                    f,
                    "{} -> buf{b} (in place of {})",
                    self.number(id),
                    self.number(input)
                )?,
                None => writeln!(f, "{} -> buf{b}", self.number(id))?,
            }
        }
        writeln!(
            f,
            "peak {} bytes planned vs {} bytes one buffer per value ({:.1}%); {} values in {} buffers, {} in place",
            self.peak_bytes,
            self.naive_bytes,
            100.0 * self.ratio(),
            self.assignment.len(),
            self.buffers.len(),
            self.in_place.len()
        )
    }
}

/// True when `op` computes each output element from the same-position elements of its
/// inputs, so its output may overwrite an input of the same size as it goes: elementwise
/// ops and single-output fused kernels of the elementwise kind (a multi-output kernel's
/// other outputs may still read the input after its first output is written).
pub fn writes_elementwise(op: &Op) -> bool {
    match op {
        Op::Fused { kernel } => {
            !kernel.is_multi_output() && kernel.kind() == FusedKind::Elementwise
        }
        Op::FusedOutput { .. } => false,
        _ => op.is_elementwise(),
    }
}

/// Plans `graph` (see the [module docs](super)). Does not change the graph.
pub fn plan(graph: &Graph) -> Result<MemoryPlan> {
    let order = graph.topo_order();
    let bound = order.iter().map(|n| n.index() + 1).max().unwrap_or(0);
    // Position of every node in the execution order, and which nodes the outputs need.
    let mut pos = vec![usize::MAX; bound];
    for (k, id) in order.iter().enumerate() {
        pos[id.index()] = k;
    }
    let mut live = vec![false; bound];
    let mut stack = graph.outputs().to_vec();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id.index()], true) {
            stack.extend(graph.inputs_of(id)?);
        }
    }
    let mut is_output = vec![false; bound];
    for o in graph.outputs() {
        is_output[o.index()] = true;
    }
    // Last use of each value: the latest live user; outputs live to the end.
    let mut last_use = vec![None::<usize>; bound];
    for &id in &order {
        if !live[id.index()] {
            continue;
        }
        // A fused_output node reads its fused node's other outputs, not its value.
        if matches!(graph.op(id)?, Some(Op::FusedOutput { .. })) {
            continue;
        }
        for a in graph.inputs_of(id)? {
            let l = &mut last_use[a.index()];
            *l = Some(l.map_or(pos[id.index()], |u| u.max(pos[id.index()])));
        }
    }

    let mut buffers: Vec<BufferInfo> = Vec::new();
    let mut free: Vec<BufferId> = Vec::new();
    let mut buffer_of = vec![None::<BufferId>; bound];
    let mut assignment = Vec::new();
    let mut in_place = Vec::new();
    let mut fused_outputs = Vec::new();
    let (mut naive, mut live_now, mut live_max) = (0usize, 0usize, 0usize);
    for &id in &order {
        let node = graph.node(id)?;
        let NodeKind::Op(op) = &node.kind else {
            continue;
        };
        if !live[id.index()] || matches!(op, Op::FusedOutput { .. }) {
            // A fused_output's buffer was taken when its fused node ran.
            continue;
        }
        let here = pos[id.index()];
        let size = bytes(&node.ty);
        naive = naive.saturating_add(size);
        let inputs = graph.inputs_of(id)?;
        let dying = |a: NodeId, buffer_of: &[Option<BufferId>]| {
            !is_output[a.index()]
                && last_use[a.index()] == Some(here)
                && buffer_of[a.index()].is_some()
        };
        // In place: an elementwise op over an input that dies here, of the same element
        // size and count (so element i of the output replaces element i of the input).
        let reuse = writes_elementwise(op)
            .then(|| {
                inputs.iter().copied().find(|&a| {
                    dying(a, &buffer_of)
                        && graph.ty(a).is_ok_and(|t| {
                            t.shape.numel() == node.ty.shape.numel()
                                && t.dtype.size_of() == node.ty.dtype.size_of()
                        })
                })
            })
            .flatten();
        let buf = match reuse.and_then(|a| buffer_of[a.index()]) {
            Some(b) => {
                if let Some(a) = reuse {
                    in_place.push((id, a));
                }
                b
            }
            // Best fit among the buffers free before this op runs (its inputs are still
            // being read).
            None => take_best_fit(&mut buffers, &mut free, size),
        };
        buffer_of[id.index()] = Some(buf);
        assignment.push((id, buf));
        if let Some(a) = reuse {
            live_now -= graph.ty(a).map(bytes).unwrap_or(0);
        }
        live_now = live_now.saturating_add(size);
        // A multi-output fused node writes its other outputs now too, each into a buffer
        // of its own (best fit among those free before the node runs).
        let mut written = vec![(id, size)];
        for fo in projections(graph, id, &live)? {
            let fo_size = bytes(graph.ty(fo)?);
            naive = naive.saturating_add(fo_size);
            let b = take_best_fit(&mut buffers, &mut free, fo_size);
            buffer_of[fo.index()] = Some(b);
            assignment.push((fo, b));
            fused_outputs.push((fo, id));
            live_now = live_now.saturating_add(fo_size);
            written.push((fo, fo_size));
        }
        live_max = live_max.max(live_now);
        // Inputs used for the last time here give their buffers back (the in-place one
        // handed its buffer over instead). A value used twice by this op is freed once.
        let mut seen: Vec<NodeId> = Vec::new();
        for a in inputs {
            if seen.contains(&a) || Some(a) == reuse || !dying(a, &buffer_of) {
                continue;
            }
            seen.push(a);
            live_now -= graph.ty(a).map(bytes).unwrap_or(0);
            if let Some(b) = buffer_of[a.index()] {
                free.push(b);
            }
        }
        // A live value nobody uses is an output, or the value of a multi-output fused node
        // whose other outputs alone are used: its buffer is free right away.
        for (v, v_size) in written {
            if last_use[v.index()].is_none() && !is_output[v.index()] {
                if let Some(b) = buffer_of[v.index()] {
                    free.push(b);
                }
                live_now -= v_size;
            }
        }
    }
    let numbers = order.iter().enumerate().map(|(k, &id)| (id, k)).collect();
    Ok(MemoryPlan {
        peak_bytes: buffers.iter().map(|b| b.bytes).sum(),
        buffers,
        assignment,
        in_place,
        fused_outputs,
        naive_bytes: naive,
        live_bytes: live_max,
        numbers,
    })
}

/// The smallest free buffer of at least `size` bytes (taken off `free`), else a new one.
fn take_best_fit(buffers: &mut Vec<BufferInfo>, free: &mut Vec<BufferId>, size: usize) -> BufferId {
    let best = free
        .iter()
        .enumerate()
        .filter(|(_, &b)| buffers[b].bytes >= size)
        .min_by_key(|(_, &b)| (buffers[b].bytes, b))
        .map(|(i, _)| i);
    match best {
        Some(i) => free.swap_remove(i),
        None => {
            buffers.push(BufferInfo { bytes: size });
            buffers.len() - 1
        }
    }
}

/// The live `fused_output` nodes reading node `id`, by output index (empty unless `id` is a
/// multi-output fused node).
fn projections(graph: &Graph, id: NodeId, live: &[bool]) -> Result<Vec<NodeId>> {
    if !matches!(graph.op(id)?, Some(Op::Fused { kernel }) if kernel.is_multi_output()) {
        return Ok(Vec::new());
    }
    let mut fos: Vec<(usize, NodeId)> = Vec::new();
    for u in graph.users(id)? {
        if let Some(Op::FusedOutput { index, .. }) = graph.op(u)? {
            if live[u.index()] {
                fos.push((*index, u));
            }
        }
    }
    fos.sort_unstable();
    Ok(fos.into_iter().map(|(_, u)| u).collect())
}
