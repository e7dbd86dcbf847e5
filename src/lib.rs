//! kiln: a deep-learning framework and graph compiler.
//!
//! Write a model imperatively, gluon-style; `hybridize()` turns it into an optimized, fused,
//! compiled graph. `use kiln::prelude::*` gives what `from mxnet import nd, autograd, gluon`
//! gave a reader of "Deep Learning - The Straight Dope":
//!
//! ```
//! use kiln::prelude::*;
//! kiln::random::seed(42);
//! let x = nd::random::normal(0.0, 1.0, [2, 3])?;
//! let w = nd::ones([3, 1])?;
//! let y = (nd::dot(&x, &w)? + 1.0)?;
//! assert_eq!(y.shape(), &Shape::from([2, 1]));
//! let row = x.index(&s![0, 1..])?;
//! assert_eq!(row.shape().dims(), &[2]);
//! # Ok::<(), kiln::Error>(())
//! ```

pub mod cli;
pub mod models;

pub use kiln_backends as backends;
pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;

pub use kiln_frontend::{autograd, gluon, hybrid, nd, random, s};
pub use kiln_frontend::{Context, NDArray, SliceArg};
pub use kiln_ir::{DType, Error, Result, Shape};

/// The names a program using kiln needs: `use kiln::prelude::*;`.
pub mod prelude {
    pub use kiln_frontend::ndarray::{BatchNormOpts, ConvOpts, PoolOpts};
    pub use kiln_frontend::{autograd, gluon, nd, random, s};
    pub use kiln_frontend::{Context, NDArray, SliceArg};
    pub use kiln_ir::{DType, Error, Result, Shape};
}
