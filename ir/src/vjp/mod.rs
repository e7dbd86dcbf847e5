//! Vector-Jacobian products, written once per op against [`VjpBuilder`].
//!
//! The eager autograd tape implements the builder by running each op at once; a graph
//! implements it by appending nodes. So one VJP serves both imperative `backward()` and the
//! differentiated graph of a hybridized block. A VJP builds its result only from [`Op`]s via
//! [`VjpBuilder::apply`] (and the provided helpers built on it); it never reads data.
//!
//! # What `None` means
//!
//! [`vjp`] returns one entry per input. `None` means "no gradient flows into this input"; a
//! consumer treats it as a zero contribution. It is returned for
//! - inputs that are not differentiable: integer indices and labels (`Take`, `Pick`, `Gather`,
//!   `OneHot`, `SoftmaxCrossEntropy`'s labels, the `indices` of `TakeGrad`/`GatherGrad`),
//!   `Where`'s condition, `Multinomial`'s probabilities, `BatchNorm`'s running mean and
//!   variance (state, not parameters, as in MXNet);
//! - ops whose output is piecewise constant, so the gradient is zero almost everywhere:
//!   `sign`, `floor`, `ceil`, `round`, `logical_not`, every comparison (array and scalar
//!   forms), `argmax`/`argmin`, a `Cast` to or from a non-float dtype, and `PoolingGrad`
//!   w.r.t. its `x` input.
//!
//! Ops without inputs (`Full`, `Arange`, `Linspace`, the random generators) return an empty
//! vector. When one value feeds several inputs (`x * x`), the consumer adds their entries.
//! [`vjp_wanted`] computes only the gradients asked for; the others are `None` too.
//!
//! # How the less obvious ones are built
//!
//! - broadcast binary ops, `Where`, `BroadcastTo`: [`VjpBuilder::sum_to`] un-broadcasts;
//! - `Slice`/`SliceAxis`: `SliceGrad` with the resolved begin/step; `Concat`/`Stack`: one
//!   `SliceAxis` per input; `Tile`/`Repeat`: reshape to split the copies out, then sum;
//! - `Take` -> `TakeGrad`; `Gather` and `Pick` -> `GatherGrad`; their VJPs w.r.t. `dy` are
//!   `Take`/`Gather` again, `SliceGrad`'s is `Slice`, so second derivatives work;
//! - `Convolution` -> `Deconvolution` (input, with the `output_padding` that restores the
//!   input size) and `ConvGradWeight`; `Deconvolution` -> `Convolution` and `ConvGradWeight`
//!   with the roles swapped; `ConvGradWeight` -> `Deconvolution` and `Convolution`;
//! - `Pooling` -> `PoolingGrad`; average `PoolingGrad` -> average `Pooling` (its adjoint);
//! - `Dropout`: the same `Dropout` op (same seed) applied to ones rebuilds `mask / (1 - p)`;
//! - `Shuffle`: the permutation is recovered by shuffling row numbers with the same seed, and
//!   the gradient is scattered back with `TakeGrad`;
//! - `BatchNorm` with batch statistics and `LayerNorm`:
//!   `dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))`; with running
//!   statistics `BatchNorm` is affine in `x`.
//!
//! # Conventions at kinks and ties (as MXNet)
//!
//! - `abs`: `sign(x)` (0 at 0); `relu`: `x > 0`; `clip`: `min <= x <= max` (bounds inclusive).
//! - `maximum(a, b)`: `a` gets the gradient where `a >= b`, `b` where `a < b` (ties go to `a`);
//!   `minimum`: `a` where `a <= b`, `b` where `a > b`. Scalar forms: `x` gets it on ties.
//! - max/min reductions: every element equal to the result gets the full gradient (ties are
//!   not split).
//! - `prod` uses `y / x` and `norm` uses `x / y`: the gradient is not finite where an input of
//!   `prod` is 0 or a `norm` is 0.
//! - `pow(a, b)` w.r.t. `b` is `y * ln(a)`, set to 0 where `a == 0`, NaN where `a < 0`;
//!   the reverse scalar form `s ^ x` gives `y * ln(s)` (NaN for `s < 0`, and at `s == 0`).
//! - Only float types have meaningful gradients; for integer inputs the same formulas run in
//!   the integer type (as MXNet does), except where a float op is needed (`pow`'s exponent).
//! - Max pooling routes each window's gradient to its first maximal element (`PoolingGrad`).

mod elementwise;
mod indexing;
mod linalg;
mod nn;
mod reduce;
mod shape_ops;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::shape::Shape;

/// What a VJP needs from its environment: apply an op to values, and know values' types.
///
/// Only [`apply`](VjpBuilder::apply), [`shape`](VjpBuilder::shape) and
/// [`dtype`](VjpBuilder::dtype) are required; the other methods are conveniences built from
/// `apply` that VJPs (and other gradient code, such as an autodiff pass) share.
pub trait VjpBuilder {
    /// A value: an eager array, or a node of a graph under construction.
    type Value: Clone;
    /// Applies `op` to `inputs`.
    fn apply(&mut self, op: Op, inputs: &[&Self::Value]) -> Result<Self::Value>;
    /// The shape of a value.
    fn shape(&self, v: &Self::Value) -> Shape;
    /// The dtype of a value.
    fn dtype(&self, v: &Self::Value) -> DType;

    /// Whether reading forward value `v` costs nothing extra: an eager tape keeps every
    /// value (the default, `true`); a graph builder says whether `v` is already a boundary
    /// the backward reads (a binding, a user output, or a value already saved). A VJP that
    /// can be written from either of two values (relu's from its input or its output) reads
    /// the one that is kept, so the forward need not keep the other alive, and a fusion pass
    /// can hide it inside a kernel.
    fn is_kept(&self, v: &Self::Value) -> bool {
        let _ = v;
        true
    }

    /// `f(x)` elementwise.
    fn unary(&mut self, f: UnaryOp, x: &Self::Value) -> Result<Self::Value> {
        self.apply(Op::Unary { f }, &[x])
    }

    /// `a ∘ b`, broadcast.
    fn binary(&mut self, f: BinaryOp, a: &Self::Value, b: &Self::Value) -> Result<Self::Value> {
        self.apply(Op::Binary { f }, &[a, b])
    }

    /// `x ∘ scalar` (the scalar converted to x's dtype).
    fn scalar(&mut self, f: BinaryOp, x: &Self::Value, scalar: f64) -> Result<Self::Value> {
        self.apply(
            Op::Scalar {
                f,
                scalar,
                reverse: false,
            },
            &[x],
        )
    }

    /// `scalar ∘ x` (the scalar converted to x's dtype).
    fn rscalar(&mut self, f: BinaryOp, scalar: f64, x: &Self::Value) -> Result<Self::Value> {
        self.apply(
            Op::Scalar {
                f,
                scalar,
                reverse: true,
            },
            &[x],
        )
    }

    /// A new value of `shape` filled with `value`.
    fn full(&mut self, shape: Shape, dtype: DType, value: f64) -> Result<Self::Value> {
        self.apply(
            Op::Full {
                shape,
                dtype,
                value,
            },
            &[],
        )
    }

    /// Zeros with `v`'s shape and dtype.
    fn zeros_like(&mut self, v: &Self::Value) -> Result<Self::Value> {
        let (shape, dtype) = (self.shape(v), self.dtype(v));
        self.full(shape, dtype, 0.0)
    }

    /// Ones with `v`'s shape and dtype.
    fn ones_like(&mut self, v: &Self::Value) -> Result<Self::Value> {
        let (shape, dtype) = (self.shape(v), self.dtype(v));
        self.full(shape, dtype, 1.0)
    }

    /// `v` reshaped to `shape` (same element count); no op when the shape already matches.
    fn reshape(&mut self, v: &Self::Value, shape: &Shape) -> Result<Self::Value> {
        if &self.shape(v) == shape {
            return Ok(v.clone());
        }
        let dims = shape.iter().map(|&d| d as i64).collect();
        self.apply(Op::Reshape { shape: dims }, &[v])
    }

    /// `v` broadcast to `shape`; no op when the shape already matches.
    fn broadcast_to(&mut self, v: &Self::Value, shape: &Shape) -> Result<Self::Value> {
        if &self.shape(v) == shape {
            return Ok(v.clone());
        }
        self.apply(
            Op::BroadcastTo {
                shape: shape.clone(),
            },
            &[v],
        )
    }

    /// `v` with its axes permuted by `perm` (output axis `i` is input axis `perm[i]`).
    fn transpose(&mut self, v: &Self::Value, perm: &[usize]) -> Result<Self::Value> {
        self.apply(
            Op::Transpose {
                axes: Some(perm.to_vec()),
            },
            &[v],
        )
    }

    /// The `f` reduction of `v` over `axes` (non-negative); no op when `axes` is empty.
    fn reduce(
        &mut self,
        f: ReduceOp,
        v: &Self::Value,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<Self::Value> {
        if axes.is_empty() {
            return Ok(v.clone());
        }
        self.apply(
            Op::Reduce {
                f,
                axes: Some(axes.iter().map(|&a| a as isize).collect()),
                keepdims,
            },
            &[v],
        )
    }

    /// The sum of `v` over `axes` (non-negative); no op when `axes` is empty.
    fn sum(&mut self, v: &Self::Value, axes: &[usize], keepdims: bool) -> Result<Self::Value> {
        self.reduce(ReduceOp::Sum, v, axes, keepdims)
    }

    /// Un-broadcasts `v` to `shape`: sums over the axes that broadcasting added or stretched,
    /// so that the gradient of a broadcast input gets that input's shape.
    ///
    /// Errors when `shape` does not broadcast to `v`'s shape.
    fn sum_to(&mut self, v: &Self::Value, shape: &Shape) -> Result<Self::Value> {
        let vs = self.shape(v);
        if &vs == shape {
            return Ok(v.clone());
        }
        if !shape.broadcasts_to(&vs) {
            return Err(Error::shape(
                "sum_to",
                format!("cannot sum a gradient of shape {vs} back to shape {shape}"),
            ));
        }
        let lead = vs.rank() - shape.rank();
        let axes: Vec<usize> = (0..vs.rank())
            .filter(|&i| i < lead || (shape[i - lead] == 1 && vs[i] != 1))
            .collect();
        let summed = self.sum(v, &axes, true)?;
        self.reshape(&summed, shape)
    }
}

/// The gradients of `op`'s inputs given the gradient `grad` of its output.
///
/// `inputs` and `output` are the forward values; `grad` has the output's shape and dtype.
/// Returns one entry per input, each with that input's shape and dtype, or `None` where no
/// gradient flows (see the [module documentation](self) for exactly where).
///
/// Errors when `inputs` do not fit `op` (wrong count or shapes) and for the one op whose
/// gradient is not expressible in the op set: `PoolingGrad` of max pooling w.r.t. its `dy`
/// (a second derivative of max pooling).
pub fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    output: &B::Value,
    grad: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    let all = vec![true; inputs.len()];
    vjp_wanted(b, op, inputs, output, grad, &all)
}

/// [`vjp`] for the inputs with `wanted[i]` set only: the others get `None`, and the work
/// that only they need is skipped (an eager tape then does not compute, say, the gradient of
/// a network's first convolution w.r.t. the data).
///
/// Errors when `wanted` and `inputs` differ in length, and as [`vjp`].
pub fn vjp_wanted<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    output: &B::Value,
    grad: &B::Value,
    wanted: &[bool],
) -> Result<Vec<Option<B::Value>>> {
    if wanted.len() != inputs.len() {
        return Err(Error::invalid(
            op.name(),
            format!(
                "vjp: {} `wanted` flags for {} inputs",
                wanted.len(),
                inputs.len()
            ),
        ));
    }
    if !wanted.iter().any(|&w| w) {
        return Ok(vec![None; inputs.len()]);
    }
    let w = Wanted(wanted);
    let mut grads = match op {
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Scalar { .. }
        | Op::Where
        | Op::Clip { .. }
        | Op::Cast { .. } => elementwise::vjp(b, op, inputs, output, grad, w)?,
        Op::Reduce { .. } | Op::ArgReduce { .. } => reduce::vjp(b, op, inputs, output, grad)?,
        Op::Dot { .. } | Op::BatchDot { .. } | Op::FullyConnected { .. } => {
            linalg::vjp(b, op, inputs, grad, w)?
        }
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
        | Op::SliceGrad { .. }
        | Op::Shuffle { .. } => shape_ops::vjp(b, op, inputs, grad, w)?,
        Op::Take { .. }
        | Op::Pick { .. }
        | Op::OneHot { .. }
        | Op::Gather { .. }
        | Op::TakeGrad { .. }
        | Op::GatherGrad { .. } => indexing::vjp(b, op, inputs, grad)?,
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
        | Op::Dropout { .. } => nn::vjp(b, op, inputs, output, grad, w)?,
        Op::Full { .. }
        | Op::Arange { .. }
        | Op::Linspace { .. }
        | Op::RandomUniform { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. }
        | Op::RandomRandint { .. } => {
            expect_inputs(op, inputs, 0)?;
            Vec::new()
        }
        Op::Multinomial { .. } => {
            expect_inputs(op, inputs, 1)?;
            vec![None]
        }
        Op::Fused { .. } | Op::FusedOutput { .. } => {
            return Err(Error::invalid(
                op.name(),
                "fused kernels are formed after differentiation and have no VJP: \
                 differentiate the unfused graph",
            ))
        }
    };
    for (g, &want) in grads.iter_mut().zip(wanted) {
        if !want {
            *g = None;
        }
    }
    Ok(grads)
}

/// The gradients of two inputs.
type Pair<V> = (Option<V>, Option<V>);

/// Which inputs' gradients are asked for (families skip work for the others).
#[derive(Clone, Copy)]
struct Wanted<'a>(&'a [bool]);

impl Wanted<'_> {
    /// Whether input `i`'s gradient is wanted (inputs past the flags count as wanted; the
    /// input count is checked separately).
    fn at(self, i: usize) -> bool {
        self.0.get(i).copied().unwrap_or(true)
    }
}

/// Checks the number of inputs a VJP receives.
fn expect_inputs<V>(op: &Op, inputs: &[V], n: usize) -> Result<()> {
    if inputs.len() != n {
        return Err(Error::invalid(
            op.name(),
            format!("vjp expects {n} input(s), got {}", inputs.len()),
        ));
    }
    Ok(())
}

/// Normalizes a list of possibly negative axes against `rank`.
fn normalize_axes(axes: &[isize], rank: usize, op: &Op) -> Result<Vec<usize>> {
    axes.iter()
        .map(|&a| crate::shape::normalize_axis(a, rank, op.name()))
        .collect()
}

/// All axes of a rank-`rank` tensor except `keep`.
fn other_axes(rank: usize, keep: usize) -> Vec<usize> {
    (0..rank).filter(|&i| i != keep).collect()
}
