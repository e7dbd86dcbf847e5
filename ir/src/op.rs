//! The op set: one vocabulary for eager arrays, traced graphs and every backend.
//!
//! Each op is plain data (its attributes). What an op *means* lives next to it in this crate:
//! its shape/dtype rule in [`crate::infer`], its reference semantics in [`crate::interp`], its
//! vector-Jacobian product in [`crate::vjp`], and for elementwise ops a scalar expression form
//! that code generators lower.
//!
//! Conventions shared by all ops:
//! - axes may be negative (counted from the end);
//! - binary ops broadcast numpy-style and need both inputs of one dtype (no promotion);
//! - comparison ops return 0/1 in the input dtype (as MXNet 1.x does), so `(a == b).sum()` works;
//! - float arithmetic: the reference ([`crate::interp`]) computes and accumulates in f64 and
//!   rounds once to the output dtype; backends match it up to float rounding;
//! - integer arithmetic wraps around on overflow (numpy: `i32::MAX + 1 == i32::MIN`,
//!   `-(5u8) == 251`); integer division truncates toward zero and `x / 0 == 0`;
//! - NaN propagates through `maximum`, `minimum`, `relu`, `softrelu`, `sign`, `clip`, `max`,
//!   `min`; comparisons with NaN are false except `ne`; `argmax`/`argmin` return the first NaN;
//! - bool: of the elementwise ops and reductions, bool tensors take only `logical_not`, `eq`,
//!   `ne`, `maximum`/`minimum` (or/and), `where`, `cast` and `max`/`min` (any/all); other
//!   arithmetic on bool is a dtype error. Data-movement ops (shape ops, gathers) take any dtype;
//! - float attributes converted to an integer dtype (scalars, `full` values, clip bounds)
//!   truncate toward zero and saturate at the dtype's range;
//! - indices (`take`, `pick`, `gather`, the gradient helpers, cross-entropy labels) may be any
//!   numeric dtype: floats truncate toward zero (NaN reads as 0), then every index is clipped
//!   to `[0, A-1]` (MXNet's `mode='clip'`); bool indices are rejected (bool labels read as
//!   0/1);
//! - random ops are pure functions of their `seed` attribute (one generator,
//!   [`crate::random::op_rng`], drawn in row-major order of the output; `shuffle` draws one
//!   permutation); the eager frontend
//!   draws a fresh seed from the global generator (`kiln::random::seed`) for every call.

use crate::dtype::DType;
use crate::fused::FusedKernel;
use crate::shape::Shape;
use crate::tensor::TensorType;
use serde::{Deserialize, Serialize};

/// Elementwise functions of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryOp {
    Neg,
    Abs,
    /// -1, 0 or 1.
    Sign,
    Exp,
    Log,
    Log1p,
    Expm1,
    Sqrt,
    /// 1/sqrt(x).
    Rsqrt,
    Square,
    Reciprocal,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    /// softplus: log(1 + exp(x)), computed without overflow.
    Softrelu,
    Floor,
    Ceil,
    /// Round half away from zero (as MXNet and C `round`).
    Round,
    /// 1 where x == 0, else 0 (input dtype).
    LogicalNot,
}

impl UnaryOp {
    /// Every unary op.
    pub const ALL: [UnaryOp; 21] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Log1p,
        UnaryOp::Expm1,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Square,
        UnaryOp::Reciprocal,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Softrelu,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::LogicalNot,
    ];

    /// The op's name in text forms.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Log1p => "log1p",
            UnaryOp::Expm1 => "expm1",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Square => "square",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Softrelu => "softrelu",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::LogicalNot => "logical_not",
        }
    }

    /// True when the op needs a floating-point input (transcendentals and friends).
    pub fn needs_float(self) -> bool {
        !matches!(
            self,
            UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Sign
                | UnaryOp::Square
                | UnaryOp::Relu
                | UnaryOp::LogicalNot
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
        )
    }
}

/// Elementwise functions of two inputs (array-array with broadcasting, or array-scalar).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Integer division truncates toward zero; division by zero of integers gives 0, and
    /// `MIN / -1` wraps.
    Div,
    /// Integer pow wraps; a negative exponent gives `1 / base^-e` truncated: 1 for base 1, ±1
    /// for base -1 (by parity), 0 otherwise (base 0 included).
    Pow,
    Maximum,
    Minimum,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Lt,
        BinaryOp::Le,
    ];

    /// The op's name in text forms.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
        }
    }

    /// True for the comparisons (0/1 results, zero gradient).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le
        )
    }
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    /// L2 norm: sqrt(sum(x^2)).
    Norm,
}

impl ReduceOp {
    /// The op's name in text forms.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Prod => "prod",
            ReduceOp::Norm => "norm",
        }
    }
}

/// Index-of-extremum reductions along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgReduceOp {
    Argmax,
    Argmin,
}

/// Pooling kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
}

/// One op with its attributes. Inputs are positional; each variant documents them as
/// `(input0, input1, ...) -> output`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    // ----- elementwise -------------------------------------------------------------------
    /// `(x) -> f(x)`, same shape and dtype.
    Unary { f: UnaryOp },
    /// `(a, b) -> a ∘ b`, broadcast; same dtype required.
    Binary { f: BinaryOp },
    /// `(x) -> x ∘ scalar`, or `scalar ∘ x` when `reverse`. The scalar is converted to x's dtype.
    Scalar {
        f: BinaryOp,
        scalar: f64,
        reverse: bool,
    },
    /// `(cond, x, y) -> cond != 0 ? x : y`, all three broadcast; x and y share a dtype.
    Where,
    /// `(x) -> min(max(x, min), max)`; needs `min <= max` (no NaN); NaN stays NaN; not on bool.
    Clip { min: f64, max: f64 },
    /// `(x) -> x as dtype`, through f64: to an integer dtype values truncate toward zero and
    /// saturate at its range (NaN gives 0); to bool is `x != 0`; a same-dtype cast copies.
    Cast { dtype: DType },

    // ----- reductions --------------------------------------------------------------------
    /// `(x) -> reduce over axes` (`None`: all axes); `keepdims` keeps them as size 1.
    /// An empty axis list is the identity; repeated axes are an error. Integer sums wrap;
    /// integer mean truncates toward zero. Over an empty set: sum 0, prod 1, norm 0, float
    /// mean NaN, integer mean 0; max/min of an empty set are errors.
    Reduce {
        f: ReduceOp,
        axes: Option<Vec<isize>>,
        keepdims: bool,
    },
    /// `(x) -> index of the max/min along axis` (`None`: over the flattened array), as the
    /// input's dtype (MXNet returns float indices). Ties take the first index; a NaN is the
    /// extremum. Not on bool, not over an empty extent, and every index must be exact in the
    /// dtype (at most 256 positions for u8, 2^24 for f32).
    ArgReduce {
        f: ArgReduceOp,
        axis: Option<isize>,
        keepdims: bool,
    },

    // ----- linear algebra ----------------------------------------------------------------
    /// MXNet `dot`: `(a, b)`. 1-D·1-D is the inner product (shape `[]`); otherwise contracts
    /// the last axis of `a` (first if `transpose_a`, with a reversed) with the first axis of `b`
    /// (last if `transpose_b`, with b reversed): `[..a, k] · [k, ..b] -> [..a, ..b]`.
    Dot {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// `(a [B, n, k], b [B, k, m]) -> [B, n, m]`, with the transpose flags acting on the
    /// last two axes. Leading batch dims must match exactly (rank ≥ 3).
    BatchDot {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// FullyConnected: `(x, w [units, in], b [units])` -> `x · wᵀ + b`. With `flatten`,
    /// x `[N, ...]` is seen as `[N, prod(...)]` and the output is `[N, units]`; without,
    /// the last axis is contracted and the output is `[..., units]`. `no_bias`: no `b` input.
    FullyConnected { flatten: bool, no_bias: bool },

    // ----- shape -------------------------------------------------------------------------
    /// MXNet reshape codes: `0` copies the input dim at that position, `-1` is inferred
    /// (at most one). Other values are literal sizes.
    Reshape { shape: Vec<i64> },
    /// Permutes axes (`None`: reverse them).
    Transpose { axes: Option<Vec<usize>> },
    /// Inserts a size-1 axis at `axis` (range `-rank-1..=rank`).
    ExpandDims { axis: isize },
    /// Drops size-1 axes (`None`: all of them; naming a non-1 axis is an error).
    Squeeze { axes: Option<Vec<isize>> },
    /// `[N, ...] -> [N, prod(...)]`; a 1-D input becomes `[N, 1]`.
    Flatten,
    /// Broadcasts to `shape` (numpy rules: the input shape must broadcast to it).
    BroadcastTo { shape: Shape },
    /// numpy basic slicing on the leading `begin.len()` axes (begin, end, step of one length;
    /// `None` = default; negative indices count from the end; step may be negative, not 0).
    Slice {
        begin: Vec<Option<i64>>,
        end: Vec<Option<i64>>,
        step: Vec<Option<i64>>,
    },
    /// `x[.., begin:end, ..]` along one axis (`end: None` = to the end; negatives count from the end).
    SliceAxis {
        axis: isize,
        begin: i64,
        end: Option<i64>,
    },
    /// `(x0, x1, ...) -> ` joined along `axis`; other dims and dtypes must match; ≥ 1 input.
    Concat { axis: isize },
    /// `(x0, x1, ...) -> ` stacked along a new `axis` (range `-rank-1..=rank`); same shapes.
    Stack { axis: isize },
    /// numpy `tile`: repeats the whole array `reps[i]` times along each axis (reps shorter than
    /// rank are padded with 1 in front, longer reps prepend axes).
    Tile { reps: Vec<usize> },
    /// numpy `repeat`: each element `repeats` times along `axis` (`None`: flattened first).
    Repeat { repeats: usize, axis: Option<isize> },
    /// Reverses the order of elements along each of `axes`.
    Flip { axes: Vec<isize> },

    // ----- indexing ----------------------------------------------------------------------
    /// MXNet `take(data, indices, axis)`: `data [d0.., A, ..dn]`, `indices [i..]` ->
    /// `[d0.., i.., ..dn]`. Indices are truncated and clipped (see the module doc).
    Take { axis: isize },
    /// MXNet `pick(data, index, axis)`: `index` has data's shape without `axis`; picks one
    /// element along `axis` per position (clipped). `keepdims` keeps `axis` as size 1.
    Pick { axis: isize, keepdims: bool },
    /// `(indices [..]) -> [.., depth]` with `on_value` at the index, `off_value` elsewhere;
    /// indices truncate toward zero, and ones out of `[0, depth)` (or NaN) give an all-off
    /// row (not clipped).
    OneHot {
        depth: usize,
        on_value: f64,
        off_value: f64,
        dtype: DType,
    },
    /// numpy `take_along_axis`: `(data, indices)` of equal rank, indices' dims equal data's
    /// except along `axis`; the output has indices' shape (indices clipped).
    Gather { axis: isize },

    // ----- neural network ----------------------------------------------------------------
    /// Softmax along `axis`, computed with the max subtracted.
    Softmax { axis: isize },
    /// log(softmax(x)) along `axis`, computed stably.
    LogSoftmax { axis: isize },
    /// `(logits [N, C], labels [N]) -> [N]`: `-log_softmax(logits)[i, labels[i]]` per sample
    /// (labels truncated and clipped to `[0, C-1]` like indices).
    SoftmaxCrossEntropy,
    /// Convolution over 1 or 2 spatial dims (NCW / NCHW): `(x [N, C, ..], w [O, C/groups, k..],
    /// b [O])`; `stride`, `pad`, `dilation` have exactly one entry per spatial dim (stride and
    /// dilation ≥ 1). `groups` ≥ 1 divides C and O. `no_bias`: no `b`. Output size per dim:
    /// `(in + 2*pad - dilation*(k-1) - 1) / stride + 1`; a window larger than the padded input
    /// is an error.
    Convolution {
        stride: Vec<usize>,
        pad: Vec<usize>,
        dilation: Vec<usize>,
        groups: usize,
        no_bias: bool,
    },
    /// Transposed convolution (MXNet Deconvolution, the gradient of Convolution w.r.t. its
    /// input): `(x [N, C, ..], w [C, O/groups, k..], b [O])`. Output size per dim:
    /// `(in-1)*stride - 2*pad + dilation*(k-1) + 1 + output_padding`, which must be ≥ 1;
    /// `output_padding < stride` in every dim (as MXNet's `adj`). Attributes as Convolution.
    Deconvolution {
        stride: Vec<usize>,
        pad: Vec<usize>,
        dilation: Vec<usize>,
        output_padding: Vec<usize>,
        groups: usize,
        no_bias: bool,
    },
    /// The gradient of Convolution w.r.t. its weight: `(x [N, C, ..], dy [N, O, ..]) ->
    /// dw [O, C/groups, kernel..]`, with the convolution's attributes.
    ConvGradWeight {
        kernel: Vec<usize>,
        stride: Vec<usize>,
        pad: Vec<usize>,
        dilation: Vec<usize>,
        groups: usize,
    },
    /// Pooling over the 1 or 2 trailing spatial dims (NCW / NCHW). `kernel`, `stride` and
    /// `pad` have exactly one entry per spatial dim (no default stride; kernel and stride ≥ 1)
    /// and `pad < kernel` in every dim, so every window holds a real element. `global` pools
    /// the whole spatial extent (kernel, stride, pad ignored). Max pooling ignores padding
    /// (ties: the first maximal element); average pooling divides by the window
    /// size including padding when `count_include_pad` (MXNet's default), otherwise by the
    /// number of real elements. Output size uses floor (MXNet's `pooling_convention='valid'`).
    Pooling {
        kind: PoolKind,
        kernel: Vec<usize>,
        stride: Vec<usize>,
        pad: Vec<usize>,
        global: bool,
        count_include_pad: bool,
    },
    /// The gradient of Pooling w.r.t. its input: `(x, dy) -> dx` with the same attributes.
    /// Max routes each output's gradient to the first maximal element of its window.
    PoolingGrad {
        kind: PoolKind,
        kernel: Vec<usize>,
        stride: Vec<usize>,
        pad: Vec<usize>,
        global: bool,
        count_include_pad: bool,
    },
    /// Batch normalization along channel `axis`: `(x, gamma [C], beta [C], mean [C], var [C])`.
    /// With `use_batch_stats` the statistics are the batch's (biased variance) and inputs
    /// 3 and 4 are ignored (the frontend updates running stats itself); otherwise the given
    /// running mean/var are used. `y = (x - mean) / sqrt(var + eps) * gamma + beta`; `eps`
    /// finite and ≥ 0.
    BatchNorm {
        eps: f64,
        axis: isize,
        use_batch_stats: bool,
    },
    /// Layer normalization over `axis`: `(x, gamma, beta)` with gamma/beta of size
    /// `x.shape[axis]`, biased variance.
    LayerNorm { axis: isize, eps: f64 },
    /// Inverted dropout, `p` in `[0, 1]`: survivors are scaled by `1/(1-p)`, the rest are 0
    /// (all zeros for `p = 1`). The mask is exact ([`crate::interp::dropout_mask`]): element
    /// `i` in row-major order takes the `i`-th `next_u64` `r` of `op_rng(seed)`,
    /// `u = (r >> 11) * 2^-53`, and is dropped when `u < p`.
    Dropout { p: f64, seed: u64 },

    // ----- gradient helpers (used by VJPs) ---------------------------------------------------
    /// The gradient of `Slice`/`SliceAxis`: `(dy) -> dx` of shape `shape`, zeros except the
    /// sliced region. Attributes are the *resolved* slice: per axis of `shape`, begin and
    /// step (step may be negative), with `dy`'s dims giving the counts.
    SliceGrad {
        shape: Shape,
        begin: Vec<i64>,
        step: Vec<i64>,
    },
    /// The gradient of `Take` w.r.t. data: `(indices, dy) -> scatter-add into zeros of
    /// `shape`` along `axis` (indices clipped as in Take).
    TakeGrad { axis: isize, shape: Shape },
    /// The gradient of `Gather`/`Pick` w.r.t. data: `(indices, dy) -> scatter-add into zeros
    /// of `shape`` along `axis`; indices and dy have equal shapes (rank of `shape`).
    GatherGrad { axis: isize, shape: Shape },

    // ----- creation ----------------------------------------------------------------------
    /// `() -> shape` filled with `value` (zeros, ones, full).
    Full {
        shape: Shape,
        dtype: DType,
        value: f64,
    },
    /// `() -> [start, start+step, ...)` below `stop` (above, for a negative step).
    Arange {
        start: f64,
        stop: f64,
        step: f64,
        dtype: DType,
    },
    /// `() -> num` evenly spaced values from `start` to `stop` (inclusive when `endpoint`).
    Linspace {
        start: f64,
        stop: f64,
        num: usize,
        endpoint: bool,
        dtype: DType,
    },

    // ----- randomness (pure functions of `seed`) ----------------------------------------------
    /// `() -> shape` uniform on `[low, high)` (float dtypes; finite `low < high`): one f64 `u`
    /// in `[0, 1)` per element, `low + (high - low) * u` rounded to the dtype, redrawn if that
    /// rounds to `high`.
    RandomUniform {
        low: f64,
        high: f64,
        shape: Shape,
        dtype: DType,
        seed: u64,
    },
    /// `() -> shape` normal with mean `loc` and standard deviation `scale` (float dtypes,
    /// finite `loc`, finite `scale >= 0`): `loc + scale * z`, one standard normal f64 `z` per
    /// element.
    RandomNormal {
        loc: f64,
        scale: f64,
        shape: Shape,
        dtype: DType,
        seed: u64,
    },
    /// `() -> shape` of 1 with probability `p` in `[0, 1]`, else 0 (any dtype): 1 when a
    /// uniform f64 `u` in `[0, 1)` is `< p`.
    RandomBernoulli {
        p: f64,
        shape: Shape,
        dtype: DType,
        seed: u64,
    },
    /// `() -> shape` integers uniform on `[low, high)`; every value of the range must be exact
    /// in the dtype (not bool).
    RandomRandint {
        low: i64,
        high: i64,
        shape: Shape,
        dtype: DType,
        seed: u64,
    },
    /// `(probs [.., K]) -> [.., num_samples]` category indices (i64) drawn from each row of
    /// (unnormalized, finite, non-negative, positive-sum) float probabilities: the first
    /// category whose cumulative sum exceeds `u * Σ probs`.
    Multinomial { num_samples: usize, seed: u64 },
    /// `(x) -> x` (rank ≥ 1) with its first axis permuted by a Fisher-Yates shuffle.
    Shuffle { seed: u64 },

    // ----- compiled groups -------------------------------------------------------------------
    /// Several ops run as one kernel (made by the fusion pass after differentiation; never
    /// differentiated itself): `(inputs of the kernel...) -> its output`. See [`crate::fused`].
    Fused { kernel: Box<FusedKernel> },
    /// `(fused node) -> its kernel's output index` (1, 2, ...): the further values of a
    /// multi-output fused kernel ([`FusedKernel::extra_outputs`]), each a node of its own
    /// with the declared type `ty`. It computes nothing: the executor fills it from the
    /// fused node's results (see [`FusedKernel::eval_all`]). Never differentiated.
    FusedOutput { index: usize, ty: TensorType },
}

/// The op families: one module each in [`crate::infer`] and [`crate::interp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Elementwise,
    Reduce,
    Linalg,
    ShapeOps,
    Indexing,
    Nn,
    Creation,
    Fused,
}

impl Op {
    /// The op's name as used in text forms and error messages (`add`, `sum`, `convolution`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary { f } => f.name(),
            Op::Binary { f } => f.name(),
            Op::Scalar { f, .. } => match f {
                BinaryOp::Add => "add_scalar",
                BinaryOp::Sub => "sub_scalar",
                BinaryOp::Mul => "mul_scalar",
                BinaryOp::Div => "div_scalar",
                BinaryOp::Pow => "pow_scalar",
                BinaryOp::Maximum => "maximum_scalar",
                BinaryOp::Minimum => "minimum_scalar",
                BinaryOp::Eq => "eq_scalar",
                BinaryOp::Ne => "ne_scalar",
                BinaryOp::Gt => "gt_scalar",
                BinaryOp::Ge => "ge_scalar",
                BinaryOp::Lt => "lt_scalar",
                BinaryOp::Le => "le_scalar",
            },
            Op::Where => "where",
            Op::Clip { .. } => "clip",
            Op::Cast { .. } => "cast",
            Op::Reduce { f, .. } => f.name(),
            Op::ArgReduce { f, .. } => match f {
                ArgReduceOp::Argmax => "argmax",
                ArgReduceOp::Argmin => "argmin",
            },
            Op::Dot { .. } => "dot",
            Op::BatchDot { .. } => "batch_dot",
            Op::FullyConnected { .. } => "fully_connected",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::ExpandDims { .. } => "expand_dims",
            Op::Squeeze { .. } => "squeeze",
            Op::Flatten => "flatten",
            Op::BroadcastTo { .. } => "broadcast_to",
            Op::Slice { .. } => "slice",
            Op::SliceAxis { .. } => "slice_axis",
            Op::Concat { .. } => "concat",
            Op::Stack { .. } => "stack",
            Op::Tile { .. } => "tile",
            Op::Repeat { .. } => "repeat",
            Op::Flip { .. } => "flip",
            Op::Take { .. } => "take",
            Op::Pick { .. } => "pick",
            Op::OneHot { .. } => "one_hot",
            Op::Gather { .. } => "gather",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::SoftmaxCrossEntropy => "softmax_cross_entropy",
            Op::Convolution { .. } => "convolution",
            Op::Deconvolution { .. } => "deconvolution",
            Op::ConvGradWeight { .. } => "conv_grad_weight",
            Op::Pooling { .. } => "pooling",
            Op::PoolingGrad { .. } => "pooling_grad",
            Op::BatchNorm { .. } => "batch_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Dropout { .. } => "dropout",
            Op::SliceGrad { .. } => "slice_grad",
            Op::TakeGrad { .. } => "take_grad",
            Op::GatherGrad { .. } => "gather_grad",
            Op::Full { .. } => "full",
            Op::Arange { .. } => "arange",
            Op::Linspace { .. } => "linspace",
            Op::RandomUniform { .. } => "random_uniform",
            Op::RandomNormal { .. } => "random_normal",
            Op::RandomBernoulli { .. } => "random_bernoulli",
            Op::RandomRandint { .. } => "random_randint",
            Op::Multinomial { .. } => "multinomial",
            Op::Shuffle { .. } => "shuffle",
            Op::Fused { .. } => "fused",
            Op::FusedOutput { .. } => "fused_output",
        }
    }

    /// The family whose `infer` and `interp` modules implement the op.
    pub(crate) fn family(&self) -> Family {
        match self {
            Op::Unary { .. }
            | Op::Binary { .. }
            | Op::Scalar { .. }
            | Op::Where
            | Op::Clip { .. }
            | Op::Cast { .. } => Family::Elementwise,
            Op::Reduce { .. } | Op::ArgReduce { .. } => Family::Reduce,
            Op::Dot { .. } | Op::BatchDot { .. } | Op::FullyConnected { .. } => Family::Linalg,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::ExpandDims { .. }
            | Op::Squeeze { .. }
            | Op::Flatten
            | Op::BroadcastTo { .. }
            | Op::Slice { .. }
            | Op::SliceAxis { .. }
            | Op::Concat { .. }
            | Op::Stack { .. }
            | Op::Tile { .. }
            | Op::Repeat { .. }
            | Op::Flip { .. }
            | Op::SliceGrad { .. } => Family::ShapeOps,
            Op::Take { .. }
            | Op::Pick { .. }
            | Op::OneHot { .. }
            | Op::Gather { .. }
            | Op::TakeGrad { .. }
            | Op::GatherGrad { .. } => Family::Indexing,
            Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::SoftmaxCrossEntropy
            | Op::Convolution { .. }
            | Op::Deconvolution { .. }
            | Op::ConvGradWeight { .. }
            | Op::Pooling { .. }
            | Op::PoolingGrad { .. }
            | Op::BatchNorm { .. }
            | Op::LayerNorm { .. }
            | Op::Dropout { .. } => Family::Nn,
            Op::Full { .. }
            | Op::Arange { .. }
            | Op::Linspace { .. }
            | Op::RandomUniform { .. }
            | Op::RandomNormal { .. }
            | Op::RandomBernoulli { .. }
            | Op::RandomRandint { .. }
            | Op::Multinomial { .. }
            | Op::Shuffle { .. } => Family::Creation,
            Op::Fused { .. } | Op::FusedOutput { .. } => Family::Fused,
        }
    }

    /// True for elementwise ops (one output element from the same-position input elements,
    /// after broadcasting): the ops a fusion pass may chain.
    pub fn is_elementwise(&self) -> bool {
        self.family() == Family::Elementwise
    }

    /// True for ops whose result depends on a random seed (CSE must not merge two of them).
    pub fn is_random(&self) -> bool {
        matches!(
            self,
            Op::Dropout { .. }
                | Op::RandomUniform { .. }
                | Op::RandomNormal { .. }
                | Op::RandomBernoulli { .. }
                | Op::RandomRandint { .. }
                | Op::Multinomial { .. }
                | Op::Shuffle { .. }
        )
    }

    /// The op's attributes in a compact `key=value` form for the text printer (empty when none).
    pub fn attrs_text(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut parts = Vec::new();
        if let serde_json::Value::Object(map) = v {
            for (k, val) in map {
                if k == "op" {
                    continue;
                }
                parts.push(format!("{k}={val}"));
            }
        }
        parts.join(", ")
    }
}
