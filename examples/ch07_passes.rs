//! Chapter 7, "Graph passes": what happens to a model between `hybridize()` and the kernels
//! that run. The book's MLP (784-256-256-10, ReLU) and its LeNet are traced by hybridize,
//! then the inference pipeline runs pass by pass:
//!
//! ```text
//! dropout -> bn_fold -> simplify -> fold -> cse -> dce -> fuse -> plan_memory
//! ```
//!
//! For each model the example prints the traced graph, the graph after each pass that
//! changed it, the per-pass statistics table (nodes, kernels, estimated bytes moved, rules
//! fired, time), and the body of every fused kernel; it writes the text and Graphviz DOT
//! form after each pass into `--out DIR` (`mlp/00-input.dot`, `mlp/07-fuse.dot`, ... — render
//! one with `dot -Tsvg`). The MLP's training graphs (forward and backward) get the training
//! pipeline too.
//!
//! Passes switch off by name with `KILN_PASSES` (read by `PassManager::from_env`, so any
//! program takes it): `KILN_PASSES=-fuse cargo run --example ch07_passes` keeps every op a
//! kernel of its own, and the example shows how many kernels that costs.
//!
//! `cargo run --release --example ch07_passes`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::gluon::init::Normal;
use kiln::gluon::nn::{ActivationKind, Conv2D, Dense, Flatten, HybridSequential, MaxPool2D};
use kiln::gluon::{Block, HybridBlock};
use kiln::ir::graph::NodeKind;
use kiln::ir::{Graph, Op};
use kiln::passes::{differentiate, DumpOptions, PassManager, Pipeline, StatsTable};
use kiln::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// The batch the models are traced with.
pub const BATCH: usize = 8;

/// What one model's pipeline did, for the tests.
#[derive(Debug)]
pub struct ModelReport {
    /// `mlp` or `lenet`.
    pub name: String,
    /// Kernels (op nodes) of the traced inference graph.
    pub kernels_traced: usize,
    /// Kernels after the whole pipeline.
    pub kernels_optimized: usize,
    /// Kernels after the pipeline without `fuse`.
    pub kernels_without_fuse: usize,
    /// Fused nodes after the pipeline, with their kinds (`Elementwise`, `Epilogue`, ...).
    pub fused_kinds: Vec<String>,
    /// The statistics table of the pipeline.
    pub stats: StatsTable,
    /// The folder holding the per-pass text and DOT files.
    pub dump_dir: PathBuf,
}

/// What the example measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The MLP, then LeNet.
    pub models: Vec<ModelReport>,
    /// Kernels of the MLP's training forward and backward graphs: `[traced, optimized]` each.
    pub mlp_training: [[usize; 2]; 2],
}

/// The book's MLP.
pub fn mlp() -> HybridSequential {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Dense::new(256).activation(ActivationKind::Relu));
        net.add(Dense::new(256).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    net
}

/// The book's LeNet.
pub fn lenet() -> HybridSequential {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Conv2D::new(20, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Conv2D::new(50, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2).strides(2));
        net.add(Flatten::new());
        net.add(Dense::new(512).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    net
}

/// Kernels a graph launches: its op nodes (a fused node is one kernel).
pub fn kernels(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&id| matches!(g.node(id).map(|n| &n.kind), Ok(NodeKind::Op(_))))
        .count()
}

/// Hybridizes `net`, runs one batch of shape `input` in `mode`, and returns the traced graph.
fn traced(net: &HybridSequential, input: &[usize], train: bool) -> Fallible<Graph> {
    let x = nd::random::normal(0.0, 1.0, input.to_vec())?;
    net.hybridize();
    if train {
        autograd::train_mode(|| net.forward(&x))?;
    } else {
        autograd::predict_mode(|| net.forward(&x))?;
    }
    Ok(net
        .hybrid_state()
        .last_graph()
        .ok_or("hybridize compiled no graph")?)
}

/// The passes of a pipeline as configured from the environment (`KILN_PASSES`, ...).
fn pipeline(p: Pipeline) -> Fallible<PassManager> {
    Ok(PassManager::from_env(p)?)
}

fn show_model(
    name: &str,
    graph: &Graph,
    opts: &Options,
    out: &mut dyn Write,
) -> Fallible<ModelReport> {
    writeln!(out, "\n==================== {name} ====================")?;
    writeln!(
        out,
        "Traced inference graph ({} nodes, {} kernels):\n{}",
        graph.len(),
        kernels(graph),
        graph.to_text()
    )?;
    let dump_dir = opts.out.join(name);
    if dump_dir.exists() {
        std::fs::remove_dir_all(&dump_dir)?;
    }
    let mut pm = pipeline(Pipeline::Inference)?;
    pm.set_dump(DumpOptions {
        stderr: None,
        dir: Some(dump_dir.clone()),
    });
    writeln!(out, "Passes that run: {}", pm.enabled_names().join(" -> "))?;
    let mut g = graph.clone();
    let stats = pm.run(&mut g)?;

    // The manager wrote NN-pass.txt after every pass: print those that changed the graph.
    let mut previous = graph.to_text();
    for (i, row) in stats.rows.iter().enumerate() {
        let path = dump_dir.join(format!("{:02}-{}.txt", i + 1, row.pass));
        let text = std::fs::read_to_string(&path)?;
        if text == previous {
            writeln!(out, "--- after {}: unchanged ---", row.pass)?;
        } else {
            writeln!(
                out,
                "--- after {} ({}) ---\n{text}",
                row.pass,
                path.display()
            )?;
        }
        previous = text;
    }
    writeln!(out, "Statistics:\n{stats}")?;

    let mut fused_kinds = Vec::new();
    for id in g.topo_order() {
        if let Some(Op::Fused { kernel }) = g.op(id)? {
            let kind = format!("{:?}", kernel.kind());
            writeln!(
                out,
                "fused kernel ({kind}, {} inputs) -> {}:\n{}",
                kernel.inputs.len(),
                kernel.output_type(),
                indent(&kernel.body_text())
            )?;
            fused_kinds.push(kind);
        }
    }

    let mut without = pipeline(Pipeline::Inference)?;
    let fuse_was_on = without.enabled_names().contains(&"fuse");
    without.disable("fuse")?;
    let mut plain = graph.clone();
    without.run(&mut plain)?;
    let report = ModelReport {
        name: name.to_string(),
        kernels_traced: kernels(graph),
        kernels_optimized: kernels(&g),
        kernels_without_fuse: kernels(&plain),
        fused_kinds,
        stats,
        dump_dir: dump_dir.clone(),
    };
    if fuse_was_on {
        writeln!(
            out,
            "With KILN_PASSES=-fuse the {name} would launch {} kernels instead of {} \
             (each elementwise op, bias add and activation its own pass over memory).",
            report.kernels_without_fuse, report.kernels_optimized
        )?;
    } else {
        writeln!(
            out,
            "fuse is switched off (KILN_PASSES): the {name} launches {} kernels; with fusion \
             on, fewer (run without KILN_PASSES=-fuse to compare).",
            report.kernels_optimized
        )?;
    }
    writeln!(
        out,
        "Text and DOT after each pass: {} (render with `dot -Tsvg FILE.dot > FILE.svg`)",
        dump_dir.display()
    )?;
    Ok(report)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
}

/// Runs the example, writing to `out`.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(7);
    writeln!(
        out,
        "Graph passes on the book's MLP and LeNet (batch {BATCH}). \
         Switch passes with KILN_PASSES=-name (e.g. -fuse, -cse, none)."
    )?;
    let mut models = Vec::new();

    let net = mlp();
    net.initialize(Arc::new(Normal::new(0.05)), Context::cpu())?;
    let g = traced(&net, &[BATCH, 784], false)?;
    models.push(show_model("mlp", &g, opts, out)?);

    // Training: the forward keeps what the backward needs, so less of it fuses.
    let train = traced(&net, &[BATCH, 784], true)?;
    let wrt: Vec<String> = train
        .params()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let d = differentiate(&train, &names)?;
    let mut mlp_training = [[0usize; 2]; 2];
    for (k, (what, graph)) in [("forward", &d.forward), ("backward", &d.backward)]
        .into_iter()
        .enumerate()
    {
        let mut h = graph.clone();
        let stats = pipeline(Pipeline::Training)?.run(&mut h)?;
        mlp_training[k] = [kernels(graph), kernels(&h)];
        writeln!(
            out,
            "\nMLP training {what} graph, training pipeline:\n{stats}\nafter:\n{}",
            h.to_text()
        )?;
    }

    let net = lenet();
    net.initialize(Arc::new(Normal::new(0.05)), Context::cpu())?;
    let g = traced(&net, &[BATCH, 1, 28, 28], false)?;
    models.push(show_model("lenet", &g, opts, out)?);

    writeln!(out, "\nKernels (traced -> optimized, without fuse):")?;
    for m in &models {
        writeln!(
            out,
            "  {:<6} {:>3} -> {:>3}   ({} without fuse)",
            m.name, m.kernels_traced, m.kernels_optimized, m.kernels_without_fuse
        )?;
    }
    writeln!(
        out,
        "  MLP training forward {} -> {}, backward {} -> {}",
        mlp_training[0][0], mlp_training[0][1], mlp_training[1][0], mlp_training[1][1]
    )?;
    Ok(Summary {
        models,
        mlp_training,
    })
}

fn main() {
    common::main_with(run);
}
