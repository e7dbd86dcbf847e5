//! The backward pass: walk the graph behind the heads, run each node's VJP in reverse
//! topological order, and deliver the gradients to the attached buffers.

use super::eager_builder::EagerBuilder;
use super::state::paused;
use super::tape::{meta, Backward, Node, Saved};
use super::GradReq;
use crate::ndarray::{apply, write_storage, Inner, NDArray};
use kiln_ir::{BinaryOp, Element, Error, Op, Result, Storage, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a gradient goes: the output `index` of a recorded node, or a leaf's buffer (an
/// index into [`Leaves`]).
#[derive(Clone, Copy)]
enum Target {
    Node { id: u64, index: usize },
    Leaf(usize),
}

/// A node reached from the heads, with its saved values read once.
struct Visit {
    node: Arc<Node>,
    saved: Saved,
    /// Per input: where its gradient goes (`None`: nowhere, a constant or a `Null` leaf).
    targets: Vec<Option<Target>>,
    /// True when some input's gradient reaches a leaf that wants one.
    needed: bool,
}

/// A leaf with a Write/Add gradient buffer found in the graph, and its gradient so far.
struct Leaf {
    buffer: NDArray,
    req: GradReq,
    grad: Option<NDArray>,
}

/// The leaves found so far, each once however many times it is used.
#[derive(Default)]
struct Leaves {
    list: Vec<Leaf>,
    index: HashMap<*const Inner, usize>,
}

impl Leaves {
    /// The leaf index of `a` when it has an attached gradient that is not `Null`.
    fn register(&mut self, a: &NDArray) -> Option<usize> {
        let m = meta(a);
        let slot = m.grad.as_ref().filter(|s| s.req != GradReq::Null)?;
        let list = &mut self.list;
        Some(*self.index.entry(Arc::as_ptr(&a.inner)).or_insert_with(|| {
            list.push(Leaf {
                buffer: slot.buffer.clone(),
                req: slot.req,
                grad: None,
            });
            list.len() - 1
        }))
    }
}

/// The part of the graph reachable from the heads.
struct Walk {
    visits: HashMap<u64, Visit>,
    /// Node ids, every node after the nodes producing its inputs.
    postorder: Vec<u64>,
    leaves: Leaves,
    /// Per head: where its gradient goes.
    heads: Vec<Option<Target>>,
}

impl Walk {
    fn wants(&self, target: &Option<Target>) -> bool {
        match target {
            Some(Target::Leaf(_)) => true,
            Some(Target::Node { id, .. }) => self.visits.get(id).is_some_and(|v| v.needed),
            None => false,
        }
    }
}

/// Computes the gradients of `heads` with respect to every array they were computed from
/// that has an attached gradient, and stores them by each array's grad_req (MXNet's
/// `autograd.backward`).
///
/// `head_grads` gives one gradient per head, each of its head's shape and dtype (`None`: ones,
/// so a non-scalar head is implicitly summed). A head that is itself a leaf with an attached
/// gradient (an op may return its input, as dropout does in predict mode) receives its head
/// gradient. Without `retain_graph` the graph is freed afterwards and a second backward
/// through it is an error. Gradients are computed with recording paused: they carry no
/// history, so second-order gradients are not supported.
///
/// Errors, with no buffer written, when a head was not computed under [`super::record`]
/// from an array with an attached gradient, when its graph was already freed, when no array
/// it depends on wants a gradient, when a head gradient does not match its head, or when a
/// VJP fails.
pub fn backward(
    heads: &[&NDArray],
    head_grads: Option<&[&NDArray]>,
    retain_graph: bool,
) -> Result<()> {
    if crate::hybrid::trace::is_tracing() {
        return Err(Error::Autograd(
            "backward: cannot run inside a hybridize trace (the forward being traced has no \
             values yet); call backward on the hybridized block's result after the call returns"
                .into(),
        ));
    }
    paused(|| run(heads, head_grads, retain_graph))
}

fn run(heads: &[&NDArray], head_grads: Option<&[&NDArray]>, retain_graph: bool) -> Result<()> {
    let Some(first) = heads.first() else {
        return Err(Error::Autograd("backward: no head arrays given".into()));
    };
    let head_grads = seed_gradients(heads, head_grads)?;
    let mut walk = collect(heads)?;
    if walk.leaves.list.is_empty() {
        return Err(Error::Autograd(
            "backward: no array this result was computed from has an attached gradient with \
             grad_req Write or Add; call attach_grad() on them before autograd::record"
                .into(),
        ));
    }
    prune(&mut walk);
    let mut grads: HashMap<(u64, usize), Option<NDArray>> = HashMap::new();
    for (target, g) in walk.heads.clone().iter().zip(head_grads) {
        match target {
            Some(Target::Node { id, index }) => {
                accumulate(grads.entry((*id, *index)).or_default(), g)?
            }
            Some(Target::Leaf(l)) => accumulate(&mut walk.leaves.list[*l].grad, g)?,
            None => {}
        }
    }
    let mut builder = EagerBuilder {
        ctx: first.context(),
    };
    propagate(&mut walk, &mut grads, &mut builder)?;
    deliver(walk.leaves.list)?;
    if !retain_graph {
        for visit in walk.visits.values() {
            visit.node.free();
        }
    }
    Ok(())
}

/// One gradient per head: the given ones, checked, or ones.
fn seed_gradients(heads: &[&NDArray], given: Option<&[&NDArray]>) -> Result<Vec<NDArray>> {
    let Some(given) = given else {
        return Ok(heads
            .iter()
            .map(|h| {
                NDArray::from_tensor(Tensor::full(h.shape().clone(), h.dtype(), 1.0), h.context())
            })
            .collect());
    };
    if given.len() != heads.len() {
        return Err(Error::Autograd(format!(
            "backward: {} head gradients given for {} heads",
            given.len(),
            heads.len()
        )));
    }
    for (head, g) in heads.iter().zip(given) {
        check_match("backward: head gradient", head, g)?;
        if g.context() != head.context() {
            return Err(Error::Autograd(format!(
                "backward: head gradient lives on {}, its head on {}",
                g.context(),
                head.context()
            )));
        }
    }
    Ok(given.iter().map(|g| (*g).clone()).collect())
}

fn describe(a: &NDArray) -> String {
    format!("shape {}, {}", a.shape(), a.dtype())
}

fn freed(what: &str) -> Error {
    Error::Autograd(format!(
        "backward: {what} was already freed by an earlier backward; pass retain_graph = true \
         to that backward to run backward through it again, or detach() arrays carried over \
         from an earlier iteration"
    ))
}

/// Where a head's gradient goes, or why the head cannot be differentiated.
fn head_target(head: &NDArray, leaves: &mut Leaves) -> Result<(Option<Target>, Option<Arc<Node>>)> {
    let entry = meta(head).entry.clone();
    if let Some(e) = entry {
        if e.node.saved().is_none() {
            return Err(freed(&format!(
                "the graph of this array ({})",
                describe(head)
            )));
        }
        let target = Target::Node {
            id: e.node.id,
            index: e.index,
        };
        return Ok((Some(target), Some(e.node)));
    }
    let (has_grad, untracked) = {
        let m = meta(head);
        (m.grad.is_some(), m.recorded_untracked)
    };
    if has_grad {
        return Ok((leaves.register(head).map(Target::Leaf), None));
    }
    let why = if untracked {
        "was computed inside autograd::record, but from no array with an attached gradient: \
         call attach_grad() on the arrays you want gradients for before computing it"
    } else {
        "has no recorded history: compute it inside autograd::record(|| ..) from arrays with \
         attach_grad()"
    };
    Err(Error::Autograd(format!(
        "backward: this array ({}) {why}",
        describe(head)
    )))
}

/// Finds the nodes and leaves reachable from the heads (iterative depth-first search, so a
/// graph thousands of ops deep needs no deep stack).
fn collect(heads: &[&NDArray]) -> Result<Walk> {
    let mut leaves = Leaves::default();
    let mut head_targets = Vec::with_capacity(heads.len());
    let mut stack: Vec<(Arc<Node>, bool)> = Vec::new();
    for head in heads {
        let (target, node) = head_target(head, &mut leaves)?;
        head_targets.push(target);
        if let Some(node) = node {
            stack.push((node, false));
        }
    }
    let mut visits: HashMap<u64, Visit> = HashMap::new();
    let mut postorder = Vec::new();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            postorder.push(node.id);
            continue;
        }
        if visits.contains_key(&node.id) {
            continue;
        }
        let saved = node
            .saved()
            .ok_or_else(|| freed(&format!("the recorded `{node:?}` this result depends on")))?;
        let mut targets = Vec::with_capacity(saved.inputs.len());
        let mut children = Vec::new();
        for input in &saved.inputs {
            let entry = meta(input).entry.clone();
            targets.push(match entry {
                Some(e) => {
                    let target = Target::Node {
                        id: e.node.id,
                        index: e.index,
                    };
                    children.push(e.node);
                    Some(target)
                }
                None => leaves.register(input).map(Target::Leaf),
            });
        }
        stack.push((Arc::clone(&node), true));
        for child in children {
            if !visits.contains_key(&child.id) {
                stack.push((child, false));
            }
        }
        visits.insert(
            node.id,
            Visit {
                node,
                saved,
                targets,
                needed: false,
            },
        );
    }
    Ok(Walk {
        visits,
        postorder,
        leaves,
        heads: head_targets,
    })
}

/// Marks the nodes whose inputs lead to a leaf that wants a gradient; the others are skipped.
fn prune(walk: &mut Walk) {
    for i in 0..walk.postorder.len() {
        let id = walk.postorder[i];
        let needed = walk.visits[&id].targets.iter().any(|t| walk.wants(t));
        if let Some(v) = walk.visits.get_mut(&id) {
            v.needed = needed;
        }
    }
}

/// Runs the VJPs in reverse topological order (every consumer of a value before its
/// producer), accumulating each input's gradient.
fn propagate(
    walk: &mut Walk,
    grads: &mut HashMap<(u64, usize), Option<NDArray>>,
    builder: &mut EagerBuilder,
) -> Result<()> {
    for id in walk.postorder.clone().iter().rev() {
        let visit = &walk.visits[id];
        if !visit.needed {
            continue;
        }
        let out_grads: Vec<Option<NDArray>> = (0..visit.saved.outputs.len())
            .map(|i| grads.remove(&(*id, i)).flatten())
            .collect();
        if out_grads.iter().all(Option::is_none) {
            continue;
        }
        let wanted: Vec<bool> = visit.targets.iter().map(|t| walk.wants(t)).collect();
        let name = visit.saved.backward.name().to_string();
        let in_grads = match &visit.saved.backward {
            Backward::Op(op) => {
                let (Some(Some(g)), Some(out)) = (out_grads.first(), visit.saved.outputs.first())
                else {
                    continue;
                };
                // Only the gradients some leaf needs: the VJP skips work for the others.
                kiln_ir::vjp::vjp_wanted(builder, op, &visit.saved.inputs, out, g, &wanted)?
            }
            Backward::Function { f, .. } => {
                let filled: Vec<NDArray> = out_grads
                    .into_iter()
                    .zip(&visit.saved.outputs)
                    .map(|(g, out)| {
                        g.unwrap_or_else(|| {
                            NDArray::from_tensor(
                                Tensor::zeros(out.shape().clone(), out.dtype()),
                                out.context(),
                            )
                        })
                    })
                    .collect();
                f(&filled)?
            }
        };
        if in_grads.len() != visit.saved.inputs.len() {
            return Err(Error::Autograd(format!(
                "backward of `{name}` returned {} gradients for {} inputs",
                in_grads.len(),
                visit.saved.inputs.len()
            )));
        }
        let inputs = visit.saved.inputs.clone();
        let targets = visit.targets.clone();
        for (i, (g, target)) in in_grads.into_iter().zip(targets).enumerate() {
            let (Some(g), true, Some(target)) = (g, wanted[i], target) else {
                continue;
            };
            check_match(
                &format!("backward of `{name}`: gradient of input {i}"),
                &inputs[i],
                &g,
            )?;
            let slot = match target {
                Target::Node { id, index } => grads.entry((id, index)).or_default(),
                Target::Leaf(l) => &mut walk.leaves.list[l].grad,
            };
            accumulate(slot, g)?;
        }
    }
    Ok(())
}

/// Stores each leaf's gradient by its grad_req. Every buffer's new contents are computed
/// before any is written, so an error leaves them all as they were.
fn deliver(leaves: Vec<Leaf>) -> Result<()> {
    let mut writes: Vec<(NDArray, Storage)> = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let new = match (leaf.req, leaf.grad) {
            (GradReq::Write, Some(g)) => g,
            // Write means "the gradient of this backward": zero when none reached the leaf.
            (GradReq::Write, None) => {
                let zeros = Storage::zeros(leaf.buffer.dtype(), leaf.buffer.shape().numel());
                writes.push((leaf.buffer, zeros));
                continue;
            }
            (GradReq::Add, Some(g)) => apply(Op::Binary { f: BinaryOp::Add }, &[&leaf.buffer, &g])?,
            (GradReq::Add, None) | (GradReq::Null, _) => continue,
        };
        check_match("backward: gradient buffer", &leaf.buffer, &new)?;
        let data = new.try_with_view("backward", |v| v.data.to_storage())?;
        writes.push((leaf.buffer, data));
    }
    for (buffer, data) in writes {
        store(&buffer, &data)?;
    }
    Ok(())
}

fn check_match(what: &str, expected: &NDArray, got: &NDArray) -> Result<()> {
    if expected.shape() != got.shape() || expected.dtype() != got.dtype() {
        return Err(Error::Autograd(format!(
            "{what}: expected shape {}, {}, got shape {}, {}",
            expected.shape(),
            expected.dtype(),
            got.shape(),
            got.dtype()
        )));
    }
    Ok(())
}

/// `acc += g`, where an empty accumulator takes `g` as it is.
fn accumulate(acc: &mut Option<NDArray>, g: NDArray) -> Result<()> {
    *acc = Some(match acc.take() {
        None => g,
        Some(prev) => apply(Op::Binary { f: BinaryOp::Add }, &[&prev, &g])?,
    });
    Ok(())
}

/// Overwrites `dst`'s elements in place (so handles sharing its storage see the change).
pub(crate) fn store(dst: &NDArray, data: &Storage) -> Result<()> {
    let n = dst.shape().numel();
    let offset = dst.inner.offset;
    // Read everything the message needs now: `dst.dtype()` locks the storage, which is held
    // for writing below.
    let message = format!(
        "cannot store {} {} elements into an array of shape {}, {}",
        data.len(),
        data.dtype(),
        dst.shape(),
        dst.dtype()
    );
    let mismatch = || Error::Autograd(message.clone());
    if data.len() != n {
        return Err(mismatch());
    }
    let mut guard = write_storage(dst.inner.data.storage("backward", dst.shape())?);
    kiln_ir::with_data!(data.as_ref(), T, src => {
        let target = T::vec_mut(&mut guard)
            .and_then(|v| v.get_mut(offset..offset + n))
            .ok_or_else(mismatch)?;
        target.copy_from_slice(src);
    });
    Ok(())
}
