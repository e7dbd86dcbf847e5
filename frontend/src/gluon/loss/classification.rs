//! Classification and distribution losses: [`SoftmaxCrossEntropyLoss`],
//! [`SigmoidBinaryCrossEntropyLoss`], [`HingeLoss`], [`KLDivLoss`].

use super::Loss;
use super::{apply_weighting, batch_mean, cast_like, check_pred, label_like, loss_methods};
use crate::ndarray::NDArray;
use kiln_ir::{Error, Result, Shape};

/// gluon `SoftmaxCrossEntropyLoss`: `−Σ_c label_c · log_softmax(pred)_c` along `axis`.
///
/// With `sparse_label` (the default) the label holds class indices, of pred's shape without
/// `axis` (a `[batch, 1]` label for `[batch, classes]` pred is accepted too); indices out of
/// range are clipped, as MXNet's `pick`. Otherwise the label is a distribution of pred's
/// shape. With `from_logits`, pred is taken to be log-probabilities already.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxCrossEntropyLoss {
    /// The class axis (default −1).
    pub axis: isize,
    /// Labels are class indices (default true), not distributions.
    pub sparse_label: bool,
    /// pred is already `log_softmax` output (default false).
    pub from_logits: bool,
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for SoftmaxCrossEntropyLoss {
    fn default() -> Self {
        SoftmaxCrossEntropyLoss {
            axis: -1,
            sparse_label: true,
            from_logits: false,
            weight: 1.0,
        }
    }
}

impl SoftmaxCrossEntropyLoss {
    /// Class axis −1, sparse labels, pred as unnormalized scores, weight 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// This loss with the class axis `axis`.
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }

    /// This loss with labels as class indices (`true`) or as distributions (`false`).
    pub fn sparse_label(mut self, sparse: bool) -> Self {
        self.sparse_label = sparse;
        self
    }

    /// This loss taking pred as log-probabilities (`true`) or as scores (`false`).
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }
}

loss_methods!(SoftmaxCrossEntropyLoss);

impl Loss for SoftmaxCrossEntropyLoss {
    fn name(&self) -> &'static str {
        "SoftmaxCrossEntropyLoss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        let name = self.name();
        check_pred(name, pred)?;
        let axis = pred.shape().axis(self.axis, name)?;
        let log_prob = if self.from_logits {
            pred.clone()
        } else {
            pred.log_softmax_axis(self.axis)?
        };
        let loss = if self.sparse_label {
            let label = sparse_label(name, label, pred.shape(), axis)?;
            log_prob.pick_axis(&label, self.axis, true)?.neg()?
        } else {
            let label = label_like(name, label, pred)?;
            log_prob.mul(&label)?.sum_axes(&[self.axis], true)?.neg()?
        };
        let loss = apply_weighting(name, loss, self.weight, sample_weight)?;
        batch_mean(loss)
    }
}

/// Class indices in the shape `pick` takes: pred's shape without `axis`, or with it as 1.
/// Other shapes with that many elements (a `[batch, 1]` label for `[batch]` positions) are
/// reshaped.
fn sparse_label(name: &str, label: &NDArray, pred: &Shape, axis: usize) -> Result<NDArray> {
    let mut dropped = pred.to_vec();
    dropped.remove(axis);
    let dropped = Shape::from(dropped);
    let mut kept = pred.clone();
    kept[axis] = 1;
    if label.shape() == &dropped || label.shape() == &kept {
        return Ok(label.clone());
    }
    if label.size() != dropped.numel() {
        return Err(Error::shape(
            name,
            format!(
                "sparse label of shape {} must hold one class index per position of pred {} \
                 without axis {axis} ({dropped})",
                label.shape(),
                pred
            ),
        ));
    }
    let dims: Vec<i64> = dropped.iter().map(|&d| d as i64).collect();
    label.reshape(&dims)
}

/// gluon `SigmoidBinaryCrossEntropyLoss`: `−(z·log p + (1−z)·log(1−p))` with `p =
/// sigmoid(pred)`, label `z` in `[0, 1]` reshaped to pred's shape.
///
/// From scores (the default) it uses the stable form `max(x, 0) − x·z + log(1 + e^−|x|)`,
/// exact for any `x`; with `from_sigmoid` pred is `p` itself and `1e-12` guards the logs.
#[derive(Clone, Debug, PartialEq)]
pub struct SigmoidBinaryCrossEntropyLoss {
    /// pred is already a probability (default false).
    pub from_sigmoid: bool,
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for SigmoidBinaryCrossEntropyLoss {
    fn default() -> Self {
        SigmoidBinaryCrossEntropyLoss {
            from_sigmoid: false,
            weight: 1.0,
        }
    }
}

impl SigmoidBinaryCrossEntropyLoss {
    /// pred as scores (logits), weight 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// This loss taking pred as probabilities (`true`) or as scores (`false`).
    pub fn from_sigmoid(mut self, from_sigmoid: bool) -> Self {
        self.from_sigmoid = from_sigmoid;
        self
    }
}

loss_methods!(SigmoidBinaryCrossEntropyLoss);

/// gluon's guard against `log(0)` for probabilities.
const LOG_EPS: f64 = 1e-12;

impl Loss for SigmoidBinaryCrossEntropyLoss {
    fn name(&self) -> &'static str {
        "SigmoidBinaryCrossEntropyLoss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        check_pred(self.name(), pred)?;
        let label = label_like(self.name(), label, pred)?;
        let loss = if self.from_sigmoid {
            let log_p = pred.add_scalar(LOG_EPS)?.log()?;
            let log_not_p = pred.rsub_scalar(1.0)?.add_scalar(LOG_EPS)?.log()?;
            let not_label = label.rsub_scalar(1.0)?;
            log_p.mul(&label)?.add(&log_not_p.mul(&not_label)?)?.neg()?
        } else {
            let tail = pred.abs()?.neg()?.softrelu()?;
            pred.relu()?.sub(&pred.mul(&label)?)?.add(&tail)?
        };
        let loss = apply_weighting(self.name(), loss, self.weight, sample_weight)?;
        batch_mean(loss)
    }
}

/// gluon `HingeLoss`: `max(0, margin − pred·label)` for labels in `{−1, 1}`, reshaped to
/// pred's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HingeLoss {
    /// The margin (default 1).
    pub margin: f64,
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for HingeLoss {
    fn default() -> Self {
        HingeLoss {
            margin: 1.0,
            weight: 1.0,
        }
    }
}

impl HingeLoss {
    /// Margin 1, weight 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// This loss with `margin`.
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }
}

loss_methods!(HingeLoss);

impl Loss for HingeLoss {
    fn name(&self) -> &'static str {
        "HingeLoss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        check_pred(self.name(), pred)?;
        let label = label_like(self.name(), label, pred)?;
        let loss = pred.mul(&label)?.rsub_scalar(self.margin)?.relu()?;
        let loss = apply_weighting(self.name(), loss, self.weight, sample_weight)?;
        batch_mean(loss)
    }
}

/// gluon `KLDivLoss`: `label · (log(label + 1e-12) − pred)`, averaged per sample, where
/// pred is log-probabilities (`from_logits`, the gluon default) or scores turned into them
/// by `log_softmax` along `axis`. The label is a distribution broadcasting to pred's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct KLDivLoss {
    /// pred is already log-probabilities (default true, as gluon).
    pub from_logits: bool,
    /// The axis `log_softmax` normalizes when not `from_logits` (default −1).
    pub axis: isize,
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for KLDivLoss {
    fn default() -> Self {
        KLDivLoss {
            from_logits: true,
            axis: -1,
            weight: 1.0,
        }
    }
}

impl KLDivLoss {
    /// pred as log-probabilities, axis −1, weight 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// This loss taking pred as log-probabilities (`true`) or as scores (`false`).
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }

    /// This loss normalizing scores along `axis`.
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }
}

loss_methods!(KLDivLoss);

impl Loss for KLDivLoss {
    fn name(&self) -> &'static str {
        "KLDivLoss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        let name = self.name();
        check_pred(name, pred)?;
        let log_prob = if self.from_logits {
            pred.clone()
        } else {
            pred.log_softmax_axis(self.axis)?
        };
        let label = cast_like(label, pred)?;
        if !label.shape().broadcasts_to(pred.shape()) {
            return Err(Error::shape(
                name,
                format!(
                    "label of shape {} does not broadcast to pred's shape {}",
                    label.shape(),
                    pred.shape()
                ),
            ));
        }
        let log_label = label.add_scalar(LOG_EPS)?.log()?;
        let loss = label.mul(&log_label.sub(&log_prob)?)?;
        let loss = apply_weighting(name, loss, self.weight, sample_weight)?;
        batch_mean(loss)
    }
}
