//! Chapter 4, "Batch normalization from scratch": a hand-written `batch_norm` — per-channel
//! mean and variance over axes (0, 2, 3) of a convolution's output (axis 0 of a dense
//! layer's), moving averages kept per layer with momentum 0.9, and a switch between the
//! batch's statistics (training) and the moving ones (testing) — inside the scratch LeNet
//! of `ch04_cnn_scratch`, trained on MNIST with autograd and hand-written SGD.
//!
//! `cargo run --release --example ch04_batch_norm_scratch`

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
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;

/// The notebook's epochs (an older run of it trained 10).
pub const EPOCHS: usize = 1;
/// The book's learning rate (on the loss summed over the batch).
pub const LEARNING_RATE: f64 = 0.001;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// The book's weight scale: weights, biases and shifts start as `N(0, 0.01²)`, scales as
/// `N(1, 0.01²)`.
pub const WEIGHT_SCALE: f64 = 0.01;
/// The moving averages' momentum.
pub const MOMENTUM: f64 = 0.9;
/// Added to the variance before the square root.
pub const EPS: f64 = 1e-5;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 2_000;
/// Width of the hidden fully connected layer.
pub const HIDDEN: usize = 128;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `pure_batch_norm` of the notebook's `[[1, 7], [5, 4], [6, 10]]`, row by row.
    pub pure_2d: Vec<f32>,
    /// Per-channel mean and variance of a normalized random `[4, 3, 5, 5]` batch.
    pub pure_4d_stats: (Vec<f32>, Vec<f32>),
    /// Test accuracy of the randomly initialized network (moving statistics from one batch).
    pub initial_test_acc: f64,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The mean per-sample loss of the first and of the last tenth of the training batches.
    pub first_last_loss: (f64, f64),
    /// The first layer's moving mean after training (one value per channel).
    pub bn1_moving_mean: Vec<f32>,
}

/// The mean and (biased) variance of `x` per feature: over axis 0 of `[N, C]`, over axes
/// (0, 2, 3) of `[N, C, H, W]`, shaped to broadcast against `x`.
fn batch_stats(x: &NDArray) -> Result<(NDArray, NDArray)> {
    let axes: &[isize] = match x.ndim() {
        2 => &[0],
        4 => &[0, 2, 3],
        r => {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "expects a [N, C] or [N, C, H, W] input, got rank {r} {}",
                    x.shape()
                ),
            ))
        }
    };
    let mean = nd::mean_axes(x, axes, true)?;
    let var = nd::mean_axes(&nd::square(&(x - &mean)?)?, axes, true)?;
    Ok((mean, var))
}

/// `gamma`/`beta` of `[C]` reshaped to broadcast along axis 1 of `x`.
fn per_channel(v: &NDArray, x: &NDArray) -> Result<NDArray> {
    if x.ndim() == 4 {
        v.reshape(&[1, -1, 1, 1])
    } else {
        v.reshape(&[1, -1])
    }
}

/// The notebook's `pure_batch_norm`: `gamma · (x − mean) / sqrt(var + eps) + beta` with the
/// batch's own statistics.
pub fn pure_batch_norm(x: &NDArray, gamma: &NDArray, beta: &NDArray, eps: f64) -> Result<NDArray> {
    let (mean, var) = batch_stats(x)?;
    let x_hat = (&(x - &mean)? / &nd::sqrt(&(&var + eps)?)?)?;
    &(&per_channel(gamma, x)? * &x_hat)? + &per_channel(beta, x)?
}

/// The moving means and variances of every batch-norm layer, by scope name (the notebook's
/// global `_BN_MOVING_MEANS` / `_BN_MOVING_VARS`).
#[derive(Default)]
pub struct MovingStats {
    stats: RefCell<HashMap<&'static str, (NDArray, NDArray)>>,
}

impl MovingStats {
    /// The moving mean of layer `scope` flattened to one value per channel.
    pub fn mean_of(&self, scope: &str) -> Result<Vec<f32>> {
        match self.stats.borrow().get(scope) {
            Some((mean, _)) => mean.reshape(&[-1])?.to_vec::<f32>(),
            None => Err(Error::invalid(
                "batch_norm",
                format!("no moving statistics for `{scope}` yet"),
            )),
        }
    }
}

/// The notebook's `batch_norm`: in training, normalizes with the batch's statistics and
/// folds them into `moving`'s averages for `scope` (the first batch sets them); in testing,
/// normalizes with the moving averages.
pub fn batch_norm(
    x: &NDArray,
    gamma: &NDArray,
    beta: &NDArray,
    moving: &MovingStats,
    scope: &'static str,
    is_training: bool,
) -> Result<NDArray> {
    let (mean, var) = if is_training {
        let (mean, var) = batch_stats(x)?;
        let (m, v) = (mean.detach(), var.detach());
        autograd::pause(|| -> Result<()> {
            let mut stats = moving.stats.borrow_mut();
            let updated = match stats.get(scope) {
                Some((old_m, old_v)) => (
                    (&(old_m * MOMENTUM)? + &(&m * (1.0 - MOMENTUM))?)?,
                    (&(old_v * MOMENTUM)? + &(&v * (1.0 - MOMENTUM))?)?,
                ),
                None => (m.copy()?, v.copy()?),
            };
            stats.insert(scope, updated);
            Ok(())
        })?;
        (mean, var)
    } else {
        let stats = moving.stats.borrow();
        let Some((m, v)) = stats.get(scope) else {
            return Err(Error::invalid(
                "batch_norm",
                format!("`{scope}` has no moving statistics: run it in training mode first"),
            ));
        };
        (m.clone(), v.clone())
    };
    let x_hat = (&(x - &mean)? / &nd::sqrt(&(&var + EPS)?)?)?;
    &(&per_channel(gamma, x)? * &x_hat)? + &per_channel(beta, x)?
}

/// The network's parameters, named as in the notebook.
pub struct Params {
    /// First convolution `[20, 1, 3, 3]`, its bias, and its batch norm's scale and shift.
    pub w1: NDArray,
    /// First convolution's bias `[20]`.
    pub b1: NDArray,
    /// First batch norm's scale `[20]`.
    pub gamma1: NDArray,
    /// First batch norm's shift `[20]`.
    pub beta1: NDArray,
    /// Second convolution `[50, 20, 5, 5]`.
    pub w2: NDArray,
    /// Second convolution's bias `[50]`.
    pub b2: NDArray,
    /// Second batch norm's scale `[50]`.
    pub gamma2: NDArray,
    /// Second batch norm's shift `[50]`.
    pub beta2: NDArray,
    /// Hidden layer `[800, 128]`.
    pub w3: NDArray,
    /// Hidden layer's bias `[128]`.
    pub b3: NDArray,
    /// Third batch norm's scale `[128]`.
    pub gamma3: NDArray,
    /// Third batch norm's shift `[128]`.
    pub beta3: NDArray,
    /// Output layer `[128, 10]`.
    pub w4: NDArray,
    /// Output layer's bias `[10]`.
    pub b4: NDArray,
}

impl Params {
    /// The notebook's initialization, with gradient buffers attached.
    pub fn new(scale: f64) -> Result<Params> {
        let normal = |shape: &[usize]| nd::random::normal(0.0, scale, shape);
        let gamma = |c: usize| nd::random::normal(1.0, scale, [c]);
        let p = Params {
            w1: normal(&[20, 1, 3, 3])?,
            b1: normal(&[20])?,
            gamma1: gamma(20)?,
            beta1: normal(&[20])?,
            w2: normal(&[50, 20, 5, 5])?,
            b2: normal(&[50])?,
            gamma2: gamma(50)?,
            beta2: normal(&[50])?,
            w3: normal(&[800, HIDDEN])?,
            b3: normal(&[HIDDEN])?,
            gamma3: gamma(HIDDEN)?,
            beta3: normal(&[HIDDEN])?,
            w4: normal(&[HIDDEN, 10])?,
            b4: normal(&[10])?,
        };
        for a in p.all() {
            a.attach_grad();
        }
        Ok(p)
    }

    /// All parameters.
    pub fn all(&self) -> [&NDArray; 14] {
        [
            &self.w1,
            &self.b1,
            &self.gamma1,
            &self.beta1,
            &self.w2,
            &self.b2,
            &self.gamma2,
            &self.beta2,
            &self.w3,
            &self.b3,
            &self.gamma3,
            &self.beta3,
            &self.w4,
            &self.b4,
        ]
    }
}

/// The book's `relu`: `nd.maximum(X, nd.zeros_like(X))`.
pub fn relu(x: &NDArray) -> Result<NDArray> {
    nd::maximum(x, &nd::zeros_like(x)?)
}

/// The book's `softmax_cross_entropy` of one-hot labels, per sample.
pub fn softmax_cross_entropy(yhat_linear: &NDArray, y: &NDArray) -> Result<NDArray> {
    nd::sum_axes(&(y * &nd::log_softmax(yhat_linear)?)?, &[1], false)?.neg()
}

/// The notebook's `net`: conv → batch norm → relu → average pool, twice; flatten; dense →
/// batch norm → relu; dense.
pub fn net(p: &Params, moving: &MovingStats, x: &NDArray, is_training: bool) -> Result<NDArray> {
    let pool = nd::PoolOpts::avg(2).stride(2);
    let conv = nd::ConvOpts::new();
    let h1_conv = nd::convolution(x, &p.w1, Some(&p.b1), &conv)?;
    let h1_normed = batch_norm(&h1_conv, &p.gamma1, &p.beta1, moving, "bn1", is_training)?;
    let h1 = nd::pooling(&relu(&h1_normed)?, &pool)?;
    let h2_conv = nd::convolution(&h1, &p.w2, Some(&p.b2), &conv)?;
    let h2_normed = batch_norm(&h2_conv, &p.gamma2, &p.beta2, moving, "bn2", is_training)?;
    let h2 = nd::flatten(&nd::pooling(&relu(&h2_normed)?, &pool)?)?;
    let h3_linear = (&nd::dot(&h2, &p.w3)? + &p.b3)?;
    let h3_normed = batch_norm(&h3_linear, &p.gamma3, &p.beta3, moving, "bn3", is_training)?;
    let h3 = relu(&h3_normed)?;
    &nd::dot(&h3, &p.w4)? + &p.b4
}

/// Trains the network as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);

    // The notebook's check of pure_batch_norm on a small matrix.
    let a = nd::array(&[[1.0f32, 7.0], [5.0, 4.0], [6.0, 10.0]])?;
    let normed = pure_batch_norm(&a, &nd::ones([2])?, &nd::zeros([2])?, EPS)?;
    writeln!(out, "pure_batch_norm of\n{a}\n=\n{normed}")?;
    writeln!(
        out,
        "(book: [[-1.3887 0] [0.4629 -1.2247] [0.9258 1.2247]])"
    )?;
    let pure_2d = normed.to_vec::<f32>()?;
    let b = nd::random::normal(3.0, 2.0, [4, 3, 5, 5])?;
    let normed_b = pure_batch_norm(&b, &nd::ones([3])?, &nd::zeros([3])?, EPS)?;
    let (m, v) = batch_stats(&normed_b)?;
    let pure_4d_stats = (
        m.reshape(&[-1])?.to_vec::<f32>()?,
        v.reshape(&[-1])?.to_vec::<f32>()?,
    );
    writeln!(
        out,
        "A random [4, 3, 5, 5] batch normalized per channel: means {:.4?}, variances {:.4?}",
        pure_4d_stats.0, pure_4d_stats.1
    )?;

    let (train, test) = mnist_train::load_as(opts, Source::Mnist, Layout::Image, QUICK_TRAIN)?;
    let epochs = opts.epochs_or(EPOCHS, 1);
    writeln!(
        out,
        "MNIST images {}: {} training, {} test samples; batch {BATCH_SIZE}, lr {LEARNING_RATE}, momentum {MOMENTUM}, {epochs} epoch(s)",
        train.data().shape(),
        train.len(),
        test.len()
    )?;
    let p = Params::new(WEIGHT_SCALE)?;
    let moving = MovingStats::default();
    // One training-mode pass so that the moving statistics exist before the first scoring.
    net(&p, &moving, &train.data().slice_axis0(..BATCH_SIZE)?, true)?;
    let predict = |x: &NDArray| net(&p, &moving, x, false);
    let initial_test_acc = evaluate_accuracy(&test, &predict)?;
    writeln!(out, "Test accuracy before training: {initial_test_acc:.4}")?;

    let forward = |x: &NDArray| net(&p, &moving, x, true);
    let loss =
        |output: &NDArray, label: &NDArray| softmax_cross_entropy(output, &label.one_hot(10)?);
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        forward: &forward,
        loss: &loss,
        predict: &predict,
    };
    let history = fit_classifier(out, &train, &test, &fit, &mut |_| {
        autograd::pause(|| -> Result<()> {
            for a in p.all() {
                a.assign(&(a - &(&a.grad()? * LEARNING_RATE)?)?)?;
            }
            Ok(())
        })
    })?;
    writeln!(
        out,
        "Book (older run, 10 epochs): Epoch 0. Loss: 0.0604, Train_acc 0.9880, Test_acc 0.9883 ... Epoch 8. Test_acc 0.9925"
    )?;
    let bn1_moving_mean = moving.mean_of("bn1")?;
    writeln!(
        out,
        "bn1 moving mean after training: {:.4?}",
        &bn1_moving_mean
    )?;
    let plot = opts.out_file("ch04_batch_norm_scratch_loss.png")?;
    history.plot_loss(&plot, "Batch norm from scratch: training loss")?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        pure_2d,
        pure_4d_stats,
        initial_test_acc,
        first_last_loss: history.first_last_tenth(),
        history: history.epochs,
        bn1_moving_mean,
    })
}

fn main() {
    common::main_with(run);
}
