//! Chapter 6, "RMSProp with gluon": linear regression on 1000 synthetic samples with `Dense(1)`,
//! `L2Loss`, a shuffling `DataLoader` and `Trainer(params, 'rmsprop', {learning_rate 0.03,
//! gamma1 0.9})` (MXNet's epsilon 1e-8) on batches of 10.
//!
//! `cargo run --release --example ch06_rmsprop_gluon`

/// The chapter's problem, `train` driver and learners.
#[path = "ch06_common/mod.rs"]
pub mod ch06_common;
/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use ch06_common::{Config, Gluon, Summary};
use common::{Fallible, Options};
use std::io::Write;

/// The notebook's `gamma1`.
pub const GAMMA1: f64 = 0.9;

/// The learner this notebook trains: `Trainer(net.collect_params(), 'rmsprop', ...)`.
pub fn learner() -> Gluon {
    Gluon::new("rmsprop", &[("gamma1", GAMMA1)])
}

/// The notebook's `train` calls with the losses it printed.
pub fn runs() -> Vec<ch06_common::Config> {
    vec![Config::notebook(10, Some(0.03), 10).book(&[7.5963e-01, 1.4048e-04, 1.1444e-04])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_rmsprop_gluon", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
