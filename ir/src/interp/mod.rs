//! The reference interpreter: the semantics every backend must match.
//!
//! Written for clarity over speed; backends are tested against it. One module per op family,
//! matching [`crate::infer`].

mod creation;
mod elementwise;
mod indexing;
mod linalg;
mod nn;

pub use nn::dropout_mask;
mod reduce;
mod shape_ops;

use crate::error::Result;
use crate::infer::infer;
use crate::op::Op;
use crate::tensor::{Tensor, TensorType, TensorView};

/// Evaluates one op on concrete inputs. Inputs are checked by [`infer`] first, so a family's
/// evaluator may rely on valid shapes and dtypes and only computes values.
///
/// ```
/// use kiln_ir::{interp::eval, BinaryOp, Op, Tensor};
/// let a = Tensor::from_vec(vec![1.0f32, 2.0], [2]).unwrap();
/// let b = Tensor::from_vec(vec![10.0f32], [1]).unwrap();
/// let c = eval(&Op::Binary { f: BinaryOp::Add }, &[a.view(), b.view()]).unwrap();
/// assert_eq!(c.to_f64_vec(), vec![11.0, 12.0]);
/// ```
pub fn eval(op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor> {
    let types: Vec<TensorType> = inputs.iter().map(|v| v.ty()).collect();
    let out = infer(op, &types)?;
    eval_typed(op, inputs, &out)
}

/// Evaluates one op whose output type `out` is already inferred (skips re-checking).
pub fn eval_typed(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    match op {
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Scalar { .. }
        | Op::Where
        | Op::Clip { .. }
        | Op::Cast { .. } => elementwise::eval(op, inputs, out),
        Op::Reduce { .. } | Op::ArgReduce { .. } => reduce::eval(op, inputs, out),
        Op::Dot { .. } | Op::BatchDot { .. } | Op::FullyConnected { .. } => {
            linalg::eval(op, inputs, out)
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
        | Op::SliceGrad { .. } => shape_ops::eval(op, inputs, out),
        Op::Take { .. }
        | Op::Pick { .. }
        | Op::OneHot { .. }
        | Op::Gather { .. }
        | Op::TakeGrad { .. }
        | Op::GatherGrad { .. } => indexing::eval(op, inputs, out),
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
        | Op::Dropout { .. } => nn::eval(op, inputs, out),
        Op::Full { .. }
        | Op::Arange { .. }
        | Op::Linspace { .. }
        | Op::RandomUniform { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. }
        | Op::RandomRandint { .. }
        | Op::Multinomial { .. }
        | Op::Shuffle { .. } => creation::eval(op, inputs, out),
    }
}
