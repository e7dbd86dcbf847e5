//! Chapter 6, "Gradient descent and stochastic gradient descent from scratch": linear
//! regression on 1000 synthetic samples trained by the hand-written `sgd` update
//! `w ← w − lr·∇/batch_size`, for the notebook's five batch-size / learning-rate pairs
//! (from one sample per step to the full batch, and a learning rate of 5 that diverges),
//! the learning rate cut tenfold in the last epoch. Each run's loss curve is plotted.
//!
//! `cargo run --release --example ch06_gd_sgd_scratch`

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

/// The notebook's `sgd(params, lr, batch_size)`: `param[:] = param − lr·param.grad/batch_size`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sgd;

impl UpdateRule for Sgd {
    fn name(&self) -> &str {
        "sgd"
    }

    fn state_arrays(&self) -> usize {
        0
    }

    fn update(&self, param: &NDArray, grad: &NDArray, _state: &[NDArray], s: Step) -> Result<()> {
        param.assign(&(param - &(grad * (s.lr / s.batch_size as f64))?)?)
    }
}

/// The learner this notebook trains.
pub fn learner() -> Scratch<Sgd> {
    Scratch::new(Sgd)
}

/// The notebook's five `train` calls with the losses it printed.
pub fn runs() -> Vec<Config> {
    ch06_common::gd_sgd_runs()
}

/// Runs the notebook's five `train` calls and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_gd_sgd_scratch", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
