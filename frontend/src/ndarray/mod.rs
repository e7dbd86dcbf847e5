//! `NDArray`: an n-dimensional array on a device, shared by handle, with autograd.

use crate::autograd::{self, AutogradMeta};
use crate::context::Context;
use kiln_ir::{DType, DataRef, Op, Result, Shape, Storage, Tensor, TensorView};
use std::sync::{Arc, Mutex, RwLock};

/// An n-dimensional array.
///
/// Cloning an `NDArray` clones the handle: both see the same data, as two Python names for
/// one MXNet array do. [`NDArray::copy`] makes an independent copy. Reshapes and slices of
/// the leading axis are views sharing the storage.
#[derive(Clone, Debug)]
pub struct NDArray {
    pub(crate) inner: Arc<Inner>,
}

/// The state behind an array handle.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Element storage, possibly shared with other views.
    pub(crate) storage: Arc<RwLock<Storage>>,
    /// First element of this view within `storage`.
    pub(crate) offset: usize,
    /// Shape of this view (contiguous, row-major from `offset`).
    pub(crate) shape: Shape,
    /// Device.
    pub(crate) ctx: Context,
    /// Autograd state, owned by [`crate::autograd`].
    pub(crate) autograd: Mutex<AutogradMeta>,
}

impl NDArray {
    /// Wraps an owned tensor as a new array on `ctx`.
    pub fn from_tensor(t: Tensor, ctx: Context) -> NDArray {
        let (shape, storage) = t.into_parts();
        NDArray {
            inner: Arc::new(Inner {
                storage: Arc::new(RwLock::new(storage)),
                offset: 0,
                shape,
                ctx,
                autograd: Mutex::new(AutogradMeta::default()),
            }),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.inner.shape
    }

    /// The device.
    pub fn context(&self) -> Context {
        self.inner.ctx
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        read_storage(&self.inner.storage).dtype()
    }

    /// Runs `f` on a borrowed view of this array's elements.
    pub fn with_view<R>(&self, f: impl FnOnce(TensorView<'_>) -> R) -> R {
        let guard = read_storage(&self.inner.storage);
        let n = self.inner.shape.numel();
        let data: DataRef<'_> = guard.slice(self.inner.offset..self.inner.offset + n);
        f(TensorView {
            shape: self.inner.shape.clone(),
            data,
        })
    }
}

pub(crate) fn read_storage(s: &RwLock<Storage>) -> std::sync::RwLockReadGuard<'_, Storage> {
    s.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write_storage(s: &RwLock<Storage>) -> std::sync::RwLockWriteGuard<'_, Storage> {
    s.write().unwrap_or_else(|e| e.into_inner())
}

/// Runs `op` on `inputs` with their device's kernels; while recording, tapes it.
///
/// This is the one path every eager op takes. Inputs must share a device.
pub fn apply(op: Op, inputs: &[&NDArray]) -> Result<NDArray> {
    let ctx = inputs
        .first()
        .map(|a| a.context())
        .unwrap_or_else(Context::cpu);
    apply_on(op, inputs, ctx)
}

/// [`apply`] with the device given (for ops without inputs, such as `zeros`).
pub fn apply_on(op: Op, inputs: &[&NDArray], ctx: Context) -> Result<NDArray> {
    if let Some(other) = inputs.iter().find(|a| a.context() != ctx) {
        return Err(kiln_ir::Error::invalid(
            op.name(),
            format!(
                "inputs live on different devices ({ctx} and {})",
                other.context()
            ),
        ));
    }
    let guards: Vec<_> = inputs
        .iter()
        .map(|a| read_storage(&a.inner.storage))
        .collect();
    let views: Vec<TensorView<'_>> = inputs
        .iter()
        .zip(&guards)
        .map(|(a, g)| TensorView {
            shape: a.inner.shape.clone(),
            data: g.slice(a.inner.offset..a.inner.offset + a.inner.shape.numel()),
        })
        .collect();
    let out = ctx.kernels().execute(&op, &views)?;
    drop(views);
    drop(guards);
    let out = NDArray::from_tensor(out, ctx);
    if autograd::is_recording() {
        autograd::record_op(&op, inputs, &out);
    }
    Ok(out)
}
