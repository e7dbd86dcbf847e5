//! Regression metrics: [`MAE`], [`MSE`], [`RMSE`].
//!
//! As MXNet 1.x, each (label, pred) pair contributes its own mean error as one instance, so
//! the value is the average of per-batch errors (for RMSE, of per-batch root-mean-squares).

use super::{accumulate, Accum, EvalMetric};
use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};

/// The element pairs of `label` and `pred` after MXNet's reshape of 1-D arrays to
/// `[n, 1]`; errors unless the shapes then agree and are non-empty.
fn paired_values(name: &str, label: &NDArray, pred: &NDArray) -> Result<(Vec<f64>, Vec<f64>)> {
    let column = |a: &NDArray| -> Vec<usize> {
        let dims = a.shape().dims();
        if dims.len() == 1 {
            vec![dims[0], 1]
        } else {
            dims.to_vec()
        }
    };
    if column(label) != column(pred) {
        return Err(Error::shape(
            name,
            format!(
                "label shape {} does not match pred shape {}",
                label.shape(),
                pred.shape()
            ),
        ));
    }
    if label.size() == 0 {
        return Err(Error::shape(
            name,
            format!(
                "empty label and pred (shape {}): no error to average",
                label.shape()
            ),
        ));
    }
    Ok((label.to_vec_f64(), pred.to_vec_f64()))
}

/// The mean over the pair's elements of `f(label − pred)`.
fn mean_error(name: &str, label: &NDArray, pred: &NDArray, f: impl Fn(f64) -> f64) -> Result<f64> {
    let (l, p) = paired_values(name, label, pred)?;
    let sum: f64 = l.iter().zip(&p).map(|(a, b)| f(a - b)).sum();
    Ok(sum / l.len() as f64)
}

macro_rules! regression_metric {
    ($(#[$doc:meta])* $t:ident, $name:literal, |$l:ident, $p:ident| $per_batch:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $t {
            acc: Accum,
        }

        impl $t {
            /// An empty metric.
            pub fn new() -> Self {
                Self::default()
            }
        }

        impl EvalMetric for $t {
            fn name(&self) -> String {
                $name.into()
            }

            fn update(&mut self, labels: &[&NDArray], preds: &[&NDArray]) -> Result<()> {
                let total = accumulate($name, labels, preds, |$l, $p| {
                    Ok(Accum {
                        sum: $per_batch?,
                        num: 1,
                    })
                })?;
                self.acc.add(total);
                Ok(())
            }

            fn get(&self) -> (String, f64) {
                (self.name(), self.acc.value())
            }

            fn reset(&mut self) {
                self.acc = Accum::default();
            }
        }
    };
}

regression_metric!(
    /// MXNet `MAE`: mean absolute error `mean(|label − pred|)`, averaged over batches.
    MAE,
    "mae",
    |label, pred| mean_error("mae", label, pred, f64::abs)
);

regression_metric!(
    /// MXNet `MSE`: mean squared error `mean((label − pred)²)`, averaged over batches.
    MSE,
    "mse",
    |label, pred| mean_error("mse", label, pred, |d| d * d)
);

regression_metric!(
    /// MXNet `RMSE`: root mean squared error `sqrt(mean((label − pred)²))` of each batch,
    /// averaged over batches.
    RMSE,
    "rmse",
    |label, pred| mean_error("rmse", label, pred, |d| d * d).map(f64::sqrt)
);
