//! Vector-Jacobian products, written once per op against [`VjpBuilder`].
//!
//! The eager autograd tape implements the builder by running each op at once; a graph
//! implements it by appending nodes. So one VJP serves both imperative `backward()` and the
//! differentiated graph of a hybridized block.

use crate::dtype::DType;
use crate::error::Result;
use crate::op::Op;
use crate::shape::Shape;

/// What a VJP needs from its environment: apply an op to values, and know values' types.
pub trait VjpBuilder {
    /// A value: an eager array, or a node of a graph under construction.
    type Value: Clone;
    /// Applies `op` to `inputs`.
    fn apply(&mut self, op: Op, inputs: &[&Self::Value]) -> Result<Self::Value>;
    /// The shape of a value.
    fn shape(&self, v: &Self::Value) -> Shape;
    /// The dtype of a value.
    fn dtype(&self, v: &Self::Value) -> DType;
}

/// The gradients of `op`'s inputs given the gradient `grad` of its output.
///
/// `inputs` and `output` are the forward values. Returns one entry per input: `None` where the
/// input is not differentiable (integer indices, labels, a comparison's operands).
pub fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    output: &B::Value,
    grad: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    let _ = (b, inputs, output, grad);
    Err(crate::Error::invalid(op.name(), "no VJP implemented yet"))
}
