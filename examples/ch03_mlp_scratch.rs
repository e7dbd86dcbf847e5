//! Chapter 3, "Multilayer perceptrons from scratch": a 784-256-256-10 ReLU network on MNIST
//! with hand-written ReLU, log-softmax cross-entropy and SGD, trained with autograd.
//!
//! `cargo run --release --example ch03_mlp_scratch`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::train::{fit_classifier, EpochStats, Fit};
use common::{Fallible, Options};
use kiln::gluon::data::Dataset;
use kiln::prelude::*;
use std::io::Write;

/// The book's epochs.
pub const EPOCHS: usize = 10;
/// The book's learning rate (on the loss summed over the batch).
pub const LEARNING_RATE: f64 = 0.001;
/// The learning rate `--quick` uses: with the book's 0.01-scale initialization the loss
/// sits on its plateau at ln 10 for the first few hundred batches at the book's rate, longer
/// than a quick run trains.
pub const QUICK_LEARNING_RATE: f64 = 0.005;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 12_000;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// The book's hidden-layer width (both layers).
pub const HIDDEN: usize = 256;
/// The book's weight scale: every parameter starts as `N(0, 0.01²)`.
pub const WEIGHT_SCALE: f64 = 0.01;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
}

/// The book's `relu`: `nd.maximum(X, nd.zeros_like(X))`.
pub fn relu(x: &NDArray) -> Result<NDArray> {
    nd::maximum(x, &nd::zeros_like(x)?)
}

/// The book's `softmax_cross_entropy`: `-nansum(y * log_softmax(yhat_linear))` over the batch.
pub fn softmax_cross_entropy(yhat_linear: &NDArray, y: &NDArray) -> Result<NDArray> {
    nd::sum(&(y * &nd::log_softmax(yhat_linear)?)?)?.neg()
}

/// Trains the network as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load(opts, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    let lr = if opts.quick {
        QUICK_LEARNING_RATE
    } else {
        LEARNING_RATE
    };
    writeln!(
        out,
        "MNIST: {} training, {} test samples; 784-{HIDDEN}-{HIDDEN}-10, batch {BATCH_SIZE}, lr {lr}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;

    let normal = |shape: &[usize]| nd::random::normal(0.0, WEIGHT_SCALE, shape);
    let w1 = normal(&[784, HIDDEN])?;
    let b1 = normal(&[HIDDEN])?;
    let w2 = normal(&[HIDDEN, HIDDEN])?;
    let b2 = normal(&[HIDDEN])?;
    let w3 = normal(&[HIDDEN, 10])?;
    let b3 = normal(&[10])?;
    let params = [&w1, &b1, &w2, &b2, &w3, &b3];
    for p in params {
        p.attach_grad();
    }
    let net = |x: &NDArray| -> Result<NDArray> {
        let h1 = relu(&(&nd::dot(x, &w1)? + &b1)?)?;
        let h2 = relu(&(&nd::dot(&h1, &w2)? + &b2)?)?;
        &nd::dot(&h2, &w3)? + &b3
    };

    let loss =
        |output: &NDArray, label: &NDArray| softmax_cross_entropy(output, &label.one_hot(10)?);
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
                p.assign(&(p - &(&p.grad()? * lr)?)?)?;
            }
            Ok(())
        })
    })?;
    let plot = opts.out_file("ch03_mlp_scratch_loss.png")?;
    history.plot_loss(&plot, "MLP from scratch: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
    })
}

fn main() {
    common::main_with(run);
}
