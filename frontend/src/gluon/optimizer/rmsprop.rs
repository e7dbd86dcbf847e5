//! RMSProp, plain and centered.

use super::{check_update, require, state_arrays, Optimizer, OptimizerCore, State};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// RMSProp (MXNet `optimizer.RMSProp`, operators `rmsprop_update` and, when `centered`,
/// `rmspropalex_update`).
///
/// With `g = clip(rescale_grad·grad + wd·w)` (here weight decay is added *before* clipping,
/// as MXNet's RMSProp operators do):
///
/// - plain (Tieleman & Hinton):
///   `n ← (1 − gamma1)·g² + gamma1·n`, `w ← w − lr·g / sqrt(n + epsilon)`;
///   state `[n]`.
/// - centered (Graves, "Generating Sequences With Recurrent Neural Networks", 2013, eq. 38–45):
///   `n ← (1 − gamma1)·g² + gamma1·n`, `gbar ← (1 − gamma1)·g + gamma1·gbar`,
///   `delta ← gamma2·delta − lr·g / sqrt(n − gbar² + epsilon)`, `w ← w + delta`;
///   state `[n, gbar, delta]`.
///
/// With `clip_weights` set, the new weight is clipped to `[-clip_weights, clip_weights]`.
/// References: Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning"
/// (2012); Graves (2013); MXNet's `rmsprop_update`/`rmspropalex_update` docs.
#[derive(Debug)]
pub struct RMSProp {
    /// Decay of the squared-gradient (and, centered, gradient) averages (default 0.9).
    pub gamma1: f64,
    /// Momentum of the centered variant's `delta` (default 0.9).
    pub gamma2: f64,
    /// Added under the square root (default 1e-8).
    pub epsilon: f64,
    /// Use the centered variant (default false).
    pub centered: bool,
    /// Clip weights to `[-c, c]` after each update (default off).
    pub clip_weights: Option<f64>,
    core: OptimizerCore,
}

impl RMSProp {
    /// RMSProp with learning rate `learning_rate` and MXNet's other defaults.
    pub fn new(learning_rate: f64) -> Self {
        RMSProp {
            gamma1: 0.9,
            gamma2: 0.9,
            epsilon: 1e-8,
            centered: false,
            clip_weights: None,
            core: OptimizerCore::new(learning_rate),
        }
    }

    /// This optimizer with `gamma1`.
    pub fn with_gamma1(mut self, gamma1: f64) -> Self {
        self.gamma1 = gamma1;
        self
    }

    /// This optimizer with `gamma2`.
    pub fn with_gamma2(mut self, gamma2: f64) -> Self {
        self.gamma2 = gamma2;
        self
    }

    /// This optimizer with `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// This optimizer, centered or not.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// This optimizer clipping weights to `[-c, c]`.
    pub fn with_clip_weights(mut self, c: f64) -> Self {
        self.clip_weights = Some(c);
        self
    }
}

impl Default for RMSProp {
    /// MXNet's defaults: learning rate 0.001, gamma1 0.9, gamma2 0.9, epsilon 1e-8.
    fn default() -> Self {
        RMSProp::new(0.001)
    }
}

impl Optimizer for RMSProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn core(&self) -> &OptimizerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut OptimizerCore {
        &mut self.core
    }

    fn create_state(&self, _index: usize, weight: &NDArray) -> Result<State> {
        State::zeros_like(weight, if self.centered { 3 } else { 1 })
    }

    fn update(
        &mut self,
        index: usize,
        weight: &NDArray,
        grad: &NDArray,
        state: &mut State,
    ) -> Result<()> {
        let op = "rmsprop_update";
        check_update(op, weight, grad, state, if self.centered { 3 } else { 1 })?;
        self.core.check(op)?;
        let (g1, g2, eps) = (self.gamma1, self.gamma2, self.epsilon);
        require(op, "gamma1", g1, (0.0..=1.0).contains(&g1), "in [0, 1]")?;
        require(op, "gamma2", g2, g2.is_finite(), "a finite number")?;
        require(
            op,
            "epsilon",
            eps,
            eps.is_finite() && eps >= 0.0,
            "finite and >= 0",
        )?;
        if let Some(c) = self.clip_weights {
            if !(c.is_finite() && c >= 0.0) {
                return Err(kiln_ir::Error::invalid(
                    op,
                    format!("clip_weights must be a finite number >= 0 (or None), got {c}"),
                ));
            }
        }
        self.core.count_update(index);
        let (lr, wd) = (self.core.lr(index), self.core.wd(index));
        let g = self.core.clip(
            &grad
                .mul_scalar(self.core.rescale_grad)?
                .add(&weight.mul_scalar(wd)?)?,
        )?;
        let new_w = if self.centered {
            let [n, gbar, delta] = state_arrays::<3>(op, state)?;
            n.assign(&g.square()?.mul_scalar(1.0 - g1)?.add(&n.mul_scalar(g1)?)?)?;
            gbar.assign(&g.mul_scalar(1.0 - g1)?.add(&gbar.mul_scalar(g1)?)?)?;
            let denom = n.sub(&gbar.square()?)?.add_scalar(eps)?.sqrt()?;
            delta.assign(&delta.mul_scalar(g2)?.sub(&g.div(&denom)?.mul_scalar(lr)?)?)?;
            weight.add(delta)?
        } else {
            let [n] = state_arrays::<1>(op, state)?;
            n.assign(&g.square()?.mul_scalar(1.0 - g1)?.add(&n.mul_scalar(g1)?)?)?;
            let step = g.div(&n.add_scalar(eps)?.sqrt()?)?.mul_scalar(lr)?;
            weight.sub(&step)?
        };
        match self.clip_weights {
            Some(c) => weight.assign(&new_w.clip(-c, c)?),
            None => weight.assign(&new_w),
        }
    }
}
