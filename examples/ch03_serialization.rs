//! Chapter 3, "Serialization - saving, loading and checkpointing": `nd::save` / `nd::load` of
//! a list of arrays and of a name-to-array map, then `save_parameters` of a 256-256-1 MLP and
//! `load_parameters` into a second, freshly built copy, which gives the same output. Files
//! are in the safetensors format (Python reads them with `safetensors.numpy.load_file`) and go
//! to the output folder.
//!
//! `cargo run --release --example ch03_serialization`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::gluon::init::Normal;
use kiln::gluon::nn::{ActivationKind, Dense, Sequential};
use kiln::gluon::serialize::{load_parameters, save_parameters};
use kiln::gluon::Block;
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// The book's hidden width.
pub const HIDDEN: usize = 256;

/// What the run showed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The names and element sums of the arrays loaded back from the list file.
    pub list: Vec<(String, f32)>,
    /// The names and element sums of the arrays loaded back from the map file.
    pub map: Vec<(String, f32)>,
    /// The first net's output on `ones([1, 100])`, and the second's after loading.
    pub outputs: (f32, f32),
    /// The parameter names stored in the parameter file.
    pub stored_names: Vec<String>,
}

/// The notebook's MLP: Dense(256, relu), Dense(256, relu), Dense(1).
pub fn build_net() -> Sequential {
    let net = Sequential::new();
    net.name_scope(|| {
        net.add(Dense::new(HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(HIDDEN).activation(ActivationKind::Relu));
        net.add(Dense::new(1));
    });
    net
}

fn sums(loaded: &[(String, NDArray)]) -> Result<Vec<(String, f32)>> {
    loaded
        .iter()
        .map(|(name, a)| Ok((name.clone(), nd::sum(a)?.as_scalar::<f32>()?)))
        .collect()
}

/// Saves and loads arrays and parameters as the notebook does, printing what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let x = nd::ones([100, 100])?;
    let y = nd::zeros([100, 100])?;

    let list_file = opts.out_file("ch03_serialization_list.safetensors")?;
    nd::save(&list_file, &[x.clone(), y.clone()])?;
    let loaded = nd::load(&list_file)?;
    writeln!(
        out,
        "nd::save({}, [X, Y]); nd::load gives {} arrays:",
        list_file.display(),
        loaded.len()
    )?;
    for (name, a) in &loaded {
        writeln!(out, "{name}: {a}")?;
    }
    let list = sums(&loaded)?;

    let map_file = opts.out_file("ch03_serialization_dict.safetensors")?;
    nd::save_map(&map_file, &[("X", x.clone()), ("Y", y.clone())])?;
    let loaded = nd::load(&map_file)?;
    writeln!(
        out,
        "\nnd::save_map({}, {{X, Y}}); nd::load gives:",
        map_file.display()
    )?;
    for (name, a) in &loaded {
        writeln!(out, "{name}: {a}")?;
    }
    let map = sums(&loaded)?;

    let net = build_net();
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
    let input = nd::ones([1, 100])?;
    let before = net.forward(&input)?;
    writeln!(out, "\n{net}\nnet(ones([1, 100])) = {before}")?;
    let params_file = opts.out_file("ch03_serialization_mlp.safetensors")?;
    save_parameters(&net, &params_file)?;
    let stored_names: Vec<String> = nd::load(&params_file)?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    writeln!(
        out,
        "save_parameters wrote {} ({} bytes): {}",
        params_file.display(),
        std::fs::metadata(&params_file)?.len(),
        stored_names.join(", ")
    )?;

    // A second net of the same shape, never initialized: loading gives it its weights
    // (and, with them, the input size its first layer had deferred).
    let net2 = build_net();
    load_parameters(&net2, &params_file, Context::cpu())?;
    let after = net2.forward(&input)?;
    writeln!(
        out,
        "net2 ({}) after load_parameters: net2(ones([1, 100])) = {after}",
        net2.prefix()
    )?;
    let outputs = (before.as_scalar::<f32>()?, after.as_scalar::<f32>()?);
    writeln!(
        out,
        "The outputs are {}",
        if outputs.0 == outputs.1 {
            "identical"
        } else {
            "DIFFERENT"
        }
    )?;
    Ok(Summary {
        list,
        map,
        outputs,
        stored_names,
    })
}

fn main() {
    common::main_with(run);
}
