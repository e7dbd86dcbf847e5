//! Nesterov accelerated gradient.

use super::{begin_momentum_update, Optimizer, OptimizerCore, State};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// Nesterov accelerated SGD (MXNet `optimizer.NAG`, operator `nag_mom_update`).
///
/// With `g = clip(rescale_grad·grad) + wd·w` (weight decay added after clipping):
///
/// - `mom ← momentum·mom − lr·g`
/// - `w ← w + momentum·mom − lr·g` (the look-ahead step, using the updated `mom`)
///
/// Without momentum this is plain SGD, `w ← w − lr·g`. The state is `[mom]`, or empty without
/// momentum. References: Nesterov (1983); Sutskever et al., "On the importance of
/// initialization and momentum in deep learning" (2013); MXNet's `nag_mom_update` docs.
#[derive(Debug)]
pub struct NAG {
    /// Momentum factor (0 gives plain SGD).
    pub momentum: f64,
    core: OptimizerCore,
}

impl NAG {
    /// NAG with learning rate `learning_rate` and no momentum.
    pub fn new(learning_rate: f64) -> Self {
        NAG {
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

impl Default for NAG {
    /// MXNet's defaults: learning rate 0.01, no momentum.
    fn default() -> Self {
        NAG::new(0.01)
    }
}

impl Optimizer for NAG {
    fn name(&self) -> &'static str {
        "nag"
    }

    fn core(&self) -> &OptimizerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut OptimizerCore {
        &mut self.core
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
            "nag_update",
            self.momentum,
            index,
            weight,
            grad,
            state,
        )?;
        let g = g.add(&weight.mul_scalar(wd)?)?;
        let step = g.mul_scalar(lr)?;
        if let [mom] = state.arrays() {
            let new_mom = mom.mul_scalar(self.momentum)?.sub(&step)?;
            mom.assign(&new_mom)?;
            let new_w = weight
                .add(&new_mom.mul_scalar(self.momentum)?)?
                .sub(&step)?;
            weight.assign(&new_w)
        } else {
            weight.sub_assign_(&step)
        }
    }
}
