//! Models exported by real MXNet 1.9.1 (`tests/fixtures/mxnet`, made by
//! `scripts/mxnet/make_fixtures.sh`): kiln's outputs match MXNet's within 1e-4, on the
//! reference interpreter and through a hybridized `SymbolBlock`; an imported model fine-tunes.

use kiln::cli::npy;
use kiln::frontend::mxnet;
use kiln::gluon::{Block, Trainer};
use kiln::ir::{Tensor, TensorType};
use kiln::{autograd, Context, NDArray};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mxnet")
}

struct Case {
    name: String,
    symbol: PathBuf,
    params: PathBuf,
    inputs: Vec<(String, Tensor)>,
    outputs: Vec<Tensor>,
}

fn cases() -> Vec<Case> {
    let d = dir();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap()).unwrap();
    let models = manifest["models"].as_object().unwrap();
    models
        .iter()
        .map(|(name, m)| Case {
            name: name.clone(),
            symbol: d.join(m["symbol"].as_str().unwrap()),
            params: d.join(m["params"].as_str().unwrap()),
            inputs: m["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap().to_string(),
                        npy::read(d.join(i["file"].as_str().unwrap())).unwrap(),
                    )
                })
                .collect(),
            outputs: m["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| npy::read(d.join(o["file"].as_str().unwrap())).unwrap())
                .collect(),
        })
        .collect()
}

fn types(c: &Case) -> Vec<(&str, TensorType)> {
    c.inputs.iter().map(|(n, t)| (n.as_str(), t.ty())).collect()
}

/// Largest absolute difference; panics on a shape mismatch.
fn max_diff(label: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{label}: shape");
    got.to_f64_vec()
        .iter()
        .zip(want.to_f64_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn every_fixture_matches_mxnet_on_the_interpreter() {
    let all = cases();
    assert!(all.len() >= 4, "the fixtures are missing");
    for c in &all {
        let model = mxnet::load(&c.symbol, &c.params, &types(c)).unwrap();
        let mut bind: Vec<(&str, kiln::ir::TensorView<'_>)> = c
            .inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.view()))
            .collect();
        for (n, t) in &model.params {
            bind.push((n.as_str(), t.view()));
        }
        let got = model.graph.run(&bind).unwrap();
        assert_eq!(got.len(), c.outputs.len(), "{}: outputs", c.name);
        for (k, (g, w)) in got.iter().zip(&c.outputs).enumerate() {
            let d = max_diff(&c.name, g, w);
            println!("{} output {k}: max |kiln - mxnet| = {d:.3e}", c.name);
            assert!(d <= TOL, "{} output {k}: max difference {d}", c.name);
        }
    }
}

#[test]
fn every_fixture_matches_mxnet_as_a_symbol_block() {
    for c in &cases() {
        let net = mxnet::import(&c.symbol, &c.params, &types(c), Context::cpu()).unwrap();
        let xs: Vec<NDArray> = c
            .inputs
            .iter()
            .map(|(_, t)| NDArray::from_tensor(t.clone(), Context::cpu()))
            .collect();
        let refs: Vec<&NDArray> = xs.iter().collect();
        // Twice: the second call runs the cached compiled plan.
        for _ in 0..2 {
            let got = net.call(&refs).unwrap();
            for (k, (g, w)) in got.iter().zip(&c.outputs).enumerate() {
                let d = max_diff(&c.name, &g.to_tensor(), w);
                assert!(d <= TOL, "{} output {k}: max difference {d}", c.name);
            }
        }
    }
}

#[test]
fn an_imported_model_fine_tunes() {
    let c = cases()
        .into_iter()
        .find(|c| c.name == "mlp")
        .expect("the mlp fixture");
    let net = mxnet::import(&c.symbol, &c.params, &types(&c), Context::cpu()).unwrap();
    let params = net.collect_params().unwrap();
    assert!(!params.is_empty());
    let x = NDArray::from_tensor(c.inputs[0].1.clone(), Context::cpu());
    // Pull the outputs toward zero: loss = mean(y^2).
    let loss_of = |net: &kiln::hybrid::SymbolBlock| -> NDArray {
        let y = net.call(&[&x]).unwrap().remove(0);
        y.square().unwrap().mean().unwrap()
    };
    let before = loss_of(&net).to_vec::<f32>().unwrap()[0];
    let mut trainer = Trainer::new(&params, "sgd", [("learning_rate", 0.1)]).unwrap();
    for _ in 0..3 {
        let loss = autograd::record(|| loss_of(&net));
        loss.backward().unwrap();
        trainer.step(1).unwrap();
    }
    let after = loss_of(&net).to_vec::<f32>().unwrap()[0];
    println!("mlp fine-tuning: loss {before} -> {after}");
    assert!(after < before * 0.99, "loss {before} -> {after}");
}
