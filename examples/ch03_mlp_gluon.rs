//! Chapter 3, "Multilayer perceptrons with gluon": a 784-256-256-10 ReLU `Sequential` on MNIST with
//! `SoftmaxCrossEntropyLoss`, a `Trainer` running SGD, and the `Accuracy` metric.
//!
//! `cargo run --release --example ch03_mlp_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::train::{evaluate_accuracy, fit_classifier, EpochStats, Fit};
use common::{Fallible, Options};
use kiln::gluon::data::Dataset;
use kiln::gluon::init::{FactorType, RandType, Xavier};
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Dense, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// The book's epochs.
pub const EPOCHS: usize = 10;
/// The learning rate of the chapter's dropout-gluon notebook, which trains this network
/// shape (mlp-gluon's 0.01 with 64-unit layers reaches only 0.935); the trainer divides the
/// summed gradient by the batch size.
pub const LEARNING_RATE: f64 = 0.1;
/// The hidden-layer width (both layers), as in mlp-scratch.
pub const HIDDEN: usize = 256;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 12_000;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Test accuracy of the randomly initialized network.
    pub initial_test_acc: f64,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
    /// The predicted digits of the first ten test images.
    pub predictions: Vec<f32>,
}

/// Trains the model as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load(opts, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    writeln!(
        out,
        "MNIST: {} training, {} test samples; 784-{HIDDEN}-{HIDDEN}-10, Xavier(magnitude 2.24); batch {BATCH_SIZE}, lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;

    let net = Sequential::new();
    net.name_scope(|| {
        net.add(Dense::new(HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    net.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
    )?;
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
    let plot = opts.out_file("ch03_mlp_gluon_loss.png")?;
    history.plot_loss(&plot, "MLP with gluon: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;

    let first_ten = test.data().slice_axis0(..10)?;
    let predictions = net
        .forward(&first_ten)?
        .argmax(1)?
        .astype(DType::F32)?
        .to_vec::<f32>()?;
    let labels = test.label().slice_axis0(..10)?.to_vec::<f32>()?;
    writeln!(
        out,
        "Predictions for the first ten test images: {predictions:?}"
    )?;
    writeln!(out, "Their labels:                              {labels:?}")?;
    Ok(Summary {
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
        predictions,
    })
}

fn main() {
    common::main_with(run);
}
