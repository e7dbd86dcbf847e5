//! Chapter 3, "Dropout regularization with gluon": `Dense(256, relu)`, `Dropout(0.5)`,
//! `Dense(256, relu)`, `Dropout(0.5)`, `Dense(10)` on MNIST, Xavier(magnitude 2.24) and SGD
//! (learning rate 0.1). First it shows the two modes: in predict mode dropout is the identity
//! (the same input gives the same output twice), in train mode it drops units (two calls
//! differ); and what `autograd::is_training()` says inside `predict_mode` and `record`.
//!
//! `cargo run --release --example ch03_mlp_dropout_gluon`

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
use kiln::gluon::init::{FactorType, RandType, Xavier};
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Dense, Dropout, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// The book's epochs.
pub const EPOCHS: usize = 10;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.1;
/// The book's hidden width (both layers).
pub const HIDDEN: usize = 256;
/// The book's drop probability.
pub const DROP_PROB: f64 = 0.5;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 12_000;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;

/// What the run measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The output for one image, twice in predict mode (dropout off).
    pub predict_outputs: (Vec<f32>, Vec<f32>),
    /// The output for the same image, twice in train mode (dropout on).
    pub train_outputs: (Vec<f32>, Vec<f32>),
    /// `is_training()` inside `predict_mode`, `record` and `record_with(false, ..)`.
    pub is_training: (bool, bool, bool),
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
}

/// Builds the notebook's network.
pub fn build_net() -> Fallible<Sequential> {
    let net = Sequential::new();
    net.name_scope(|| -> Result<()> {
        net.add(Dense::new(HIDDEN).activation(ActivationKind::Relu));
        net.add(Dropout::new(DROP_PROB)?);
        net.add(Dense::new(HIDDEN).activation(ActivationKind::Relu));
        net.add(Dropout::new(DROP_PROB)?);
        net.add(Dense::new(10));
        Ok(())
    })?;
    net.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
    )?;
    Ok(net)
}

/// Shows the two modes, then trains the network as the notebook does.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load(opts, QUICK_TRAIN)?;
    let net = build_net()?;
    writeln!(out, "{net}")?;

    let x = train.data().slice_axis0(..1)?;
    let predict_outputs = twice(out, &net, &x, false)?;
    let train_outputs = twice(out, &net, &x, true)?;
    let is_training = (
        autograd::predict_mode(autograd::is_training),
        autograd::record(autograd::is_training),
        autograd::record_with(false, autograd::is_training),
    );
    writeln!(
        out,
        "is_training() in predict_mode: {}, in record: {}, in record(train_mode=false): {}",
        is_training.0, is_training.1, is_training.2
    )?;

    let epochs = opts.epochs_or(EPOCHS, 1);
    writeln!(
        out,
        "MNIST: {} training, {} test samples; batch {BATCH_SIZE}, SGD lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;
    writeln!(
        out,
        "(Train_acc below is scored on the training batches as they are trained on, with dropout \
         on, so it trails the book's, which scores the training set after each epoch without it.)"
    )?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "sgd",
        [("learning_rate", LEARNING_RATE)],
    )?;
    let forward = |x: &NDArray| net.forward(x);
    let loss = |output: &NDArray, label: &NDArray| loss_fn.forward(output, label);
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        forward: &forward,
        loss: &loss,
        predict: &forward,
    };
    let history = fit_classifier(out, &train, &test, &fit, &mut |n| trainer.step(n))?;
    let plot = opts.out_file("ch03_mlp_dropout_gluon_loss.png")?;
    history.plot_loss(&plot, "Dropout with gluon: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        predict_outputs,
        train_outputs,
        is_training,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
    })
}

/// Calls `net` on `x` twice in train or predict mode and prints both outputs.
fn twice(
    out: &mut dyn Write,
    net: &Sequential,
    x: &NDArray,
    train: bool,
) -> Fallible<(Vec<f32>, Vec<f32>)> {
    let call = || -> Result<Vec<f32>> {
        let y = if train {
            autograd::train_mode(|| net.forward(x))?
        } else {
            autograd::predict_mode(|| net.forward(x))?
        };
        y.to_vec::<f32>()
    };
    let (a, b) = (call()?, call()?);
    let mode = if train { "train" } else { "predict" };
    writeln!(
        out,
        "net(x[0:1]) twice in {mode} mode:\n  {}\n  {}",
        show(&a),
        show(&b)
    )?;
    Ok((a, b))
}

/// Ten outputs with three decimals.
fn show(v: &[f32]) -> String {
    let cells: Vec<String> = v.iter().map(|x| format!("{x:7.3}")).collect();
    format!("[{}]", cells.join(" "))
}

fn main() {
    common::main_with(run);
}
