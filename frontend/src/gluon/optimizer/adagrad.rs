//! AdaGrad.

use super::{check_update, require, state_arrays, Optimizer, OptimizerCore, State};
use crate::ndarray::NDArray;
use kiln_ir::Result;

/// AdaGrad (MXNet `optimizer.AdaGrad`).
///
/// With `g = clip(rescale_grad·grad)`:
///
/// - `history ← history + g²`
/// - `w ← w − lr·(g / sqrt(history + eps) + wd·w)`
///
/// Weight decay is not accumulated into the history; `eps` sits inside the square root, as
/// in MXNet. The state is `[history]`. References: Duchi, Hazan & Singer, "Adaptive
/// Subgradient Methods for Online Learning and Stochastic Optimization" (JMLR 2011); MXNet's
/// `AdaGrad` docs.
#[derive(Debug)]
pub struct Adagrad {
    /// Added to the history under the square root (MXNet `eps`, default 1e-7).
    pub eps: f64,
    core: OptimizerCore,
}

impl Adagrad {
    /// AdaGrad with learning rate `learning_rate` and `eps` 1e-7.
    pub fn new(learning_rate: f64) -> Self {
        Adagrad {
            eps: 1e-7,
            core: OptimizerCore::new(learning_rate),
        }
    }

    /// This optimizer with `eps`.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
}

impl Default for Adagrad {
    /// MXNet's defaults: learning rate 0.01, eps 1e-7.
    fn default() -> Self {
        Adagrad::new(0.01)
    }
}

impl Optimizer for Adagrad {
    fn name(&self) -> &'static str {
        "adagrad"
    }

    fn core(&self) -> &OptimizerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut OptimizerCore {
        &mut self.core
    }

    fn create_state(&self, _index: usize, weight: &NDArray) -> Result<State> {
        State::zeros_like(weight, 1)
    }

    fn update(
        &mut self,
        index: usize,
        weight: &NDArray,
        grad: &NDArray,
        state: &mut State,
    ) -> Result<()> {
        check_update("adagrad_update", weight, grad, state, 1)?;
        self.core.check("adagrad_update")?;
        let eps = self.eps;
        require(
            "adagrad_update",
            "eps",
            eps,
            eps.is_finite() && eps >= 0.0,
            "finite and >= 0",
        )?;
        self.core.count_update(index);
        let (lr, wd) = (self.core.lr(index), self.core.wd(index));
        let g = self.core.rescale_and_clip(grad)?;
        let [history] = state_arrays::<1>("adagrad_update", state)?;
        history.add_assign_(&g.square()?)?;
        let div = g.div(&history.add_scalar(self.eps)?.sqrt()?)?;
        let step = div.add(&weight.mul_scalar(wd)?)?.mul_scalar(lr)?;
        weight.sub_assign_(&step)
    }
}
