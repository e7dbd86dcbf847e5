//! Horizontal fusion: sibling kernels that read one value become one multi-output kernel
//! (see the parent module, rule 4). This runs after the vertical groups are fused, on the
//! kernels they left: fused nodes and single fusible ops alike.

use super::plan::{class, Class};
use crate::util::remove_if_dead;
use crate::Firings;
use kiln_ir::{FusedArg, FusedInst, FusedKernel, FusedKind, Graph, NodeId, Op, Result, Shape};

/// The iteration space of a kernel: siblings merge only when theirs are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Space {
    /// One loop over this shape (an elementwise op or kernel; every output has this shape).
    Elementwise(Shape),
    /// One pass over `input` reducing `axes` (sorted, non-negative) with `keepdims`: sums,
    /// means, maxima... of values of that shape.
    Reduce {
        input: Shape,
        axes: Vec<usize>,
        keepdims: bool,
    },
}

/// `axes` of a reduction over rank `rank`, sorted and non-negative (`None`: all axes).
fn normalized_axes(axes: Option<&[isize]>, rank: usize) -> Option<Vec<usize>> {
    let mut out: Vec<usize> = match axes {
        None => (0..rank).collect(),
        Some(a) => a
            .iter()
            .map(|&x| {
                let x = if x < 0 { x + rank as isize } else { x };
                usize::try_from(x).ok().filter(|&x| x < rank)
            })
            .collect::<Option<_>>()?,
    };
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// The iteration space of a `reduce` instruction whose first operand has type shape `input`.
fn reduce_space(op: &Op, input: &Shape) -> Option<Space> {
    let Op::Reduce { axes, keepdims, .. } = op else {
        return None;
    };
    Some(Space::Reduce {
        input: input.clone(),
        axes: normalized_axes(axes.as_deref(), input.rank())?,
        keepdims: *keepdims,
    })
}

/// The iteration space of node `id` when it can be a horizontal sibling: an elementwise
/// op, a `reduce`, or a fused node of the elementwise kind or of the reduction kind whose
/// reductions are all `reduce`s over one space.
fn space_of(g: &Graph, id: NodeId) -> Result<Option<Space>> {
    let Some(op) = g.op(id)? else {
        return Ok(None);
    };
    Ok(match op {
        Op::Fused { kernel } => match kernel.kind() {
            FusedKind::Elementwise => Some(Space::Elementwise(kernel.output_type().shape.clone())),
            FusedKind::Reduction => {
                let mut spaces = kernel.reductions().into_iter().map(|r| {
                    let inst = &kernel.body[r];
                    let input = match inst.args.first()? {
                        FusedArg::Input(i) => &kernel.inputs.get(*i)?.shape,
                        FusedArg::Value(j) => &kernel.body.get(*j)?.ty.shape,
                    };
                    reduce_space(&inst.op, input)
                });
                let first = spaces.next().flatten();
                first.filter(|f| spaces.all(|s| s.as_ref() == Some(f)))
            }
            FusedKind::Epilogue | FusedKind::Generic => None,
        },
        Op::Reduce { .. } => {
            let inputs = g.inputs_of(id)?;
            match inputs.first() {
                Some(&x) => reduce_space(op, &g.ty(x)?.shape),
                None => None,
            }
        }
        _ if class(op) == Class::Elementwise => Some(Space::Elementwise(g.ty(id)?.shape.clone())),
        _ => None,
    })
}

/// Whether `to` depends on `from` (a path of uses from `from` to `to`); `rank` is each
/// node's position in the topological order, which bounds the search.
fn reaches(g: &Graph, from: NodeId, to: NodeId, rank: &[usize]) -> Result<bool> {
    let limit = rank[to.index()];
    let mut seen = vec![false; rank.len()];
    let mut stack = vec![from];
    while let Some(n) = stack.pop() {
        if n == to {
            return Ok(true);
        }
        for u in g.users(n)? {
            if rank[u.index()] <= limit && !std::mem::replace(&mut seen[u.index()], true) {
                stack.push(u);
            }
        }
    }
    Ok(false)
}

/// Runs horizontal fusion on `g` to a fixpoint, counting what fired in `firings`.
pub(crate) fn fuse_siblings(g: &mut Graph, max_inputs: usize, firings: &mut Firings) -> Result<()> {
    // Each merge changes the graph (and the order), so the sweep starts over after one. A
    // sibling the input cap keeps out of a kernel that is built is counted as `input_cap`
    // (once: later sweeps, and later runs, find it apart already and count nothing).
    loop {
        let order = g.topo_order();
        let bound = order.iter().map(|n| n.index() + 1).max().unwrap_or(0);
        let mut rank = vec![usize::MAX; bound];
        for (k, id) in order.iter().enumerate() {
            rank[id.index()] = k;
        }
        let mut merged = None;
        'values: for &v in &order {
            let mut buckets: Vec<(Space, Vec<NodeId>)> = Vec::new();
            let mut users = g.users(v)?;
            users.sort_unstable_by_key(|u| rank[u.index()]);
            for u in users {
                if let Some(space) = space_of(g, u)? {
                    match buckets.iter_mut().find(|(s, _)| *s == space) {
                        Some((_, members)) => members.push(u),
                        None => buckets.push((space, vec![u])),
                    }
                }
            }
            for (_, candidates) in buckets.into_iter().filter(|(_, m)| m.len() > 1) {
                let mut group = vec![candidates[0]];
                let mut capped = 0usize;
                let mut inputs = distinct_inputs(g, &group)?;
                for &c in &candidates[1..] {
                    // No member may depend on another: the merged node would be its own
                    // ancestor.
                    let mut related = false;
                    for &m in &group {
                        if reaches(g, m, c, &rank)? || reaches(g, c, m, &rank)? {
                            related = true;
                            break;
                        }
                    }
                    if related {
                        continue;
                    }
                    let mut grown = inputs.clone();
                    for i in g.inputs_of(c)? {
                        if !grown.contains(&i) {
                            grown.push(i);
                        }
                    }
                    if grown.len() > max_inputs {
                        capped += 1;
                        continue;
                    }
                    inputs = grown;
                    group.push(c);
                }
                if group.len() > 1 {
                    if let Some(name) = merge(g, &group, &inputs)? {
                        merged = Some((name, capped));
                        break 'values;
                    }
                }
            }
        }
        let Some((name, capped)) = merged else {
            return Ok(());
        };
        firings.bump(name);
        for _ in 0..capped {
            firings.bump("input_cap");
        }
    }
}

/// The distinct values `members` read, in first-use order.
fn distinct_inputs(g: &Graph, members: &[NodeId]) -> Result<Vec<NodeId>> {
    let mut out = Vec::new();
    for &m in members {
        for i in g.inputs_of(m)? {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Replaces `members` (unrelated siblings, reading the values `inputs` together) by one
/// multi-output fused node: the members' bodies one after the other, their outputs in
/// order. Returns the firing name, or `None` (graph unchanged) when the merged kernel is
/// not one of the kinds a code generator knows.
fn merge(g: &mut Graph, members: &[NodeId], inputs: &[NodeId]) -> Result<Option<&'static str>> {
    let mut body: Vec<FusedInst> = Vec::new();
    let mut outputs: Vec<usize> = Vec::new();
    // Per member: how many outputs it has (its value, then its fused_outputs' indices).
    let mut counts = Vec::with_capacity(members.len());
    for &m in members {
        let node = g.node(m)?;
        let Some(op) = node.kind.op() else {
            return Ok(None);
        };
        let args_of = g.inputs_of(m)?;
        let at = |id: NodeId| inputs.iter().position(|&i| i == id);
        let offset = body.len();
        match op {
            Op::Fused { kernel } => {
                for inst in &kernel.body {
                    let mut args = Vec::with_capacity(inst.args.len());
                    for a in &inst.args {
                        args.push(match *a {
                            FusedArg::Value(j) => FusedArg::Value(j + offset),
                            FusedArg::Input(i) => match args_of.get(i).and_then(|&x| at(x)) {
                                Some(p) => FusedArg::Input(p),
                                None => return Ok(None),
                            },
                        });
                    }
                    body.push(FusedInst::new(inst.op.clone(), args, inst.ty.clone()));
                }
                outputs.extend(kernel.outputs().into_iter().map(|o| o + offset));
                counts.push(kernel.num_outputs());
            }
            _ => {
                let mut args = Vec::with_capacity(args_of.len());
                for &x in &args_of {
                    match at(x) {
                        Some(p) => args.push(FusedArg::Input(p)),
                        None => return Ok(None),
                    }
                }
                body.push(FusedInst::new(op.clone(), args, node.ty.clone()));
                outputs.push(offset);
                counts.push(1);
            }
        }
    }
    let mut types = Vec::with_capacity(inputs.len());
    for &i in inputs {
        types.push(g.ty(i)?.clone());
    }
    let Ok(kernel) = FusedKernel::with_outputs(types, body, outputs) else {
        return Ok(None);
    };
    let name = match kernel.kind() {
        FusedKind::Elementwise => "horizontal_elementwise",
        FusedKind::Reduction => "horizontal_reduction",
        FusedKind::Epilogue | FusedKind::Generic => return Ok(None),
    };
    let output_types: Vec<_> = (0..kernel.num_outputs())
        .filter_map(|k| kernel.output_type_of(k).cloned())
        .collect();
    let fused = g.add_op(
        Op::Fused {
            kernel: Box::new(kernel),
        },
        inputs,
    )?;
    let mut next = 0usize;
    for (&m, &count) in members.iter().zip(&counts) {
        // The member's own fused_output nodes, by their output index.
        let mut projections: Vec<(usize, NodeId)> = Vec::new();
        for u in g.users(m)? {
            if let Some(Op::FusedOutput { index, .. }) = g.op(u)? {
                projections.push((*index, u));
            }
        }
        for t in 0..count {
            let k = next + t;
            let target = if k == 0 {
                fused
            } else {
                let ty = output_types[k].clone();
                g.add_op(Op::FusedOutput { index: k, ty }, &[fused])?
            };
            if t == 0 {
                g.replace_all_uses(m, target)?;
            } else {
                for &(_, p) in projections.iter().filter(|(i, _)| *i == t) {
                    g.replace_all_uses(p, target)?;
                    remove_if_dead(g, p)?;
                }
            }
            if k != 0 && g.use_count(target)? == 0 {
                g.remove_node(target)?;
            }
        }
        next += count;
        remove_if_dead(g, m)?;
    }
    Ok(Some(name))
}
