//! Chapter 4, "Deep convolutional neural networks" (AlexNet): five convolutions with the
//! AlexNet pattern — a large first kernel, 3×3/stride-2 max pooling after the first, second
//! and fifth convolution, three 3×3 convolutions in a row — then three dense layers with
//! dropout between them, trained with SGD.
//!
//! Scaled down so that it trains on two CPU cores in minutes: the notebook resizes CIFAR-10
//! to 224×224, which is not shipped here, so this trains on Fashion-MNIST at 28×28, with
//! a 5×5 stride-1 padded first convolution instead of 11×11 stride 4, padded convolutions
//! so that the three poolings fit in 28 pixels, and a sixth of the channels and dense units.
//! The output says so. Weights start from the notebook's `Xavier(magnitude 2.24)`; a
//! `--quick` run starts from He et al.'s initialization instead, as the Xavier start's loss
//! plateau outlasts a quick run (see `common::cnn::deep_init`).
//!
//! `cargo run --release --example ch04_deep_cnn_alexnet`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST and Fashion-MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::cnn::deep_init;
use common::cnn::print_layer_shapes;
use common::train::{evaluate_accuracy, fit_classifier, EpochStats, Fit};
use common::{Fallible, Options};
use kiln::gluon::data::Dataset;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use mnist_train::{Layout, Source};
use std::io::Write;

/// The notebook's epochs.
pub const EPOCHS: usize = 1;
/// The learning rate of the chapter's other gluon CNNs. The notebook's 0.001 was never run
/// to a result; with it SGD would move this network's weights a hundred times more slowly.
pub const LEARNING_RATE: f64 = 0.1;
/// The notebook's batch size.
pub const BATCH_SIZE: usize = 64;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 3_000;
/// The five convolutions' channels (AlexNet's 96, 192, 384, 384, 256, divided by 6).
pub const CHANNELS: [usize; 5] = [16, 32, 64, 64, 48];
/// The two hidden dense layers' units (AlexNet's 4096 divided by 16).
pub const DENSE: usize = 256;
/// The dropout rate after each hidden dense layer.
pub const DROPOUT: f64 = 0.5;
/// The Fashion-MNIST class names, by label.
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Test accuracy of the randomly initialized network.
    pub initial_test_acc: f64,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
    /// The output shape of every layer for one batch, in order.
    pub layer_shapes: Vec<Vec<usize>>,
}

/// The scaled AlexNet.
pub fn alexnet() -> Fallible<Sequential> {
    let relu = ActivationKind::Relu;
    let [c1, c2, c3, c4, c5] = CHANNELS;
    let net = Sequential::new();
    net.name_scope(|| -> Fallible<()> {
        net.add(Conv2D::new(c1, 5).padding(2).activation(relu));
        net.add(MaxPool2D::new(3).strides(2));
        net.add(Conv2D::new(c2, 5).padding(2).activation(relu));
        net.add(MaxPool2D::new(3).strides(2));
        net.add(Conv2D::new(c3, 3).padding(1).activation(relu));
        net.add(Conv2D::new(c4, 3).padding(1).activation(relu));
        net.add(Conv2D::new(c5, 3).padding(1).activation(relu));
        net.add(MaxPool2D::new(3).strides(2));
        net.add(Flatten::new());
        net.add(Dense::new(DENSE).activation(relu));
        net.add(Dropout::new(DROPOUT)?);
        net.add(Dense::new(DENSE).activation(relu));
        net.add(Dropout::new(DROPOUT)?);
        net.add(Dense::new(10));
        Ok(())
    })?;
    Ok(net)
}

/// Trains the model and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    writeln!(
        out,
        "Scaled for two CPU cores: CIFAR-10 at 224x224 is not shipped, so Fashion-MNIST at 28x28; \
         first convolution 5x5 stride 1 (AlexNet: 11x11 stride 4), padded convolutions, \
         channels {CHANNELS:?} (AlexNet: [96, 192, 384, 384, 256]), dense {DENSE} (AlexNet: 4096); \
         lr {LEARNING_RATE} as in the chapter's other gluon CNNs (notebook: 0.001)"
    )?;
    let (train, test) =
        mnist_train::load_as(opts, Source::FashionMnist, Layout::Image, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    let (init, init_name) = deep_init(opts.quick);
    writeln!(
        out,
        "Fashion-MNIST images {}: {} training, {} test samples; {init_name}, batch {BATCH_SIZE}, {epochs} epoch(s)",
        train.data().shape(),
        train.len(),
        test.len()
    )?;

    let net = alexnet()?;
    net.initialize(init, Context::cpu())?;
    writeln!(out, "Layer output shapes for one batch of {BATCH_SIZE}:")?;
    let first_batch = train.data().slice_axis0(..BATCH_SIZE)?;
    let layer_shapes = print_layer_shapes(&net, &first_batch, out)?;

    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "sgd",
        [("learning_rate", LEARNING_RATE)],
    )?;
    let forward = |x: &NDArray| net.forward(x);
    let initial_test_acc = evaluate_accuracy(&test, &forward)?;
    writeln!(out, "Test accuracy before training: {initial_test_acc:.4}")?;

    let loss = |output: &NDArray, label: &NDArray| loss_fn.forward(output, label);
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        forward: &forward,
        loss: &loss,
        predict: &forward,
    };
    let history = fit_classifier(out, &train, &test, &fit, &mut |n| trainer.step(n))?;

    writeln!(
        out,
        "(The notebook has no recorded output: it was never run to a result.)"
    )?;
    let first_ten = test.data().slice_axis0(..10)?;
    let predicted = autograd::predict_mode(|| net.forward(&first_ten))?
        .argmax(1)?
        .astype(DType::F32)?
        .to_vec::<f32>()?;
    let labels = test.label().slice_axis0(..10)?.to_vec::<f32>()?;
    let name = |v: &f32| CLASSES.get(*v as usize).copied().unwrap_or("?");
    writeln!(
        out,
        "First ten test images, predicted: {:?}",
        predicted.iter().map(name).collect::<Vec<_>>()
    )?;
    writeln!(
        out,
        "                         labels:  {:?}",
        labels.iter().map(name).collect::<Vec<_>>()
    )?;
    let plot = opts.out_file("ch04_deep_cnn_alexnet_loss.png")?;
    history.plot_loss(&plot, "AlexNet-style CNN on Fashion-MNIST: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
        layer_shapes,
    })
}

fn main() {
    common::main_with(run);
}
