//! Chapter 4, "Batch normalization in gluon": the LeNet-style network of `ch04_cnn_gluon`
//! with an `nn::BatchNorm` (axis 1, learnt scale and shift) after every convolution and after
//! the hidden dense layer, each followed by an `Activation("relu")`, trained on MNIST with
//! SGD. The layers keep running statistics while training and use them for scoring.
//!
//! `cargo run --release --example ch04_batch_norm_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::cnn::book_xavier;
use common::train::{evaluate_accuracy, fit_classifier, EpochStats, Fit};
use common::{Fallible, Options};
use kiln::gluon::data::Dataset;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{Activation, BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use mnist_train::{Layout, Source};
use std::io::Write;

/// The notebook's epochs (an older run of it trained 10).
pub const EPOCHS: usize = 1;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.1;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// Width of the hidden dense layer.
pub const NUM_FC: usize = 512;
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
    /// The first batch norm's running mean after training, one value per channel.
    pub bn0_running_mean: Vec<f32>,
    /// The first batch norm's running variance after training.
    pub bn0_running_var: Vec<f32>,
}

/// The notebook's network.
pub fn lenet_bn() -> Fallible<Sequential> {
    let net = Sequential::new();
    net.name_scope(|| -> Fallible<()> {
        let bn = || BatchNorm::new().axis(1).center(true).scale(true);
        net.add(Conv2D::new(20, 5));
        net.add(bn());
        net.add(Activation::new("relu")?);
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Conv2D::new(50, 5));
        net.add(bn());
        net.add(Activation::new("relu")?);
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Flatten::new());
        net.add(Dense::new(NUM_FC));
        net.add(bn());
        net.add(Activation::new("relu")?);
        net.add(Dense::new(10));
        Ok(())
    })?;
    Ok(net)
}

/// Trains the model as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load_as(opts, Source::Mnist, Layout::Image, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    writeln!(
        out,
        "MNIST images {}: {} training, {} test samples; Xavier(magnitude 2.24), batch {BATCH_SIZE}, lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.data().shape(),
        train.len(),
        test.len()
    )?;

    let net = lenet_bn()?;
    net.initialize(book_xavier(), Context::cpu())?;
    let forward = |x: &NDArray| net.forward(x);
    // One predict-mode pass finishes the deferred shapes without touching the running
    // statistics; then the network can be printed with its parameters' shapes.
    autograd::predict_mode(|| forward(&train.data().slice_axis0(..2)?))?;
    writeln!(out, "{net}")?;
    let params = net.collect_params()?;
    let find = |suffix: &str| params.iter().find(|p| p.name().ends_with(suffix)).cloned();
    let bn0 = find("batchnorm0_running_mean");
    let bn0_var = find("batchnorm0_running_var");
    let (Some(bn0), Some(bn0_var)) = (bn0, bn0_var) else {
        return Err("the first BatchNorm's running statistics are missing".into());
    };

    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(&params, "sgd", [("learning_rate", LEARNING_RATE)])?;
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
        "Book (older run, 10 epochs): Epoch 0. Loss: 0.0512, Train_acc 0.9923, Test_acc 0.99 ... Epoch 9. Test_acc 0.9924"
    )?;
    let bn0_running_mean = bn0.data()?.to_vec::<f32>()?;
    let bn0_running_var = bn0_var.data()?.to_vec::<f32>()?;
    writeln!(
        out,
        "First BatchNorm's running mean: {:.3?}\n                 running var:  {:.3?}",
        bn0_running_mean, bn0_running_var
    )?;
    let plot = opts.out_file("ch04_batch_norm_gluon_loss.png")?;
    history.plot_loss(&plot, "Batch norm with gluon: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
        bn0_running_mean,
        bn0_running_var,
    })
}

fn main() {
    common::main_with(run);
}
