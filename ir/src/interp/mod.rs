//! The reference interpreter: the semantics every backend must match.
//!
//! Written for clarity over speed; backends are tested against it. One module per op family,
//! matching [`crate::infer`].

mod check;
mod creation;
mod elementwise;
mod indexing;
mod linalg;
mod nn;

pub use nn::dropout_mask;
mod reduce;
mod shape_ops;
mod strided;

use crate::error::Result;
use crate::infer::infer;
use crate::op::{Family, Op};
use crate::tensor::{Tensor, TensorType, TensorView};

/// Evaluates one op on concrete inputs. Inputs are checked by [`infer`] first (and the call
/// by [`eval_typed`]), so a family's evaluator may rely on valid shapes, dtypes and data
/// lengths and only computes values.
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

/// Evaluates one op whose output type `out` is already inferred. The call is still checked
/// (data lengths against shapes, `out` against inference), so a wrong `out` is an error.
pub fn eval_typed(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    check::check_call(op, inputs, out)?;
    match op.family() {
        Family::Elementwise => elementwise::eval(op, inputs, out),
        Family::Reduce => reduce::eval(op, inputs, out),
        Family::Linalg => linalg::eval(op, inputs, out),
        Family::ShapeOps => shape_ops::eval(op, inputs, out),
        Family::Indexing => indexing::eval(op, inputs, out),
        Family::Nn => nn::eval(op, inputs, out),
        Family::Creation => creation::eval(op, inputs, out),
        Family::Fused => match op {
            Op::Fused { kernel } => kernel.eval(inputs, &mut |op, xs| eval(op, xs)),
            Op::FusedOutput { index, .. } => Err(crate::error::Error::invalid(
                "fused_output",
                format!(
                    "output {index} of a fused kernel is not computed from the fused node's \
                     value: the graph runner fills it from the kernel's outputs \
                     (FusedKernel::eval_all)"
                ),
            )),
            _ => unreachable!("only Op::Fused and Op::FusedOutput are in the fused family"),
        },
    }
}
