//! Chapter 2, "Multiclass logistic regression from scratch": softmax regression on MNIST
//! (784 → 10) with a hand-written softmax, cross-entropy and SGD, trained with autograd.
//!
//! `cargo run --release --example ch02_softmax_regression_scratch`

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
use kiln::prelude::*;
use std::io::Write;

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
    let epochs = opts.epochs_or(EPOCHS, 1);
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

    let initial_test_acc = evaluate_accuracy(&test, &net)?;
    writeln!(out, "Test accuracy before training: {initial_test_acc:.4}")?;

    let loss = |output: &NDArray, label: &NDArray| cross_entropy(output, &label.one_hot(10)?);
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        forward: &net,
        loss: &loss,
        predict: &net,
    };
    let history = fit_classifier(out, &train, &test, &fit, &mut |_| {
        autograd::pause(|| -> Result<()> {
            for p in params {
                p.assign(&(p - &(&p.grad()? * LEARNING_RATE)?)?)?;
            }
            Ok(())
        })
    })?;
    let plot = opts.out_file("ch02_softmax_regression_scratch_loss.png")?;
    history.plot_loss(&plot, "Softmax regression from scratch: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
    })
}

fn main() {
    common::main_with(run);
}
