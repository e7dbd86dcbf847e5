//! Chapter 6, "Adagrad from scratch": linear regression on 1000 synthetic samples trained by the
//! hand-written Adagrad update `s ← s + g²`, `w ← w − lr·g/sqrt(s + eps)` with
//! `g = ∇/batch_size` (batch 10, lr 0.9, eps 1e-7), with its loss curve.
//!
//! `cargo run --release --example ch06_adagrad_scratch`

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

/// The notebook's `eps_stable`.
pub const EPS: f64 = 1e-7;

/// The notebook's `adagrad(params, sqrs, lr, batch_size)`: `g = grad/batch_size`,
/// `sqr[:] += g²`, `param[:] −= lr·g/sqrt(sqr + eps_stable)`.
#[derive(Clone, Copy, Debug)]
pub struct Adagrad {
    /// `eps_stable` (the notebook's 1e-7).
    pub eps: f64,
}

impl UpdateRule for Adagrad {
    fn name(&self) -> &str {
        "adagrad"
    }

    fn state_arrays(&self) -> usize {
        1
    }

    fn update(&self, param: &NDArray, grad: &NDArray, state: &[NDArray], s: Step) -> Result<()> {
        let sqr = &state[0];
        let g = (grad / s.batch_size as f64)?;
        sqr.assign(&(sqr + &g.square()?)?)?;
        let div = (&(&g * s.lr)? / &(sqr + self.eps)?.sqrt()?)?;
        param.assign(&(param - &div)?)
    }
}

/// The learner this notebook trains.
pub fn learner() -> Scratch<Adagrad> {
    Scratch::new(Adagrad { eps: EPS })
}

/// The notebook's `train` call with the losses it printed.
pub fn runs() -> Vec<Config> {
    vec![Config::notebook(10, Some(0.9), 10).book(&[5.3231e-05, 4.9388e-05, 4.9256e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_adagrad_scratch", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
