//! Shape and dtype inference: the output [`TensorType`] of an op from its inputs' types.
//!
//! One module per op family; each returns a clear error naming the op and the shapes.

mod creation;
mod elementwise;
mod indexing;
mod linalg;
mod nn;
mod reduce;
mod shape_ops;

pub use shape_ops::{resolve_slice, resolve_slice_axis, SliceDim};

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::TensorType;

/// The output type of `op` applied to inputs of types `inputs`, or a clear error naming the op
/// and the offending shapes/dtypes.
///
/// ```
/// use kiln_ir::{infer::infer, BinaryOp, DType, Op, TensorType};
/// let a = TensorType::new([2, 3], DType::F32);
/// let b = TensorType::new([3], DType::F32);
/// let out = infer(&Op::Binary { f: BinaryOp::Add }, &[a, b]).unwrap();
/// assert_eq!(out, TensorType::new([2, 3], DType::F32));
/// ```
pub fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    match op {
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Scalar { .. }
        | Op::Where
        | Op::Clip { .. }
        | Op::Cast { .. } => elementwise::infer(op, inputs),
        Op::Reduce { .. } | Op::ArgReduce { .. } => reduce::infer(op, inputs),
        Op::Dot { .. } | Op::BatchDot { .. } | Op::FullyConnected { .. } => {
            linalg::infer(op, inputs)
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
        | Op::SliceGrad { .. } => shape_ops::infer(op, inputs),
        Op::Take { .. }
        | Op::Pick { .. }
        | Op::OneHot { .. }
        | Op::Gather { .. }
        | Op::TakeGrad { .. }
        | Op::GatherGrad { .. } => indexing::infer(op, inputs),
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
        | Op::Dropout { .. } => nn::infer(op, inputs),
        Op::Full { .. }
        | Op::Arange { .. }
        | Op::Linspace { .. }
        | Op::RandomUniform { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. }
        | Op::RandomRandint { .. }
        | Op::Multinomial { .. }
        | Op::Shuffle { .. } => creation::infer(op, inputs),
    }
}

/// Checks the number of inputs.
pub(crate) fn expect_inputs(op: &Op, inputs: &[TensorType], n: usize) -> Result<()> {
    if inputs.len() != n {
        return Err(Error::invalid(
            op.name(),
            format!("expects {n} input(s), got {}", inputs.len()),
        ));
    }
    Ok(())
}
