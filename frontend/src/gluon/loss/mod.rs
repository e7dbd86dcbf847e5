//! gluon's losses (`mxnet.gluon.loss`): each gives one loss value per sample.
//!
//! Every loss follows gluon's recipe: compute the elementwise loss, multiply by the optional
//! `sample_weight` (broadcast against the unreduced loss, so `[batch, 1]` weighs whole
//! samples) and by the loss' scalar `weight`, then average over every axis but the batch axis
//! (axis 0). The result has shape `[batch]`; call `.mean()` on it for a scalar.
//!
//! The losses compute with NDArray ops only, never by reading values, so they are
//! differentiable inside [`crate::autograd::record`] and can be traced by `hybridize()`.
//!
//! ```
//! use kiln_frontend::gluon::loss::{L2Loss, Loss, SoftmaxCrossEntropyLoss};
//! use kiln_frontend::nd;
//! let pred = nd::array(&[[1.0, 2.0], [3.0, 5.0]])?;
//! let label = nd::array(&[[1.0, 1.0], [3.0, 3.0]])?;
//! // 0.5 * mean([0, 1]) and 0.5 * mean([0, 4])
//! assert_eq!(L2Loss::new().forward(&pred, &label)?.to_vec::<f32>()?, vec![0.25, 1.0]);
//!
//! // Any loss behind the trait, as a training loop takes it.
//! let losses: Vec<Box<dyn Loss>> =
//!     vec![Box::new(L2Loss::new()), Box::new(SoftmaxCrossEntropyLoss::new())];
//! let classes = nd::array(&[1.0, 0.0])?;
//! assert_eq!(losses[1].loss(&pred, &classes, None)?.shape().dims(), &[2]);
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

mod classification;
mod regression;

pub use classification::{
    HingeLoss, KLDivLoss, SigmoidBinaryCrossEntropyLoss, SoftmaxCrossEntropyLoss,
};
pub use regression::{HuberLoss, L1Loss, L2Loss};

use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};

/// A loss function: per-sample losses of predictions against labels.
///
/// Training loops take `&dyn Loss` (or a generic `L: Loss`) so any of gluon's losses, or a
/// user's own, fits.
pub trait Loss: Send + Sync + std::fmt::Debug {
    /// gluon's class name of the loss (`"L2Loss"`), used in error messages.
    fn name(&self) -> &'static str;

    /// The loss of `pred` against `label`, one value per sample (shape `[batch]`), each
    /// element's loss first multiplied by `sample_weight` when given (it must broadcast to
    /// the unreduced loss' shape, e.g. `[batch, 1]`).
    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray>;
}

/// The inherent `forward`, `forward_weighted` and `with_weight` every loss struct has, so a
/// user need not import the trait for the common case.
macro_rules! loss_methods {
    ($t:ty) => {
        impl $t {
            /// The per-sample loss (shape `[batch]`) of `pred` against `label`.
            pub fn forward(&self, pred: &NDArray, label: &NDArray) -> Result<NDArray> {
                $crate::gluon::loss::Loss::loss(self, pred, label, None)
            }

            /// The per-sample loss with each element's loss multiplied by `sample_weight`,
            /// which must broadcast to the unreduced loss' shape (`[batch, 1]` weighs samples).
            pub fn forward_weighted(
                &self,
                pred: &NDArray,
                label: &NDArray,
                sample_weight: &NDArray,
            ) -> Result<NDArray> {
                $crate::gluon::loss::Loss::loss(self, pred, label, Some(sample_weight))
            }

            /// This loss with gluon's `weight`: a global scalar multiplier of the loss.
            pub fn with_weight(mut self, weight: f64) -> Self {
                self.weight = weight;
                self
            }
        }
    };
}
pub(crate) use loss_methods;

/// Checks that `pred` has a batch axis (rank at least 1).
fn check_pred(name: &str, pred: &NDArray) -> Result<()> {
    if pred.ndim() == 0 {
        return Err(Error::shape(
            name,
            "pred is a scalar (shape []); a loss needs a batch axis (axis 0)",
        ));
    }
    Ok(())
}

/// `array` converted to `like`'s dtype (labels and weights often come as other types; the
/// elementwise ops need one dtype).
fn cast_like(array: &NDArray, like: &NDArray) -> Result<NDArray> {
    if array.dtype() == like.dtype() {
        Ok(array.clone())
    } else {
        array.cast(like.dtype())
    }
}

/// gluon's `_reshape_like(label, pred)`: the label seen in pred's shape (and dtype). Errors
/// when the element counts differ.
fn label_like(name: &str, label: &NDArray, pred: &NDArray) -> Result<NDArray> {
    let label = cast_like(label, pred)?;
    if label.shape() == pred.shape() {
        return Ok(label);
    }
    if label.size() != pred.size() {
        return Err(Error::shape(
            name,
            format!(
                "label of shape {} ({} elements) cannot be reshaped to pred's shape {} \
                 ({} elements)",
                label.shape(),
                label.size(),
                pred.shape(),
                pred.size()
            ),
        ));
    }
    label.reshape_like(pred)
}

/// gluon's `_apply_weighting`: multiplies by `sample_weight` (which must broadcast to the
/// loss' shape without enlarging it) and by the scalar `weight`.
fn apply_weighting(
    name: &str,
    loss: NDArray,
    weight: f64,
    sample_weight: Option<&NDArray>,
) -> Result<NDArray> {
    let loss = match sample_weight {
        Some(sw) => {
            // A `[batch]` weight against a `[batch, 1]` loss would broadcast to
            // `[batch, batch]` and silently average the wrong things: refuse it.
            if !sw.shape().broadcasts_to(loss.shape()) {
                return Err(Error::shape(
                    name,
                    format!(
                        "sample_weight of shape {} does not broadcast to the loss' shape {} \
                         (weigh whole samples with shape [batch, 1, ...])",
                        sw.shape(),
                        loss.shape()
                    ),
                ));
            }
            loss.mul(&cast_like(sw, &loss)?)?
        }
        None => loss,
    };
    if weight == 1.0 {
        Ok(loss)
    } else {
        loss.mul_scalar(weight)
    }
}

/// gluon's `F.mean(loss, axis=0, exclude=True)`: the mean over every axis but the batch axis.
fn batch_mean(loss: NDArray) -> Result<NDArray> {
    let rank = loss.ndim() as isize;
    if rank <= 1 {
        return Ok(loss);
    }
    let axes: Vec<isize> = (1..rank).collect();
    loss.mean_axes(&axes, false)
}

/// Errors unless `value` is finite and positive (a loss hyperparameter such as `rho`).
fn check_positive(name: &str, what: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::invalid(
            name,
            format!("{what} must be finite and positive, got {value}"),
        ));
    }
    Ok(())
}
