//! The one call check of the interpreter, run by [`super::eval_typed`] before any kernel.
//!
//! `eval_typed` is public and trusts its caller's output type, and a [`TensorView`]'s fields
//! are public, so every call re-checks that each input's data length matches its shape and
//! that `out` is what inference gives for the inputs. Kernels may then index freely: a bad
//! call is an error here, never an out-of-bounds index.

use crate::error::{Error, Result};
use crate::op::{Family, Op};
use crate::tensor::{TensorType, TensorView};

pub(super) fn check_call(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<()> {
    for (i, v) in inputs.iter().enumerate() {
        let numel = v.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if numel != Some(v.data.len()) {
            // Two wordings, both pinned by the integration tests; `holds` is the one to keep
            // once the elementwise test's expectation is updated.
            let holds = if elementwise_wording(op) {
                ""
            } else {
                "holds "
            };
            return Err(Error::shape(
                op.name(),
                format!(
                    "input {i} has shape {} but {holds}{} elements",
                    v.shape,
                    v.data.len()
                ),
            ));
        }
    }
    let types: Vec<TensorType> = inputs.iter().map(|v| v.ty()).collect();
    let expected = crate::infer::infer(op, &types)?;
    if &expected != out {
        return Err(Error::shape(
            op.name(),
            format!("output type {out} given, but the inputs give {expected}"),
        ));
    }
    Ok(())
}

/// The ops whose data-length error reads "but N elements" (see [`check_call`]).
fn elementwise_wording(op: &Op) -> bool {
    matches!(
        op.family(),
        Family::Elementwise | Family::Reduce | Family::Creation
    )
}
