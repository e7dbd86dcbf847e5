//! Chapter 6, "Momentum from scratch": linear regression on 1000 synthetic samples trained by the
//! hand-written momentum update `v ← mom·v + lr·∇/batch_size`, `w ← w − v` (batch 10, lr 0.2,
//! momentum 0.9, the learning rate cut tenfold in the last epoch), with its loss curve.
//!
//! `cargo run --release --example ch06_momentum_scratch`

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

/// The notebook's momentum.
pub const MOMENTUM: f64 = 0.9;

/// The notebook's `sgd_momentum(params, vs, lr, mom, batch_size)`:
/// `v[:] = mom·v + lr·grad/batch_size`, `param[:] = param − v`.
#[derive(Clone, Copy, Debug)]
pub struct SgdMomentum {
    /// The momentum `mom` (the notebook's 0.9).
    pub mom: f64,
}

impl UpdateRule for SgdMomentum {
    fn name(&self) -> &str {
        "sgd with momentum"
    }

    fn state_arrays(&self) -> usize {
        1
    }

    fn update(&self, param: &NDArray, grad: &NDArray, state: &[NDArray], s: Step) -> Result<()> {
        let v = &state[0];
        v.assign(&(&(v * self.mom)? + &(grad * (s.lr / s.batch_size as f64))?)?)?;
        param.assign(&(param - v)?)
    }
}

/// The learner this notebook trains.
pub fn learner() -> Scratch<SgdMomentum> {
    Scratch::new(SgdMomentum { mom: MOMENTUM })
}

/// The notebook's `train` call with the losses it printed.
pub fn runs() -> Vec<Config> {
    vec![Config::notebook(10, Some(0.2), 10)
        .decay_after(2)
        .book(&[3.4819e-04, 6.6014e-05, 5.0524e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_momentum_scratch", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
