//! Chapter 6, "Adadelta from scratch": linear regression on 1000 synthetic samples trained by the
//! hand-written AdaDelta update, which needs no learning rate: `s ← ρ·s + (1 − ρ)·g²`,
//! `Δ = sqrt(δ + eps)/sqrt(s + eps)·g`, `δ ← ρ·δ + (1 − ρ)·Δ²`, `w ← w − Δ` with
//! `g = ∇/batch_size` (batch 10, ρ 0.9999, eps 1e-5), with its loss curve.
//!
//! `cargo run --release --example ch06_adadelta_scratch`

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

/// The notebook's `rho`.
pub const RHO: f64 = 0.9999;
/// The notebook's `eps_stable`.
pub const EPS: f64 = 1e-5;

/// The notebook's `adadelta(params, sqrs, deltas, rho, batch_size)`: `g = grad/batch_size`,
/// `sqr[:] = rho·sqr + (1 − rho)·g²`,
/// `cur_delta = sqrt(delta + eps_stable)/sqrt(sqr + eps_stable)·g`,
/// `delta[:] = rho·delta + (1 − rho)·cur_delta²`, `param[:] −= cur_delta`.
#[derive(Clone, Copy, Debug)]
pub struct AdaDelta {
    /// The decay `rho` of both running averages (the notebook's 0.9999).
    pub rho: f64,
    /// `eps_stable` (the notebook's 1e-5).
    pub eps: f64,
}

impl UpdateRule for AdaDelta {
    fn name(&self) -> &str {
        "adadelta"
    }

    fn state_arrays(&self) -> usize {
        2
    }

    fn update(&self, param: &NDArray, grad: &NDArray, state: &[NDArray], s: Step) -> Result<()> {
        let (sqr, delta) = (&state[0], &state[1]);
        let g = (grad / s.batch_size as f64)?;
        sqr.assign(&(&(sqr * self.rho)? + &(&g.square()? * (1.0 - self.rho))?)?)?;
        let cur_delta = (&(&(delta + self.eps)?.sqrt()? / &(sqr + self.eps)?.sqrt()?)? * &g)?;
        delta.assign(&(&(delta * self.rho)? + &(&cur_delta.square()? * (1.0 - self.rho))?)?)?;
        param.assign(&(param - &cur_delta)?)
    }
}

/// The learner this notebook trains.
pub fn learner() -> Scratch<AdaDelta> {
    Scratch::new(AdaDelta { rho: RHO, eps: EPS })
}

/// The notebook's `train` call with the losses it printed.
pub fn runs() -> Vec<Config> {
    vec![Config::notebook(10, None, 10).book(&[5.2081e-05, 4.9538e-05, 4.9217e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_adadelta_scratch", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
