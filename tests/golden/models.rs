//! The chapter models the structural tests compile: built as `HybridSequential`s, traced by
//! hybridize, differentiated as `CachedGraph` does for training, and run through the pass
//! pipelines. Shared by `tests/kernel_counts.rs` and `tests/golden_dumps.rs`. The networks are
//! `kiln::models`' builders.

#![allow(dead_code)]

use kiln::gluon::init::Normal;
use kiln::gluon::nn::HybridSequential;
use kiln::gluon::{Block, HybridBlock};
use kiln::ir::graph::NodeKind;
use kiln::ir::{Graph, Op};
use kiln::models::{bn_cnn, lenet, mlp, softmax_regression};
use kiln::passes::{differentiate, PassManager, Pipeline};
use kiln::{autograd, nd, Context, Result};
use std::sync::Arc;

/// The batch the models are traced with (kernel counts do not depend on it).
pub const BATCH: usize = 4;

/// A chapter model: its name and how to build it, with its input shape.
pub struct Model {
    /// File-name-friendly name (`mlp`, `lenet`, ...).
    pub name: &'static str,
    /// Builds the (uninitialized) network.
    pub build: fn() -> Result<HybridSequential>,
    /// The input shape, batch first.
    pub input: &'static [usize],
}

/// The four chapter models.
pub const MODELS: [Model; 4] = [
    Model {
        name: "softmax_regression",
        build: softmax_regression,
        input: &[BATCH, 784],
    },
    Model {
        name: "mlp",
        build: mlp,
        input: &[BATCH, 784],
    },
    Model {
        name: "lenet",
        build: lenet,
        input: &[BATCH, 1, 28, 28],
    },
    Model {
        name: "bn_cnn",
        build: bn_cnn,
        input: &[BATCH, 1, 28, 28],
    },
];

/// The graphs one model compiles to.
pub struct Compiled {
    /// The inference graph (traced in predict mode).
    pub inference: Graph,
    /// The training forward graph (outputs, state updates, then saved values).
    pub forward: Graph,
    /// The training backward graph (gradients of the trainable parameters).
    pub backward: Graph,
}

/// Traces `model` in predict and in train mode and differentiates the training graph with
/// respect to its trainable parameters (every parameter but batch norm's running
/// statistics), as `CachedGraph` does when training. No passes have run.
pub fn trace(model: &Model) -> Result<Compiled> {
    let net = (model.build)()?;
    net.initialize(Arc::new(Normal::new(0.05)), Context::cpu())?;
    kiln::random::seed(7);
    let x = nd::random::normal(0.0, 1.0, model.input.to_vec())?;
    net.hybridize();
    autograd::predict_mode(|| net.forward(&x))?;
    let inference = last_graph(&net)?;
    autograd::train_mode(|| net.forward(&x))?;
    let train = last_graph(&net)?;
    let wrt: Vec<String> = train
        .params()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .collect();
    let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let d = differentiate(&train, &names)?;
    Ok(Compiled {
        inference,
        forward: d.forward,
        backward: d.backward,
    })
}

fn last_graph(net: &HybridSequential) -> Result<Graph> {
    net.hybrid_state()
        .last_graph()
        .ok_or_else(|| kiln::Error::Graph("hybridize compiled no graph".into()))
}

/// Runs the default pipeline (`Inference` or `Training`) on a copy of `g`, with `fuse`
/// switched on or off.
pub fn optimize(g: &Graph, pipeline: Pipeline, fuse: bool) -> Result<Graph> {
    let mut h = g.clone();
    let mut pm = PassManager::new(pipeline);
    if !fuse {
        pm.disable("fuse")?;
    }
    pm.run(&mut h)?;
    Ok(h)
}

/// Kernels a graph launches: its op nodes (a fused node is one kernel).
pub fn kernels(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&id| matches!(g.node(id).map(|n| &n.kind), Ok(NodeKind::Op(_))))
        .count()
}

/// Fused nodes in a graph.
pub fn fused_nodes(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&id| matches!(g.op(id), Ok(Some(Op::Fused { .. }))))
        .count()
}
