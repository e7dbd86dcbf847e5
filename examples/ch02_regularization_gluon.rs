//! Chapter 2, "Overfitting and regularization (with gluon)": the same 1,000-image MNIST
//! overfitting setup as the from-scratch notebook, with a `Sequential(Dense(10))` network,
//! `Xavier(magnitude 2.24)` initialization, `SoftmaxCrossEntropyLoss` and a `Trainer`
//! running SGD, first with weight decay 0 and then, re-initialized, with weight decay 0.001.
//! Prints the book's `Completed epoch ...` lines every 20 epochs and plots the training and
//! test loss and accuracy of both runs.
//!
//! `cargo run --release --example ch02_regularization_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::curves::{measure, plot_runs, print_completed, Curves};
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader, Dataset};
use kiln::gluon::init::{FactorType, RandType, Xavier};
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{Dense, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// The book's sample count for each split.
pub const SAMPLES: usize = 1000;
/// The book's epochs.
pub const EPOCHS: usize = 700;
/// Epochs under `--quick`.
pub const QUICK_EPOCHS: usize = 30;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.01;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// The book's weight decay for the second run.
pub const WEIGHT_DECAY: f64 = 0.001;
/// The book prints every this many epochs (at epochs 1, 21, 41, ...).
pub const PRINT_EVERY: usize = 20;

/// One run's outcome.
#[derive(Debug)]
pub struct Run {
    /// The weight decay used.
    pub wd: f64,
    /// Per-epoch losses and accuracies.
    pub curves: Curves,
    /// The sum of squares of all parameters after training.
    pub squared_norm: f64,
}

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Samples in the training and the test split.
    pub sizes: (usize, usize),
    /// The run with weight decay 0 and the run with [`WEIGHT_DECAY`].
    pub runs: Vec<Run>,
}

/// Trains `net` from a fresh initialization with weight decay `wd` and prints its progress.
fn train_one(
    out: &mut dyn Write,
    net: &Sequential,
    train: &ArrayDataset,
    test: &ArrayDataset,
    epochs: usize,
    wd: f64,
) -> Fallible<Run> {
    let params = net.collect_params()?;
    // The book's `force_reinit=True`: the second run starts from a new random draw.
    params.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
        true,
    )?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &params,
        "sgd",
        [("learning_rate", LEARNING_RATE), ("wd", wd)],
    )?;
    let forward = |x: &NDArray| net.forward(x);
    let loader = DataLoader::new(train.clone(), BATCH_SIZE).shuffle(true);
    let mut curves = Curves::default();
    let mut bar = Progress::new(epochs * loader.len(), format!("wd {wd}"));
    let start = Instant::now();
    for epoch in 0..epochs {
        for batch in loader.iter() {
            let (x, label) = batch?;
            let n = x.shape().dims()[0];
            let loss = autograd::record(|| loss_fn.forward(&net.forward(&x)?, &label))?;
            loss.backward()?;
            trainer.step(n)?;
            bar.step(nd::sum(&loss)?.astype(DType::F64)?.as_scalar::<f64>()?, n);
        }
        let point = measure(train, test, &forward)?;
        curves.push(point);
        if epoch % PRINT_EVERY == 0 || epoch + 1 == epochs {
            print_completed(out, epoch + 1, &point)?;
        }
    }
    bar.finish();
    let mut squared_norm = 0.0;
    for p in params.iter() {
        squared_norm += nd::sum(&p.data()?.square()?)?.as_scalar::<f32>()? as f64;
    }
    writeln!(
        out,
        "{epochs} epochs in {:.1} s; sum of squared parameters {squared_norm:.2}",
        start.elapsed().as_secs_f64()
    )?;
    Ok(Run {
        wd,
        curves,
        squared_norm,
    })
}

/// Trains the model as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let train = mnist_train::load_split(opts, true, Some(SAMPLES))?;
    let test = mnist_train::load_split(opts, false, Some(SAMPLES))?;
    let epochs = opts.epochs_or(EPOCHS, QUICK_EPOCHS);
    writeln!(
        out,
        "MNIST: the first {} training and {} test images; Dense(10), Xavier(magnitude 2.24), batch {BATCH_SIZE}, SGD lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;
    let net = Sequential::new();
    net.name_scope(|| {
        net.add(Dense::new(10));
    });
    let mut runs = Vec::new();
    for wd in [0.0, WEIGHT_DECAY] {
        writeln!(out, "--- wd = {wd} ---")?;
        runs.push(train_one(out, &net, &train, &test, epochs, wd)?);
    }
    let loss_png = opts.out_file("ch02_regularization_gluon_loss.png")?;
    let acc_png = opts.out_file("ch02_regularization_gluon_accuracy.png")?;
    plot_runs(
        &loss_png,
        &acc_png,
        "Dense(10) on 1,000 MNIST images",
        &[("wd 0", &runs[0].curves), ("wd 0.001", &runs[1].curves)],
    )?;
    writeln!(
        out,
        "Learning curves written to {} and {}",
        loss_png.display(),
        acc_png.display()
    )?;
    Ok(Summary {
        sizes: (train.len(), test.len()),
        runs,
    })
}

fn main() {
    common::main_with(run);
}
