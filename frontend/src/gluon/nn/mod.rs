//! gluon's layers (`mxnet.gluon.nn`): basic layers, convolution, pooling, normalization and
//! the sequential containers.

pub mod basic;
pub mod conv;
pub mod norm;
pub mod pool;
pub mod sequential;

pub use basic::{Activation, ActivationKind, Dense, Dropout, Embedding, Flatten, LeakyReLU};
pub use conv::{Conv1D, Conv2D, Conv2DTranspose};
pub use norm::{BatchNorm, LayerNorm};
pub use pool::{
    AvgPool1D, AvgPool2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
    MaxPool1D, MaxPool2D,
};
pub use sequential::{HybridSequential, Sequential};
