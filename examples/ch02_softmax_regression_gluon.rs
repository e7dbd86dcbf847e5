//! Chapter 2, "Multiclass logistic regression with gluon": `Dense(10)` on MNIST with
//! `SoftmaxCrossEntropyLoss`, a `Trainer` running SGD, and the `Accuracy` metric.
//!
//! `cargo run --release --example ch02_softmax_regression_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading, scoring and progress lines shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::{Fallible, Options};
use kiln::gluon::data::{DataLoader, Dataset};
use kiln::gluon::init::Normal;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::metric::{Accuracy, EvalMetric};
use kiln::gluon::nn::{Dense, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use mnist_train::EpochStats;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// The book's epochs.
pub const EPOCHS: usize = 10;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.1;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 60_000;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Test accuracy of the randomly initialized model.
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
    let epochs = if opts.quick { 1 } else { EPOCHS };
    writeln!(
        out,
        "MNIST: {} training, {} test samples; batch {BATCH_SIZE}, lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;

    let net = Sequential::new();
    net.add(Dense::new(10));
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "sgd",
        [("learning_rate", LEARNING_RATE)],
    )?;
    let forward = |x: &NDArray| net.forward(x);

    let initial_test_acc = mnist_train::evaluate_accuracy(&test, &forward)?;
    writeln!(out, "Test accuracy before training: {initial_test_acc:.4}")?;

    let loader = DataLoader::new(train.clone(), BATCH_SIZE).shuffle(true);
    let mut history = Vec::new();
    let mut batch_losses = Vec::new();
    let start = Instant::now();
    for epoch in 0..epochs {
        let epoch_start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let mut train_acc = Accuracy::new();
        for batch in loader.iter() {
            let (x, y) = batch?;
            let n = x.shape().dims()[0];
            let (loss, output) = autograd::record(|| -> Result<(NDArray, NDArray)> {
                let output = net.forward(&x)?;
                Ok((loss_fn.forward(&output, &y)?, output))
            })?;
            loss.backward()?;
            trainer.step(n)?;
            let l = nd::sum(&loss)?.as_scalar::<f32>()? as f64;
            batch_losses.push(l / n as f64);
            loss_sum += l;
            seen += n;
            train_acc.update(&[&y], &[&output])?;
        }
        let train_secs = epoch_start.elapsed().as_secs_f64();
        let stats = EpochStats {
            epoch,
            loss: loss_sum / seen as f64,
            train_acc: train_acc.get().1,
            test_acc: mnist_train::evaluate_accuracy(&test, &forward)?,
            samples_per_sec: seen as f64 / train_secs,
        };
        mnist_train::print_epoch(out, &stats)?;
        history.push(stats);
    }
    mnist_train::print_summary(out, &history, start.elapsed())?;

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
        history,
        first_last_loss: mnist_train::first_last_tenth(&batch_losses),
        predictions,
    })
}

fn main() {
    common::main_with(run);
}
