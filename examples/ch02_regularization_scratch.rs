//! Chapter 2, "Overfitting and regularization (from scratch)": softmax regression written by
//! hand, trained on only the first 1,000 MNIST training images for 1,000 epochs, first
//! without and then with an L2 penalty on the parameters. Without it the model fits the
//! training set perfectly and its test loss climbs; the penalty trades a little training
//! accuracy for a better test accuracy. Prints the book's `Completed epoch ...` lines and
//! plots the training and test loss and accuracy of both runs.
//!
//! `cargo run --release --example ch02_regularization_scratch`

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
use kiln::prelude::*;
use std::io::Write;
use std::time::Instant;

/// The book's sample count for each split (the first images of MNIST's training and test sets).
pub const SAMPLES: usize = 1000;
/// The book's epochs.
pub const EPOCHS: usize = 1000;
/// Epochs under `--quick`.
pub const QUICK_EPOCHS: usize = 30;
/// The book's learning rate (on the loss summed over the batch).
pub const LEARNING_RATE: f64 = 0.001;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// The book's L2 strength for the second run.
pub const L2_STRENGTH: f64 = 0.1;

/// One run's outcome.
#[derive(Debug)]
pub struct Run {
    /// The L2 strength used.
    pub l2_strength: f64,
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
    /// The run without and the run with the L2 penalty.
    pub runs: Vec<Run>,
}

/// The book's `l2_penalty`: the sum of the squares of every parameter.
pub fn l2_penalty(params: &[&NDArray]) -> Result<NDArray> {
    let mut penalty = nd::zeros([1])?;
    for p in params {
        penalty = (&penalty + &nd::sum(&p.square()?)?)?;
    }
    Ok(penalty)
}

/// The book's cross-entropy `-sum(y · log softmax(z))` per sample, for one-hot `y`. The
/// notebook takes the log of `softmax`; `log_softmax` gives the same values without the
/// `log(0)` a large score gap would produce.
pub fn cross_entropy(logits: &NDArray, y_one_hot: &NDArray) -> Result<NDArray> {
    nd::sum_axes(&(y_one_hot * &logits.log_softmax_axis(1)?)?, &[1], false)?.neg()
}

/// The epochs after which the `Completed epoch` line is printed: every tenth of the run
/// (every 100 epochs for the book's 1,000) and the last.
fn reports(epoch: usize, epochs: usize) -> bool {
    let every = (epochs / 10).max(1);
    (epoch + 1) % every == 0 || epoch + 1 == epochs
}

/// Trains a fresh model with `l2_strength` and prints its progress.
pub fn train_one(
    out: &mut dyn Write,
    train: &ArrayDataset,
    test: &ArrayDataset,
    epochs: usize,
    l2_strength: f64,
) -> Fallible<Run> {
    let w = nd::random::normal(0.0, 1.0, [784, 10])?;
    let b = nd::random::normal(0.0, 1.0, [10])?;
    let params = [&w, &b];
    for p in params {
        p.attach_grad();
    }
    let logits = |x: &NDArray| -> Result<NDArray> { &nd::dot(x, &w)? + &b };
    let loader = DataLoader::new(train.clone(), BATCH_SIZE).shuffle(true);
    let mut curves = Curves::default();
    let mut bar = Progress::new(epochs * loader.len(), format!("l2 {l2_strength}"));
    let start = Instant::now();
    for epoch in 0..epochs {
        for batch in loader.iter() {
            let (x, label) = batch?;
            let n = x.shape().dims()[0];
            let y = label.one_hot(10)?;
            let loss = autograd::record(|| -> Result<NDArray> {
                let ce = nd::sum(&cross_entropy(&logits(&x)?, &y)?)?;
                &ce + &(l2_penalty(&params)? * l2_strength)?
            })?;
            loss.backward()?;
            autograd::pause(|| -> Result<()> {
                for p in params {
                    p.assign(&(p - &(&p.grad()? * LEARNING_RATE)?)?)?;
                }
                Ok(())
            })?;
            bar.step(nd::sum(&loss)?.astype(DType::F64)?.as_scalar::<f64>()?, n);
        }
        let point = measure(train, test, &logits)?;
        curves.push(point);
        if reports(epoch, epochs) {
            print_completed(out, epoch + 1, &point)?;
        }
    }
    bar.finish();
    let squared_norm = l2_penalty(&params)?.to_vec::<f32>()?[0] as f64;
    writeln!(
        out,
        "{epochs} epochs in {:.1} s; sum of squared parameters {squared_norm:.1}",
        start.elapsed().as_secs_f64()
    )?;
    Ok(Run {
        l2_strength,
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
        "MNIST: the first {} training and {} test images; softmax regression, batch {BATCH_SIZE}, SGD lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;
    let mut runs = Vec::new();
    for l2_strength in [0.0, L2_STRENGTH] {
        writeln!(out, "--- l2_strength = {l2_strength} ---")?;
        runs.push(train_one(out, &train, &test, epochs, l2_strength)?);
    }
    let loss_png = opts.out_file("ch02_regularization_scratch_loss.png")?;
    let acc_png = opts.out_file("ch02_regularization_scratch_accuracy.png")?;
    plot_runs(
        &loss_png,
        &acc_png,
        "Softmax regression on 1,000 MNIST images",
        &[("no penalty", &runs[0].curves), ("L2 0.1", &runs[1].curves)],
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
