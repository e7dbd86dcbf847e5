//! Chapter 6, "Gradient descent and stochastic gradient descent with gluon": the notebook's five batch-size / learning-rate runs of
//! gd-sgd-scratch with `Dense(1)`, `L2Loss`, a shuffling `DataLoader` and
//! `Trainer(params, 'sgd', {learning_rate})`, whose rate `set_learning_rate` cuts tenfold in
//! the last epoch. Each run's loss curve is plotted.
//!
//! `cargo run --release --example ch06_gd_sgd_gluon`

/// The chapter's problem, `train` driver and learners.
#[path = "ch06_common/mod.rs"]
pub mod ch06_common;
/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use ch06_common::{Gluon, Summary};
use common::{Fallible, Options};
use std::io::Write;

/// The learner this notebook trains: `Trainer(net.collect_params(), 'sgd', ...)`.
pub fn learner() -> Gluon {
    Gluon::new("sgd", &[])
}

/// The notebook's `train` calls with the losses it printed.
pub fn runs() -> Vec<ch06_common::Config> {
    ch06_common::gd_sgd_runs()
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_gd_sgd_gluon", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
