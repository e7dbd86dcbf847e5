//! The classifier training loop the book writes in every chapter-2-to-4 notebook: batches
//! from a shuffled `DataLoader`, forward and loss under `autograd::record`, `backward`, an
//! update step, training accuracy on the fly and test accuracy after each epoch — with a
//! progress bar, the book's per-epoch line, and a loss-curve plot.
#![allow(dead_code)] // each example binary uses a different part of the shared module

use super::plot::plot_batch_losses;
use super::progress::Progress;
use super::Fallible;
use kiln::gluon::data::{ArrayDataset, DataLoader, Dataset};
use kiln::gluon::metric::{Accuracy, EvalMetric};
use kiln::prelude::*;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What one epoch of training measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The mean per-sample training loss over the epoch.
    pub loss: f64,
    /// Accuracy on the training batches as they were trained on.
    pub train_acc: f64,
    /// Accuracy on the test split after the epoch.
    pub test_acc: f64,
    /// Training samples per second (training only, not scoring).
    pub samples_per_sec: f64,
}

/// What a whole run measured.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// One entry per epoch.
    pub epochs: Vec<EpochStats>,
    /// The mean per-sample loss of every training batch, in order.
    pub batch_losses: Vec<f64>,
    /// Wall time of the whole run, scoring included, in seconds.
    pub seconds: f64,
}

impl History {
    /// The mean of the first and of the last tenth of the batch losses (at least one batch
    /// each), to show that training lowered the loss.
    pub fn first_last_tenth(&self) -> (f64, f64) {
        first_last_tenth(&self.batch_losses)
    }

    /// The last epoch's test accuracy (NaN before any epoch).
    pub fn final_test_acc(&self) -> f64 {
        self.epochs.last().map_or(f64::NAN, |s| s.test_acc)
    }

    /// Plots the batch losses (smoothed, see [`plot_batch_losses`]) against epochs into a PNG.
    pub fn plot_loss(&self, path: &Path, title: &str) -> Fallible<()> {
        if self.batch_losses.is_empty() {
            return Ok(());
        }
        let per_epoch = self.batch_losses.len().div_ceil(self.epochs.len().max(1));
        plot_batch_losses(path, title, &self.batch_losses, per_epoch)
    }
}

/// The mean of the first and of the last tenth of `losses` (at least one value each).
pub fn first_last_tenth(losses: &[f64]) -> (f64, f64) {
    let k = (losses.len() / 10).max(1).min(losses.len());
    if k == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (mean(&losses[..k]), mean(&losses[losses.len() - k..]))
}

/// The fraction of `data`'s samples whose arg-max output under `net` is the label (the
/// book's `evaluate_accuracy`), scored in batches of 1,000 in predict mode.
pub fn evaluate_accuracy(
    data: &ArrayDataset,
    net: &dyn Fn(&NDArray) -> Result<NDArray>,
) -> Fallible<f64> {
    let mut acc = Accuracy::new();
    for batch in DataLoader::new(data.clone(), 1000).iter() {
        let (x, y) = batch?;
        let out = autograd::predict_mode(|| net(&x))?;
        acc.update(&[&y], &[&out])?;
    }
    Ok(acc.get().1)
}

/// How to train a classifier.
pub struct Fit<'a> {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// The model, run under `autograd::record` in training mode on a batch of inputs.
    pub forward: &'a dyn Fn(&NDArray) -> Result<NDArray>,
    /// The loss of a batch from the model's output and the labels; its elements sum to the
    /// batch's total loss (per-sample losses or one summed value).
    pub loss: &'a dyn Fn(&NDArray, &NDArray) -> Result<NDArray>,
    /// The model for scoring (called in predict mode; usually `forward` itself).
    pub predict: &'a dyn Fn(&NDArray) -> Result<NDArray>,
}

/// Trains with `fit` on `train`, calling `step(batch_size)` after each backward pass (a
/// `Trainer::step` or a hand-written update), printing the book's line per epoch to `out`
/// and showing a progress bar on the terminal.
pub fn fit_classifier(
    out: &mut dyn Write,
    train: &ArrayDataset,
    test: &ArrayDataset,
    fit: &Fit<'_>,
    step: &mut dyn FnMut(usize) -> Result<()>,
) -> Fallible<History> {
    let loader = DataLoader::new(train.clone(), fit.batch_size).shuffle(true);
    let batches = train.len().div_ceil(fit.batch_size.max(1));
    let mut history = History::default();
    let start = Instant::now();
    for epoch in 0..fit.epochs {
        let mut bar = Progress::new(batches, format!("epoch {}/{}", epoch + 1, fit.epochs));
        let mut train_acc = Accuracy::new();
        let mut train_secs = 0.0;
        for batch in loader.iter() {
            let (x, y) = batch?;
            let batch_start = Instant::now();
            let n = x.shape().dims()[0];
            let (loss, output) = autograd::record(|| -> Result<(NDArray, NDArray)> {
                let output = (fit.forward)(&x)?;
                Ok(((fit.loss)(&output, &y)?, output))
            })?;
            loss.backward()?;
            step(n)?;
            let total = nd::sum(&loss)?.astype(DType::F64)?.as_scalar::<f64>()?;
            train_secs += batch_start.elapsed().as_secs_f64();
            history.batch_losses.push(total / n as f64);
            bar.step(total, n);
            train_acc.update(&[&y], &[&output])?;
        }
        let stats = EpochStats {
            epoch,
            loss: bar.mean_loss(),
            train_acc: train_acc.get().1,
            test_acc: evaluate_accuracy(test, fit.predict)?,
            samples_per_sec: bar.samples() as f64 / train_secs.max(1e-9),
        };
        bar.finish();
        print_epoch(out, &stats)?;
        history.epochs.push(stats);
    }
    history.seconds = start.elapsed().as_secs_f64();
    print_summary(out, &history)?;
    Ok(history)
}

/// Prints the book's progress line for `s`.
pub fn print_epoch(out: &mut dyn Write, s: &EpochStats) -> Fallible<()> {
    writeln!(
        out,
        "Epoch {}. Loss: {:.6}, Train_acc {:.4}, Test_acc {:.4} ({:.0} samples/s)",
        s.epoch, s.loss, s.train_acc, s.test_acc, s.samples_per_sec
    )?;
    Ok(())
}

/// Prints the closing line: epochs, final test accuracy and wall time.
pub fn print_summary(out: &mut dyn Write, history: &History) -> Fallible<()> {
    if let Some(last) = history.epochs.last() {
        let rate = history
            .epochs
            .iter()
            .map(|s| s.samples_per_sec)
            .sum::<f64>()
            / history.epochs.len() as f64;
        writeln!(
            out,
            "Trained {} epoch(s) in {:.1} s: test accuracy {:.4}, {:.0} samples/s on average",
            history.epochs.len(),
            history.seconds,
            last.test_acc,
            rate
        )?;
    }
    Ok(())
}
