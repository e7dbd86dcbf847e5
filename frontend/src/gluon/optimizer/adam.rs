//! Adam.

use super::{check_update, require, state_arrays, Optimizer, OptimizerCore, State};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// Adam (MXNet `optimizer.Adam`, operator `adam_update`).
///
/// At the parameter's `t`-th update (t = 1, 2, ...), with
/// `g = clip(rescale_grad·grad + wd·w)` (weight decay added *before* clipping, as MXNet's
/// `adam_update` does):
///
/// - `m ← beta1·m + (1 − beta1)·g`
/// - `v ← beta2·v + (1 − beta2)·g²`
/// - `lr_t = lr·sqrt(1 − beta2^t) / (1 − beta1^t)` (the bias correction, folded into the
///   rate as MXNet does)
/// - `w ← w − lr_t·m / (sqrt(v) + epsilon)`
///
/// The state is `[m, v]`. References: Kingma & Ba, "Adam: A Method for Stochastic
/// Optimization" (ICLR 2015), Algorithm 1 with the efficiency note of section 2; MXNet's
/// `adam_update` docs.
#[derive(Debug)]
pub struct Adam {
    /// Decay of the first-moment average (default 0.9).
    pub beta1: f64,
    /// Decay of the second-moment average (default 0.999).
    pub beta2: f64,
    /// Added to `sqrt(v)` (default 1e-8).
    pub epsilon: f64,
    core: OptimizerCore,
}

impl Adam {
    /// Adam with learning rate `learning_rate` and MXNet's other defaults.
    pub fn new(learning_rate: f64) -> Self {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            core: OptimizerCore::new(learning_rate),
        }
    }

    /// This optimizer with `beta1`.
    pub fn with_beta1(mut self, beta1: f64) -> Self {
        self.beta1 = beta1;
        self
    }

    /// This optimizer with `beta2`.
    pub fn with_beta2(mut self, beta2: f64) -> Self {
        self.beta2 = beta2;
        self
    }

    /// This optimizer with `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for Adam {
    /// MXNet's defaults: learning rate 0.001, beta1 0.9, beta2 0.999, epsilon 1e-8.
    fn default() -> Self {
        Adam::new(0.001)
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn core(&self) -> &OptimizerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut OptimizerCore {
        &mut self.core
    }

    fn hyperparameters(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("epsilon", self.epsilon),
        ]
    }

    fn create_state(&self, _index: usize, weight: &NDArray) -> Result<State> {
        State::zeros_like(weight, 2)
    }

    fn update(
        &mut self,
        index: usize,
        weight: &NDArray,
        grad: &NDArray,
        state: &mut State,
    ) -> Result<()> {
        let op = "adam_update";
        check_update(op, weight, grad, state, 2)?;
        self.core.check(op)?;
        let (b1, b2, e) = (self.beta1, self.beta2, self.epsilon);
        // beta = 1 would divide by zero in the bias correction.
        require(op, "beta1", b1, (0.0..1.0).contains(&b1), "in [0, 1)")?;
        require(op, "beta2", b2, (0.0..1.0).contains(&b2), "in [0, 1)")?;
        require(
            op,
            "epsilon",
            e,
            e.is_finite() && e >= 0.0,
            "finite and >= 0",
        )?;
        let t = self.core.count_update(index);
        let (lr, wd) = (self.core.lr(index), self.core.wd(index));
        // t fits an i32 for any realistic run; saturate rather than wrap beyond it.
        let ti = i32::try_from(t).unwrap_or(i32::MAX);
        let lr_t = lr * (1.0 - b2.powi(ti)).sqrt() / (1.0 - b1.powi(ti));
        let g = self.core.clip(
            &grad
                .mul_scalar(self.core.rescale_grad)?
                .add(&weight.mul_scalar(wd)?)?,
        )?;
        let [m, v] = state_arrays::<2>(op, state)?;
        m.assign(&m.mul_scalar(b1)?.add(&g.mul_scalar(1.0 - b1)?)?)?;
        v.assign(&v.mul_scalar(b2)?.add(&g.square()?.mul_scalar(1.0 - b2)?)?)?;
        let step = m
            .div(&v.sqrt()?.add_scalar(self.epsilon)?)?
            .mul_scalar(lr_t)?;
        weight.sub_assign_(&step)
    }
}
