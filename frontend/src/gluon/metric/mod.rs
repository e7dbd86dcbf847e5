//! Evaluation metrics (`mxnet.metric`): accumulate over batches, then report one number.
//!
//! Metrics run outside the graph: they read the arrays' values and accumulate in f64.
//! `update` takes the batch's labels and predictions as two equally long lists (one pair per
//! model output); `get` gives `(name, value)`, NaN before any sample, as MXNet.
//!
//! ```
//! use kiln_frontend::gluon::metric::{Accuracy, EvalMetric};
//! use kiln_frontend::nd;
//! let mut acc = Accuracy::new();
//! let pred = nd::array(&[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])?;
//! let label = nd::array(&[1.0, 1.0, 1.0])?;
//! acc.update(&[&label], &[&pred])?;
//! let (name, value) = acc.get();
//! assert_eq!(name, "accuracy");
//! assert!((value - 2.0 / 3.0).abs() < 1e-12);
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

mod classification;
mod regression;

pub use classification::{Accuracy, CrossEntropy, TopKAccuracy};
pub use regression::{MAE, MSE, RMSE};

use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};

/// A metric accumulated over batches.
pub trait EvalMetric: Send + std::fmt::Debug {
    /// MXNet's name of the metric (`"accuracy"`, `"top_k_accuracy_5"`).
    fn name(&self) -> String;

    /// Accumulates one batch: `labels[i]` goes with `preds[i]`. Errors (leaving the metric
    /// unchanged) when the lists differ in length or a pair's shapes do not fit.
    fn update(&mut self, labels: &[&NDArray], preds: &[&NDArray]) -> Result<()>;

    /// `(name, value)` of everything accumulated since the last reset; NaN when nothing was.
    fn get(&self) -> (String, f64);

    /// Forgets everything accumulated.
    fn reset(&mut self);

    /// [`EvalMetric::update`] with one label and one prediction.
    fn update_one(&mut self, label: &NDArray, pred: &NDArray) -> Result<()> {
        self.update(&[label], &[pred])
    }
}

/// MXNet's `sum_metric` / `num_inst` pair.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Accum {
    sum: f64,
    num: u64,
}

impl Accum {
    fn value(&self) -> f64 {
        if self.num == 0 {
            f64::NAN
        } else {
            self.sum / self.num as f64
        }
    }

    fn add(&mut self, other: Accum) {
        self.sum += other.sum;
        self.num += other.num;
    }
}

/// Runs `pair` on each (label, pred) after checking the lists match, and sums what they
/// give; nothing is accumulated unless every pair succeeds.
fn accumulate(
    name: &str,
    labels: &[&NDArray],
    preds: &[&NDArray],
    mut pair: impl FnMut(&NDArray, &NDArray) -> Result<Accum>,
) -> Result<Accum> {
    if labels.len() != preds.len() {
        return Err(Error::shape(
            name,
            format!(
                "got {} label arrays but {} prediction arrays; they must pair up",
                labels.len(),
                preds.len()
            ),
        ));
    }
    let mut total = Accum::default();
    for (label, pred) in labels.iter().zip(preds) {
        total.add(pair(label, pred)?);
    }
    Ok(total)
}

/// gluon's `Loss` metric: the mean of the loss values given as predictions (labels are
/// ignored and may be an empty list).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loss {
    acc: Accum,
}

impl Loss {
    /// An empty loss average.
    pub fn new() -> Self {
        Self::default()
    }
}

impl EvalMetric for Loss {
    fn name(&self) -> String {
        "loss".into()
    }

    fn update(&mut self, _labels: &[&NDArray], preds: &[&NDArray]) -> Result<()> {
        let mut total = Accum::default();
        for pred in preds {
            let values = pred.to_vec_f64();
            total.add(Accum {
                sum: values.iter().sum(),
                num: values.len() as u64,
            });
        }
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
