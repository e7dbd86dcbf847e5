//! gluon's layers (`mxnet.gluon.nn`): basic layers, convolution, pooling, normalization and
//! the sequential containers.

pub mod basic;
pub mod conv;
pub mod norm;
pub mod pool;
pub mod sequential;

pub use basic::{Activation, ActivationKind, Dense, Dropout, Embedding, Flatten, LeakyReLU};
pub use sequential::{HybridSequential, Sequential};
