//! The backward pass: walk the graph behind the heads, run each node's VJP in reverse
//! topological order, and deliver the gradients to the attached buffers.

use super::eager_builder::EagerBuilder;
use super::state::paused;
use super::tape::{meta, Backward, Entry, Node, Saved};
use super::GradReq;
use crate::ndarray::{apply, write_storage, Inner, NDArray};
use kiln_ir::{BinaryOp, Element, Error, Op, Result, Storage, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Where an input of a node gets its gradient from.
enum Source {
    /// The output `index` of another recorded node.
    Node { id: u64, index: usize },
    /// A leaf with an attached gradient (index into the leaf list).
    Leaf(usize),
    /// Neither: no gradient is wanted (a constant, or a leaf with grad_req `Null`).
    Const,
}

/// A node reached from the heads, with its saved values read once.
struct Visit {
    node: Arc<Node>,
    saved: Saved,
    sources: Vec<Source>,
    /// True when some input's gradient reaches a leaf that wants one.
    needed: bool,
}

/// A leaf with a Write/Add gradient buffer found in the graph.
struct Leaf {
    buffer: NDArray,
    req: GradReq,
    grad: Option<NDArray>,
}

/// Computes the gradients of `heads` with respect to every array they were computed from
/// that has an attached gradient, and stores them by each array's grad_req (MXNet's
/// `autograd.backward`).
///
/// `head_grads` gives one gradient per head, each of its head's shape and dtype (`None`: ones,
/// so a non-scalar head is implicitly summed). Without `retain_graph` the graph is freed
/// afterwards and a second backward through it is an error. Gradients are computed with
/// recording paused: they carry no history, so second-order gradients are not supported.
///
/// Errors, with nothing written, when a head was not computed under [`super::record`] from
/// an array with an attached gradient, when its graph was already freed, when no array it
/// depends on wants a gradient, or when a head gradient does not match its head.
pub fn backward(
    heads: &[&NDArray],
    head_grads: Option<&[&NDArray]>,
    retain_graph: bool,
) -> Result<()> {
    paused(|| run(heads, head_grads, retain_graph))
}

fn describe(a: &NDArray) -> String {
    format!("shape {}, {}", a.shape(), a.dtype())
}

fn head_entry(head: &NDArray) -> Result<Entry> {
    let m = meta(head);
    if let Some(entry) = &m.entry {
        if entry.node.saved().is_none() {
            return Err(Error::Autograd(format!(
                "backward: the graph of this array ({}) was already freed by an earlier \
                 backward; pass retain_graph = true to the first backward to run it twice",
                describe(head)
            )));
        }
        return Ok(entry.clone());
    }
    let why = if m.recorded_untracked {
        "was computed inside autograd::record, but from no array with an attached gradient: \
         call attach_grad() on the arrays you want gradients for before computing it"
    } else if m.grad.is_some() {
        "is a leaf (it has an attached gradient but no recorded history): call backward on a \
         result computed from it inside autograd::record"
    } else {
        "has no recorded history: compute it inside autograd::record(|| ..) from arrays with \
         attach_grad()"
    };
    Err(Error::Autograd(format!(
        "backward: this array ({}) {why}",
        describe(head)
    )))
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

fn run(heads: &[&NDArray], head_grads: Option<&[&NDArray]>, retain_graph: bool) -> Result<()> {
    let Some(first) = heads.first() else {
        return Err(Error::Autograd("backward: no head arrays given".into()));
    };
    if let Some(hg) = head_grads {
        if hg.len() != heads.len() {
            return Err(Error::Autograd(format!(
                "backward: {} head gradients given for {} heads",
                hg.len(),
                heads.len()
            )));
        }
    }
    let entries: Vec<Entry> = heads.iter().map(|h| head_entry(h)).collect::<Result<_>>()?;

    // Walk the graph: iterative depth-first search, recording nodes in postorder (every node
    // after the nodes producing its inputs).
    let mut visits: HashMap<u64, Visit> = HashMap::new();
    let mut postorder: Vec<u64> = Vec::new();
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut leaf_ids: HashMap<*const Inner, usize> = HashMap::new();
    let mut stack: Vec<(Arc<Node>, bool)> = entries
        .iter()
        .map(|e| (Arc::clone(&e.node), false))
        .collect();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            postorder.push(node.id);
            continue;
        }
        if visits.contains_key(&node.id) {
            continue;
        }
        let saved = node.saved().ok_or_else(|| {
            Error::Autograd(format!(
                "backward: the graph passes through `{node:?}`, which an earlier backward \
                 already freed; pass retain_graph = true to that backward, or detach() arrays \
                 carried over from an earlier iteration"
            ))
        })?;
        let mut sources = Vec::with_capacity(saved.inputs.len());
        let mut children = Vec::new();
        for input in &saved.inputs {
            let m = meta(input);
            let source = if let Some(e) = &m.entry {
                children.push(Arc::clone(&e.node));
                Source::Node {
                    id: e.node.id,
                    index: e.index,
                }
            } else {
                match &m.grad {
                    Some(slot) if slot.req != GradReq::Null => {
                        let id = *leaf_ids
                            .entry(Arc::as_ptr(&input.inner))
                            .or_insert_with(|| {
                                leaves.push(Leaf {
                                    buffer: slot.buffer.clone(),
                                    req: slot.req,
                                    grad: None,
                                });
                                leaves.len() - 1
                            });
                        Source::Leaf(id)
                    }
                    _ => Source::Const,
                }
            };
            sources.push(source);
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
                sources,
                needed: false,
            },
        );
    }
    if leaves.is_empty() {
        return Err(Error::Autograd(
            "backward: no array this result was computed from has an attached gradient with \
             grad_req Write or Add; call attach_grad() on them before autograd::record"
                .into(),
        ));
    }

    // Prune: a node is needed when one of its inputs leads to a leaf that wants a gradient.
    for id in &postorder {
        let needed = visits[id].sources.iter().any(|s| match s {
            Source::Leaf(_) => true,
            Source::Node { id, .. } => visits.get(id).is_some_and(|v| v.needed),
            Source::Const => false,
        });
        if let Some(v) = visits.get_mut(id) {
            v.needed = needed;
        }
    }

    // Seed the heads' gradients.
    let mut grads: HashMap<(u64, usize), Option<NDArray>> = HashMap::new();
    for (i, (head, entry)) in heads.iter().zip(&entries).enumerate() {
        let g = match head_grads {
            Some(hg) => {
                check_match("backward: head gradient", head, hg[i])?;
                if hg[i].context() != head.context() {
                    return Err(Error::Autograd(format!(
                        "backward: head gradient lives on {}, its head on {}",
                        hg[i].context(),
                        head.context()
                    )));
                }
                hg[i].clone()
            }
            None => NDArray::from_tensor(
                Tensor::full(head.shape().clone(), head.dtype(), 1.0),
                head.context(),
            ),
        };
        accumulate(grads.entry((entry.node.id, entry.index)).or_default(), g)?;
    }

    // Reverse topological order: every consumer of a value before its producer.
    let mut builder = EagerBuilder {
        ctx: first.context(),
    };
    for id in postorder.iter().rev() {
        let visit = &visits[id];
        if !visit.needed {
            continue;
        }
        let out_grads: Vec<Option<NDArray>> = (0..visit.saved.outputs.len())
            .map(|i| grads.remove(&(*id, i)).flatten())
            .collect();
        if out_grads.iter().all(Option::is_none) {
            continue;
        }
        let name = visit.saved.backward.name();
        let in_grads = match &visit.saved.backward {
            Backward::Op(op) => {
                let (Some(Some(g)), Some(out)) = (out_grads.first(), visit.saved.outputs.first())
                else {
                    continue;
                };
                kiln_ir::vjp::vjp(&mut builder, op, &visit.saved.inputs, out, g)?
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
        for (i, (source, g)) in visit.sources.iter().zip(in_grads).enumerate() {
            let Some(g) = g else { continue };
            let slot = match source {
                Source::Const => continue,
                Source::Node { id, index } => {
                    if !visits.get(id).is_some_and(|v| v.needed) {
                        continue;
                    }
                    grads.entry((*id, *index)).or_default()
                }
                Source::Leaf(l) => &mut leaves[*l].grad,
            };
            check_match(
                &format!("backward of `{name}`: gradient of input {i}"),
                &visit.saved.inputs[i],
                &g,
            )?;
            accumulate(slot, g)?;
        }
    }

    // Compute every buffer's new contents before writing any, so an error leaves them all
    // as they were.
    let mut writes: Vec<(NDArray, Storage)> = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let new = match (leaf.req, leaf.grad) {
            (GradReq::Write, Some(g)) => g,
            // Write means "the gradient of this backward": zero when none reached the leaf.
            (GradReq::Write, None) => {
                writes.push((
                    leaf.buffer.clone(),
                    Storage::zeros(leaf.buffer.dtype(), leaf.buffer.shape().numel()),
                ));
                continue;
            }
            (GradReq::Add, Some(g)) => apply(Op::Binary { f: BinaryOp::Add }, &[&leaf.buffer, &g])?,
            (GradReq::Add, None) | (GradReq::Null, _) => continue,
        };
        check_match("backward: gradient buffer", &leaf.buffer, &new)?;
        let data = new.with_view(|v| v.data.to_storage());
        writes.push((leaf.buffer, data));
    }
    for (buffer, data) in writes {
        store(&buffer, &data)?;
    }

    if !retain_graph {
        for visit in visits.values() {
            visit.node.free();
        }
    }
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
    let mut guard = write_storage(&dst.inner.storage);
    kiln_ir::with_data!(data.as_ref(), T, src => {
        let target = T::vec_mut(&mut guard)
            .and_then(|v| v.get_mut(offset..offset + n))
            .ok_or_else(mismatch)?;
        target.copy_from_slice(src);
    });
    Ok(())
}
