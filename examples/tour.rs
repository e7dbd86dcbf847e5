//! The tour of kiln: the book's MLP (784-256-256-10, chapter 3) trained on the shipped MNIST
//! for one epoch imperatively and one epoch hybridized from the same starting weights and the
//! same sample order; the accuracy and speed of each; what the graph optimizer makes of the
//! traced graph; and the exported model, re-imported with no model code, predicting what the
//! model predicts.
//!
//! `cargo run --release --example tour` (about a minute on 2 cores; `--quick` for a
//! few seconds on a subset).

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::train::{evaluate_accuracy, fit_classifier, EpochStats, Fit};
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, Dataset};
use kiln::gluon::init::{FactorType, RandType, Xavier};
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Dense, HybridSequential};
use kiln::gluon::{Block, HybridBlock, Trainer};
use kiln::hybrid::SymbolBlock;
use kiln::ir::Graph;
use kiln::passes::{PassManager, Pipeline};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// The hidden-layer width (both layers), as in chapter 3.
pub const HIDDEN: usize = 256;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// Chapter 3's learning rate for this network shape.
pub const LEARNING_RATE: f64 = 0.1;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 4_000;
/// The seed of the initial weights and of both runs' sample order.
pub const SEED: u64 = 7;
/// The batch the exported graph is traced for (and the import is checked on).
pub const EXPORT_BATCH: usize = 1000;
/// Largest difference between the model's and the imported model's outputs that counts as
/// agreeing (both run the same graph on the same kernels, so it is 0 in practice).
pub const TOLERANCE: f64 = 1e-5;

/// What the tour measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The imperative epoch.
    pub imperative: EpochStats,
    /// The hybridized epoch.
    pub hybridized: EpochStats,
    /// Hybridized training samples/s over imperative.
    pub speedup: f64,
    /// Traces the hybridized model ran (one per signature) and calls answered from the cache.
    pub traces_hits: (u64, u64),
    /// Nodes of the exported inference graph before and after the pass pipeline.
    pub nodes: (usize, usize),
    /// Kernels (op nodes) before and after the pass pipeline.
    pub kernels: (usize, usize),
    /// Largest |model - imported| over the compared outputs.
    pub max_abs_diff: f64,
    /// Test samples on which the two predictions were compared.
    pub compared: usize,
}

/// The chapter-3 MLP as a `HybridSequential`.
pub fn mlp() -> HybridSequential {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(
            Dense::new(HIDDEN)
                .activation(ActivationKind::Relu)
                .in_units(784),
        );
        net.add(
            Dense::new(HIDDEN)
                .activation(ActivationKind::Relu)
                .in_units(HIDDEN),
        );
        net.add(Dense::new(10).in_units(HIDDEN));
    });
    net
}

/// One epoch of SGD on `net` with the sample order of `SEED`; prints the book's lines.
fn train_epoch(
    out: &mut dyn Write,
    net: &HybridSequential,
    train: &ArrayDataset,
    test: &ArrayDataset,
) -> Fallible<EpochStats> {
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "sgd",
        [("learning_rate", LEARNING_RATE)],
    )?;
    let forward = |x: &NDArray| net.forward(x);
    let loss = |output: &NDArray, label: &NDArray| loss_fn.forward(output, label);
    let fit = Fit {
        epochs: 1,
        batch_size: BATCH_SIZE,
        forward: &forward,
        loss: &loss,
        predict: &forward,
    };
    kiln::random::seed(SEED + 1);
    let history = fit_classifier(out, train, test, &fit, &mut |n| trainer.step(n))?;
    history
        .epochs
        .last()
        .copied()
        .ok_or_else(|| "training ran no epoch".into())
}

/// Runs the tour, printing to `out`.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    let (train, test) = mnist_train::load(opts, QUICK_TRAIN)?;
    writeln!(
        out,
        "MNIST: {} training, {} test samples; MLP 784-{HIDDEN}-{HIDDEN}-10, batch {BATCH_SIZE}, SGD lr {LEARNING_RATE}",
        train.len(),
        test.len()
    )?;

    kiln::random::seed(SEED);
    let net = mlp();
    net.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
    )?;
    let params = net.collect_params()?;
    let start: Vec<NDArray> = params
        .iter()
        .map(|p| p.data()?.copy())
        .collect::<Result<_>>()?;
    let initial = evaluate_accuracy(&test, &|x: &NDArray| net.forward(x))?;
    writeln!(out, "Test accuracy before training: {initial:.4}")?;

    writeln!(
        out,
        "\n== 1. One epoch imperatively: every op runs as it is called"
    )?;
    let imperative = train_epoch(out, &net, &train, &test)?;

    writeln!(
        out,
        "\n== 2. The same epoch hybridized: the forward is traced once into a graph, then the graph runs"
    )?;
    for (p, v) in params.iter().zip(&start) {
        p.data()?.assign(v)?;
    }
    net.hybridize();
    let hybridized = train_epoch(out, &net, &train, &test)?;
    let speedup = hybridized.samples_per_sec / imperative.samples_per_sec;
    let stats = net.cache_stats();
    writeln!(out)?;
    writeln!(out, "              test accuracy   training samples/s")?;
    writeln!(
        out,
        "imperative    {:<14.4}  {:.0}",
        imperative.test_acc, imperative.samples_per_sec
    )?;
    writeln!(
        out,
        "hybridized    {:<14.4}  {:.0}",
        hybridized.test_acc, hybridized.samples_per_sec
    )?;
    writeln!(out, "speedup       {speedup:.2}x")?;
    let mut signatures: Vec<String> = net
        .hybrid_state()
        .signatures()
        .iter()
        .map(|s| s.to_string())
        .collect();
    signatures.sort();
    writeln!(
        out,
        "The hybridize cache: {} traces, {} cached calls; signatures:",
        stats.traces, stats.hits
    )?;
    for s in &signatures {
        writeln!(out, "  {s}")?;
    }

    writeln!(out, "\n== 3. The graph, exported and optimized")?;
    let n = EXPORT_BATCH.min(test.len());
    let probe = test.data().slice_axis0(..n)?;
    let predicted = autograd::predict_mode(|| net.forward(&probe))?;
    let (graph_path, params_path) = net.export(&opts.out_file("tour-mlp")?)?;
    writeln!(
        out,
        "Exported the predict-mode graph for batch {n} to {} and the weights to {}",
        graph_path.display(),
        params_path.display()
    )?;
    let mut graph = Graph::load_json(&graph_path)?;
    let table = PassManager::new(Pipeline::Inference).run(&mut graph)?;
    let (first, last) = match (table.rows.first(), table.rows.last()) {
        (Some(f), Some(l)) => (f.before, l.after),
        _ => return Err("the inference pipeline ran no pass".into()),
    };
    writeln!(
        out,
        "Inference pass pipeline: {} -> {} nodes, {} -> {} kernels, {} -> {} bytes moved per call",
        first.nodes, last.nodes, first.kernels, last.kernels, first.bytes_moved, last.bytes_moved
    )?;
    write!(out, "{table}")?;
    writeln!(out, "The optimized graph:")?;
    write!(out, "{graph}")?;

    writeln!(out, "\n== 4. Imported with no model code")?;
    let imported = SymbolBlock::imports(&graph_path, &["data"], &params_path, Context::cpu())?;
    let mut max_abs_diff = 0.0f64;
    let mut compared = 0;
    let mut disagree = 0;
    let mut start_row = 0;
    while start_row + n <= test.len() {
        let x = test.data().slice_axis0(start_row..start_row + n)?;
        let want = if start_row == 0 {
            predicted.clone()
        } else {
            autograd::predict_mode(|| net.forward(&x))?
        };
        let got = imported.forward(&x)?;
        for (a, b) in got.to_vec::<f32>()?.iter().zip(want.to_vec::<f32>()?) {
            max_abs_diff = max_abs_diff.max((f64::from(*a) - f64::from(b)).abs());
        }
        let digits =
            |a: &NDArray| -> Result<Vec<f32>> { a.argmax(1)?.astype(DType::F32)?.to_vec::<f32>() };
        disagree += digits(&got)?
            .iter()
            .zip(digits(&want)?)
            .filter(|(a, b)| **a != *b)
            .count();
        compared += n;
        start_row += n;
    }
    writeln!(
        out,
        "SymbolBlock::imports on {compared} test images: max |model - imported| = {max_abs_diff:e}, {disagree} differing predicted digits"
    )?;
    if max_abs_diff.is_nan() || max_abs_diff > TOLERANCE || disagree > 0 {
        return Err(format!(
            "the imported model disagrees with the model: max abs diff {max_abs_diff:e} (tolerance {TOLERANCE:e}), {disagree} predictions differ"
        )
        .into());
    }
    writeln!(out, "The imported model predicts what the model predicts.")?;
    Ok(Summary {
        imperative,
        hybridized,
        speedup,
        traces_hits: (stats.traces, stats.hits),
        nodes: (first.nodes, last.nodes),
        kernels: (first.kernels, last.kernels),
        max_abs_diff,
        compared,
    })
}

fn main() {
    common::main_with(run);
}
