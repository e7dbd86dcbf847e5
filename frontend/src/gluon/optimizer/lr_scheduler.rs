//! Learning-rate schedules (`mxnet.lr_scheduler`): the rate as a function of the number of
//! updates so far.
//!
//! An optimizer calls its scheduler with `num_update`, the largest update count over its
//! parameters (1 during the first update). Giving a scheduler to an optimizer sets the
//! scheduler's `base_lr` to the optimizer's learning rate, as MXNet does.
//!
//! ```
//! use kiln_frontend::gluon::optimizer::{FactorScheduler, LrScheduler};
//! let s = FactorScheduler::new(10, 0.5).with_base_lr(1.0);
//! assert_eq!(s.lr(10), 1.0); // the first decay happens after 10 updates
//! assert_eq!(s.lr(11), 0.5);
//! assert_eq!(s.lr(21), 0.25);
//! ```

use std::fmt::Debug;

/// A learning-rate schedule.
pub trait LrScheduler: Debug + Send {
    /// The learning rate after `num_update` updates.
    fn lr(&self, num_update: usize) -> f64;

    /// The starting rate.
    fn base_lr(&self) -> f64;

    /// Sets the starting rate.
    fn set_base_lr(&mut self, lr: f64);
}

/// Multiplies the rate by `factor` every `step` updates, never going below `stop_factor_lr`
/// (MXNet `FactorScheduler`):
/// `lr(n) = max(base_lr · factor^k, stop_factor_lr)` with `k` the number of whole multiples of
/// `step` strictly below `n`, i.e. `k = ceil(n / step) − 1` for `n ≥ 1`.
///
/// MXNet's scheduler keeps a counter and is only ever called with growing `num_update`; this
/// one computes the same values directly, so it gives the same answer at any call order.
/// A `step` of 0 is treated as 1; MXNet requires `factor ≤ 1`, and with a larger factor
/// `stop_factor_lr` is a floor that is never reached.
#[derive(Clone, Debug, PartialEq)]
pub struct FactorScheduler {
    /// Updates between two decays.
    pub step: usize,
    /// Multiplier applied at each decay.
    pub factor: f64,
    /// The rate never decays below this (default 1e-8).
    pub stop_factor_lr: f64,
    /// The rate before any decay (default 0.01; replaced by the optimizer's learning rate).
    pub base_lr: f64,
}

impl FactorScheduler {
    /// Decay by `factor` every `step` updates, from a base rate of 0.01.
    pub fn new(step: usize, factor: f64) -> Self {
        FactorScheduler {
            step,
            factor,
            stop_factor_lr: 1e-8,
            base_lr: 0.01,
        }
    }

    /// This schedule with `stop_factor_lr`.
    pub fn with_stop_factor_lr(mut self, lr: f64) -> Self {
        self.stop_factor_lr = lr;
        self
    }

    /// This schedule with `base_lr`.
    pub fn with_base_lr(mut self, lr: f64) -> Self {
        self.base_lr = lr;
        self
    }
}

impl LrScheduler for FactorScheduler {
    fn lr(&self, num_update: usize) -> f64 {
        let step = self.step.max(1);
        let decays = num_update.saturating_sub(1) / step;
        let lr = self.base_lr * self.factor.powi(i32::try_from(decays).unwrap_or(i32::MAX));
        if lr < self.stop_factor_lr {
            self.stop_factor_lr
        } else {
            lr
        }
    }

    fn base_lr(&self) -> f64 {
        self.base_lr
    }

    fn set_base_lr(&mut self, lr: f64) {
        self.base_lr = lr;
    }
}

/// Multiplies the rate by `factor` once each listed update count is passed (MXNet
/// `MultiFactorScheduler`): `lr(n) = base_lr · factor^k` with `k` the number of `steps`
/// strictly below `n`.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiFactorScheduler {
    /// Update counts after which the rate decays (increasing).
    pub steps: Vec<usize>,
    /// Multiplier applied at each step.
    pub factor: f64,
    /// The rate before any decay (default 0.01; replaced by the optimizer's learning rate).
    pub base_lr: f64,
}

impl MultiFactorScheduler {
    /// Decay by `factor` after each of `steps`, from a base rate of 0.01.
    pub fn new(steps: Vec<usize>, factor: f64) -> Self {
        MultiFactorScheduler {
            steps,
            factor,
            base_lr: 0.01,
        }
    }

    /// This schedule with `base_lr`.
    pub fn with_base_lr(mut self, lr: f64) -> Self {
        self.base_lr = lr;
        self
    }
}

impl LrScheduler for MultiFactorScheduler {
    fn lr(&self, num_update: usize) -> f64 {
        let passed = self.steps.iter().filter(|&&s| num_update > s).count();
        self.base_lr * self.factor.powi(i32::try_from(passed).unwrap_or(i32::MAX))
    }

    fn base_lr(&self) -> f64 {
        self.base_lr
    }

    fn set_base_lr(&mut self, lr: f64) {
        self.base_lr = lr;
    }
}
