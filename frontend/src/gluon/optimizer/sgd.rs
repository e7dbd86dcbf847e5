//! Stochastic gradient descent with momentum.

use super::{begin_momentum_update, Optimizer, OptimizerCore, State};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// SGD, optionally with momentum (MXNet `optimizer.SGD`, operators `sgd_update` and
/// `sgd_mom_update`).
///
/// With `g = clip(rescale_grad·grad)` (clipping only when `clip_gradient` is set) and the
/// parameter's `lr` and `wd`:
///
/// - without momentum: `w ← (1 − lr·wd)·w − lr·g`, i.e. `w ← w − lr·(g + wd·w)`;
/// - with momentum: `mom ← momentum·mom − lr·wd·w − lr·g`, then `w ← w + mom`.
///
/// Weight decay is added after clipping. The state is empty without momentum, else `[mom]`.
/// References: Robbins & Monro (1951); Polyak (1964) for the heavy-ball momentum; MXNet's
/// `sgd_mom_update` documentation.
#[derive(Debug)]
pub struct SGD {
    /// Momentum factor (0 disables momentum and its state).
    pub momentum: f64,
    core: OptimizerCore,
}

impl SGD {
    /// SGD with learning rate `learning_rate` and no momentum.
    pub fn new(learning_rate: f64) -> Self {
        SGD {
            momentum: 0.0,
            core: OptimizerCore::new(learning_rate),
        }
    }

    /// This optimizer with `momentum`.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
}

impl Default for SGD {
    /// MXNet's defaults: learning rate 0.01, no momentum.
    fn default() -> Self {
        SGD::new(0.01)
    }
}

impl Optimizer for SGD {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn core(&self) -> &OptimizerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut OptimizerCore {
        &mut self.core
    }

    fn hyperparameters(&self) -> Vec<(&'static str, f64)> {
        vec![("momentum", self.momentum)]
    }

    fn create_state(&self, _index: usize, weight: &NDArray) -> Result<State> {
        State::zeros_like(weight, usize::from(self.momentum != 0.0))
    }

    fn update(
        &mut self,
        index: usize,
        weight: &NDArray,
        grad: &NDArray,
        state: &mut State,
    ) -> Result<()> {
        let (lr, wd, g) = begin_momentum_update(
            &mut self.core,
            "sgd_update",
            self.momentum,
            index,
            weight,
            grad,
            state,
        )?;
        if let [mom] = state.arrays() {
            let new_mom = mom
                .mul_scalar(self.momentum)?
                .sub(&weight.mul_scalar(lr * wd)?)?
                .sub(&g.mul_scalar(lr)?)?;
            mom.assign(&new_mom)?;
            weight.add_assign_(mom)
        } else {
            let new_w = weight.mul_scalar(1.0 - lr * wd)?.sub(&g.mul_scalar(lr)?)?;
            weight.assign(&new_w)
        }
    }
}
