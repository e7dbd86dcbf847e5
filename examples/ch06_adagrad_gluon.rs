//! Chapter 6, "Adagrad with gluon": linear regression on 1000 synthetic samples with `Dense(1)`,
//! `L2Loss`, a shuffling `DataLoader` and `Trainer(params, 'adagrad', {learning_rate 0.9})`
//! (MXNet's eps 1e-7) on batches of 10.
//!
//! `cargo run --release --example ch06_adagrad_gluon`

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

/// The learner this notebook trains: `Trainer(net.collect_params(), 'adagrad', ...)`.
pub fn learner() -> Gluon {
    Gluon::new("adagrad", &[])
}

/// The notebook's `train` calls with the losses it printed.
pub fn runs() -> Vec<ch06_common::Config> {
    vec![Config::notebook(10, Some(0.9), 10).book(&[5.3231e-05, 4.9388e-05, 4.9256e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_adagrad_gluon", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
