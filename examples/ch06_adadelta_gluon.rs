//! Chapter 6, "Adadelta with gluon": linear regression on 1000 synthetic samples with `Dense(1)`,
//! `L2Loss`, a shuffling `DataLoader` and `Trainer(params, 'adadelta', {rho 0.9999})` (MXNet's
//! epsilon 1e-5, no learning rate) on batches of 10.
//!
//! `cargo run --release --example ch06_adadelta_gluon`

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

/// The notebook's `rho`.
pub const RHO: f64 = 0.9999;

/// The learner this notebook trains: `Trainer(net.collect_params(), 'adadelta', ...)`.
pub fn learner() -> Gluon {
    Gluon::new("adadelta", &[("rho", RHO)])
}

/// The notebook's `train` calls with the losses it printed.
pub fn runs() -> Vec<ch06_common::Config> {
    vec![Config::notebook(10, None, 10).book(&[5.2081e-05, 4.9538e-05, 4.9217e-05])]
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    ch06_common::run_notebook(opts, out, "ch06_adadelta_gluon", &mut learner(), &runs())
}

fn main() {
    common::main_with(run);
}
