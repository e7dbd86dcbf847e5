//! gluon: blocks, parameters, layers, losses, optimizers, metrics and data, as in MXNet's
//! `mxnet.gluon`.
//!
//! A layer's forward is ordinary NDArray code: every op goes through
//! [`crate::ndarray::apply`], the one path that `hybridize()` will later trace into a graph,
//! so the layers need no rewrite to be hybridized.

pub mod block;
pub mod data;
pub mod init;
pub mod loss;
pub mod metric;
pub mod name;
pub mod nn;
pub mod optimizer;
pub mod parameter;
pub mod serialize;
pub mod trainer;
pub mod utils;

pub use block::{Block, HybridBlock};
pub use parameter::{Parameter, ParameterDict};
pub use trainer::Trainer;
