//! Chapter 4, "Convolutional neural networks in gluon": a LeNet-style network —
//! `Conv2D(20, 5, relu)`, `MaxPool2D(2, 2)`, `Conv2D(50, 5, relu)`, `MaxPool2D(2, 2)`,
//! `Flatten`, `Dense(512, relu)`, `Dense(10)` — on MNIST images (`[N, 1, 28, 28]`) with
//! `Xavier(magnitude 2.24)`, `SoftmaxCrossEntropyLoss` and a `Trainer` running SGD.
//!
//! `cargo run --release --example ch04_cnn_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::cnn::{book_xavier, print_layer_shapes};
use common::train::{evaluate_accuracy, fit_classifier, EpochStats, Fit};
use common::{Fallible, Options};
use kiln::gluon::data::Dataset;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Conv2D, Dense, Flatten, MaxPool2D, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use mnist_train::{Layout, Source};
use std::io::Write;

/// Epochs by default: two, where the notebook trains one (to a test accuracy of 0.981).
/// Here one epoch reached 0.950 to 0.955 and two 0.984 in our runs, past the 0.98 that the
/// LeNet-style network is expected to reach.
pub const EPOCHS: usize = 2;
/// The notebook's epochs (`--epochs 1` reproduces its run).
pub const BOOK_EPOCHS: usize = 1;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.1;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 3_000;

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

/// The notebook's network.
pub fn lenet() -> Sequential {
    let net = Sequential::new();
    net.name_scope(|| {
        net.add(Conv2D::new(20, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Conv2D::new(50, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Flatten::new());
        net.add(Dense::new(512).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    net
}

/// Trains the model as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load_as(opts, Source::Mnist, Layout::Image, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    if !opts.quick && opts.epochs.is_none() {
        writeln!(
            out,
            "Training {EPOCHS} epochs where the notebook trains {BOOK_EPOCHS}: one epoch here reaches \
             about 0.95 test accuracy, two pass 0.98 (--epochs {BOOK_EPOCHS} for the notebook's run)"
        )?;
    }
    writeln!(
        out,
        "MNIST images {}: {} training, {} test samples; Xavier(magnitude 2.24), batch {BATCH_SIZE}, lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.data().shape(),
        train.len(),
        test.len()
    )?;

    let net = lenet();
    net.initialize(book_xavier(), Context::cpu())?;
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
        "Book (1 epoch): Epoch 0. Loss: 0.0852, Train_acc 0.9805, Test_acc 0.981"
    )?;
    let plot = opts.out_file("ch04_cnn_gluon_loss.png")?;
    history.plot_loss(&plot, "CNN with gluon: training loss")?;
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
