//! Chapter 6, "Adam from scratch": linear regression on 1000 synthetic samples trained by the
//! hand-written Adam update with bias correction: `v ← β₁·v + (1 − β₁)·g`,
//! `s ← β₂·s + (1 − β₂)·g²`, `w ← w − lr·v̂/(sqrt(ŝ) + eps)` with `v̂ = v/(1 − β₁ᵗ)`,
//! `ŝ = s/(1 − β₂ᵗ)` and `g = ∇/batch_size` (batch 10, lr 0.1, β₁ 0.9, β₂ 0.999, eps 1e-8),
//! with its loss curve.
//!
//! `cargo run --release --example ch06_adam_scratch`

/// The chapter's problem, `train` driver and learners.
#[path = "ch06_common/mod.rs"]
pub mod ch06_common;
/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use ch06_common::{Config, Scratch, Step, Summary, UpdateRule};
use common::{Fallible, Options};
use kiln::prelude::*;
use std::io::Write;

/// The notebook's `beta1`.
pub const BETA1: f64 = 0.9;
/// The notebook's `beta2`.
pub const BETA2: f64 = 0.999;
/// The notebook's `eps_stable`.
pub const EPS: f64 = 1e-8;

/// The notebook's `adam(params, vs, sqrs, lr, batch_size, t)`: `g = grad/batch_size`,
/// `v[:] = beta1·v + (1 − beta1)·g`, `sqr[:] = beta2·sqr + (1 − beta2)·g²`, the bias-corrected
/// `v_bias_corr = v/(1 − beta1^t)`, `sqr_bias_corr = sqr/(1 − beta2^t)`, and
/// `param[:] = param − lr·v_bias_corr/(sqrt(sqr_bias_corr) + eps_stable)`.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    /// The first-moment decay `beta1` (the notebook's 0.9).
    pub beta1: f64,
    /// The second-moment decay `beta2` (the notebook's 0.999).
    pub beta2: f64,
    /// `eps_stable` (the notebook's 1e-8).
    pub eps: f64,
}

impl UpdateRule for Adam {
    fn name(&self) -> &str {
        "adam"
    }

    fn state_arrays(&self) -> usize {
        2
    }

    fn update(&self, param: &NDArray, grad: &NDArray, state: &[NDArray], s: Step) -> Result<()> {
        let (v, sqr) = (&state[0], &state[1]);
        let g = (grad / s.batch_size as f64)?;
        v.assign(&(&(v * self.beta1)? + &(&g * (1.0 - self.beta1))?)?)?;
        sqr.assign(&(&(sqr * self.beta2)? + &(&g.square()? * (1.0 - self.beta2))?)?)?;
        let t = s.t as i32;
        let v_bias_corr = (v / (1.0 - self.beta1.powi(t)))?;
        let sqr_bias_corr = (sqr / (1.0 - self.beta2.powi(t)))?;
        let div = (&(&v_bias_corr * s.lr)? / &(&sqr_bias_corr.sqrt()? + self.eps)?)?;
        param.assign(&(param - &div)?)
    }
}

/// The learner this notebook trains.
pub fn learner() -> Scratch<Adam> {
    Scratch::new(Adam {
        beta1: BETA1,
        beta2: BETA2,
        eps: EPS,
    })
}

/// The notebook's `train` call with the losses it printed.
pub fn runs() -> Vec<Config> {
    vec![Config::notebook(10, Some(0.1), 10).book(&[6.7040e-04, 5.0751e-05, 5.0725e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_adam_scratch", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
