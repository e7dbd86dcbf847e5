//! Chapter 2, "Multiclass logistic regression from scratch": softmax regression on MNIST
//! (784 → 10) with a hand-written softmax, cross-entropy and SGD, trained with autograd.
//!
//! `cargo run --release --example ch02_softmax_regression_scratch`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading, scoring and progress lines shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::{Fallible, Options};
use kiln::gluon::data::{DataLoader, Dataset};
use kiln::gluon::metric::{Accuracy, EvalMetric};
use kiln::prelude::*;
use mnist_train::EpochStats;
use std::io::Write;
use std::time::Instant;

/// The book's epochs.
pub const EPOCHS: usize = 5;
/// The book's learning rate (on the loss summed over the batch).
pub const LEARNING_RATE: f64 = 0.005;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 60_000;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Test accuracy of the random initial model.
    pub initial_test_acc: f64,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
}

/// The book's `softmax`: exponentiate after subtracting the row maximum, then normalize.
pub fn softmax(y_linear: &NDArray) -> Result<NDArray> {
    let shifted = (y_linear - &nd::max_axes(y_linear, &[1], true)?)?;
    let exp = nd::exp(&shifted)?;
    &exp / &nd::sum_axes(&exp, &[1], true)?
}

/// The book's `cross_entropy`: `-sum(y * log(yhat + 1e-6))` over the whole batch.
pub fn cross_entropy(yhat: &NDArray, y: &NDArray) -> Result<NDArray> {
    nd::sum(&(y * &nd::log(&(yhat + 1e-6)?)?)?)?.neg()
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

    let w = nd::random::normal(0.0, 1.0, [784, 10])?;
    let b = nd::random::normal(0.0, 1.0, [10])?;
    let params = [&w, &b];
    for p in params {
        p.attach_grad();
    }
    let net = |x: &NDArray| -> Result<NDArray> { softmax(&(&nd::dot(x, &w)? + &b)?) };

    let initial_test_acc = mnist_train::evaluate_accuracy(&test, &net)?;
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
            let label_one_hot = y.one_hot(10)?;
            let (loss, output) = autograd::record(|| -> Result<(NDArray, NDArray)> {
                let output = net(&x)?;
                Ok((cross_entropy(&output, &label_one_hot)?, output))
            })?;
            loss.backward()?;
            autograd::pause(|| -> Result<()> {
                for p in params {
                    p.assign(&(p - &(&p.grad()? * LEARNING_RATE)?)?)?;
                }
                Ok(())
            })?;
            let l = loss.as_scalar::<f32>()? as f64;
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
            test_acc: mnist_train::evaluate_accuracy(&test, &net)?,
            samples_per_sec: seen as f64 / train_secs,
        };
        mnist_train::print_epoch(out, &stats)?;
        history.push(stats);
    }
    mnist_train::print_summary(out, &history, start.elapsed())?;
    Ok(Summary {
        initial_test_acc,
        history,
        first_last_loss: mnist_train::first_last_tenth(&batch_losses),
    })
}

fn main() {
    common::main_with(run);
}
