//! Chapter 3, "Dropout regularization from scratch": a 784-256-128-10 ReLU network on MNIST
//! whose hidden layers go through a hand-written dropout (keep each unit when a uniform draw
//! is below the keep probability, scale the kept ones by 1 / keep) with drop probability 0.5
//! while training, trained with autograd and plain SGD on the summed cross-entropy.
//!
//! `cargo run --release --example ch03_mlp_dropout_scratch`

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
pub const QUICK_LEARNING_RATE: f64 = 0.01;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 12_000;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// The book's layer widths.
pub const HIDDEN: [usize; 2] = [256, 128];
/// The book's weight scale: every parameter starts as `N(0, 0.01²)`.
pub const WEIGHT_SCALE: f64 = 0.01;
/// The book's drop probability while training.
pub const DROP_PROB: f64 = 0.5;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `dropout(arange(20).reshape(5, 4), p)` for p = 0, 0.5 and 1, as the notebook shows.
    pub demos: Vec<(f64, Vec<f32>)>,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
}

/// The book's `dropout`: zeroes each element of `x` with probability `drop_probability`
/// and scales the others by `1 / (1 - drop_probability)`, so the expected value is kept.
pub fn dropout(x: &NDArray, drop_probability: f64) -> Result<NDArray> {
    if !(0.0..=1.0).contains(&drop_probability) {
        return Err(Error::invalid(
            "dropout",
            format!("drop probability must be in [0, 1], got {drop_probability}"),
        ));
    }
    let keep_probability = 1.0 - drop_probability;
    let mask = nd::random::uniform(0.0, 1.0, x.shape().clone())?.lt_scalar(keep_probability)?;
    let scale = if keep_probability > 0.0 {
        1.0 / keep_probability
    } else {
        0.0
    };
    (&mask * x)? * scale
}

/// The book's `relu`: `nd.maximum(X, nd.zeros_like(X))`.
pub fn relu(x: &NDArray) -> Result<NDArray> {
    nd::maximum(x, &nd::zeros_like(x)?)
}

/// The book's `softmax_cross_entropy`: `-nansum(y * log_softmax(yhat_linear))` over the batch.
pub fn softmax_cross_entropy(yhat_linear: &NDArray, y: &NDArray) -> Result<NDArray> {
    nd::sum(&(y * &nd::log_softmax(yhat_linear)?)?)?.neg()
}

/// Shows dropout on a small array, then trains the network as the notebook does.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let a = nd::arange(20.0)?.reshape(&[5, 4])?;
    let mut demos = Vec::new();
    for p in [0.0, 0.5, 1.0] {
        let d = dropout(&a, p)?;
        writeln!(out, "dropout(A, {p}):\n{d}")?;
        demos.push((p, d.to_vec::<f32>()?));
    }

    let (train, test) = mnist_train::load(opts, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    let lr = if opts.quick {
        QUICK_LEARNING_RATE
    } else {
        LEARNING_RATE
    };
    let [h1, h2] = HIDDEN;
    writeln!(
        out,
        "MNIST: {} training, {} test samples; 784-{h1}-{h2}-10 with dropout {DROP_PROB} after each hidden layer; batch {BATCH_SIZE}, lr {lr}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;

    let normal = |shape: &[usize]| nd::random::normal(0.0, WEIGHT_SCALE, shape);
    let w1 = normal(&[784, h1])?;
    let b1 = normal(&[h1])?;
    let w2 = normal(&[h1, h2])?;
    let b2 = normal(&[h2])?;
    let w3 = normal(&[h2, 10])?;
    let b3 = normal(&[10])?;
    let params = [&w1, &b1, &w2, &b2, &w3, &b3];
    for p in params {
        p.attach_grad();
    }
    let net = |x: &NDArray, drop_prob: f64| -> Result<NDArray> {
        let h = relu(&(&nd::dot(x, &w1)? + &b1)?)?;
        let h = dropout(&h, drop_prob)?;
        let h = relu(&(&nd::dot(&h, &w2)? + &b2)?)?;
        let h = dropout(&h, drop_prob)?;
        &nd::dot(&h, &w3)? + &b3
    };
    // Dropout only while training: the notebook calls `net(data, drop_prob=.5)` inside
    // `autograd.record` and `net(data)` (no dropout) to score.
    let train_net = |x: &NDArray| net(x, DROP_PROB);
    let predict_net = |x: &NDArray| net(x, 0.0);

    writeln!(
        out,
        "(Train_acc below is scored on the training batches as they are trained on, with dropout \
         on, so it trails the book's, which scores the training set after each epoch without it.)"
    )?;
    let loss =
        |output: &NDArray, label: &NDArray| softmax_cross_entropy(output, &label.one_hot(10)?);
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        forward: &train_net,
        loss: &loss,
        predict: &predict_net,
    };
    let history = fit_classifier(out, &train, &test, &fit, &mut |_| {
        autograd::pause(|| -> Result<()> {
            for p in params {
                p.assign(&(p - &(&p.grad()? * lr)?)?)?;
            }
            Ok(())
        })
    })?;
    let plot = opts.out_file("ch03_mlp_dropout_scratch_loss.png")?;
    history.plot_loss(&plot, "Dropout from scratch: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        demos,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
    })
}

fn main() {
    common::main_with(run);
}
