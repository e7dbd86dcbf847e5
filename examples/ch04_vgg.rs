//! Chapter 4, "Very deep networks with repeating elements" (VGG): `vgg_block`s of 3×3
//! convolutions with padding 1 and ReLU, each closed by a 2×2 max pooling, stacked by
//! `vgg_stack`, then `Dense`-`Dropout`-`Dense`-`Dropout`-`Dense`, trained on MNIST with SGD.
//!
//! The notebook's architecture is `((1, 64), (1, 128), (2, 256), (2, 512))` with two
//! 512-unit dense layers, trained on a GPU. Scaled so that it trains on two CPU cores in
//! minutes: the same blocks with an eighth of the channels and 256-unit dense layers. The
//! output says so. Weights start from the notebook's `Xavier(magnitude 2.24)`, on whose loss
//! plateau a full run spends its first third or so; a `--quick` run starts from He et al.'s
//! initialization instead (see `common::cnn::deep_init`).
//!
//! `cargo run --release --example ch04_vgg`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::cnn::deep_init;
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
/// The notebook's learning rate.
pub const LEARNING_RATE: f64 = 0.05;
/// The notebook's batch size.
pub const BATCH_SIZE: usize = 64;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 3_000;
/// The notebook's architecture: (convolutions, channels) per block.
pub const BOOK_ARCHITECTURE: [(usize, usize); 4] = [(1, 64), (1, 128), (2, 256), (2, 512)];
/// The channels are the notebook's divided by this.
pub const CHANNEL_DIVISOR: usize = 8;
/// The hidden dense layers' units (the notebook's 512, halved).
pub const DENSE: usize = 256;
/// The dropout rate after each hidden dense layer.
pub const DROPOUT: f64 = 0.5;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The (convolutions, channels) of each block this run used.
    pub architecture: Vec<(usize, usize)>,
    /// Test accuracy of the randomly initialized network.
    pub initial_test_acc: f64,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
    /// The network's output shape for one batch.
    pub output_shape: Vec<usize>,
}

/// The notebook's `vgg_block`: `num_convs` 3×3 padding-1 ReLU convolutions of `channels`,
/// then a 2×2 stride-2 max pooling.
pub fn vgg_block(num_convs: usize, channels: usize) -> Sequential {
    let block = Sequential::new();
    block.name_scope(|| {
        for _ in 0..num_convs {
            block.add(
                Conv2D::new(channels, 3)
                    .padding(1)
                    .activation(ActivationKind::Relu),
            );
        }
        block.add(MaxPool2D::new(2).strides(2));
    });
    block
}

/// The notebook's `vgg_stack`: one [`vgg_block`] per `(num_convs, channels)`.
pub fn vgg_stack(architecture: &[(usize, usize)]) -> Sequential {
    let stack = Sequential::new();
    stack.name_scope(|| {
        for &(num_convs, channels) in architecture {
            stack.add(vgg_block(num_convs, channels));
        }
    });
    stack
}

/// The whole network: the stack, then the dense layers with dropout.
pub fn vgg(architecture: &[(usize, usize)]) -> Fallible<Sequential> {
    let net = Sequential::new();
    net.name_scope(|| -> Fallible<()> {
        net.add(vgg_stack(architecture));
        net.add(Flatten::new());
        net.add(Dense::new(DENSE).activation(ActivationKind::Relu));
        net.add(Dropout::new(DROPOUT)?);
        net.add(Dense::new(DENSE).activation(ActivationKind::Relu));
        net.add(Dropout::new(DROPOUT)?);
        net.add(Dense::new(10));
        Ok(())
    })?;
    Ok(net)
}

/// Trains the model and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let architecture: Vec<(usize, usize)> = BOOK_ARCHITECTURE
        .iter()
        .map(|&(n, c)| (n, c / CHANNEL_DIVISOR))
        .collect();
    writeln!(
        out,
        "Scaled for two CPU cores: vgg_stack({architecture:?}) (notebook: {BOOK_ARCHITECTURE:?}), \
         dense {DENSE} (notebook: 512)"
    )?;
    let (train, test) = mnist_train::load_as(opts, Source::Mnist, Layout::Image, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    let (init, init_name) = deep_init(opts.quick);
    writeln!(
        out,
        "MNIST images {}: {} training, {} test samples; {init_name}, batch {BATCH_SIZE}, lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.data().shape(),
        train.len(),
        test.len()
    )?;

    let net = vgg(&architecture)?;
    net.initialize(init, Context::cpu())?;
    let forward = |x: &NDArray| net.forward(x);
    let first_batch = train.data().slice_axis0(..BATCH_SIZE)?;
    let output = autograd::predict_mode(|| forward(&first_batch))?;
    writeln!(out, "{net}")?;
    writeln!(
        out,
        "Output shape for a batch {}: {}",
        first_batch.shape(),
        output.shape()
    )?;

    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "sgd",
        [("learning_rate", LEARNING_RATE)],
    )?;
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
        "Book (an older run on Fashion-MNIST, full size): Epoch 0. Loss: 0.7964, Train_acc 0.6435, Test_acc 0.6478"
    )?;
    let plot = opts.out_file("ch04_vgg_loss.png")?;
    history.plot_loss(&plot, "VGG-style network: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        architecture,
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
        output_shape: output.shape().dims().to_vec(),
    })
}

fn main() {
    common::main_with(run);
}
