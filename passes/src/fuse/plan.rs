//! Choosing the fusion groups: which nodes become one kernel (see the parent module for the
//! rules). This file only reads the graph; `super` rewrites it.

use kiln_ir::{Graph, NodeId, Op, Result, Shape};

/// What an op contributes to a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Unary, binary, scalar, where, clip, cast: chains freely.
    Elementwise,
    /// Reduce, softmax, log-softmax, softmax cross-entropy: one per kernel, with an
    /// elementwise prologue on its (first) input and an elementwise epilogue on its result.
    Reduction,
    /// Dot, batch-dot, fully-connected, convolution: a library kernel that takes an
    /// elementwise epilogue on its result.
    Library,
    /// Everything else (shape ops, indexing, pooling, random ops, fused nodes...): never fused.
    Other,
}

/// The class of `op`.
pub(crate) fn class(op: &Op) -> Class {
    if op.is_random() {
        return Class::Other;
    }
    if op.is_elementwise() {
        return Class::Elementwise;
    }
    match op {
        Op::Reduce { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::SoftmaxCrossEntropy => Class::Reduction,
        Op::Dot { .. }
        | Op::BatchDot { .. }
        | Op::FullyConnected { .. }
        | Op::Convolution { .. } => Class::Library,
        _ => Class::Other,
    }
}

/// Where a member sits in its kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// Elementwise, feeding the anchor (a reduction's input 0), iterating over its input shape.
    Pre,
    /// The one reduction or library op.
    Anchor,
    /// Elementwise on the kernel's output shape (the anchor's result, or a plain chain).
    Post,
}

/// One kernel-to-be: a root whose value the kernel returns, and the members computed inside.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// The node whose value the kernel returns (the only member used outside the group).
    pub root: NodeId,
    /// Members in the order they joined (the root first), with their regions.
    pub members: Vec<(NodeId, Region)>,
    /// The reduction or library member, if any.
    pub anchor: Option<NodeId>,
    /// True when the input cap kept a producer out.
    pub capped: bool,
}

impl Group {
    fn region_of(&self, id: NodeId) -> Option<Region> {
        self.members.iter().find(|(m, _)| *m == id).map(|&(_, r)| r)
    }

    fn contains(&self, id: NodeId) -> bool {
        self.region_of(id).is_some()
    }

    /// The distinct nodes outside the group that its members read, in first-use order
    /// over `ordered` members.
    pub(crate) fn external_inputs(&self, g: &Graph, ordered: &[NodeId]) -> Result<Vec<NodeId>> {
        let mut out = Vec::new();
        for &m in ordered {
            for i in g.inputs_of(m)? {
                if !self.contains(i) && !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        Ok(out)
    }

    /// The members in kernel body order: prologue, anchor, epilogue, each in the graph's
    /// topological order (`rank` gives each node's position in it).
    pub(crate) fn body_order(&self, rank: &[usize]) -> Vec<NodeId> {
        let mut ids: Vec<(u8, usize, NodeId)> = self
            .members
            .iter()
            .map(|&(id, r)| {
                let stage = match r {
                    Region::Pre => 0,
                    Region::Anchor => 1,
                    Region::Post => 2,
                };
                (stage, rank[id.index()], id)
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, _, id)| id).collect()
    }
}

/// What the planner found.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Every group of two or more nodes, consumers' groups first (reverse topological order
    /// of their roots).
    pub groups: Vec<Group>,
}

/// Which region a producer of `user` (a member in `user_region`) takes when it feeds input
/// position `pos`, given the producer's class and shape. `None`: it cannot join through
/// this use.
#[allow(clippy::too_many_arguments)]
fn implied_region(
    g: &Graph,
    user: NodeId,
    user_region: Region,
    pos: usize,
    producer_class: Class,
    producer_shape: &Shape,
    out_shape: &Shape,
    has_anchor: bool,
) -> Result<Option<Region>> {
    let user_op = g.op(user)?;
    Ok(match (user_region, producer_class) {
        (Region::Post, Class::Elementwise) if producer_shape == out_shape => Some(Region::Post),
        (Region::Post, Class::Reduction | Class::Library)
            if !has_anchor && producer_shape == out_shape =>
        {
            Some(Region::Anchor)
        }
        (Region::Pre, Class::Elementwise) => {
            // Pre members all share the anchor's input shape: the same as this user's.
            (producer_shape == &g.ty(user)?.shape).then_some(Region::Pre)
        }
        (Region::Anchor, Class::Elementwise)
            if pos == 0 && user_op.map(class) == Some(Class::Reduction) =>
        {
            Some(Region::Pre)
        }
        _ => None,
    })
}

/// Chooses the groups of `g` (see the parent module's rules), with at most `max_inputs`
/// distinct kernel inputs per group.
pub(crate) fn plan(g: &Graph, max_inputs: usize) -> Result<Plan> {
    let order = g.topo_order();
    let bound = order.iter().map(|n| n.index() + 1).max().unwrap_or(0);
    let mut rank = vec![0usize; bound];
    for (k, id) in order.iter().enumerate() {
        rank[id.index()] = k;
    }
    let mut is_output = vec![false; bound];
    for o in g.outputs() {
        is_output[o.index()] = true;
    }
    let mut assigned = vec![false; bound];
    let mut plan = Plan::default();
    for &root in order.iter().rev() {
        if assigned[root.index()] {
            continue;
        }
        let Some(op) = g.op(root)? else { continue };
        let root_class = class(op);
        if root_class == Class::Other {
            continue;
        }
        assigned[root.index()] = true;
        let group = grow(
            g, root, root_class, &is_output, &assigned, max_inputs, &rank,
        )?;
        if group.members.len() > 1 {
            for &(m, _) in &group.members {
                assigned[m.index()] = true;
            }
            plan.groups.push(group);
        }
    }
    Ok(plan)
}

/// Grows the group of `root` by absorbing producers until nothing more joins.
fn grow(
    g: &Graph,
    root: NodeId,
    root_class: Class,
    is_output: &[bool],
    assigned: &[bool],
    max_inputs: usize,
    rank: &[usize],
) -> Result<Group> {
    let out_shape = g.ty(root)?.shape.clone();
    let root_region = if root_class == Class::Elementwise {
        Region::Post
    } else {
        Region::Anchor
    };
    let mut group = Group {
        root,
        members: vec![(root, root_region)],
        anchor: (root_region == Region::Anchor).then_some(root),
        capped: false,
    };
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < group.members.len() {
            let (m, m_region) = group.members[i];
            i += 1;
            for (pos, p) in g.inputs_of(m)?.into_iter().enumerate() {
                if group.contains(p) || assigned[p.index()] || is_output[p.index()] {
                    continue;
                }
                let Some(p_op) = g.op(p)? else { continue };
                let p_class = class(p_op);
                if p_class == Class::Other {
                    continue;
                }
                let p_shape = g.ty(p)?.shape.clone();
                let has_anchor = group.anchor.is_some();
                let Some(region) = implied_region(
                    g, m, m_region, pos, p_class, &p_shape, &out_shape, has_anchor,
                )?
                else {
                    continue;
                };
                // Every use of `p` must be inside the group and agree on its region: a value
                // computed once in the kernel, never recomputed, never needed outside.
                let mut all_inside = true;
                'users: for u in g.users(p)? {
                    let Some(u_region) = group.region_of(u) else {
                        all_inside = false;
                        break;
                    };
                    for (q, x) in g.inputs_of(u)?.into_iter().enumerate() {
                        if x != p {
                            continue;
                        }
                        let r = implied_region(
                            g, u, u_region, q, p_class, &p_shape, &out_shape, has_anchor,
                        )?;
                        if r != Some(region) {
                            all_inside = false;
                            break 'users;
                        }
                    }
                }
                if !all_inside {
                    continue;
                }
                // The input cap: count the distinct outside values the grown group reads.
                let mut trial = group.clone();
                trial.members.push((p, region));
                let ordered = trial.body_order(rank);
                if trial.external_inputs(g, &ordered)?.len() > max_inputs {
                    group.capped = true;
                    continue;
                }
                if region == Region::Anchor {
                    group.anchor = Some(p);
                }
                group.members.push((p, region));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(group)
}
