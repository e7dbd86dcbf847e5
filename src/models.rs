//! The book's chapter 2–4 gluon models as reusable builders.
//!
//! Each builder returns an uninitialized [`HybridSequential`]: it runs imperatively as built
//! and hybridizes with `hybridize()`. Input sizes are deferred (learnt on the first forward
//! call), as in the notebooks. The architectures are exactly the notebooks' ones:
//!
//! | builder | notebook | layers |
//! |---|---|---|
//! | [`linear_regression`] | linear-regression-gluon | `Dense(1)` |
//! | [`softmax_regression`] | softmax-regression-gluon | `Dense(10)` |
//! | [`mlp`] | mlp-gluon | `Dense(256, relu)-Dense(256, relu)-Dense(10)` |
//! | [`mlp_dropout`] | mlp-dropout-gluon | `Dense(256, relu)-Dropout-Dense(256, relu)-Dropout-Dense(10)` |
//! | [`lenet`] | cnn-gluon | `Conv2D(20, 5, relu)-MaxPool2D(2, 2)-Conv2D(50, 5, relu)-MaxPool2D(2, 2)-Flatten-Dense(512, relu)-Dense(10)` |
//! | [`bn_cnn`] | cnn-batch-norm-gluon | LeNet with `BatchNorm` (axis 1) after each convolution and after the hidden dense layer, each followed by `Activation("relu")` |
//!
//! [`ChapterModel`] lists them with their input shapes and the initializers the notebooks
//! use ([`ChapterModel::initializer`]).
//!
//! ```
//! use kiln::gluon::Block;
//! use kiln::models::{self, ChapterModel};
//! use kiln::prelude::*;
//!
//! let net = models::mlp()?;
//! net.initialize(ChapterModel::Mlp.initializer(), Context::cpu())?;
//! let x = nd::zeros(ChapterModel::Mlp.input_shape(2))?;
//! assert_eq!(net.forward(&x)?.shape().dims(), &[2, 10]);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_frontend::gluon::init::{FactorType, Initializer, Normal, RandType, Xavier};
use kiln_frontend::gluon::nn::{
    Activation, ActivationKind, BatchNorm, Conv2D, Dense, Dropout, Flatten, HybridSequential,
    MaxPool2D,
};
use kiln_ir::Result;
use std::fmt;
use std::sync::Arc;

/// Hidden units of the MLPs (both hidden layers).
pub const MLP_HIDDEN: usize = 256;

/// Hidden units of the CNNs' dense layer.
pub const CNN_HIDDEN: usize = 512;

/// The dropout rate of the mlp-dropout notebook.
pub const DROPOUT_RATE: f64 = 0.5;

/// Chapter 2's linear regression: one `Dense(1)` layer (the notebook's data has 2 features).
pub fn linear_regression() -> Result<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| net.add(Dense::new(1)));
    Ok(net)
}

/// Chapter 2's multiclass logistic (softmax) regression: `Dense(10)` on flattened images.
pub fn softmax_regression() -> Result<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| net.add(Dense::new(10)));
    Ok(net)
}

/// Chapter 3's multilayer perceptron: `Dense(256, relu)-Dense(256, relu)-Dense(10)`.
pub fn mlp() -> Result<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Dense::new(MLP_HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(MLP_HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    Ok(net)
}

/// Chapter 3's MLP with dropout: [`mlp`] with a `Dropout(rate)` after each hidden layer
/// (the notebook uses [`DROPOUT_RATE`]).
///
/// Errors when `rate` is not in `[0, 1)`.
pub fn mlp_dropout(rate: f64) -> Result<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| -> Result<()> {
        net.add(Dense::new(MLP_HIDDEN).activation(ActivationKind::Relu));
        net.add(Dropout::new(rate)?);
        net.add(Dense::new(MLP_HIDDEN).activation(ActivationKind::Relu));
        net.add(Dropout::new(rate)?);
        net.add(Dense::new(10));
        Ok(())
    })?;
    Ok(net)
}

/// Chapter 4's LeNet (cnn-gluon): two ReLU convolutions with 2×2 max pooling, then a
/// 512-unit ReLU dense layer and the 10-way output, on `[N, 1, 28, 28]` images.
pub fn lenet() -> Result<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Conv2D::new(20, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Conv2D::new(50, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Flatten::new());
        net.add(Dense::new(CNN_HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    Ok(net)
}

/// Chapter 4's batch-normalized CNN: [`lenet`] with a `BatchNorm` (axis 1, learnt scale and
/// shift) after each convolution and after the hidden dense layer, each followed by
/// `Activation("relu")` (the layers before them have no activation of their own).
pub fn bn_cnn() -> Result<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| -> Result<()> {
        let bn = || BatchNorm::new().axis(1).center(true).scale(true);
        net.add(Conv2D::new(20, 5));
        net.add(bn());
        net.add(Activation::new("relu")?);
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Conv2D::new(50, 5));
        net.add(bn());
        net.add(Activation::new("relu")?);
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Flatten::new());
        net.add(Dense::new(CNN_HIDDEN));
        net.add(bn());
        net.add(Activation::new("relu")?);
        net.add(Dense::new(10));
        Ok(())
    })?;
    Ok(net)
}

/// The book's `Xavier(magnitude=2.24)` (uniform, average fan), which the MLP and CNN
/// notebooks initialize with.
pub fn book_xavier() -> Arc<dyn Initializer> {
    Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24))
}

/// One of the chapter 2–4 gluon models, for code that iterates over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChapterModel {
    /// [`linear_regression`].
    LinearRegression,
    /// [`softmax_regression`].
    SoftmaxRegression,
    /// [`mlp`].
    Mlp,
    /// [`mlp_dropout`] with [`DROPOUT_RATE`].
    MlpDropout,
    /// [`lenet`].
    LeNet,
    /// [`bn_cnn`].
    BnCnn,
}

impl ChapterModel {
    /// Every chapter model, in book order.
    pub const ALL: [ChapterModel; 6] = [
        ChapterModel::LinearRegression,
        ChapterModel::SoftmaxRegression,
        ChapterModel::Mlp,
        ChapterModel::MlpDropout,
        ChapterModel::LeNet,
        ChapterModel::BnCnn,
    ];

    /// A short, file-name-friendly name: `linear_regression`, `softmax_regression`, `mlp`,
    /// `mlp_dropout`, `lenet`, `bn_cnn`.
    pub fn name(self) -> &'static str {
        match self {
            ChapterModel::LinearRegression => "linear_regression",
            ChapterModel::SoftmaxRegression => "softmax_regression",
            ChapterModel::Mlp => "mlp",
            ChapterModel::MlpDropout => "mlp_dropout",
            ChapterModel::LeNet => "lenet",
            ChapterModel::BnCnn => "bn_cnn",
        }
    }

    /// The model named `name` (see [`ChapterModel::name`]).
    pub fn from_name(name: &str) -> Option<ChapterModel> {
        ChapterModel::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Builds the (uninitialized) network.
    pub fn build(self) -> Result<HybridSequential> {
        match self {
            ChapterModel::LinearRegression => linear_regression(),
            ChapterModel::SoftmaxRegression => softmax_regression(),
            ChapterModel::Mlp => mlp(),
            ChapterModel::MlpDropout => mlp_dropout(DROPOUT_RATE),
            ChapterModel::LeNet => lenet(),
            ChapterModel::BnCnn => bn_cnn(),
        }
    }

    /// The input shape at batch size `batch`: `[batch, 2]` for linear regression,
    /// `[batch, 784]` for the dense MNIST models, `[batch, 1, 28, 28]` for the CNNs.
    pub fn input_shape(self, batch: usize) -> Vec<usize> {
        match self {
            ChapterModel::LinearRegression => vec![batch, 2],
            ChapterModel::SoftmaxRegression | ChapterModel::Mlp | ChapterModel::MlpDropout => {
                vec![batch, 784]
            }
            ChapterModel::LeNet | ChapterModel::BnCnn => vec![batch, 1, 28, 28],
        }
    }

    /// Whether the model takes images (`[N, 1, 28, 28]`) rather than flat vectors.
    pub fn is_image(self) -> bool {
        matches!(self, ChapterModel::LeNet | ChapterModel::BnCnn)
    }

    /// The initializer the notebook uses: `Normal(1.0)` for the two regressions,
    /// [`book_xavier`] for the others.
    pub fn initializer(self) -> Arc<dyn Initializer> {
        match self {
            ChapterModel::LinearRegression | ChapterModel::SoftmaxRegression => {
                Arc::new(Normal::new(1.0))
            }
            _ => book_xavier(),
        }
    }
}

impl fmt::Display for ChapterModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
