//! `NDArray`: an n-dimensional array on a device, shared by handle, with autograd.
//!
//! The type is split by concern:
//! - this module: the handle, its accessors and the one op path [`apply`] / [`apply_on`];
//! - `create`: building arrays from Rust data and reading them back;
//! - `ops`, `nn_ops`: every IR op as a method;
//! - `operators`: `+ - * /` and negation on arrays, references, scalars and `Result`s;
//! - `inplace`: `+=` and friends, `assign`, `fill`, indexed writes;
//! - `index`: [`SliceArg`] and the [`s!`](crate::s) macro, indexed reads, views, iteration;
//! - `display`: numpy-style printing.

mod create;
mod display;
mod index;
mod inplace;
mod nn_ops;
mod operators;
mod ops;

pub use create::NestedArray;
pub use index::{IntoSliceArg, Iter, SliceArg};
pub use nn_ops::{BatchNormOpts, ConvOpts, Dims, PoolOpts};

use crate::autograd::{self, AutogradMeta};
use crate::context::Context;
use kiln_ir::infer::{infer, resolve_slice, resolve_slice_axis, SliceDim};
use kiln_ir::{DType, Error, Op, Result, Shape, Storage, Tensor, TensorType};
use kiln_ir::{DataRef, TensorView};
use smallvec::SmallVec;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// An n-dimensional array.
///
/// Cloning an `NDArray` clones the handle: both see the same data, as two Python names for
/// one MXNet array do. [`NDArray::copy`] makes an independent copy. Reshapes and slices of
/// a range of the leading axis are views sharing the storage: writes through a view are seen
/// by the array it was taken from.
///
/// ```
/// use kiln_frontend::{nd, NDArray};
/// let a = NDArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
/// let b = (&a + 1.0)?;
/// assert_eq!(b.to_vec::<f32>()?, vec![2.0, 3.0, 4.0, 5.0]);
/// assert_eq!(nd::dot(&a, &a)?.to_vec::<f32>()?, vec![7.0, 10.0, 15.0, 22.0]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone)]
pub struct NDArray {
    pub(crate) inner: Arc<Inner>,
}

/// The state behind an array handle.
#[derive(Debug)]
pub(crate) struct Inner {
    /// The elements: storage possibly shared with other views, or a symbolic value of a
    /// hybridize trace (which has none).
    pub(crate) data: Data,
    /// First element of this view within `storage`.
    pub(crate) offset: usize,
    /// Shape of this view (contiguous, row-major from `offset`).
    pub(crate) shape: Shape,
    /// Device.
    pub(crate) ctx: Context,
    /// Autograd state, owned by [`crate::autograd`].
    pub(crate) autograd: Mutex<AutogradMeta>,
}

/// Where an array's elements are.
#[derive(Clone, Debug)]
pub(crate) enum Data {
    /// Elements in memory, possibly shared with other views.
    Concrete(Arc<RwLock<Storage>>),
    /// A node of the graph a hybridize trace is building: its type is known, its values exist
    /// only when the compiled graph runs. Every path that reads or writes elements goes
    /// through [`Data::storage`] (or [`NDArray::with_view`]) and fails on it.
    Symbolic(Symbol),
}

/// The graph node a symbolic array stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// The trace that made it (a value of another trace is an error).
    pub(crate) trace: u64,
    /// The node in that trace's graph.
    pub(crate) node: kiln_ir::NodeId,
    /// Its dtype (the shape is the array's).
    pub(crate) dtype: DType,
}

impl Data {
    /// The storage, or the error explaining that a symbolic value has none (`op` reads it).
    pub(crate) fn storage(&self, op: &str, shape: &Shape) -> Result<&Arc<RwLock<Storage>>> {
        match self {
            Data::Concrete(s) => Ok(s),
            Data::Symbolic(sym) => {
                Err(crate::hybrid::trace::value_read_error(op, shape, sym.dtype))
            }
        }
    }
}

impl NDArray {
    /// Wraps an owned tensor as a new array on `ctx`.
    pub fn from_tensor(t: Tensor, ctx: Context) -> NDArray {
        let (shape, storage) = t.into_parts();
        NDArray::from_parts(Arc::new(RwLock::new(storage)), 0, shape, ctx)
    }

    /// A handle on `shape.numel()` elements of `storage` from `offset` (a view when the
    /// storage is shared).
    fn from_parts(
        storage: Arc<RwLock<Storage>>,
        offset: usize,
        shape: Shape,
        ctx: Context,
    ) -> NDArray {
        NDArray {
            inner: Arc::new(Inner {
                data: Data::Concrete(storage),
                offset,
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

    /// The number of dimensions (0 for a scalar).
    pub fn ndim(&self) -> usize {
        self.inner.shape.rank()
    }

    /// The number of elements (1 for a scalar).
    pub fn size(&self) -> usize {
        self.inner.shape.numel()
    }

    /// The device.
    pub fn context(&self) -> Context {
        self.inner.ctx
    }

    /// A symbolic array of type `ty` standing for `node` of trace `trace`.
    pub(crate) fn symbolic(
        trace: u64,
        node: kiln_ir::NodeId,
        ty: TensorType,
        ctx: Context,
    ) -> NDArray {
        NDArray {
            inner: Arc::new(Inner {
                data: Data::Symbolic(Symbol {
                    trace,
                    node,
                    dtype: ty.dtype,
                }),
                offset: 0,
                shape: ty.shape,
                ctx,
                autograd: Mutex::new(AutogradMeta::default()),
            }),
        }
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        match &self.inner.data {
            Data::Concrete(s) => read_storage(s).dtype(),
            Data::Symbolic(sym) => sym.dtype,
        }
    }

    /// True for a symbolic value of a hybridize trace: an array that has a shape and a dtype
    /// but no elements yet (they exist when the compiled graph runs). A forward may branch on
    /// shapes, never on values; see [`crate::hybrid`].
    pub fn is_symbolic(&self) -> bool {
        matches!(self.inner.data, Data::Symbolic(_))
    }

    /// Shape and dtype together.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.inner.shape.clone(), self.dtype())
    }

    /// True when `self` and `other` are views of the same storage (one may be a reshape or
    /// slice of the other).
    pub fn shares_storage_with(&self, other: &NDArray) -> bool {
        match (&self.inner.data, &other.inner.data) {
            (Data::Concrete(a), Data::Concrete(b)) => Arc::ptr_eq(a, b),
            (Data::Symbolic(a), Data::Symbolic(b)) => a == b,
            _ => false,
        }
    }

    /// Runs `f` on a borrowed view of this array's elements.
    ///
    /// The storage is read-locked while `f` runs: writing to this array (or a view of it)
    /// from inside `f` would wait forever.
    ///
    /// Errors on a symbolic array (a value inside a hybridize trace, or one kept past its
    /// trace): it has no elements to view, and the error says why and what to do instead.
    ///
    /// ```
    /// use kiln_frontend::nd;
    /// let a = nd::array(&[1.0f32, 2.0, 3.0])?;
    /// assert_eq!(a.with_view(|v| v.shape.numel())?, 3);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    pub fn with_view<R>(&self, f: impl FnOnce(TensorView<'_>) -> R) -> Result<R> {
        self.try_with_view("with_view", f)
    }

    /// [`NDArray::with_view`] for the infallible reader `op` (`to_vec_f64`, `to_tensor`): on a
    /// symbolic array it abandons the running trace (which then returns the error naming
    /// `op`), or panics with that error when no trace runs.
    pub(crate) fn with_view_in<R>(&self, op: &str, f: impl FnOnce(TensorView<'_>) -> R) -> R {
        match &self.inner.data {
            Data::Concrete(s) => {
                let guard = read_storage(s);
                f(self.view_in(&guard))
            }
            Data::Symbolic(sym) => {
                crate::hybrid::trace::abort_read(op, &self.inner.shape, sym.dtype)
            }
        }
    }

    /// [`NDArray::with_view`] that returns the value-read error for a symbolic array.
    pub(crate) fn try_with_view<R>(
        &self,
        op: &str,
        f: impl FnOnce(TensorView<'_>) -> R,
    ) -> Result<R> {
        let s = self.inner.data.storage(op, &self.inner.shape)?;
        let guard = read_storage(s);
        Ok(f(self.view_in(&guard)))
    }

    /// This array's elements within a locked storage.
    fn view_in<'a>(&self, storage: &'a Storage) -> TensorView<'a> {
        let n = self.inner.shape.numel();
        let data: DataRef<'a> = storage.slice(self.inner.offset..self.inner.offset + n);
        TensorView {
            shape: self.inner.shape.clone(),
            data,
        }
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
    let ctx = match inputs.first() {
        Some(a) => a.inner.ctx,
        None => Context::cpu(),
    };
    apply_on(op, inputs, ctx)
}

/// [`apply`] with the device given (for ops without inputs, such as `zeros`).
///
/// Ops that only reinterpret contiguous data (reshape, flatten, expand_dims, squeeze, and
/// slices that select a contiguous block, such as a range of the leading axis) return a view
/// sharing the input's storage instead of running a kernel.
///
/// While a hybridize trace runs on this thread, the op is appended to the trace's graph instead
/// and the result is a symbolic array (see [`crate::hybrid::trace`]).
pub fn apply_on(op: Op, inputs: &[&NDArray], ctx: Context) -> Result<NDArray> {
    if let Some(other) = inputs.iter().find(|a| a.inner.ctx != ctx) {
        return Err(Error::invalid(
            op.name(),
            format!(
                "inputs live on different devices ({ctx} and {})",
                other.context()
            ),
        ));
    }
    if crate::hybrid::trace::is_tracing() {
        return crate::hybrid::trace::apply_traced(op, inputs, ctx);
    }
    let out = match view_of(&op, inputs)? {
        Some(view) => view,
        None => NDArray::from_tensor(execute(&op, inputs, ctx)?, ctx),
    };
    if autograd::is_recording() {
        autograd::record_op(&op, inputs, &out);
    }
    Ok(out)
}

/// Runs the kernel, holding one read lock per distinct storage (two inputs may be views of
/// one storage; locking it twice could wait on a queued writer).
fn execute(op: &Op, inputs: &[&NDArray], ctx: Context) -> Result<Tensor> {
    let mut locks: SmallVec<[(&RwLock<Storage>, RwLockReadGuard<'_, Storage>); 4]> =
        SmallVec::new();
    let mut slot: SmallVec<[usize; 4]> = SmallVec::new();
    for a in inputs {
        let s: &RwLock<Storage> = a.inner.data.storage(op.name(), &a.inner.shape)?;
        match locks.iter().position(|(l, _)| std::ptr::eq(*l, s)) {
            Some(i) => slot.push(i),
            None => {
                slot.push(locks.len());
                locks.push((s, read_storage(s)));
            }
        }
    }
    let views: SmallVec<[TensorView<'_>; 4]> = inputs
        .iter()
        .zip(&slot)
        .map(|(a, &i)| a.view_in(&locks[i].1))
        .collect();
    ctx.kernels().execute(op, &views)
}

/// The output of a view op as a view of its input, or `None` when the op must run a kernel.
fn view_of(op: &Op, inputs: &[&NDArray]) -> Result<Option<NDArray>> {
    let x = match (op, inputs) {
        (
            Op::Reshape { .. }
            | Op::Flatten
            | Op::ExpandDims { .. }
            | Op::Squeeze { .. }
            | Op::Slice { .. }
            | Op::SliceAxis { .. },
            [x],
        ) => *x,
        _ => return Ok(None),
    };
    let storage = x.inner.data.storage(op.name(), x.shape())?;
    let shape = x.shape();
    let start = match op {
        Op::Slice { begin, end, step } => {
            contiguous_start(shape, &resolve_slice(op.name(), shape, begin, end, step)?)
        }
        Op::SliceAxis { axis, begin, end } => {
            let (axis, b, e) = resolve_slice_axis(op.name(), shape, *axis, *begin, *end)?;
            let dims: Vec<SliceDim> = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| SliceDim {
                    begin: if i == axis { b as i64 } else { 0 },
                    step: 1,
                    count: if i == axis { e - b } else { d },
                })
                .collect();
            contiguous_start(shape, &dims)
        }
        _ => Some(0),
    };
    let Some(start) = start else {
        return Ok(None);
    };
    let out = infer(op, &[x.ty()])?.shape;
    Ok(Some(NDArray::from_parts(
        storage.clone(),
        x.inner.offset + start,
        out,
        x.inner.ctx,
    )))
}

/// Where a resolved slice starts within its input, if it selects one contiguous block:
/// single positions on the outer axes, then one axis with a step-1 range, then whole axes.
fn contiguous_start(shape: &Shape, dims: &[SliceDim]) -> Option<usize> {
    if dims.iter().any(|d| d.count == 0) {
        return None;
    }
    let k = dims.iter().position(|d| d.count != 1).unwrap_or(dims.len());
    if let Some(d) = dims.get(k) {
        if d.step != 1 {
            return None;
        }
    }
    let whole = |(d, &n): (&SliceDim, &usize)| d.begin == 0 && d.step == 1 && d.count == n;
    if !dims.iter().zip(shape.iter()).skip(k + 1).all(whole) {
        return None;
    }
    let strides = shape.strides();
    Some(
        dims.iter()
            .zip(strides.iter())
            .map(|(d, s)| d.begin as usize * s)
            .sum(),
    )
}

impl std::fmt::Debug for NDArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
