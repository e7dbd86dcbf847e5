//! Learning curves for the overfitting notebooks (chapter 2's regularization examples):
//! per-epoch training and test loss and accuracy of a classifier, the book's
//! `Completed epoch ...` line, and plots comparing runs.
#![allow(dead_code)] // each example binary uses a different part of the shared module

use super::plot::{line_plot, LinePlot, Series};
use super::Fallible;
use kiln::gluon::data::{ArrayDataset, DataLoader};
use kiln::prelude::*;
use std::io::Write;
use std::path::Path;

/// Per-epoch measurements of one run (one entry per epoch in each vector).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    /// Mean per-sample cross-entropy on the training split.
    pub train_loss: Vec<f64>,
    /// Mean per-sample cross-entropy on the test split.
    pub test_loss: Vec<f64>,
    /// Accuracy on the training split.
    pub train_acc: Vec<f64>,
    /// Accuracy on the test split.
    pub test_acc: Vec<f64>,
}

/// One epoch's four numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Mean per-sample training loss.
    pub train_loss: f64,
    /// Mean per-sample test loss.
    pub test_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Test accuracy.
    pub test_acc: f64,
}

impl Curves {
    /// Appends one epoch.
    pub fn push(&mut self, p: Point) {
        self.train_loss.push(p.train_loss);
        self.test_loss.push(p.test_loss);
        self.train_acc.push(p.train_acc);
        self.test_acc.push(p.test_acc);
    }

    /// The last epoch's numbers, if any epoch ran.
    pub fn last(&self) -> Option<Point> {
        Some(Point {
            train_loss: *self.train_loss.last()?,
            test_loss: *self.test_loss.last()?,
            train_acc: *self.train_acc.last()?,
            test_acc: *self.test_acc.last()?,
        })
    }

    /// The number of epochs recorded.
    pub fn len(&self) -> usize {
        self.train_loss.len()
    }

    /// True before the first epoch.
    pub fn is_empty(&self) -> bool {
        self.train_loss.is_empty()
    }
}

/// The mean per-sample softmax cross-entropy of `logits(x)` against the class labels and
/// the accuracy of its arg-max, over all of `data` (batches of 1,000, predict mode).
pub fn evaluate(
    data: &ArrayDataset,
    logits: &dyn Fn(&NDArray) -> Result<NDArray>,
) -> Fallible<(f64, f64)> {
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0.0, 0usize);
    for batch in DataLoader::new(data.clone(), 1000).iter() {
        let (x, y) = batch?;
        let z = autograd::predict_mode(|| logits(&x))?;
        let log_prob = z.log_softmax_axis(1)?;
        let picked = log_prob.pick_axis(&y, 1, false)?;
        loss_sum -= nd::sum(&picked)?.astype(DType::F64)?.as_scalar::<f64>()?;
        let hits = z.argmax(1)?.astype(DType::F32)?.eq(&y)?;
        correct += nd::sum(&hits)?.astype(DType::F64)?.as_scalar::<f64>()?;
        seen += x.shape().dims()[0];
    }
    if seen == 0 {
        return Err("evaluate: the data set is empty".into());
    }
    Ok((loss_sum / seen as f64, correct / seen as f64))
}

/// Scores both splits (see [`evaluate`]).
pub fn measure(
    train: &ArrayDataset,
    test: &ArrayDataset,
    logits: &dyn Fn(&NDArray) -> Result<NDArray>,
) -> Fallible<Point> {
    let (train_loss, train_acc) = evaluate(train, logits)?;
    let (test_loss, test_acc) = evaluate(test, logits)?;
    Ok(Point {
        train_loss,
        test_loss,
        train_acc,
        test_acc,
    })
}

/// Prints the book's line: `Completed epoch N. Train Loss: .., Test Loss .., Train_acc ..,
/// Test_acc ..` (`epoch` counted from 1).
pub fn print_completed(out: &mut dyn Write, epoch: usize, p: &Point) -> Fallible<()> {
    writeln!(
        out,
        "Completed epoch {epoch}. Train Loss: {:.6}, Test Loss {:.6}, Train_acc {:.4}, Test_acc {:.4}",
        p.train_loss, p.test_loss, p.train_acc, p.test_acc
    )?;
    Ok(())
}

/// Plots the runs' training and test losses (log scale) into `loss_png` and their
/// accuracies into `acc_png`; each run is `(name, curves)`.
pub fn plot_runs(
    loss_png: &Path,
    acc_png: &Path,
    title: &str,
    runs: &[(&str, &Curves)],
) -> Fallible<()> {
    let xy = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &y)| ((i + 1) as f64, y))
            .collect()
    };
    let names: Vec<(String, String)> = runs
        .iter()
        .map(|(name, _)| (format!("{name}: train"), format!("{name}: test")))
        .collect();
    let losses: Vec<_> = runs
        .iter()
        .map(|(_, c)| (xy(&c.train_loss), xy(&c.test_loss)))
        .collect();
    let accs: Vec<_> = runs
        .iter()
        .map(|(_, c)| (xy(&c.train_acc), xy(&c.test_acc)))
        .collect();
    line_plot(
        loss_png,
        &LinePlot {
            title: &format!("{title}: loss"),
            x_label: "epoch",
            y_label: "cross-entropy per sample",
            log_y: true,
        },
        &pair_series(&names, &losses),
    )?;
    line_plot(
        acc_png,
        &LinePlot {
            title: &format!("{title}: accuracy"),
            x_label: "epoch",
            y_label: "accuracy",
            log_y: false,
        },
        &pair_series(&names, &accs),
    )?;
    Ok(())
}

type Line = Vec<(f64, f64)>;

/// A train and a test series per run, in run order.
fn pair_series<'a>(names: &'a [(String, String)], lines: &'a [(Line, Line)]) -> Vec<Series<'a>> {
    names
        .iter()
        .zip(lines)
        .flat_map(|((train_name, test_name), (train, test))| {
            [
                Series {
                    name: train_name,
                    points: train,
                },
                Series {
                    name: test_name,
                    points: test,
                },
            ]
        })
        .collect()
}
