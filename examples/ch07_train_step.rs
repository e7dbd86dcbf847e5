//! Chapter 7, continued: the whole training step compiled. The book's linear regression
//! (chapter 2's gluon notebook: `Dense(1)` on 2 features, `L2Loss`, SGD, batch 4) trained
//! three ways from the same weights on the same batches:
//!
//! - **eager**: `autograd::record` + `backward` + `Trainer::step`;
//! - **hybridized**: the same loop after `net.hybridize()` (the forward and backward run as
//!   compiled graphs, the loss and the optimizer stay eager);
//! - **TrainStep**: forward, loss, backward and the SGD update compiled into one graph,
//!   one executor call per step (`kiln::hybrid::TrainStep`).
//!
//! It prints the microseconds per step of each and the learned weights (the three agree),
//! then the compiled step's graph, and the same three timings for the book's MLP
//! (784-256-256-10, softmax cross-entropy, SGD) at batch 64.
//!
//! `cargo run --release --example ch07_train_step`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::gluon::init::Normal;
use kiln::gluon::loss::{L2Loss, Loss, SoftmaxCrossEntropyLoss};
use kiln::gluon::nn::{ActivationKind, Dense, HybridSequential};
use kiln::gluon::{Block, HybridBlock, Trainer};
use kiln::hybrid::{TrainStep, TrainStepOptions};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// The book's batch size for linear regression.
pub const BATCH: usize = 4;
/// Linear-regression samples (the book's 10,000; 2,000 under `--quick`).
pub const SAMPLES: usize = 10_000;
/// Samples under `--quick`.
pub const QUICK_SAMPLES: usize = 2_000;
/// The learning rate: the book's 0.0001 needs ten epochs; this one converges in one.
pub const LEARNING_RATE: f64 = 0.05;
/// MLP steps timed per way (20 under `--quick`).
pub const MLP_STEPS: usize = 200;
/// The MLP's batch size.
pub const MLP_BATCH: usize = 64;

/// Microseconds per step of the three ways.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Eager: record + backward + Trainer::step.
    pub eager_us: f64,
    /// The same loop with the network hybridized.
    pub hybridized_us: f64,
    /// The compiled whole step.
    pub train_step_us: f64,
}

/// What the run measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Linear regression, batch 4.
    pub linear: Timings,
    /// The learned `[w0, w1, b]` of each way: eager, hybridized, TrainStep.
    pub learned: [Vec<f32>; 3],
    /// The mean loss over the last tenth of the steps, per way.
    pub final_loss: [f64; 3],
    /// Kernels the compiled linear-regression step runs.
    pub kernels: usize,
    /// The MLP at batch 64.
    pub mlp: Timings,
    /// The MLP's parameters after its steps, against eager's: max relative error of the
    /// hybridized loop's and of TrainStep's. ReLU boundaries make rounding differences grow
    /// over many steps, for both alike.
    pub mlp_rel_err: [f64; 2],
}

/// The notebook's data: `X ~ N(0, 1)`, `y = 2·x0 − 3.4·x1 + 4.2 + 0.01·N(0, 1)`, in batches.
fn regression_batches(n: usize) -> Result<Vec<(NDArray, NDArray)>> {
    let x = nd::random::normal(0.0, 1.0, [n, 2])?;
    let w = nd::array(&[[2.0f32], [-3.4]])?;
    let y = (nd::dot(&x, &w)?.reshape(&[-1])? + 4.2)?;
    let y = (&y + &(nd::random::normal(0.0, 1.0, [n])? * 0.01)?)?;
    (0..n / BATCH)
        .map(|i| {
            let r = i * BATCH..(i + 1) * BATCH;
            Ok((x.slice_axis0(r.clone())?, y.slice_axis0(r)?))
        })
        .collect()
}

/// A `Dense(1)` on 2 inputs, `Normal(1)`-initialized from the global seed `seed`.
fn linear(seed: u64) -> Result<Dense> {
    kiln::random::seed(seed);
    let net = Dense::new(1).in_units(2);
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
    Ok(net)
}

/// The book's MLP, 784-256-256-10, `Normal(0.05)`-initialized from the global seed `seed`.
fn mlp(seed: u64) -> Result<HybridSequential> {
    kiln::random::seed(seed);
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(
            Dense::new(256)
                .in_units(784)
                .activation(ActivationKind::Relu),
        );
        net.add(
            Dense::new(256)
                .in_units(256)
                .activation(ActivationKind::Relu),
        );
        net.add(Dense::new(10).in_units(256));
    });
    net.initialize(Arc::new(Normal::new(0.05)), Context::cpu())?;
    Ok(net)
}

/// One eager (or hybridized, when the net is) step: record, backward, trainer step.
fn eager_step(
    net: &dyn Block,
    loss: &dyn Loss,
    trainer: &mut Trainer,
    x: &NDArray,
    y: &NDArray,
) -> Result<NDArray> {
    let l = autograd::record(|| loss.loss(&net.forward(x)?, y, None))?;
    l.backward()?;
    trainer.step(x.shape().dims()[0])?;
    Ok(l)
}

/// Runs `step` on every batch; returns microseconds per step (the first `warm` steps, which
/// include compiling, are not timed) and the per-step mean losses.
fn timed(
    batches: &[(NDArray, NDArray)],
    warm: usize,
    mut step: impl FnMut(&NDArray, &NDArray) -> Result<NDArray>,
) -> Result<(f64, Vec<f64>)> {
    let mut losses = Vec::with_capacity(batches.len());
    let mut start = Instant::now();
    for (i, (x, y)) in batches.iter().enumerate() {
        if i == warm {
            start = Instant::now();
        }
        losses.push(step(x, y)?);
    }
    // The losses are read after the clock stops: only the steps are timed.
    let us = start.elapsed().as_secs_f64() * 1e6 / batches.len().saturating_sub(warm).max(1) as f64;
    let means = losses
        .iter()
        .map(|l| Ok(l.mean()?.as_scalar::<f32>()? as f64))
        .collect::<Result<Vec<f64>>>()?;
    Ok((us, means))
}

fn params_vec(net: &dyn Block) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    for p in net.collect_params()?.iter() {
        v.extend(p.data()?.to_vec::<f32>()?);
    }
    Ok(v)
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    diff / scale.max(1e-12)
}

fn tail_mean(losses: &[f64]) -> f64 {
    let n = (losses.len() / 10).max(1);
    losses[losses.len() - n..].iter().sum::<f64>() / n as f64
}

/// Trains and times, printing what it finds.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let n = if opts.quick { QUICK_SAMPLES } else { SAMPLES };
    let batches = regression_batches(n)?;
    let loss = L2Loss::new();
    let sgd = [("learning_rate", LEARNING_RATE)];
    writeln!(
        out,
        "Linear regression: {n} samples, batch {BATCH} ({} steps), SGD lr {LEARNING_RATE}",
        batches.len()
    )?;
    let warm = 10.min(batches.len() / 2);

    let eager_net = linear(7)?;
    let mut trainer = Trainer::new(&eager_net.collect_params()?, "sgd", sgd)?;
    let (eager_us, eager_losses) = timed(&batches, warm, |x, y| {
        eager_step(&eager_net, &loss, &mut trainer, x, y)
    })?;

    let hybrid_net = linear(7)?;
    hybrid_net.hybridize();
    let mut trainer = Trainer::new(&hybrid_net.collect_params()?, "sgd", sgd)?;
    let (hybridized_us, hybrid_losses) = timed(&batches, warm, |x, y| {
        eager_step(&hybrid_net, &loss, &mut trainer, x, y)
    })?;

    let step_net = linear(7)?;
    let mut step = TrainStep::new(&step_net, &loss, "sgd", sgd, &TrainStepOptions::default())?;
    let (train_step_us, step_losses) = timed(&batches, warm, |x, y| step.step(x, y))?;

    let linear_t = Timings {
        eager_us,
        hybridized_us,
        train_step_us,
    };
    let learned = [
        params_vec(&eager_net)?,
        params_vec(&hybrid_net)?,
        params_vec(&step_net)?,
    ];
    let final_loss = [
        tail_mean(&eager_losses),
        tail_mean(&hybrid_losses),
        tail_mean(&step_losses),
    ];
    writeln!(
        out,
        "{:<12} {:>10} {:>9}  learned [w0, w1, b]   final loss",
        "", "µs/step", "speedup"
    )?;
    for (i, (name, us)) in [
        ("eager", eager_us),
        ("hybridized", hybridized_us),
        ("TrainStep", train_step_us),
    ]
    .iter()
    .enumerate()
    {
        let w = &learned[i];
        writeln!(
            out,
            "{name:<12} {us:>10.2} {:>8.1}×  [{:.4}, {:.4}, {:.4}]  {:.6}",
            eager_us / us,
            w[0],
            w[1],
            w[2],
            final_loss[i]
        )?;
    }
    let kernels = step.num_ops().unwrap_or(0);
    writeln!(
        out,
        "\nThe compiled step ({kernels} kernels per step; learning rate and step count are inputs):\n{}",
        step.optimized_graph().map(|g| g.to_text()).unwrap_or_default()
    )?;

    // The MLP at batch 64, on random inputs of MNIST's shape.
    let steps = if opts.quick { 20 } else { MLP_STEPS };
    kiln::random::seed(2);
    let mlp_batches: Vec<(NDArray, NDArray)> = (0..steps)
        .map(|i| {
            let x = nd::random::normal(0.0, 1.0, [MLP_BATCH, 784])?;
            let y: Vec<f32> = (0..MLP_BATCH).map(|k| ((k * 7 + i) % 10) as f32).collect();
            Ok((x, nd::array(&y)?))
        })
        .collect::<Result<_>>()?;
    let ce = SoftmaxCrossEntropyLoss::new();
    let sgd = [("learning_rate", 0.1)];
    let warm = 3;
    let eager_mlp = mlp(3)?;
    let mut trainer = Trainer::new(&eager_mlp.collect_params()?, "sgd", sgd)?;
    let (eager_us, _) = timed(&mlp_batches, warm, |x, y| {
        eager_step(&eager_mlp, &ce, &mut trainer, x, y)
    })?;
    let hybrid_mlp = mlp(3)?;
    hybrid_mlp.hybridize();
    let mut trainer = Trainer::new(&hybrid_mlp.collect_params()?, "sgd", sgd)?;
    let (hybridized_us, _) = timed(&mlp_batches, warm, |x, y| {
        eager_step(&hybrid_mlp, &ce, &mut trainer, x, y)
    })?;
    let step_mlp = mlp(3)?;
    let mut step = TrainStep::new(&step_mlp, &ce, "sgd", sgd, &TrainStepOptions::default())?;
    let (train_step_us, _) = timed(&mlp_batches, warm, |x, y| step.step(x, y))?;
    let mlp_t = Timings {
        eager_us,
        hybridized_us,
        train_step_us,
    };
    let eager_params = params_vec(&eager_mlp)?;
    let mlp_rel_err = [
        rel_err(&params_vec(&hybrid_mlp)?, &eager_params),
        rel_err(&params_vec(&step_mlp)?, &eager_params),
    ];
    writeln!(out, "MLP 784-256-256-10, batch {MLP_BATCH}, {steps} steps:")?;
    for (name, us) in [
        ("eager", eager_us),
        ("hybridized", hybridized_us),
        ("TrainStep", train_step_us),
    ] {
        writeln!(out, "{name:<12} {us:>10.1} µs/step {:>6.2}×", eager_us / us)?;
    }
    writeln!(
        out,
        "parameters after training against eager's: max relative difference {:.2e} \
         hybridized, {:.2e} TrainStep",
        mlp_rel_err[0], mlp_rel_err[1]
    )?;
    Ok(Summary {
        linear: linear_t,
        learned,
        final_loss,
        kernels,
        mlp: mlp_t,
        mlp_rel_err,
    })
}

fn main() {
    common::main_with(run);
}
