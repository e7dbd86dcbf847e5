//! kiln: a deep-learning framework and graph compiler.
//!
//! Write a model imperatively, gluon-style; `hybridize()` turns it into an optimized, fused,
//! compiled graph. `use kiln::prelude::*` gives what `from mxnet import nd, autograd, gluon`
//! gave a reader of "Deep Learning - The Straight Dope".

pub use kiln_backends as backends;
pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;

pub use kiln_ir::{DType, Error, Result, Shape};
