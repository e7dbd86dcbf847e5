//! Imperative autograd, as in MXNet gluon: `record`, `attach_grad`, `backward`.
//!
//! ```
//! use kiln_frontend::{autograd, ndarray::apply, Context, NDArray};
//! use kiln_ir::{BinaryOp, Op, Tensor};
//! # fn main() -> kiln_ir::Result<()> {
//! let x = NDArray::from_tensor(Tensor::from_vec(vec![1.0f32, 2.0], [2])?, Context::cpu());
//! x.attach_grad();
//! let y = autograd::record(|| apply(Op::Binary { f: BinaryOp::Mul }, &[&x, &x]))?;
//! y.backward()?; // d(x*x)/dx = 2x
//! assert_eq!(x.grad()?.to_vec_f64(), vec![2.0, 4.0]);
//! # Ok(())
//! # }
//! ```
//!
//! How it works:
//! - Every eager op goes through [`crate::ndarray::apply`], which, while [`is_recording`],
//!   tapes it: if some input has recorded history or an attached gradient, the output gets a
//!   node holding the op, its inputs and its output. Ops on untracked arrays record nothing.
//! - The graph hangs off the arrays (each output points at its node, each node holds its
//!   inputs), so it lives exactly as long as something can still call `backward` on it.
//!   Recording state ([`record`], [`pause`], [`train_mode`], [`predict_mode`]) is per thread.
//! - [`NDArray::backward`] walks the nodes reachable from the head, skips those that lead to
//!   no array wanting a gradient, and runs each node's VJP (`kiln_ir::vjp::vjp`, the same one
//!   a hybridized graph uses) in reverse topological order with a builder that executes at
//!   once. Gradients of an array used several times are summed. Leaves receive theirs by
//!   [`GradReq`]. Unless `retain_graph`, the saved values are then freed.
//!
//! Rules worth knowing:
//! - `attach_grad` makes an array a leaf: it allocates a fresh zero buffer and cuts any
//!   history the array had (MXNet does the same).
//! - Views: `apply` returns views for reshapes and contiguous slices and tapes them with the
//!   op they stand for, so gradients flow through a view to the array it views exactly as
//!   through a copy. A view made by hand outside `apply` (and not passed to `record_op`) is
//!   an array without history: gradients stop there. Attaching a gradient to a view makes
//!   that view a leaf with its own buffer.
//! - A head may be a leaf with an attached gradient (an op can return its input unchanged,
//!   as dropout does in predict mode): it receives the head gradient itself.
//! - The saved inputs share storage with the user's arrays: modifying an array in place after
//!   it was used under `record` and before `backward` changes the gradients (as in MXNet).
//!   After `backward` (which frees the graph) in-place updates such as an SGD step are safe.
//! - Second-order gradients are not supported: backward runs its VJPs with recording paused,
//!   so gradients carry no history (calling `backward` on one is the "no recorded history"
//!   error).

mod backward;
mod eager_builder;
mod state;
mod tape;

pub use backward::backward;
pub use state::{
    is_recording, is_training, pause, pause_with, predict_mode, record, record_with, train_mode,
};
pub use tape::{record_function, BackwardFn};

pub(crate) use tape::record_op;

use crate::ndarray::NDArray;
use kiln_ir::{Error, Result, Tensor};
use tape::{meta, Entry, GradSlot};

/// How `backward` delivers a gradient to an array's buffer (MXNet's `grad_req`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GradReq {
    /// Overwrite the buffer with this backward's gradient (zeros when none reaches the array).
    #[default]
    Write,
    /// Add this backward's gradient to the buffer (accumulate over several backwards).
    Add,
    /// No gradient: the buffer is left untouched and the array counts as a constant.
    Null,
}

/// Per-array autograd state: the attached gradient buffer and the tape entry that produced
/// the array.
#[derive(Debug, Default)]
pub struct AutogradMeta {
    /// The gradient buffer and its grad_req, after `attach_grad`.
    grad: Option<GradSlot>,
    /// The recorded node whose output this array is.
    entry: Option<Entry>,
    /// Computed under `record` from untracked arrays (kept only to explain backward errors).
    recorded_untracked: bool,
}

/// Attaches caller-owned gradient buffers to arrays (MXNet's `autograd.mark_variables`): each
/// `variables[i]` becomes a leaf whose gradient `backward` stores into `gradients[i]` by
/// `reqs[i]`. Errors when the lengths differ or a buffer's shape, dtype or device differ from
/// its array's.
pub fn mark_variables(
    variables: &[&NDArray],
    gradients: &[&NDArray],
    reqs: &[GradReq],
) -> Result<()> {
    if variables.len() != gradients.len() || variables.len() != reqs.len() {
        return Err(Error::Autograd(format!(
            "mark_variables: {} variables, {} gradients and {} grad_reqs given; they must match",
            variables.len(),
            gradients.len(),
            reqs.len()
        )));
    }
    for (i, (v, g)) in variables.iter().zip(gradients).enumerate() {
        if v.shape() != g.shape() || v.dtype() != g.dtype() || v.context() != g.context() {
            return Err(Error::Autograd(format!(
                "mark_variables: gradient {i} is shape {}, {} on {}, its variable shape {}, {} \
                 on {}",
                g.shape(),
                g.dtype(),
                g.context(),
                v.shape(),
                v.dtype(),
                v.context()
            )));
        }
    }
    for ((v, g), req) in variables.iter().zip(gradients).zip(reqs) {
        set_leaf(v, (*g).clone(), *req);
    }
    Ok(())
}

/// Errors when writing into `target` in place now could silently corrupt gradients: while
/// recording, an array with recorded history or an attached gradient may be an input saved
/// for backward (MXNet refuses the same writes). In-place ops (`+=`, `assign`, indexed
/// `set`) call it before writing; outside `record` every write is allowed.
///
/// Best effort: a view made outside `record` of a tracked array is not itself tracked, so
/// writes through it are not caught.
pub fn check_inplace(op: &str, target: &NDArray) -> Result<()> {
    if !is_recording() {
        return Ok(());
    }
    let tracked = {
        let m = meta(target);
        m.entry.is_some() || m.grad.is_some()
    };
    if tracked {
        return Err(Error::Autograd(format!(
            "{op}: cannot write in place into an array (shape {}, {}) that is part of a              recorded computation while recording; compute a new array instead, or do the              update after backward, outside autograd::record",
            target.shape(),
            target.dtype()
        )));
    }
    Ok(())
}

fn set_leaf(a: &NDArray, buffer: NDArray, req: GradReq) {
    let mut m = meta(a);
    m.grad = Some(GradSlot { buffer, req });
    m.entry = None;
    m.recorded_untracked = false;
}

impl NDArray {
    /// Attaches a zero gradient buffer of this array's shape and dtype with grad_req
    /// [`GradReq::Write`]: after `backward`, [`NDArray::grad`] holds d(head)/d(self).
    ///
    /// Makes the array a leaf (history it had is cut). Attaching again allocates a fresh
    /// buffer; handles to the old one from `grad()` no longer receive gradients.
    pub fn attach_grad(&self) {
        self.attach_grad_with(GradReq::Write);
    }

    /// [`NDArray::attach_grad`] with the grad_req given.
    pub fn attach_grad_with(&self, req: GradReq) {
        let buffer = NDArray::from_tensor(
            Tensor::zeros(self.shape().clone(), self.dtype()),
            self.context(),
        );
        set_leaf(self, buffer, req);
    }

    /// The gradient buffer. The handle shares the buffer: later backwards and in-place
    /// updates (zeroing it, an optimizer reading it) are seen through it.
    ///
    /// Errors when no gradient is attached.
    pub fn grad(&self) -> Result<NDArray> {
        match &meta(self).grad {
            Some(slot) => Ok(slot.buffer.clone()),
            None => Err(Error::Autograd(format!(
                "grad: no gradient is attached to this array (shape {}, {}); call attach_grad() \
                 before autograd::record",
                self.shape(),
                self.dtype()
            ))),
        }
    }

    /// The grad_req of the attached gradient (`None` when none is attached).
    pub fn grad_req(&self) -> Option<GradReq> {
        meta(self).grad.as_ref().map(|s| s.req)
    }

    /// Changes the grad_req of the attached gradient, keeping its buffer (gluon's
    /// `param.grad_req = 'add'`). Errors when no gradient is attached.
    pub fn set_grad_req(&self, req: GradReq) -> Result<()> {
        match &mut meta(self).grad {
            Some(slot) => {
                slot.req = req;
                Ok(())
            }
            None => Err(Error::Autograd(format!(
                "set_grad_req: no gradient is attached to this array (shape {}, {}); call \
                 attach_grad() first",
                self.shape(),
                self.dtype()
            ))),
        }
    }

    /// Computes the gradient of this array with respect to the arrays it was computed from
    /// under [`record`], into their attached buffers. The head gradient is ones, so a
    /// non-scalar array is implicitly summed. The graph is freed afterwards: a second
    /// `backward` through it is an error (see [`NDArray::backward_opts`]).
    pub fn backward(&self) -> Result<()> {
        backward(&[self], None, false)
    }

    /// [`NDArray::backward`] with the head gradient given (same shape and dtype as `self`).
    pub fn backward_with(&self, head_grad: &NDArray) -> Result<()> {
        backward(&[self], Some(&[head_grad]), false)
    }

    /// [`NDArray::backward`] with an optional head gradient and `retain_graph`: when true the
    /// graph is kept and backward may run through it again.
    pub fn backward_opts(&self, head_grad: Option<&NDArray>, retain_graph: bool) -> Result<()> {
        match head_grad {
            Some(g) => backward(&[self], Some(&[g]), retain_graph),
            None => backward(&[self], None, retain_graph),
        }
    }

    /// A new handle to the same elements with no autograd history or gradient: gradients do
    /// not flow through it (MXNet's `detach`, used to cut an RNN's state between batches).
    pub fn detach(&self) -> NDArray {
        tape::detached(self)
    }
}

#[cfg(test)]
mod tests;

/// True when a gradient computed for `a` would be used: `a` has recorded history, or an
/// attached gradient buffer whose grad_req is not [`GradReq::Null`]. Computations recorded
/// with [`record_function`] (a hybridized block's graph) use it to differentiate only with
/// respect to the inputs that need it.
pub fn requires_grad(a: &NDArray) -> bool {
    let m = meta(a);
    m.entry.is_some() || m.grad.as_ref().is_some_and(|g| g.req != GradReq::Null)
}
