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

/// The linear warm-up shared by [`PolyScheduler`] and [`CosineScheduler`] (MXNet's
/// `warmup_mode='linear'`): from `warmup_begin_lr` at update 0 towards `base_lr` at update
/// `warmup_steps`.
fn warmup_lr(begin: f64, base: f64, steps: usize, num_update: usize) -> f64 {
    begin + (base - begin) * num_update as f64 / steps as f64
}

/// Polynomial decay from `base_lr` to `final_lr` over `max_update` updates (MXNet
/// `PolyScheduler`), after an optional linear warm-up:
/// `lr(n) = final_lr + (base_lr − final_lr)·(1 − (n − warmup_steps)/(max_update − warmup_steps))^pwr`
/// for `warmup_steps ≤ n ≤ max_update`, and `final_lr` after `max_update`.
#[derive(Clone, Debug, PartialEq)]
pub struct PolyScheduler {
    /// The update count at which the rate reaches `final_lr`.
    pub max_update: usize,
    /// The power of the polynomial (default 2).
    pub pwr: f64,
    /// The rate after `max_update` (default 0).
    pub final_lr: f64,
    /// Updates of linear warm-up (default 0).
    pub warmup_steps: usize,
    /// The rate the warm-up starts from (default 0).
    pub warmup_begin_lr: f64,
    /// The rate after warm-up (default 0.01; replaced by the optimizer's learning rate).
    pub base_lr: f64,
}

impl PolyScheduler {
    /// Decay to 0 over `max_update` updates with power 2, no warm-up.
    pub fn new(max_update: usize) -> Self {
        PolyScheduler {
            max_update,
            pwr: 2.0,
            final_lr: 0.0,
            warmup_steps: 0,
            warmup_begin_lr: 0.0,
            base_lr: 0.01,
        }
    }

    /// This schedule with power `pwr`.
    pub fn with_pwr(mut self, pwr: f64) -> Self {
        self.pwr = pwr;
        self
    }

    /// This schedule ending at `final_lr`.
    pub fn with_final_lr(mut self, final_lr: f64) -> Self {
        self.final_lr = final_lr;
        self
    }

    /// This schedule with `steps` updates of linear warm-up from `begin_lr`.
    pub fn with_warmup(mut self, steps: usize, begin_lr: f64) -> Self {
        self.warmup_steps = steps;
        self.warmup_begin_lr = begin_lr;
        self
    }

    /// This schedule with `base_lr`.
    pub fn with_base_lr(mut self, lr: f64) -> Self {
        self.base_lr = lr;
        self
    }
}

impl LrScheduler for PolyScheduler {
    fn lr(&self, num_update: usize) -> f64 {
        if num_update < self.warmup_steps {
            return warmup_lr(
                self.warmup_begin_lr,
                self.base_lr,
                self.warmup_steps,
                num_update,
            );
        }
        if num_update > self.max_update || self.max_update <= self.warmup_steps {
            return self.final_lr;
        }
        let span = (self.max_update - self.warmup_steps) as f64;
        let left = 1.0 - (num_update - self.warmup_steps) as f64 / span;
        self.final_lr + (self.base_lr - self.final_lr) * left.powf(self.pwr)
    }

    fn base_lr(&self) -> f64 {
        self.base_lr
    }

    fn set_base_lr(&mut self, lr: f64) {
        self.base_lr = lr;
    }
}

/// Cosine decay from `base_lr` to `final_lr` over `max_update` updates (MXNet
/// `CosineScheduler`; Loshchilov & Hutter, "SGDR", 2017), after an optional linear warm-up:
/// `lr(n) = final_lr + (base_lr − final_lr)·(1 + cos(π·(n − warmup_steps)/(max_update − warmup_steps)))/2`
/// for `warmup_steps ≤ n ≤ max_update`, and `final_lr` after `max_update`.
#[derive(Clone, Debug, PartialEq)]
pub struct CosineScheduler {
    /// The update count at which the rate reaches `final_lr`.
    pub max_update: usize,
    /// The rate after `max_update` (default 0).
    pub final_lr: f64,
    /// Updates of linear warm-up (default 0).
    pub warmup_steps: usize,
    /// The rate the warm-up starts from (default 0).
    pub warmup_begin_lr: f64,
    /// The rate after warm-up (default 0.01; replaced by the optimizer's learning rate).
    pub base_lr: f64,
}

impl CosineScheduler {
    /// Decay to 0 over `max_update` updates, no warm-up.
    pub fn new(max_update: usize) -> Self {
        CosineScheduler {
            max_update,
            final_lr: 0.0,
            warmup_steps: 0,
            warmup_begin_lr: 0.0,
            base_lr: 0.01,
        }
    }

    /// This schedule ending at `final_lr`.
    pub fn with_final_lr(mut self, final_lr: f64) -> Self {
        self.final_lr = final_lr;
        self
    }

    /// This schedule with `steps` updates of linear warm-up from `begin_lr`.
    pub fn with_warmup(mut self, steps: usize, begin_lr: f64) -> Self {
        self.warmup_steps = steps;
        self.warmup_begin_lr = begin_lr;
        self
    }

    /// This schedule with `base_lr`.
    pub fn with_base_lr(mut self, lr: f64) -> Self {
        self.base_lr = lr;
        self
    }
}

impl LrScheduler for CosineScheduler {
    fn lr(&self, num_update: usize) -> f64 {
        if num_update < self.warmup_steps {
            return warmup_lr(
                self.warmup_begin_lr,
                self.base_lr,
                self.warmup_steps,
                num_update,
            );
        }
        if num_update > self.max_update || self.max_update <= self.warmup_steps {
            return self.final_lr;
        }
        let span = (self.max_update - self.warmup_steps) as f64;
        let progress = (num_update - self.warmup_steps) as f64 / span;
        self.final_lr
            + (self.base_lr - self.final_lr) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
    }

    fn base_lr(&self) -> f64 {
        self.base_lr
    }

    fn set_base_lr(&mut self, lr: f64) {
        self.base_lr = lr;
    }
}
