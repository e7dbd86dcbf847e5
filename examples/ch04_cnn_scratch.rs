//! Chapter 4, "Convolutional neural networks from scratch": a LeNet-like network written with
//! the nd ops alone — `nd::convolution` (20 3×3 filters, then 50 5×5), a hand-written ReLU,
//! 2×2 average pooling with stride 2, `nd::flatten`, and fully connected layers 800→128→10 —
//! trained on MNIST images (`[N, 1, 28, 28]`) with autograd and hand-written SGD.
//!
//! Like the notebook it first shows what a convolution and a max pooling do to a batch's
//! shape, then prints every intermediate shape of the network.
//!
//! `cargo run --release --example ch04_cnn_scratch`

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
use mnist_train::{Layout, Source};
use std::io::Write;

/// The book's epochs.
pub const EPOCHS: usize = 1;
/// The book's learning rate (on the loss summed over the batch).
pub const LEARNING_RATE: f64 = 0.01;
/// The weight scale `--quick` uses: from the book's 0.01-scale start the loss sits on its
/// plateau at ln 10 for longer than a quick run's 63 batches, at the book's rate or three
/// times it.
pub const QUICK_WEIGHT_SCALE: f64 = 0.1;
/// The learning rate `--quick` uses with [`QUICK_WEIGHT_SCALE`]: the book's 0.01 makes
/// training from that larger start collapse to one class.
pub const QUICK_LEARNING_RATE: f64 = 0.005;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// The book's weight scale: every parameter starts as `N(0, 0.01²)`.
pub const WEIGHT_SCALE: f64 = 0.01;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 4_000;
/// Width of the hidden fully connected layer.
pub const HIDDEN: usize = 128;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Test accuracy of the randomly initialized network.
    pub initial_test_acc: f64,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
    /// The shapes of the notebook's demo convolution and max pooling of one batch.
    pub demo_shapes: (Vec<usize>, Vec<usize>),
    /// Every intermediate of the network for one batch, named as the notebook names them.
    pub net_shapes: Vec<(&'static str, Vec<usize>)>,
}

/// The network's parameters, named as in the notebook.
pub struct Params {
    /// First convolution's filters `[20, 1, 3, 3]`.
    pub w1: NDArray,
    /// Its bias `[20]`.
    pub b1: NDArray,
    /// Second convolution's filters `[50, 20, 5, 5]`.
    pub w2: NDArray,
    /// Its bias `[50]`.
    pub b2: NDArray,
    /// The hidden layer's weight `[800, 128]`.
    pub w3: NDArray,
    /// Its bias `[128]`.
    pub b3: NDArray,
    /// The output layer's weight `[128, 10]`.
    pub w4: NDArray,
    /// Its bias `[10]`.
    pub b4: NDArray,
}

impl Params {
    /// Every parameter drawn from `N(0, scale²)`, with gradient buffers attached.
    pub fn new(scale: f64) -> Result<Params> {
        let normal = |shape: &[usize]| nd::random::normal(0.0, scale, shape);
        let p = Params {
            w1: normal(&[20, 1, 3, 3])?,
            b1: normal(&[20])?,
            w2: normal(&[50, 20, 5, 5])?,
            b2: normal(&[50])?,
            w3: normal(&[800, HIDDEN])?,
            b3: normal(&[HIDDEN])?,
            w4: normal(&[HIDDEN, 10])?,
            b4: normal(&[10])?,
        };
        for a in p.all() {
            a.attach_grad();
        }
        Ok(p)
    }

    /// All parameters, in the notebook's order.
    pub fn all(&self) -> [&NDArray; 8] {
        [
            &self.w1, &self.b1, &self.w2, &self.b2, &self.w3, &self.b3, &self.w4, &self.b4,
        ]
    }
}

/// The book's `relu`: `nd.maximum(X, nd.zeros_like(X))`.
pub fn relu(x: &NDArray) -> Result<NDArray> {
    nd::maximum(x, &nd::zeros_like(x)?)
}

/// The book's `softmax_cross_entropy` of one-hot labels: `-sum(y * log_softmax(yhat))`
/// per sample.
pub fn softmax_cross_entropy(yhat_linear: &NDArray, y: &NDArray) -> Result<NDArray> {
    nd::sum_axes(&(y * &nd::log_softmax(yhat_linear)?)?, &[1], false)?.neg()
}

/// The notebook's `net`: conv-relu-avgpool twice, flatten, dense-relu, dense. With `trace`,
/// records every intermediate's shape under the notebook's name.
pub fn net(
    p: &Params,
    x: &NDArray,
    mut trace: Option<&mut Vec<(&'static str, Vec<usize>)>>,
) -> Result<NDArray> {
    let mut note = |name: &'static str, a: &NDArray| {
        if let Some(t) = trace.as_deref_mut() {
            t.push((name, a.shape().dims().to_vec()));
        }
    };
    let pool = nd::PoolOpts::avg(2).stride(2);
    let h1_conv = nd::convolution(x, &p.w1, Some(&p.b1), &nd::ConvOpts::new())?;
    note("h1_conv", &h1_conv);
    let h1 = nd::pooling(&relu(&h1_conv)?, &pool)?;
    note("h1", &h1);
    let h2_conv = nd::convolution(&h1, &p.w2, Some(&p.b2), &nd::ConvOpts::new())?;
    note("h2_conv", &h2_conv);
    let h2 = nd::pooling(&relu(&h2_conv)?, &pool)?;
    note("h2", &h2);
    let h2 = nd::flatten(&h2)?;
    note("Flat h2", &h2);
    let h3 = relu(&(&nd::dot(&h2, &p.w3)? + &p.b3)?)?;
    note("h3", &h3);
    let yhat_linear = (&nd::dot(&h3, &p.w4)? + &p.b4)?;
    note("yhat_linear", &yhat_linear);
    Ok(yhat_linear)
}

/// Trains the network as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load_as(opts, Source::Mnist, Layout::Image, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    let (scale, lr) = if opts.quick {
        (QUICK_WEIGHT_SCALE, QUICK_LEARNING_RATE)
    } else {
        (WEIGHT_SCALE, LEARNING_RATE)
    };
    writeln!(
        out,
        "MNIST images {}: {} training, {} test samples; weights N(0, {scale}²), batch {BATCH_SIZE}, lr {lr}, {epochs} epoch(s)",
        train.data().shape(),
        train.len(),
        test.len()
    )?;
    let p = Params::new(scale)?;

    // The notebook's look at one convolution and one pooling before building the network.
    let data = train.data().slice_axis0(..BATCH_SIZE)?;
    let conv = nd::convolution(&data, &p.w1, Some(&p.b1), &nd::ConvOpts::new())?;
    writeln!(
        out,
        "Convolution with W1 {} of a batch {}: {}",
        p.w1.shape(),
        data.shape(),
        conv.shape()
    )?;
    let pool = nd::pooling(&conv, &nd::PoolOpts::max(2).stride(2))?;
    writeln!(out, "Max pooling 2x2, stride 2: {}", pool.shape())?;
    let demo_shapes = (conv.shape().dims().to_vec(), pool.shape().dims().to_vec());

    let mut net_shapes = Vec::new();
    net(&p, &data, Some(&mut net_shapes))?;
    for (name, shape) in &net_shapes {
        writeln!(out, "{name} shape: {shape:?}")?;
    }

    let forward = |x: &NDArray| net(&p, x, None);
    let initial_test_acc = evaluate_accuracy(&test, &forward)?;
    writeln!(out, "Test accuracy before training: {initial_test_acc:.4}")?;
    let loss =
        |output: &NDArray, label: &NDArray| softmax_cross_entropy(output, &label.one_hot(10)?);
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        forward: &forward,
        loss: &loss,
        predict: &forward,
    };
    let history = fit_classifier(out, &train, &test, &fit, &mut |_| {
        autograd::pause(|| -> Result<()> {
            for a in p.all() {
                a.assign(&(a - &(&a.grad()? * lr)?)?)?;
            }
            Ok(())
        })
    })?;
    writeln!(
        out,
        "Book (1 epoch): Epoch 0. Loss: 0.1735, Train_acc 0.9652, Test_acc 0.9628"
    )?;
    let plot = opts.out_file("ch04_cnn_scratch_loss.png")?;
    history.plot_loss(&plot, "CNN from scratch: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
        demo_shapes,
        net_shapes,
    })
}

fn main() {
    common::main_with(run);
}
