//! Chapter 2, "Linear regression from scratch": fits `y = 2 x₁ − 3.4 x₂ + 4.2 + noise` on
//! 10,000 synthetic samples with a hand-written model, squared loss and SGD on batches of 4.
//!
//! `cargo run --release --example ch02_linear_regression_scratch`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::plot::plot_batch_losses;
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader};
use kiln::prelude::*;
use std::io::Write;
use std::time::Instant;

/// The book's sample count.
pub const SAMPLES: usize = 10_000;
/// Samples `--quick` generates.
pub const QUICK_SAMPLES: usize = 2_000;
/// The book's epochs.
pub const EPOCHS: usize = 10;
/// The book's learning rate.
pub const LEARNING_RATE: f64 = 0.0001;
/// The learning rate `--quick` uses, so that its single short epoch converges.
pub const QUICK_LEARNING_RATE: f64 = 0.01;
/// The book's batch size.
pub const BATCH_SIZE: usize = 4;
/// The true weights and bias.
pub const TRUE_W: [f32; 2] = [2.0, -3.4];
/// The true bias.
pub const TRUE_B: f32 = 4.2;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The book's "Mean loss" (mean of the batch losses) of each epoch.
    pub epoch_losses: Vec<f64>,
    /// The mean loss over the first tenth of the batches of the first epoch.
    pub first_batches_loss: f64,
    /// The learned weights.
    pub w: Vec<f32>,
    /// The learned bias.
    pub b: f32,
}

/// The synthetic data set: `X ~ N(0, 1)` of shape `[n, 2]` and
/// `y = X · [2, −3.4] + 4.2 + noise · N(0, 1)`, shape `[n]`.
pub fn synthetic_data(n: usize, noise: f64) -> Result<(NDArray, NDArray)> {
    let x = nd::random::normal(0.0, 1.0, [n, 2])?;
    let x0 = x.slice_axis(1, 0, Some(1))?.reshape(&[-1])?;
    let x1 = x.slice_axis(1, 1, Some(2))?.reshape(&[-1])?;
    let y = ((&(&x0 * TRUE_W[0] as f64)? + &(&x1 * TRUE_W[1] as f64)?)? + TRUE_B as f64)?;
    let y = (&y + &(nd::random::normal(0.0, 1.0, [n])? * noise)?)?;
    Ok((x, y))
}

/// The book's `square_loss`: `mean((yhat − y)²)` over the batch.
pub fn square_loss(yhat: &NDArray, y: &NDArray) -> Result<NDArray> {
    nd::mean(&nd::square(&(yhat - y)?)?)
}

/// Trains the model as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (n, lr) = if opts.quick {
        (QUICK_SAMPLES, QUICK_LEARNING_RATE)
    } else {
        (SAMPLES, LEARNING_RATE)
    };
    let epochs = opts.epochs_or(EPOCHS, 1);
    let (x, y) = synthetic_data(n, 0.1)?;
    let loader = DataLoader::new(ArrayDataset::new(x, y)?, BATCH_SIZE).shuffle(true);
    writeln!(
        out,
        "{n} samples, batch {BATCH_SIZE} ({} batches), lr {lr}, {epochs} epoch(s)",
        loader.len()
    )?;

    let w = nd::random::normal(0.0, 1.0, [2, 1])?;
    let b = nd::random::normal(0.0, 1.0, [1])?;
    let params = [&w, &b];
    for p in params {
        p.attach_grad();
    }
    let net = |x: &NDArray| -> Result<NDArray> { &nd::dot(x, &w)? + &b };

    let mut epoch_losses = Vec::new();
    let mut first_batches = Vec::new();
    let mut batch_losses = Vec::new();
    let start = Instant::now();
    for epoch in 0..epochs {
        let mut cumulative_loss = 0.0;
        let mut batches = 0usize;
        let mut bar = Progress::new(loader.len(), format!("epoch {}/{epochs}", epoch + 1));
        for batch in loader.iter() {
            let (data, label) = batch?;
            let label = label.reshape(&[-1, 1])?;
            let loss = autograd::record(|| square_loss(&net(&data)?, &label))?;
            loss.backward()?;
            autograd::pause(|| -> Result<()> {
                for p in params {
                    p.assign(&(p - &(&p.grad()? * lr)?)?)?;
                }
                Ok(())
            })?;
            let l = loss.as_scalar::<f32>()? as f64;
            cumulative_loss += l;
            batches += 1;
            batch_losses.push(l);
            let m = data.shape().dims()[0];
            bar.step(l * m as f64, m);
            if epoch == 0 && batches <= loader.len().div_ceil(10) {
                first_batches.push(l);
            }
        }
        bar.finish();
        let mean_loss = cumulative_loss / batches as f64;
        writeln!(
            out,
            "Epoch {epoch}, batch {}. Mean loss: {mean_loss:.6}",
            batches - 1
        )?;
        epoch_losses.push(mean_loss);
    }
    let secs = start.elapsed().as_secs_f64();
    let plot = opts.out_file("ch02_linear_regression_scratch_loss.png")?;
    plot_batch_losses(
        &plot,
        "Linear regression from scratch: training loss",
        &batch_losses,
        loader.len(),
    )?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    let w_learned = w.to_vec::<f32>()?;
    let b_learned = b.to_vec::<f32>()?[0];
    writeln!(
        out,
        "Trained {epochs} epoch(s) in {secs:.1} s ({:.0} samples/s)",
        (n * epochs) as f64 / secs
    )?;
    writeln!(
        out,
        "Learned w = {w_learned:?}, b = {b_learned} (true w = {TRUE_W:?}, b = {TRUE_B})"
    )?;
    Ok(Summary {
        epoch_losses,
        first_batches_loss: first_batches.iter().sum::<f64>() / first_batches.len().max(1) as f64,
        w: w_learned,
        b: b_learned,
    })
}

fn main() {
    common::main_with(run);
}
