//! Chapter 2, "Binary classification with logistic regression" (logistic-regression-gluon):
//! the Adult income data in LIBSVM "a1a" form (123 binary features, labels ±1 mapped to
//! {0, 1}) read into dense arrays, a `Dense(1)` layer initialized from `Normal(1)`, the
//! notebook's own log loss and SGD through a `Trainer`; prints the shapes, positive rates,
//! the summed loss per epoch and the test accuracy, and plots the loss.
//!
//! `cargo run --release --example ch02_logistic_regression_gluon`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::libsvm::{self, LibSvm};
use common::plot::{line_plot, LinePlot, Series};
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader, Dataset};
use kiln::gluon::init::Normal;
use kiln::gluon::nn::Dense;
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// The number of features of the a1a files.
pub const NUM_FEATURES: usize = 123;
/// The book's epochs.
pub const EPOCHS: usize = 30;
/// Epochs under `--quick`.
pub const QUICK_EPOCHS: usize = 3;
/// Training rows `--quick` keeps (the file has 30,956).
pub const QUICK_TRAIN: usize = 12_000;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.01;
/// The learning rate `--quick` uses, so that its few epochs get near the book's accuracy.
pub const QUICK_LEARNING_RATE: f64 = 0.1;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;

/// What training measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The training features' shape.
    pub train_shape: (usize, usize),
    /// The test features' shape.
    pub test_shape: (usize, usize),
    /// The fraction of positive (`> 50K`) labels in the training and the test split.
    pub positive_rates: (f64, f64),
    /// The loss summed over the training set, per epoch (what the book prints).
    pub epoch_losses: Vec<f64>,
    /// Correctly classified test samples.
    pub correct: usize,
    /// Test accuracy.
    pub accuracy: f64,
}

/// Converts a LIBSVM split into `[N, features]` inputs and `[N, 1]` labels in {0, 1} (the
/// book's `(label + 1) / 2`), keeping at most `limit` rows.
pub fn to_dataset(split: &LibSvm, limit: Option<usize>) -> Fallible<ArrayDataset> {
    let d = split.num_features;
    if split.labels.len() != split.rows || split.features.len() != split.rows * d {
        return Err(format!(
            "inconsistent LIBSVM split: {} rows, {} labels, {} feature values for {d} features",
            split.rows,
            split.labels.len(),
            split.features.len()
        )
        .into());
    }
    let n = limit.map_or(split.rows, |l| l.min(split.rows));
    if let Some(bad) = split.labels[..n].iter().find(|&&l| l != 1.0 && l != -1.0) {
        return Err(format!("a1a labels must be +1 or -1, found {bad}").into());
    }
    let x = NDArray::from_vec(split.features[..n * d].to_vec(), [n, d])?;
    let labels: Vec<f32> = split.labels[..n].iter().map(|l| (l + 1.0) / 2.0).collect();
    let y = NDArray::from_vec(labels, [n, 1])?;
    Ok(ArrayDataset::new(x, y)?)
}

/// The notebook's `log_loss`, `-sum(y·log σ(z) + (1−y)·log(1−σ(z)))` over the batch, for
/// scores `z`. It is evaluated through the identities `log σ(z) = −softplus(−z)` and
/// `log(1−σ(z)) = −softplus(z)`: the same value, but finite where σ rounds to 0 or 1 in
/// f32 (which the notebook papered over with `nansum`).
pub fn log_loss(output: &NDArray, y: &NDArray) -> Result<NDArray> {
    let pos = (y * &output.neg()?.softrelu()?)?;
    let neg = (&y.rsub_scalar(1.0)? * &output.softrelu()?)?;
    nd::sum(&(&pos + &neg)?)
}

/// The split's positive rate: the mean of its {0, 1} labels (the book's `nd.sum(Y) / len(Y)`).
fn positive_rate(data: &ArrayDataset) -> Fallible<f64> {
    Ok(data.label().mean()?.as_scalar::<f32>()? as f64)
}

/// Trains the model as the notebook does and prints its progress.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let dir = opts.data_subdir("adult");
    let train_raw = libsvm::read_in(&dir, "a1a.train", NUM_FEATURES)?;
    let test_raw = libsvm::read_in(&dir, "a1a.test", NUM_FEATURES)?;
    let train = to_dataset(&train_raw, opts.quick.then_some(QUICK_TRAIN))?;
    let test = to_dataset(&test_raw, None)?;
    let epochs = opts.epochs_or(EPOCHS, QUICK_EPOCHS);
    let lr = if opts.quick {
        QUICK_LEARNING_RATE
    } else {
        LEARNING_RATE
    };
    let train_shape = (train.len(), NUM_FEATURES);
    let test_shape = (test.len(), NUM_FEATURES);
    writeln!(
        out,
        "Xtrain shape {train_shape:?}, Xtest shape {test_shape:?}"
    )?;
    let positive_rates = (positive_rate(&train)?, positive_rate(&test)?);
    writeln!(
        out,
        "Positive rate: train {:.8}, test {:.8}",
        positive_rates.0, positive_rates.1
    )?;
    writeln!(
        out,
        "Dense(1), Normal(1) init, batch {BATCH_SIZE}, SGD lr {lr}, {epochs} epoch(s); \
         the log loss uses log σ(z) = −softplus(−z) so that it stays finite"
    )?;

    let net = Dense::new(1);
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
    let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", lr)])?;
    let loader = DataLoader::new(train.clone(), BATCH_SIZE).shuffle(true);
    let mut epoch_losses = Vec::with_capacity(epochs);
    let start = Instant::now();
    for epoch in 0..epochs {
        let mut bar = Progress::new(loader.len(), format!("epoch {}/{epochs}", epoch + 1));
        let mut cumulative_loss = 0.0;
        for batch in loader.iter() {
            let (data, label) = batch?;
            let n = data.shape().dims()[0];
            let loss = autograd::record(|| log_loss(&net.forward(&data)?, &label))?;
            loss.backward()?;
            // As the notebook: the step divides by the nominal batch size, also for the
            // shorter last batch.
            trainer.step(BATCH_SIZE)?;
            let l = loss.astype(DType::F64)?.as_scalar::<f64>()?;
            cumulative_loss += l;
            bar.step(l, n);
        }
        bar.finish();
        writeln!(out, "Epoch {epoch}, loss: {cumulative_loss:.4}")?;
        epoch_losses.push(cumulative_loss);
    }
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        out,
        "Trained {epochs} epoch(s) in {secs:.1} s ({:.0} samples/s)",
        (train.len() * epochs) as f64 / secs.max(1e-9)
    )?;

    // The book's test: prediction = (sign(score) + 1) / 2 against the label.
    let scores = autograd::predict_mode(|| net.forward(test.data()))?;
    let prediction = (&scores.sign()? + 1.0)? / 2.0;
    let correct = nd::sum(&prediction?.eq(test.label())?)?.as_scalar::<f32>()? as usize;
    let accuracy = correct as f64 / test.len() as f64;
    writeln!(out, "Accuracy: {accuracy:.4} ({correct}/{})", test.len())?;

    let points: Vec<(f64, f64)> = epoch_losses
        .iter()
        .enumerate()
        .map(|(e, &l)| (e as f64, l))
        .collect();
    let plot = opts.out_file("ch02_logistic_regression_gluon_loss.png")?;
    line_plot(
        &plot,
        &LinePlot {
            title: "Logistic regression on Adult (a1a): training loss",
            x_label: "epoch",
            y_label: "log loss summed over the training set",
            log_y: false,
        },
        &[Series {
            name: "training loss",
            points: &points,
        }],
    )?;
    writeln!(out, "Loss curve written to {}", plot.display())?;
    Ok(Summary {
        train_shape,
        test_shape,
        positive_rates,
        epoch_losses,
        correct,
        accuracy,
    })
}

fn main() {
    common::main_with(run);
}
