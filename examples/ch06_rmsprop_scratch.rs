//! Chapter 6, "RMSProp from scratch": linear regression on 1000 synthetic samples trained by the
//! hand-written RMSProp update `s ← γ·s + (1 − γ)·g²`, `w ← w − lr·g/sqrt(s + eps)` with
//! `g = ∇/batch_size` (batch 10, lr 0.03, γ 0.9, eps 1e-8), with its loss curve.
//!
//! `cargo run --release --example ch06_rmsprop_scratch`

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

/// The notebook's `gamma`.
pub const GAMMA: f64 = 0.9;
/// The notebook's `eps_stable`.
pub const EPS: f64 = 1e-8;

/// The notebook's `rmsprop(params, sqrs, lr, gamma, batch_size)`: `g = grad/batch_size`,
/// `sqr[:] = gamma·sqr + (1 − gamma)·g²`, `param[:] −= lr·g/sqrt(sqr + eps_stable)`.
#[derive(Clone, Copy, Debug)]
pub struct RmsProp {
    /// The decay `gamma` of the squared-gradient average (the notebook's 0.9).
    pub gamma: f64,
    /// `eps_stable` (the notebook's 1e-8).
    pub eps: f64,
}

impl UpdateRule for RmsProp {
    fn name(&self) -> &str {
        "rmsprop"
    }

    fn state_arrays(&self) -> usize {
        1
    }

    fn update(&self, param: &NDArray, grad: &NDArray, state: &[NDArray], s: Step) -> Result<()> {
        let sqr = &state[0];
        let g = (grad / s.batch_size as f64)?;
        sqr.assign(&(&(sqr * self.gamma)? + &(&g.square()? * (1.0 - self.gamma))?)?)?;
        let div = (&(&g * s.lr)? / &(sqr + self.eps)?.sqrt()?)?;
        param.assign(&(param - &div)?)
    }
}

/// The learner this notebook trains.
pub fn learner() -> Scratch<RmsProp> {
    Scratch::new(RmsProp {
        gamma: GAMMA,
        eps: EPS,
    })
}

/// The notebook's `train` call with the losses it printed.
pub fn runs() -> Vec<Config> {
    vec![Config::notebook(10, Some(0.03), 10).book(&[7.5963e-01, 1.4048e-04, 1.1444e-04])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_rmsprop_scratch", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
