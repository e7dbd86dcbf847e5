//! MXNet's `nd.*` functions: creation (`nd::zeros`, `nd::arange`, `nd::array`), every op as a
//! free function (`nd::dot(&a, &b)`, `nd::relu(&x)`), and [`random`] sampling.
//!
//! Arrays are f32 on the CPU unless an [`Opts`] says otherwise (the `_with` variants):
//!
//! ```
//! use kiln_frontend::{nd, DType};
//! let x = nd::ones([2, 3])?;
//! let i = nd::zeros_with([2], DType::I64)?;
//! assert_eq!(x.dtype(), DType::F32);
//! assert_eq!(i.to_vec::<i64>()?, vec![0, 0]);
//! let y = nd::dot(&x, &nd::ones([3, 1])?)?;
//! assert_eq!(y.to_vec::<f32>()?, vec![3.0, 3.0]);
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

pub mod random;

use crate::context::Context;
use crate::ndarray::{apply_on, NDArray, NestedArray};
use kiln_ir::{DType, Error, Op, Result, Shape};

pub use crate::gluon::serialize::{load, save, save_map};
pub use crate::ndarray::{BatchNormOpts, ConvOpts, Dims, PoolOpts};

/// Where a new array lives and its dtype. Converts from a [`DType`] or a [`Context`] alone,
/// so `nd::zeros_with([2], DType::I64)` and `nd::zeros_with([2], ctx)` both work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opts {
    /// Element type (default f32).
    pub dtype: DType,
    /// Device (default the CPU).
    pub ctx: Context,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            dtype: DType::F32,
            ctx: Context::cpu(),
        }
    }
}

impl Opts {
    /// f32 on the CPU.
    pub fn new() -> Self {
        Self::default()
    }
    /// These options with `dtype`.
    pub fn dtype(self, dtype: DType) -> Self {
        Opts { dtype, ..self }
    }
    /// These options with `ctx`.
    pub fn ctx(self, ctx: Context) -> Self {
        Opts { ctx, ..self }
    }
}

impl From<DType> for Opts {
    fn from(dtype: DType) -> Self {
        Opts::new().dtype(dtype)
    }
}

impl From<Context> for Opts {
    fn from(ctx: Context) -> Self {
        Opts::new().ctx(ctx)
    }
}

// ----- creation -----------------------------------------------------------------------------

/// MXNet `nd.array`: an f32 array from nested Rust data (`&[[1.0, 2.0], [3.0, 4.0]]`),
/// whatever the element type of the data. [`NDArray::from_nested`] keeps the element type.
pub fn array<A: NestedArray + ?Sized>(data: &A) -> Result<NDArray> {
    array_with(data, Opts::new())
}

/// `nd.array` with the dtype and device given.
pub fn array_with<A: NestedArray + ?Sized>(data: &A, opts: impl Into<Opts>) -> Result<NDArray> {
    let opts = opts.into();
    let a = NDArray::from_nested(data)?.as_in_context(opts.ctx);
    if a.dtype() == opts.dtype {
        Ok(a)
    } else {
        a.cast(opts.dtype)
    }
}

/// An f32 array of `shape` filled with `value`.
pub fn full(shape: impl Into<Shape>, value: f64) -> Result<NDArray> {
    full_with(shape, value, Opts::new())
}

/// An array of `shape` filled with `value`, of the given dtype and device.
pub fn full_with(shape: impl Into<Shape>, value: f64, opts: impl Into<Opts>) -> Result<NDArray> {
    let opts = opts.into();
    apply_on(
        Op::Full {
            shape: shape.into(),
            dtype: opts.dtype,
            value,
        },
        &[],
        opts.ctx,
    )
}

/// An f32 array of zeros.
pub fn zeros(shape: impl Into<Shape>) -> Result<NDArray> {
    full(shape, 0.0)
}

/// Zeros of the given dtype and device.
pub fn zeros_with(shape: impl Into<Shape>, opts: impl Into<Opts>) -> Result<NDArray> {
    full_with(shape, 0.0, opts)
}

/// MXNet `nd.empty`: an f32 array whose values will be overwritten (kiln zeroes it; no
/// uninitialized memory is ever exposed).
pub fn empty(shape: impl Into<Shape>) -> Result<NDArray> {
    full(shape, 0.0)
}

/// An f32 array of ones.
pub fn ones(shape: impl Into<Shape>) -> Result<NDArray> {
    full(shape, 1.0)
}

/// Ones of the given dtype and device.
pub fn ones_with(shape: impl Into<Shape>, opts: impl Into<Opts>) -> Result<NDArray> {
    full_with(shape, 1.0, opts)
}

fn like(a: &NDArray) -> Opts {
    Opts {
        dtype: a.dtype(),
        ctx: a.context(),
    }
}

/// Zeros of `a`'s shape, dtype and device.
pub fn zeros_like(a: &NDArray) -> Result<NDArray> {
    full_with(a.shape().clone(), 0.0, like(a))
}

/// Ones of `a`'s shape, dtype and device.
pub fn ones_like(a: &NDArray) -> Result<NDArray> {
    full_with(a.shape().clone(), 1.0, like(a))
}

/// `value` in `a`'s shape, dtype and device.
pub fn full_like(a: &NDArray, value: f64) -> Result<NDArray> {
    full_with(a.shape().clone(), value, like(a))
}

/// `0, 1, ..., stop-1` as f32 (MXNet `nd.arange(stop)`).
pub fn arange(stop: impl Into<f64>) -> Result<NDArray> {
    arange_with(0.0, stop.into(), 1.0, Opts::new())
}

/// `start, start+step, ...` below `stop` (above it for a negative step), as f32.
pub fn arange_step(start: f64, stop: f64, step: f64) -> Result<NDArray> {
    arange_with(start, stop, step, Opts::new())
}

/// `arange_step` with the dtype and device given. Errors on a zero or non-finite step.
pub fn arange_with(start: f64, stop: f64, step: f64, opts: impl Into<Opts>) -> Result<NDArray> {
    let opts = opts.into();
    apply_on(
        Op::Arange {
            start,
            stop,
            step,
            dtype: opts.dtype,
        },
        &[],
        opts.ctx,
    )
}

/// `num` evenly spaced f32 values from `start` to `stop`, both included.
pub fn linspace(start: f64, stop: f64, num: usize) -> Result<NDArray> {
    linspace_with(start, stop, num, true, Opts::new())
}

/// `linspace` with the endpoint optional and the dtype and device given.
pub fn linspace_with(
    start: f64,
    stop: f64,
    num: usize,
    endpoint: bool,
    opts: impl Into<Opts>,
) -> Result<NDArray> {
    let opts = opts.into();
    apply_on(
        Op::Linspace {
            start,
            stop,
            num,
            endpoint,
            dtype: opts.dtype,
        },
        &[],
        opts.ctx,
    )
}

/// The book's `nd.random_normal(loc, scale, shape)`: [`random::normal`].
pub fn random_normal(loc: f64, scale: f64, shape: impl Into<Shape>) -> Result<NDArray> {
    random::normal(loc, scale, shape)
}

/// The book's `nd.random_uniform(low, high, shape)`: [`random::uniform`].
pub fn random_uniform(low: f64, high: f64, shape: impl Into<Shape>) -> Result<NDArray> {
    random::uniform(low, high, shape)
}

// ----- elementwise --------------------------------------------------------------------------

macro_rules! unary_fns {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("Elementwise `", stringify!($name), "`: [`NDArray::", stringify!($name), "`].")]
        pub fn $name(x: &NDArray) -> Result<NDArray> {
            x.$name()
        }
    )*};
}

unary_fns!(
    abs,
    sign,
    exp,
    log,
    log1p,
    expm1,
    sqrt,
    rsqrt,
    square,
    reciprocal,
    sin,
    cos,
    tanh,
    sigmoid,
    relu,
    softrelu,
    floor,
    ceil,
    round,
    logical_not,
);

/// Elementwise `-x` (MXNet `nd.negative`).
pub fn negative(x: &NDArray) -> Result<NDArray> {
    x.neg()
}

macro_rules! binary_fns {
    ($($name:ident => $method:ident),* $(,)?) => {$(
        #[doc = concat!("MXNet `nd.", stringify!($name), "`: [`NDArray::", stringify!($method), "`], broadcasting.")]
        pub fn $name(a: &NDArray, b: &NDArray) -> Result<NDArray> {
            a.$method(b)
        }
    )*};
}

binary_fns!(
    add => add, subtract => sub, multiply => mul, divide => div, power => pow,
    maximum => maximum, minimum => minimum, equal => eq, not_equal => ne, greater => gt,
    greater_equal => ge, lesser => lt, lesser_equal => le,
);

/// `x` where `cond != 0`, else `y` (MXNet `nd.where`; `where` is a Rust keyword).
pub fn where_cond(cond: &NDArray, x: &NDArray, y: &NDArray) -> Result<NDArray> {
    cond.where_cond(x, y)
}

/// Elementwise `min(max(x, min), max)`.
pub fn clip(x: &NDArray, min: f64, max: f64) -> Result<NDArray> {
    x.clip(min, max)
}

/// Converts to `dtype`.
pub fn cast(x: &NDArray, dtype: DType) -> Result<NDArray> {
    x.cast(dtype)
}

// ----- reductions ---------------------------------------------------------------------------

macro_rules! reduce_fns {
    ($($all:ident, $axis:ident, $axes:ident;)*) => {$(
        #[doc = concat!("[`NDArray::", stringify!($all), "`] over all elements.")]
        pub fn $all(x: &NDArray) -> Result<NDArray> {
            x.$all()
        }
        #[doc = concat!("[`NDArray::", stringify!($axis), "`] along one axis.")]
        pub fn $axis(x: &NDArray, axis: isize) -> Result<NDArray> {
            x.$axis(axis)
        }
        #[doc = concat!("[`NDArray::", stringify!($axes), "`] over several axes.")]
        pub fn $axes(x: &NDArray, axes: &[isize], keepdims: bool) -> Result<NDArray> {
            x.$axes(axes, keepdims)
        }
    )*};
}

reduce_fns! {
    sum, sum_axis, sum_axes;
    mean, mean_axis, mean_axes;
    max, max_axis, max_axes;
    min, min_axis, min_axes;
    prod, prod_axis, prod_axes;
    norm, norm_axis, norm_axes;
}

/// Index of the maximum along `axis`.
pub fn argmax(x: &NDArray, axis: isize) -> Result<NDArray> {
    x.argmax(axis)
}

/// Index of the minimum along `axis`.
pub fn argmin(x: &NDArray, axis: isize) -> Result<NDArray> {
    x.argmin(axis)
}

// ----- linear algebra -----------------------------------------------------------------------

/// MXNet `nd.dot`.
pub fn dot(a: &NDArray, b: &NDArray) -> Result<NDArray> {
    a.dot(b)
}

/// MXNet `nd.dot` with `transpose_a` / `transpose_b`.
pub fn dot_t(a: &NDArray, b: &NDArray, transpose_a: bool, transpose_b: bool) -> Result<NDArray> {
    a.dot_t(b, transpose_a, transpose_b)
}

/// MXNet `nd.batch_dot`.
pub fn batch_dot(a: &NDArray, b: &NDArray) -> Result<NDArray> {
    a.batch_dot(b)
}

/// MXNet `nd.batch_dot` with `transpose_a` / `transpose_b`.
pub fn batch_dot_t(
    a: &NDArray,
    b: &NDArray,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<NDArray> {
    a.batch_dot_t(b, transpose_a, transpose_b)
}

/// MXNet `nd.FullyConnected`: `x · weightᵀ + bias`.
pub fn fully_connected(
    x: &NDArray,
    weight: &NDArray,
    bias: Option<&NDArray>,
    flatten: bool,
) -> Result<NDArray> {
    x.fully_connected(weight, bias, flatten)
}

// ----- shape --------------------------------------------------------------------------------

/// MXNet `nd.reshape` (codes `0` and `-1`); a view.
pub fn reshape(x: &NDArray, shape: &[i64]) -> Result<NDArray> {
    x.reshape(shape)
}

/// Reverses the axes.
pub fn transpose(x: &NDArray) -> Result<NDArray> {
    x.transpose()
}

/// Permutes the axes.
pub fn transpose_axes(x: &NDArray, axes: &[usize]) -> Result<NDArray> {
    x.transpose_axes(axes)
}

/// Inserts a size-1 axis.
pub fn expand_dims(x: &NDArray, axis: isize) -> Result<NDArray> {
    x.expand_dims(axis)
}

/// Drops every size-1 axis.
pub fn squeeze(x: &NDArray) -> Result<NDArray> {
    x.squeeze()
}

/// `[N, ...] -> [N, prod(...)]`.
pub fn flatten(x: &NDArray) -> Result<NDArray> {
    x.flatten()
}

/// Broadcasts to `shape`.
pub fn broadcast_to(x: &NDArray, shape: impl Into<Shape>) -> Result<NDArray> {
    x.broadcast_to(shape)
}

/// numpy basic slicing of the leading axes (MXNet `nd.slice`).
pub fn slice(
    x: &NDArray,
    begin: &[Option<i64>],
    end: &[Option<i64>],
    step: &[Option<i64>],
) -> Result<NDArray> {
    x.slice(begin, end, step)
}

/// `x[.., begin:end, ..]` along `axis` (MXNet `nd.slice_axis`).
pub fn slice_axis(x: &NDArray, axis: isize, begin: i64, end: Option<i64>) -> Result<NDArray> {
    x.slice_axis(axis, begin, end)
}

/// Joins arrays along `axis` (MXNet `nd.concat`). Errors on an empty list.
pub fn concat(arrays: &[&NDArray], axis: isize) -> Result<NDArray> {
    joined(Op::Concat { axis }, arrays)
}

/// Stacks arrays of one shape along a new `axis` (MXNet `nd.stack`).
pub fn stack(arrays: &[&NDArray], axis: isize) -> Result<NDArray> {
    joined(Op::Stack { axis }, arrays)
}

fn joined(op: Op, arrays: &[&NDArray]) -> Result<NDArray> {
    match arrays.first() {
        Some(first) => apply_on(op, arrays, first.context()),
        None => Err(Error::invalid(op.name(), "needs at least one array")),
    }
}

/// Splits into `num` equal parts along `axis` (MXNet `nd.split`).
pub fn split(x: &NDArray, num: usize, axis: isize) -> Result<Vec<NDArray>> {
    x.split(num, axis)
}

/// numpy `tile`.
pub fn tile(x: &NDArray, reps: &[usize]) -> Result<NDArray> {
    x.tile(reps)
}

/// numpy `repeat` along `axis`.
pub fn repeat(x: &NDArray, repeats: usize, axis: isize) -> Result<NDArray> {
    x.repeat(repeats, axis)
}

/// Reverses along `axis`.
pub fn flip(x: &NDArray, axis: isize) -> Result<NDArray> {
    x.flip(axis)
}

// ----- indexing -----------------------------------------------------------------------------

/// MXNet `nd.take(x, indices, axis)`.
pub fn take(x: &NDArray, indices: &NDArray, axis: isize) -> Result<NDArray> {
    x.take_axis(indices, axis)
}

/// MXNet `nd.pick(x, index)` along the last axis.
pub fn pick(x: &NDArray, index: &NDArray) -> Result<NDArray> {
    x.pick(index)
}

/// MXNet `nd.one_hot(indices, depth)`: f32 one-hot rows.
pub fn one_hot(indices: &NDArray, depth: usize) -> Result<NDArray> {
    indices.one_hot(depth)
}

/// numpy `take_along_axis`.
pub fn gather(x: &NDArray, indices: &NDArray, axis: isize) -> Result<NDArray> {
    x.gather(indices, axis)
}

// ----- neural network -----------------------------------------------------------------------

/// Softmax along the last axis.
pub fn softmax(x: &NDArray) -> Result<NDArray> {
    x.softmax()
}

/// `log(softmax(x))` along the last axis.
pub fn log_softmax(x: &NDArray) -> Result<NDArray> {
    x.log_softmax()
}

/// Per-sample softmax cross-entropy of `logits` `[N, C]` against `labels` `[N]`.
pub fn softmax_cross_entropy(logits: &NDArray, labels: &NDArray) -> Result<NDArray> {
    logits.softmax_cross_entropy(labels)
}

/// MXNet `nd.Convolution`: `nd::convolution(&x, &w, Some(&b), &ConvOpts::new().pad(1))`.
pub fn convolution(
    x: &NDArray,
    weight: &NDArray,
    bias: Option<&NDArray>,
    opts: &ConvOpts,
) -> Result<NDArray> {
    x.convolution(weight, bias, opts)
}

/// MXNet `nd.Deconvolution` (transposed convolution).
pub fn deconvolution(
    x: &NDArray,
    weight: &NDArray,
    bias: Option<&NDArray>,
    opts: &ConvOpts,
) -> Result<NDArray> {
    x.deconvolution(weight, bias, opts)
}

/// MXNet `nd.Pooling`: `nd::pooling(&x, &PoolOpts::max(2))`.
pub fn pooling(x: &NDArray, opts: &PoolOpts) -> Result<NDArray> {
    x.pooling(opts)
}

/// MXNet `nd.BatchNorm` with the running statistics given.
pub fn batch_norm(
    x: &NDArray,
    gamma: &NDArray,
    beta: &NDArray,
    mean: &NDArray,
    var: &NDArray,
    opts: &BatchNormOpts,
) -> Result<NDArray> {
    x.batch_norm(gamma, beta, mean, var, opts)
}

/// MXNet `nd.LayerNorm` over `axis`.
pub fn layer_norm(
    x: &NDArray,
    gamma: &NDArray,
    beta: &NDArray,
    axis: isize,
    eps: f64,
) -> Result<NDArray> {
    x.layer_norm(gamma, beta, axis, eps)
}

/// MXNet `nd.Dropout`: zeroes elements with probability `p` while
/// [`crate::autograd::is_training`]; otherwise returns `x`.
pub fn dropout(x: &NDArray, p: f64) -> Result<NDArray> {
    x.dropout(p)
}
