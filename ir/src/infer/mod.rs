//! Shape and dtype inference: the output [`TensorType`] of an op from its inputs' types.
//!
//! One module per op family; each returns a clear error naming the op and the shapes.

mod common;
mod creation;
mod elementwise;
mod indexing;
mod linalg;
mod nn;
mod reduce;
mod shape_ops;

pub use shape_ops::{resolve_slice, resolve_slice_axis, SliceDim};

use crate::error::Result;
use crate::op::{Family, Op};
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
    match op.family() {
        Family::Elementwise => elementwise::infer(op, inputs),
        Family::Reduce => reduce::infer(op, inputs),
        Family::Linalg => linalg::infer(op, inputs),
        Family::ShapeOps => shape_ops::infer(op, inputs),
        Family::Indexing => indexing::infer(op, inputs),
        Family::Nn => nn::infer(op, inputs),
        Family::Creation => creation::infer(op, inputs),
        Family::Fused => match op {
            Op::Fused { kernel } => crate::fused::infer_fused(kernel, inputs),
            Op::FusedOutput { index, ty } => crate::fused::infer_fused_output(*index, ty, inputs),
            _ => unreachable!("only Op::Fused and Op::FusedOutput are in the fused family"),
        },
    }
}
