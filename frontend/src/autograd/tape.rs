//! The tape: one node per recorded op, hanging off the arrays it produced.
//!
//! A node keeps what its VJP needs (the op, handles to its inputs, detached handles to its
//! outputs) and each output array points back at it. The graph is therefore owned by the
//! arrays: an array computed under `record` but never differentiated frees its history when
//! it is dropped, two losses keep two independent graphs, and nothing accumulates in a
//! global list between training steps. `backward` frees the saved values of every node it
//! walks (unless asked to retain them).

use super::{AutogradMeta, GradReq};
use crate::ndarray::{Inner, NDArray};
use kiln_ir::{Op, Result};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A gradient function supplied by [`record_function`]: output gradients in, one optional
/// input gradient per input out.
pub type BackwardFn = dyn Fn(&[NDArray]) -> Result<Vec<Option<NDArray>>> + Send + Sync;

/// How a node computes its inputs' gradients.
#[derive(Clone)]
pub(crate) enum Backward {
    /// `kiln_ir::vjp::vjp` of a single-output op.
    Op(Op),
    /// A caller-supplied function (a hybridized block's compiled backward, a custom op).
    Function { name: Arc<str>, f: Arc<BackwardFn> },
}

impl Backward {
    pub(crate) fn name(&self) -> &str {
        match self {
            Backward::Op(op) => op.name(),
            Backward::Function { name, .. } => name,
        }
    }
}

/// What backward needs from a node; dropped when the graph is freed.
#[derive(Clone)]
pub(crate) struct Saved {
    pub(crate) backward: Backward,
    /// The forward inputs (handles: they share storage with the user's arrays).
    pub(crate) inputs: Vec<NDArray>,
    /// The forward outputs, as detached handles (no autograd state, so no reference cycle).
    pub(crate) outputs: Vec<NDArray>,
}

/// One recorded op.
pub(crate) struct Node {
    pub(crate) id: u64,
    name: Arc<str>,
    /// `None` once a backward without `retain_graph` has used the node.
    pub(crate) saved: Mutex<Option<Saved>>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node#{}({})", self.id, self.name)
    }
}

impl Node {
    fn new(saved: Saved) -> Arc<Node> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: Arc::from(saved.backward.name()),
            saved: Mutex::new(Some(saved)),
        })
    }

    /// The saved values, if the graph has not been freed.
    pub(crate) fn saved(&self) -> Option<Saved> {
        self.saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the saved values: the memory of intermediate arrays is released, and a later
    /// backward through this node reports that the graph was freed.
    pub(crate) fn free(&self) {
        self.saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for Node {
    /// Frees a chain of nodes iteratively: dropping the head of a graph thousands of ops
    /// deep (an unrolled RNN) would otherwise recurse once per op and could overflow the
    /// stack.
    fn drop(&mut self) {
        let saved = self
            .saved
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(saved) = saved else { return };
        let mut pending: Vec<NDArray> = saved.inputs;
        while let Some(array) = pending.pop() {
            // Only the last handle to an array owns its history; other handles keep it alive.
            let Ok(inner) = Arc::try_unwrap(array.inner) else {
                continue;
            };
            let meta = inner
                .autograd
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = meta.entry else { continue };
            if let Ok(mut node) = Arc::try_unwrap(entry.node) {
                let saved = node
                    .saved
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(saved) = saved {
                    pending.extend(saved.inputs);
                }
            }
        }
    }
}

/// An array's place in the graph: output `index` of `node`.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) node: Arc<Node>,
    pub(crate) index: usize,
}

/// Locks an array's autograd state (a poisoned lock still holds valid data: the state is
/// only ever replaced wholesale).
pub(crate) fn meta(a: &NDArray) -> MutexGuard<'_, AutogradMeta> {
    a.inner
        .autograd
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A new handle to `a`'s elements with no autograd state.
pub(crate) fn detached(a: &NDArray) -> NDArray {
    NDArray {
        inner: Arc::new(Inner {
            data: a.inner.data.clone(),
            offset: a.inner.offset,
            shape: a.inner.shape.clone(),
            ctx: a.inner.ctx,
            autograd: Mutex::new(AutogradMeta::default()),
        }),
    }
}

/// True when gradients may flow through `a`: it has recorded history or an attached gradient
/// buffer (of any grad_req; `Null` ones are reported by backward).
fn is_tracked(a: &NDArray) -> bool {
    let m = meta(a);
    m.entry.is_some() || m.grad.is_some()
}

/// Records a node producing `outputs` from `inputs`, if any input is tracked; otherwise marks
/// the outputs as computed under record without history (for backward's error message).
fn record_node(backward: Backward, inputs: &[&NDArray], outputs: &[&NDArray]) {
    if !inputs.iter().any(|a| is_tracked(a)) {
        for out in outputs {
            let mut m = meta(out);
            m.entry = None;
            m.recorded_untracked = true;
        }
        return;
    }
    let node = Node::new(Saved {
        backward,
        inputs: inputs.iter().map(|a| (*a).clone()).collect(),
        outputs: outputs.iter().map(|a| detached(a)).collect(),
    });
    for (index, out) in outputs.iter().enumerate() {
        // An output that is also an input would point at its own node: a cycle that never
        // frees. Such an output keeps the history it had.
        if inputs.iter().any(|i| Arc::ptr_eq(&i.inner, &out.inner)) {
            continue;
        }
        let mut m = meta(out);
        m.entry = Some(Entry {
            node: Arc::clone(&node),
            index,
        });
        m.recorded_untracked = false;
    }
}

/// Puts one executed op on the tape (called by `apply` only while recording).
pub(crate) fn record_op(op: &Op, inputs: &[&NDArray], output: &NDArray) {
    record_node(Backward::Op(op.clone()), inputs, &[output]);
}

/// Records a computation whose gradient is given by `backward` rather than by an op's VJP
/// (MXNet's `autograd.Function`): a hybridized block's compiled graph, or a custom op.
///
/// Does nothing unless [`super::is_recording`] and some input has history or an attached
/// gradient. Compute `outputs` with recording paused (inside [`super::pause`]) so they are
/// fresh; they become the node's outputs (history they had before is replaced). An output
/// that is one of the inputs is left as it is.
///
/// During backward, `backward` runs with recording paused and receives one gradient per
/// output (zeros for outputs no gradient reached), each of that output's shape and dtype. It
/// must return one entry per input: `None` for an input it does not differentiate, else a
/// gradient of that input's shape and dtype.
///
/// ```
/// use kiln_frontend::{autograd, NDArray, Context};
/// use kiln_ir::Tensor;
/// let x = NDArray::from_tensor(Tensor::from_vec(vec![1.0f64, 2.0], [2]).unwrap(), Context::cpu());
/// x.attach_grad();
/// // y = 10 * x, computed and differentiated by hand.
/// let y = autograd::record(|| {
///     let y = autograd::pause(|| {
///         let v = x.to_vec_f64();
///         let t = Tensor::from_vec(v.iter().map(|a| 10.0 * a).collect::<Vec<f64>>(), [2]).unwrap();
///         NDArray::from_tensor(t, Context::cpu())
///     });
///     autograd::record_function("times_ten", &[&x], &[&y], |grads| {
///         let g = grads[0].to_vec_f64();
///         let t = Tensor::from_vec(g.iter().map(|a| 10.0 * a).collect::<Vec<f64>>(), [2])?;
///         Ok(vec![Some(NDArray::from_tensor(t, Context::cpu()))])
///     });
///     y
/// });
/// autograd::backward(&[&y], None, false).unwrap();
/// let g = x.grad().unwrap().to_vec_f64();
/// assert_eq!(g, vec![10.0, 10.0]);
/// ```
pub fn record_function<F>(name: &str, inputs: &[&NDArray], outputs: &[&NDArray], backward: F)
where
    F: Fn(&[NDArray]) -> Result<Vec<Option<NDArray>>> + Send + Sync + 'static,
{
    if !super::is_recording() {
        return;
    }
    record_node(
        Backward::Function {
            name: Arc::from(name),
            f: Arc::new(backward),
        },
        inputs,
        outputs,
    );
}

/// An attached gradient buffer.
#[derive(Clone, Debug)]
pub(crate) struct GradSlot {
    pub(crate) buffer: NDArray,
    pub(crate) req: GradReq,
}
