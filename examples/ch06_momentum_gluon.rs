//! Chapter 6, "Momentum with gluon": linear regression on 1000 synthetic samples with `Dense(1)`,
//! `L2Loss`, a shuffling `DataLoader` and `Trainer(params, 'sgd', {learning_rate 0.2,
//! momentum 0.9})` on batches of 10, the learning rate cut tenfold in the last epoch.
//!
//! `cargo run --release --example ch06_momentum_gluon`

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

/// The notebook's momentum.
pub const MOMENTUM: f64 = 0.9;

/// The learner this notebook trains: `Trainer(net.collect_params(), 'sgd', ...)`.
pub fn learner() -> Gluon {
    Gluon::new("sgd", &[("momentum", MOMENTUM)])
}

/// The notebook's `train` calls with the losses it printed.
pub fn runs() -> Vec<ch06_common::Config> {
    vec![Config::notebook(10, Some(0.2), 10)
        .decay_after(2)
        .book(&[3.4819e-04, 6.6012e-05, 5.0524e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_momentum_gluon", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
