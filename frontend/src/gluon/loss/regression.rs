//! Regression losses: [`L2Loss`], [`L1Loss`], [`HuberLoss`].

use super::Loss;
use super::{apply_weighting, batch_mean, check_positive, check_pred, label_like, loss_methods};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// gluon `L2Loss`: `weight/2 · (pred − label)²`, averaged per sample.
///
/// The label is reshaped to pred's shape (same element count). Note the `1/2`: gluon's L2
/// loss is half the squared error.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Loss {
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for L2Loss {
    fn default() -> Self {
        L2Loss { weight: 1.0 }
    }
}

impl L2Loss {
    /// `L2Loss` with weight 1.
    pub fn new() -> Self {
        Self::default()
    }
}

loss_methods!(L2Loss);

impl Loss for L2Loss {
    fn name(&self) -> &'static str {
        "L2Loss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        check_pred(self.name(), pred)?;
        let label = label_like(self.name(), label, pred)?;
        let loss = label.sub(pred)?.square()?;
        let loss = apply_weighting(self.name(), loss, self.weight / 2.0, sample_weight)?;
        batch_mean(loss)
    }
}

/// gluon `L1Loss`: `weight · |pred − label|`, averaged per sample.
///
/// The label is reshaped to pred's shape (same element count).
#[derive(Clone, Debug, PartialEq)]
pub struct L1Loss {
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for L1Loss {
    fn default() -> Self {
        L1Loss { weight: 1.0 }
    }
}

impl L1Loss {
    /// `L1Loss` with weight 1.
    pub fn new() -> Self {
        Self::default()
    }
}

loss_methods!(L1Loss);

impl Loss for L1Loss {
    fn name(&self) -> &'static str {
        "L1Loss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        check_pred(self.name(), pred)?;
        let label = label_like(self.name(), label, pred)?;
        let loss = label.sub(pred)?.abs()?;
        let loss = apply_weighting(self.name(), loss, self.weight, sample_weight)?;
        batch_mean(loss)
    }
}

/// gluon `HuberLoss` (smoothed L1): with `d = |pred − label|`, `d − rho/2` where `d > rho`,
/// else `d² / (2·rho)`; times `weight`, averaged per sample.
///
/// The label is reshaped to pred's shape. `rho` must be finite and positive.
#[derive(Clone, Debug, PartialEq)]
pub struct HuberLoss {
    /// Where the loss turns from quadratic to linear (default 1).
    pub rho: f64,
    /// Global scalar multiplier (default 1).
    pub weight: f64,
}

impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss {
            rho: 1.0,
            weight: 1.0,
        }
    }
}

impl HuberLoss {
    /// `HuberLoss` with `rho = 1` and weight 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// This loss with threshold `rho`.
    pub fn rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }
}

loss_methods!(HuberLoss);

impl Loss for HuberLoss {
    fn name(&self) -> &'static str {
        "HuberLoss"
    }

    fn loss(
        &self,
        pred: &NDArray,
        label: &NDArray,
        sample_weight: Option<&NDArray>,
    ) -> Result<NDArray> {
        check_pred(self.name(), pred)?;
        check_positive(self.name(), "rho", self.rho)?;
        let label = label_like(self.name(), label, pred)?;
        let dist = label.sub(pred)?.abs()?;
        let linear = dist.sub_scalar(0.5 * self.rho)?;
        let quadratic = dist.square()?.mul_scalar(0.5 / self.rho)?;
        let loss = dist.gt_scalar(self.rho)?.where_cond(&linear, &quadratic)?;
        let loss = apply_weighting(self.name(), loss, self.weight, sample_weight)?;
        batch_mean(loss)
    }
}
