//! Chapter 3, "Plumbing: a look under the hood of gluon": the same 128-64-10 MLP written as a
//! `Sequential` and as a custom block (a struct implementing `Block`, with its layers as
//! children), the parameter dicts gluon prints, deferred shape inference (a weight is
//! `(128, 0)` until the first call shows it 784 input columns) and `in_units`, which gives the
//! shapes up front. No training.
//!
//! `cargo run --release --example ch03_plumbing`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::params::{describe_dict, tuple};
use common::{Fallible, Options};
use kiln::gluon::init::{FactorType, Normal, RandType, Uniform, Xavier};
use kiln::gluon::name::{name_scope, unique_prefix};
use kiln::gluon::nn::{ActivationKind, Dense, Sequential};
use kiln::gluon::{Block, Parameter};
use kiln::prelude::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The images the notebook pushes through the nets: one batch of the book's size.
pub const BATCH: usize = 64;

/// The notebook's `MLP(Block)`: three `Dense` children and a forward that applies ReLU
/// between them. With `keep_hidden` it also keeps each hidden representation, which the
/// notebook's second version prints.
pub struct Mlp {
    prefix: String,
    dense0: Dense,
    dense1: Dense,
    dense2: Dense,
    keep_hidden: bool,
    hidden: Mutex<Vec<NDArray>>,
}

impl Mlp {
    /// A new `mlpN_` block whose layers are named under its prefix (`mlp0_dense0_`).
    pub fn new(keep_hidden: bool) -> Mlp {
        let prefix = unique_prefix("mlp");
        let (dense0, dense1, dense2) = name_scope(&prefix, || {
            (Dense::new(128), Dense::new(64), Dense::new(10))
        });
        Mlp {
            prefix,
            dense0,
            dense1,
            dense2,
            keep_hidden,
            hidden: Mutex::new(Vec::new()),
        }
    }

    /// The hidden representations of the last call (when made with `keep_hidden`).
    pub fn take_hidden(&self) -> Vec<NDArray> {
        std::mem::take(&mut *self.hidden.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn keep(&self, h: &NDArray) {
        if self.keep_hidden {
            self.hidden
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(h.clone());
        }
    }
}

impl Block for Mlp {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(&self.dense0);
        f(&self.dense1);
        f(&self.dense2);
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        self.hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let h = self.dense0.forward(x)?;
        self.keep(&h);
        let h = self.dense1.forward(&h.relu()?)?;
        self.keep(&h);
        let h = self.dense2.forward(&h.relu()?)?;
        self.keep(&h);
        Ok(h)
    }
}

/// What the run showed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The Sequential's first weight shape before and after its first call.
    pub deferred_shapes: (Vec<usize>, Vec<usize>),
    /// The Sequential's parameter names.
    pub sequential_names: Vec<String>,
    /// The custom block's parameter names.
    pub mlp_names: Vec<String>,
    /// The shapes of the custom block's hidden representations for one image.
    pub hidden_shapes: Vec<Vec<usize>>,
    /// The output shapes of the Sequential (on a batch) and of the custom block (one image).
    pub output_shapes: (Vec<usize>, Vec<usize>),
    /// The `in_units` net's weight shapes right after construction.
    pub in_units_shapes: Vec<Vec<usize>>,
}

/// The notebook's `Sequential`: Dense(128, relu), Dense(64, relu), Dense(10), with the input
/// size of each layer given when `in_units` is true.
pub fn sequential(in_units: bool) -> Sequential {
    let net = Sequential::new();
    net.name_scope(|| {
        let layer = |units: usize, inputs: usize| {
            if in_units {
                Dense::new(units).in_units(inputs)
            } else {
                Dense::new(units)
            }
        };
        net.add(layer(128, 784).activation(ActivationKind::Relu));
        net.add(layer(64, 128).activation(ActivationKind::Relu));
        net.add(layer(10, 64));
    });
    net
}

fn shape_of(p: Option<&Parameter>) -> Vec<usize> {
    p.map(|p| p.shape().dims().to_vec()).unwrap_or_default()
}

/// Builds and calls the nets as the notebook does and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let data = mnist_train::load_split(opts, true, Some(BATCH))?
        .data()
        .clone();
    writeln!(
        out,
        "One batch of MNIST: data shape {}",
        tuple(data.shape())
    )?;

    writeln!(out, "\n# A Sequential\n")?;
    let net1 = sequential(false);
    writeln!(out, "{net1}")?;
    let params1 = net1.collect_params()?;
    writeln!(out, "{}", describe_dict(&net1.prefix(), &params1))?;
    let first_weight = params1.iter().next().cloned();
    net1.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
    )?;
    let before = shape_of(first_weight.as_ref());
    writeln!(
        out,
        "After initialize(Xavier(magnitude=2.24)) the input size is still unknown: {} has shape {}\n(its initialization waits for the first call)",
        first_weight.as_ref().map(|p| p.name()).unwrap_or_default(),
        tuple(&Shape::from(before.clone()))
    )?;
    let y1 = net1.forward(&data)?;
    writeln!(
        out,
        "net1(data) has shape {}; now the shapes are known:",
        tuple(y1.shape())
    )?;
    writeln!(
        out,
        "{}",
        describe_dict(&net1.prefix(), &net1.collect_params()?)
    )?;
    let after = shape_of(first_weight.as_ref());

    writeln!(out, "\n# The same network as a custom Block\n")?;
    let net2 = Mlp::new(false);
    net2.initialize(Arc::new(Uniform::default()), Context::cpu())?;
    let y2 = net2.forward(&data.slice_axis0(..1)?)?;
    writeln!(out, "net2(data[0:1]) =\n{y2}")?;
    let mlp_params = net2.collect_params()?;
    writeln!(out, "{}", describe_dict(&net2.prefix(), &mlp_params))?;

    writeln!(out, "\n# Printing the hidden representations\n")?;
    let net3 = Mlp::new(true);
    net3.initialize(Arc::new(Normal::new(0.1)), Context::cpu())?;
    net3.forward(&data.slice_axis0(..1)?)?;
    let hidden = net3.take_hidden();
    for (i, h) in hidden.iter().enumerate() {
        let label = if i + 1 < hidden.len() {
            format!("Hidden Representation {}", i + 1)
        } else {
            "Network output".to_string()
        };
        writeln!(out, "{label} (shape {}):\n{h}", tuple(h.shape()))?;
    }

    writeln!(out, "\n# Giving in_units up front\n")?;
    let net4 = sequential(true);
    let params4 = net4.collect_params()?;
    writeln!(out, "{}", describe_dict(&net4.prefix(), &params4))?;
    let in_units_shapes = params4
        .iter()
        .filter(|p| p.name().ends_with("weight"))
        .map(|p| p.shape().dims().to_vec())
        .collect();
    net4.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
    )?;
    writeln!(
        out,
        "With in_units the weights are initialized at once: {} is initialized: {}",
        params4.names()[0],
        params4.iter().all(Parameter::is_initialized)
    )?;

    Ok(Summary {
        deferred_shapes: (before, after),
        sequential_names: params1.names(),
        mlp_names: mlp_params.names(),
        hidden_shapes: hidden.iter().map(|h| h.shape().dims().to_vec()).collect(),
        output_shapes: (y1.shape().dims().to_vec(), y2.shape().dims().to_vec()),
        in_units_shapes,
    })
}

fn main() {
    common::main_with(run);
}
