//! Classification metrics: [`Accuracy`], [`TopKAccuracy`], [`CrossEntropy`].

use super::{accumulate, Accum, EvalMetric};
use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};
use std::cmp::Ordering;

/// MXNet's conversion of a label or prediction value to a class (`astype('int32')`:
/// truncation toward zero).
fn class_of(v: f64) -> i64 {
    v.trunc() as i64
}

/// The index of the largest value of each lane along `axis` (the first one on ties; NaN
/// counts as largest, as numpy's `argmax`).
fn argmax_host(name: &str, pred: &NDArray, axis: isize) -> Result<Vec<i64>> {
    let shape = pred.shape();
    let axis = shape.axis(axis, name)?;
    let dims = shape.dims();
    let len = dims[axis];
    if len == 0 {
        return Err(Error::shape(
            name,
            format!("cannot take the argmax of pred {shape} along its empty axis {axis}"),
        ));
    }
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let values = pred.to_vec_f64();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| values[(o * len + k) * inner + i];
            let mut best = 0;
            for k in 1..len {
                let (v, b) = (at(k), at(best));
                if v > b || (v.is_nan() && !b.is_nan()) {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    Ok(out)
}

/// MXNet `Accuracy`: the fraction of predicted classes equal to the labels.
///
/// A prediction of the label's shape holds classes already; otherwise the predicted class is
/// the argmax of pred along `axis` (default 1, the class axis of `[batch, classes]` scores).
/// Both are then flattened and must have equal lengths; values are truncated to integers.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// The class axis of score predictions (default 1).
    pub axis: isize,
    acc: Accum,
}

impl Default for Accuracy {
    fn default() -> Self {
        Accuracy {
            axis: 1,
            acc: Accum::default(),
        }
    }
}

impl Accuracy {
    /// Accuracy over class axis 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accuracy taking the argmax along `axis`.
    pub fn with_axis(axis: isize) -> Self {
        Accuracy {
            axis,
            acc: Accum::default(),
        }
    }
}

impl EvalMetric for Accuracy {
    fn name(&self) -> String {
        "accuracy".into()
    }

    fn update(&mut self, labels: &[&NDArray], preds: &[&NDArray]) -> Result<()> {
        let name = self.name();
        let axis = self.axis;
        let total = accumulate(&name, labels, preds, |label, pred| {
            let predicted: Vec<i64> = if pred.shape() == label.shape() {
                pred.to_vec_f64().into_iter().map(class_of).collect()
            } else {
                argmax_host(&name, pred, axis)?
            };
            let truth = label.to_vec_f64();
            if predicted.len() != truth.len() {
                return Err(Error::shape(
                    &name,
                    format!(
                        "label of shape {} has {} elements but pred of shape {} gives {} \
                         predicted classes (argmax along axis {axis})",
                        label.shape(),
                        truth.len(),
                        pred.shape(),
                        predicted.len()
                    ),
                ));
            }
            let correct = predicted
                .iter()
                .zip(&truth)
                .filter(|(p, &t)| **p == class_of(t))
                .count();
            Ok(Accum {
                sum: correct as f64,
                num: truth.len() as u64,
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

/// The `[batch, classes]` dims of a score prediction whose label holds one class per row.
fn rows_and_classes(name: &str, label: &NDArray, pred: &NDArray) -> Result<(usize, usize)> {
    let &[rows, classes] = pred.shape().dims() else {
        return Err(Error::shape(
            name,
            format!(
                "pred must be [batch, classes] scores, got shape {}",
                pred.shape()
            ),
        ));
    };
    if label.size() != rows {
        return Err(Error::shape(
            name,
            format!(
                "label of shape {} must hold one class per row of pred {} ({rows} rows)",
                label.shape(),
                pred.shape()
            ),
        ));
    }
    Ok((rows, classes))
}

/// MXNet `TopKAccuracy`: the fraction of samples whose label is among the `top_k` highest
/// scores of its row.
///
/// pred is `[batch, classes]`, the label one class per row. Ties rank the lower class index
/// higher. With `top_k` at least the number of classes every sample counts as correct.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKAccuracy {
    /// How many of the highest scores count (at least 1).
    pub top_k: usize,
    acc: Accum,
}

impl TopKAccuracy {
    /// Top-`top_k` accuracy (a `top_k` of 0 is reported as an error by `update`).
    pub fn new(top_k: usize) -> Self {
        TopKAccuracy {
            top_k,
            acc: Accum::default(),
        }
    }
}

impl EvalMetric for TopKAccuracy {
    fn name(&self) -> String {
        format!("top_k_accuracy_{}", self.top_k)
    }

    fn update(&mut self, labels: &[&NDArray], preds: &[&NDArray]) -> Result<()> {
        let name = self.name();
        if self.top_k == 0 {
            return Err(Error::invalid(&name, "top_k must be at least 1"));
        }
        let top_k = self.top_k;
        let total = accumulate(&name, labels, preds, |label, pred| {
            let (rows, classes) = rows_and_classes(&name, label, pred)?;
            let scores = pred.to_vec_f64();
            let truth = label.to_vec_f64();
            let mut correct = 0u64;
            for (row, &t) in scores.chunks_exact(classes.max(1)).zip(&truth).take(rows) {
                let Some(target) = usize::try_from(class_of(t)).ok().filter(|&c| c < classes)
                else {
                    continue;
                };
                let v = row[target];
                // The label's rank: classes scoring higher, and equal ones listed before it.
                let rank = row
                    .iter()
                    .enumerate()
                    .filter(|&(j, x)| match x.total_cmp(&v) {
                        Ordering::Greater => true,
                        Ordering::Equal => j < target,
                        Ordering::Less => false,
                    })
                    .count();
                if rank < top_k {
                    correct += 1;
                }
            }
            Ok(Accum {
                sum: correct as f64,
                num: rows as u64,
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

/// MXNet `CrossEntropy`: the mean over samples of `−log(p[label] + eps)`, where pred holds
/// probabilities `[batch, classes]` and the label one class index per row.
///
/// A label that is not a class index in `[0, classes)` is an error.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// Added to the probability before the log (default 1e-12).
    pub eps: f64,
    acc: Accum,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            eps: 1e-12,
            acc: Accum::default(),
        }
    }
}

impl CrossEntropy {
    /// Cross-entropy with `eps = 1e-12`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cross-entropy with the given `eps`.
    pub fn with_eps(eps: f64) -> Self {
        CrossEntropy {
            eps,
            acc: Accum::default(),
        }
    }
}

impl EvalMetric for CrossEntropy {
    fn name(&self) -> String {
        "cross-entropy".into()
    }

    fn update(&mut self, labels: &[&NDArray], preds: &[&NDArray]) -> Result<()> {
        let name = self.name();
        let eps = self.eps;
        let total = accumulate(&name, labels, preds, |label, pred| {
            let (rows, classes) = rows_and_classes(&name, label, pred)?;
            let probs = pred.to_vec_f64();
            let mut sum = 0.0;
            for (row, t) in label.to_vec_f64().into_iter().enumerate() {
                let class = Some(t)
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map(|t| t as usize)
                    .filter(|&c| c < classes)
                    .ok_or_else(|| {
                        Error::invalid(
                            &name,
                            format!(
                                "label {t} of row {row} is not a class index in [0, {classes}) \
                                 (pred shape {})",
                                pred.shape()
                            ),
                        )
                    })?;
                sum -= (probs[row * classes + class] + eps).ln();
            }
            Ok(Accum {
                sum,
                num: rows as u64,
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
