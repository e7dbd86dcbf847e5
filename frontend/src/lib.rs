//! kiln-frontend: NDArray, autograd and (later) gluon.
//!
//! Every eager op goes through one place, [`ndarray::apply`]: it runs the op on the array's
//! context's kernels and, inside [`autograd::record`], puts it on the tape. [`nd`] holds
//! MXNet's `nd.*` functions.

pub mod autograd;
pub mod context;
pub mod data;
pub mod gluon;
pub mod hybrid;
pub mod mxnet;
pub mod nd;
pub mod ndarray;
pub mod random;

pub use autograd::GradReq;
pub use context::Context;
pub use kiln_ir::{DType, Error, Result, Shape};
pub use ndarray::{NDArray, SliceArg};
