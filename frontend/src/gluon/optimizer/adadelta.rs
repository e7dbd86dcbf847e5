//! AdaDelta.

use super::{check_update, require, state_arrays, Optimizer, OptimizerCore, State};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// AdaDelta (MXNet `optimizer.AdaDelta`).
///
/// With `g = clip(rescale_grad·grad)`:
///
/// - `acc_g ← rho·acc_g + (1 − rho)·g²`
/// - `delta = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) · g`
/// - `acc_delta ← rho·acc_delta + (1 − rho)·delta²`
/// - `w ← w − lr·(delta + wd·w)`
///
/// AdaDelta needs no learning rate: the default `lr` is 1, which gives exactly MXNet 1.x's
/// update (that version ignores `learning_rate` here); another `lr` scales the step as in
/// MXNet 2. The state is `[acc_g, acc_delta]`. References: Zeiler, "ADADELTA: An Adaptive
/// Learning Rate Method" (2012); MXNet's `AdaDelta` docs.
#[derive(Debug)]
pub struct AdaDelta {
    /// Decay of the running averages (default 0.9).
    pub rho: f64,
    /// Added under both square roots (default 1e-5).
    pub epsilon: f64,
    core: OptimizerCore,
}

impl AdaDelta {
    /// AdaDelta with MXNet's defaults: `rho` 0.9, `epsilon` 1e-5, learning rate 1.
    pub fn new() -> Self {
        AdaDelta {
            rho: 0.9,
            epsilon: 1e-5,
            core: OptimizerCore::new(1.0),
        }
    }

    /// This optimizer with `rho`.
    pub fn with_rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }

    /// This optimizer with `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for AdaDelta {
    fn default() -> Self {
        AdaDelta::new()
    }
}

impl Optimizer for AdaDelta {
    fn name(&self) -> &'static str {
        "adadelta"
    }

    fn core(&self) -> &OptimizerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut OptimizerCore {
        &mut self.core
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
        check_update("adadelta_update", weight, grad, state, 2)?;
        self.core.check("adadelta_update")?;
        let (rho, eps) = (self.rho, self.epsilon);
        require(
            "adadelta_update",
            "rho",
            rho,
            (0.0..=1.0).contains(&rho),
            "in [0, 1]",
        )?;
        require(
            "adadelta_update",
            "epsilon",
            eps,
            eps.is_finite() && eps > 0.0,
            "finite and > 0",
        )?;
        self.core.count_update(index);
        let (lr, wd) = (self.core.lr(index), self.core.wd(index));
        let g = self.core.rescale_and_clip(grad)?;
        let [acc_g, acc_delta] = state_arrays::<2>("adadelta_update", state)?;
        acc_g.assign(
            &acc_g
                .mul_scalar(rho)?
                .add(&g.square()?.mul_scalar(1.0 - rho)?)?,
        )?;
        let delta = acc_delta
            .add_scalar(eps)?
            .sqrt()?
            .div(&acc_g.add_scalar(eps)?.sqrt()?)?
            .mul(&g)?;
        acc_delta.assign(
            &acc_delta
                .mul_scalar(rho)?
                .add(&delta.square()?.mul_scalar(1.0 - rho)?)?,
        )?;
        let step = delta.add(&weight.mul_scalar(wd)?)?.mul_scalar(lr)?;
        weight.sub_assign_(&step)
    }
}
