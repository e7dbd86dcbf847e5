//! Chapter 2, "Linear regression with gluon": the same synthetic problem fitted by a
//! `Dense(1)` layer with `L2Loss` and a `Trainer` running SGD.
//!
//! `cargo run --release --example ch02_linear_regression_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::plot::plot_batch_losses;
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader};
use kiln::gluon::init::Normal;
use kiln::gluon::loss::L2Loss;
use kiln::gluon::nn::Dense;
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// The book's sample count.
pub const SAMPLES: usize = 10_000;
/// Samples `--quick` generates.
pub const QUICK_SAMPLES: usize = 2_000;
/// The book's epochs.
pub const EPOCHS: usize = 10;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.0001;
/// The learning rate `--quick` uses, so that its single short epoch converges.
pub const QUICK_LEARNING_RATE: f64 = 0.05;
/// The book's batch size.
pub const BATCH_SIZE: usize = 4;
/// The true weights.
pub const TRUE_W: [f32; 2] = [2.0, -3.4];
/// The true bias.
pub const TRUE_B: f32 = 4.2;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The weight's shape before the first forward (deferred: `[1, 0]`) and after.
    pub weight_shapes: (Vec<usize>, Vec<usize>),
    /// The mean per-sample loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// The mean per-sample loss over the first tenth of the batches of the first epoch.
    pub first_batches_loss: f64,
    /// The learned weights.
    pub w: Vec<f32>,
    /// The learned bias.
    pub b: f32,
}

/// `X ~ N(0, 1)` of shape `[n, 2]` and `y = X · [2, −3.4] + 4.2 + noise · N(0, 1)`.
pub fn synthetic_data(n: usize, noise: f64) -> Result<(NDArray, NDArray)> {
    let x = nd::random::normal(0.0, 1.0, [n, 2])?;
    let true_w = nd::array(&[[TRUE_W[0]], [TRUE_W[1]]])?;
    let y = (nd::dot(&x, &true_w)?.reshape(&[-1])? + TRUE_B as f64)?;
    let y = (&y + &(nd::random::normal(0.0, 1.0, [n])? * noise)?)?;
    Ok((x, y))
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
    let (x, y) = synthetic_data(n, 0.01)?;
    let loader = DataLoader::new(ArrayDataset::new(x, y)?, BATCH_SIZE).shuffle(true);
    writeln!(
        out,
        "{n} samples, batch {BATCH_SIZE} ({} batches), lr {lr}, {epochs} epoch(s)",
        loader.len()
    )?;

    let net = Dense::new(1);
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
    let before = net.weight().shape().dims().to_vec();
    writeln!(
        out,
        "Parameter {} shape {before:?} (the input size is learnt on the first forward)",
        net.weight().name()
    )?;
    let loss_fn = L2Loss::new();
    let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", lr)])?;

    let mut epoch_losses = Vec::new();
    let mut first_batches = Vec::new();
    let mut batch_losses = Vec::new();
    let start = Instant::now();
    for epoch in 0..epochs {
        let (mut cumulative_loss, mut seen, mut batches) = (0.0, 0usize, 0usize);
        let mut bar = Progress::new(loader.len(), format!("epoch {}/{epochs}", epoch + 1));
        for batch in loader.iter() {
            let (data, label) = batch?;
            let m = data.shape().dims()[0];
            let loss = autograd::record(|| loss_fn.forward(&net.forward(&data)?, &label))?;
            loss.backward()?;
            trainer.step(m)?;
            let l = nd::sum(&loss)?.as_scalar::<f32>()? as f64;
            cumulative_loss += l;
            seen += m;
            batches += 1;
            batch_losses.push(l / m as f64);
            bar.step(l, m);
            if epoch == 0 && batches <= loader.len().div_ceil(10) {
                first_batches.push(l / m as f64);
            }
        }
        bar.finish();
        let mean_loss = cumulative_loss / seen as f64;
        writeln!(out, "Epoch {epoch}, loss: {mean_loss:.6}")?;
        epoch_losses.push(mean_loss);
    }
    let secs = start.elapsed().as_secs_f64();
    let plot = opts.out_file("ch02_linear_regression_gluon_loss.png")?;
    plot_batch_losses(
        &plot,
        "Linear regression with gluon: training loss",
        &batch_losses,
        loader.len(),
    )?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    let after = net.weight().shape().dims().to_vec();
    let w_learned = net.weight().data()?.to_vec::<f32>()?;
    let b_learned = match net.bias() {
        Some(b) => b.data()?.to_vec::<f32>()?[0],
        None => return Err("Dense(1) was built without a bias".into()),
    };
    writeln!(
        out,
        "Trained {epochs} epoch(s) in {secs:.1} s ({:.0} samples/s)",
        (n * epochs) as f64 / secs
    )?;
    writeln!(
        out,
        "{} {w_learned:?} (shape {after:?}), bias {b_learned} (true w = {TRUE_W:?}, b = {TRUE_B})",
        net.weight().name()
    )?;
    Ok(Summary {
        weight_shapes: (before, after),
        epoch_losses,
        first_batches_loss: first_batches.iter().sum::<f64>() / first_batches.len().max(1) as f64,
        w: w_learned,
        b: b_learned,
    })
}

fn main() {
    common::main_with(run);
}
