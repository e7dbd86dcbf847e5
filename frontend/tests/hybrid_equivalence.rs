//! The contract of hybridize: for every layer of `gluon::nn` and every model shape of the
//! chapter 2-4 examples, the hybridized block gives the imperative block's outputs, parameter
//! gradients and input gradients (max-norm relative error <= 1e-5 in f32), in training and in
//! predict mode, with the same dropout masks (same global seed) and the same BatchNorm running
//! statistics.
//!
//! One table ([`cases`]) covers them all, and
//! [`every_gluon_nn_layer_type_is_in_the_table`] fails when a layer type of `gluon::nn` is not
//! covered by some case.

use kiln_frontend::gluon::init::{Initializer, Normal};
use kiln_frontend::gluon::nn::{
    Activation, ActivationKind, AvgPool1D, AvgPool2D, BatchNorm, Conv1D, Conv2D, Conv2DTranspose,
    Dense, Dropout, Embedding, Flatten, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D,
    GlobalMaxPool2D, HybridSequential, LayerNorm, LeakyReLU, MaxPool1D, MaxPool2D,
};
use kiln_frontend::gluon::{HybridBlock, ParameterDict};
use kiln_frontend::{autograd, nd, Context, GradReq, NDArray, Result};
use std::collections::BTreeSet;
use std::sync::Arc;

/// One row of the table.
struct Case {
    name: &'static str,
    /// The `gluon::nn` types this case exercises (checked against the module's list).
    covers: &'static [&'static str],
    build: fn() -> Result<Box<dyn HybridBlock>>,
    /// The input (seeded, so every run sees the same one).
    input: fn() -> Result<NDArray>,
    /// Whether the input takes a gradient (not for integer-valued indices).
    input_grad: bool,
}

fn normal(shape: &[usize], seed: u64) -> Result<NDArray> {
    kiln_frontend::random::seed(seed);
    nd::random::normal(0.0, 1.0, shape.to_vec())
}

/// Adds one child to a container.
type AddChild = Box<dyn FnOnce(&HybridSequential)>;

fn seq(children: Vec<AddChild>) -> Box<dyn HybridBlock> {
    let net = HybridSequential::new();
    net.name_scope(|| {
        for add in children {
            add(&net);
        }
    });
    Box::new(net)
}

macro_rules! layers {
    ($($e:expr),* $(,)?) => {
        seq(vec![$(Box::new(move |n: &HybridSequential| n.add($e))),*])
    };
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "dense",
            covers: &["Dense"],
            build: || Ok(Box::new(Dense::new(5))),
            input: || normal(&[3, 4], 1),
            input_grad: true,
        },
        Case {
            name: "dense_no_flatten_relu",
            covers: &["Dense"],
            build: || {
                Ok(Box::new(
                    Dense::new(3)
                        .flatten(false)
                        .activation(ActivationKind::Relu),
                ))
            },
            input: || normal(&[2, 3, 4], 2),
            input_grad: true,
        },
        Case {
            name: "activations",
            covers: &["Activation", "ActivationKind"],
            build: || {
                Ok(layers![
                    Activation::from_kind(ActivationKind::Tanh),
                    Activation::from_kind(ActivationKind::Softsign),
                    Activation::from_kind(ActivationKind::Sigmoid),
                    Activation::from_kind(ActivationKind::Softrelu),
                    Activation::from_kind(ActivationKind::Relu),
                ])
            },
            input: || normal(&[3, 4], 3),
            input_grad: true,
        },
        Case {
            name: "dropout",
            covers: &["Dropout"],
            build: || Ok(Box::new(Dropout::new(0.5)?)),
            input: || normal(&[4, 6], 4),
            input_grad: true,
        },
        Case {
            name: "flatten",
            covers: &["Flatten"],
            build: || Ok(Box::new(Flatten::new())),
            input: || normal(&[2, 3, 4], 5),
            input_grad: true,
        },
        Case {
            name: "leaky_relu",
            covers: &["LeakyReLU"],
            build: || Ok(Box::new(LeakyReLU::new(0.1))),
            input: || normal(&[3, 4], 6),
            input_grad: true,
        },
        Case {
            name: "embedding",
            covers: &["Embedding"],
            build: || Ok(Box::new(Embedding::new(10, 4))),
            input: || nd::array(&[[1.0f32, 3.0, 9.0], [0.0, 3.0, 5.0]]),
            input_grad: false,
        },
        Case {
            name: "conv1d",
            covers: &["Conv1D"],
            build: || Ok(Box::new(Conv1D::new(4, 3).padding(1))),
            input: || normal(&[2, 3, 8], 7),
            input_grad: true,
        },
        Case {
            name: "conv2d",
            covers: &["Conv2D"],
            build: || {
                Ok(Box::new(
                    Conv2D::new(4, 3)
                        .strides(2)
                        .padding(1)
                        .activation(ActivationKind::Relu),
                ))
            },
            input: || normal(&[2, 3, 7, 7], 8),
            input_grad: true,
        },
        Case {
            name: "conv2d_transpose",
            covers: &["Conv2DTranspose"],
            build: || Ok(Box::new(Conv2DTranspose::new(3, 4).strides(2).padding(1))),
            input: || normal(&[1, 2, 3, 3], 9),
            input_grad: true,
        },
        Case {
            name: "pool1d",
            covers: &[
                "MaxPool1D",
                "AvgPool1D",
                "GlobalMaxPool1D",
                "GlobalAvgPool1D",
            ],
            build: || {
                Ok(layers![
                    MaxPool1D::new(2),
                    AvgPool1D::new(3).strides(1).padding(1),
                    GlobalMaxPool1D::new(),
                    GlobalAvgPool1D::new(),
                ])
            },
            input: || normal(&[2, 3, 9], 10),
            input_grad: true,
        },
        Case {
            name: "pool2d",
            covers: &[
                "MaxPool2D",
                "AvgPool2D",
                "GlobalMaxPool2D",
                "GlobalAvgPool2D",
            ],
            build: || {
                Ok(layers![
                    MaxPool2D::new(2),
                    AvgPool2D::new(2)
                        .strides(1)
                        .padding(1)
                        .count_include_pad(false),
                    GlobalMaxPool2D::new(),
                    GlobalAvgPool2D::new(),
                ])
            },
            input: || normal(&[2, 3, 6, 6], 11),
            input_grad: true,
        },
        Case {
            name: "batch_norm",
            covers: &["BatchNorm"],
            build: || Ok(Box::new(BatchNorm::new().momentum(0.8))),
            input: || normal(&[4, 3, 5], 12),
            input_grad: true,
        },
        Case {
            name: "layer_norm",
            covers: &["LayerNorm"],
            build: || Ok(Box::new(LayerNorm::new())),
            input: || normal(&[3, 6], 13),
            input_grad: true,
        },
        Case {
            name: "nested_hybrid_sequential",
            covers: &["HybridSequential"],
            build: || {
                let inner = HybridSequential::new();
                inner.name_scope(|| {
                    inner.add(Dense::new(6).activation(ActivationKind::Tanh));
                    inner.add(Dropout::new(0.3).expect("rate"));
                });
                let outer = HybridSequential::new();
                outer.add(inner);
                outer.add(Dense::new(2));
                Ok(Box::new(outer))
            },
            input: || normal(&[3, 5], 14),
            input_grad: true,
        },
        // ----- the chapter 2-4 model shapes ----------------------------------------------
        Case {
            name: "ch03_softmax_regression",
            covers: &["Dense"],
            build: || Ok(layers![Dense::new(10)]),
            input: || normal(&[4, 1, 28, 28], 20),
            input_grad: true,
        },
        Case {
            name: "ch03_mlp_784_256_256_10",
            covers: &["Dense", "HybridSequential"],
            build: || {
                Ok(layers![
                    Dense::new(256).activation(ActivationKind::Relu),
                    Dense::new(256).activation(ActivationKind::Relu),
                    Dense::new(10),
                ])
            },
            input: || normal(&[4, 784], 21),
            input_grad: true,
        },
        Case {
            name: "ch04_lenet",
            covers: &["Conv2D", "MaxPool2D", "Flatten", "Dense"],
            build: || {
                Ok(layers![
                    Conv2D::new(20, 5).activation(ActivationKind::Tanh),
                    MaxPool2D::new(2),
                    Conv2D::new(50, 5).activation(ActivationKind::Tanh),
                    MaxPool2D::new(2),
                    Flatten::new(),
                    Dense::new(500).activation(ActivationKind::Tanh),
                    Dense::new(10),
                ])
            },
            input: || normal(&[2, 1, 28, 28], 22),
            input_grad: true,
        },
        Case {
            name: "ch04_batch_norm_cnn",
            covers: &["Conv2D", "BatchNorm", "Activation", "AvgPool2D", "Dense"],
            build: || {
                Ok(layers![
                    Conv2D::new(6, 5),
                    BatchNorm::new(),
                    Activation::new("relu").expect("relu"),
                    AvgPool2D::new(2),
                    Conv2D::new(8, 3),
                    BatchNorm::new(),
                    Activation::new("relu").expect("relu"),
                    Dense::new(10),
                ])
            },
            input: || normal(&[3, 1, 16, 16], 23),
            input_grad: true,
        },
        Case {
            name: "ch04_dropout_mlp",
            covers: &["Dense", "Dropout"],
            build: || {
                Ok(layers![
                    Dense::new(64).activation(ActivationKind::Relu),
                    Dropout::new(0.5).expect("rate"),
                    Dense::new(64).activation(ActivationKind::Relu),
                    Dropout::new(0.2).expect("rate"),
                    Dense::new(10),
                ])
            },
            input: || normal(&[5, 784], 24),
            input_grad: true,
        },
    ]
}

/// What one run produces.
#[derive(Debug)]
struct Run {
    output: Vec<f64>,
    /// Per parameter (in dict order): its gradient, or its value for grad_req null (state).
    params: Vec<(String, Vec<f64>)>,
    input_grad: Option<Vec<f64>>,
}

fn snapshot(params: &ParameterDict) -> Result<Vec<NDArray>> {
    params.iter().map(|p| p.data()?.copy()).collect()
}

fn restore(params: &ParameterDict, values: &[NDArray]) -> Result<()> {
    for (p, v) in params.iter().zip(values) {
        p.data()?.assign(v)?;
    }
    Ok(())
}

/// One forward and backward of `block` in `training` or predict mode, from a fixed global
/// seed, with a fixed head gradient.
fn run(block: &dyn HybridBlock, case: &Case, training: bool) -> Result<Run> {
    let params = block.collect_params()?;
    let x = (case.input)()?;
    if case.input_grad {
        x.attach_grad();
    }
    kiln_frontend::random::seed(1234);
    let y = autograd::record_with(training, || block.forward(&x))?;
    let head = {
        kiln_frontend::random::seed(99);
        nd::random::uniform(0.5, 1.5, y.shape().clone())?
    };
    y.backward_with(&head)?;
    let mut out = Vec::new();
    for p in &params {
        let v = if p.grad_req() == GradReq::Null {
            p.data()?.to_vec_f64()
        } else {
            p.grad()?.to_vec_f64()
        };
        out.push((p.name(), v));
    }
    Ok(Run {
        output: y.to_vec_f64(),
        params: out,
        input_grad: if case.input_grad {
            Some(x.grad()?.to_vec_f64())
        } else {
            None
        },
    })
}

/// max |got - want| / max |want| (0 when both are all zero).
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(f64::MIN_POSITIVE)
    }
}

const TOL: f64 = 1e-5;

fn compare(case: &str, mode: &str, hybrid: &Run, eager: &Run) {
    let e = rel_err(&hybrid.output, &eager.output);
    assert!(e <= TOL, "{case} ({mode}): output rel err {e:e}");
    assert_eq!(hybrid.params.len(), eager.params.len());
    // A gradient that is mathematically zero (a conv bias before a train-mode batch norm,
    // whose mean subtraction cancels it) is rounding noise in both modes, and any change in
    // summation order (fused, vectorized reductions) changes that noise completely. Such a
    // gradient, five orders of magnitude below the model's largest, is compared at the
    // model's gradient scale instead of its own.
    let model_scale = eager
        .params
        .iter()
        .flat_map(|(_, w)| w.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for ((name, h), (_, w)) in hybrid.params.iter().zip(&eager.params) {
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let e = if scale < 1e-5 * model_scale {
            let diff = h
                .iter()
                .zip(w)
                .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
            diff / model_scale
        } else {
            rel_err(h, w)
        };
        assert!(
            e <= TOL,
            "{case} ({mode}): {name} rel err {e:e} (max |want| {scale:e})"
        );
    }
    if let (Some(h), Some(w)) = (&hybrid.input_grad, &eager.input_grad) {
        let e = rel_err(h, w);
        assert!(e <= TOL, "{case} ({mode}): input gradient rel err {e:e}");
    }
}

fn check_case(case: &Case) -> Result<()> {
    let block = (case.build)()?;
    block.initialize(
        Arc::new(Normal::new(0.3)) as Arc<dyn Initializer>,
        Context::cpu(),
    )?;
    // Finish deferred initialization eagerly (predict mode: no state changes, no seeds drawn).
    autograd::predict_mode(|| block.forward(&(case.input)()?))?;
    let params = block.collect_params()?;
    let start = snapshot(&params)?;
    for training in [true, false] {
        let mode = if training { "train" } else { "predict" };
        restore(&params, &start)?;
        let eager = run(block.as_ref(), case, training)?;
        restore(&params, &start)?;
        block.hybridize();
        let before = block.cache_stats();
        let hybrid = run(block.as_ref(), case, training)?;
        let after = block.cache_stats();
        assert_eq!(after.traces, before.traces + 1, "{}: one trace", case.name);
        compare(case.name, mode, &hybrid, &eager);
        // A second call hits the cache and still agrees.
        restore(&params, &start)?;
        let again = run(block.as_ref(), case, training)?;
        assert_eq!(
            block.cache_stats().hits,
            after.hits + 1,
            "{}: cache hit",
            case.name
        );
        assert_eq!(
            block.cache_stats().traces,
            after.traces,
            "{}: no retrace",
            case.name
        );
        compare(case.name, mode, &again, &eager);
        block.dehybridize();
    }
    Ok(())
}

#[test]
fn hybridized_equals_imperative_for_every_case() -> Result<()> {
    for case in cases() {
        check_case(&case)?;
    }
    Ok(())
}

/// The public type names of `gluon::nn`: its re-exports and every `pub struct` of its files.
fn gluon_nn_types() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gluon/nn");
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(&dir).expect("gluon/nn sources");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable source");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("pub struct ") {
            rest = &rest[i + "pub struct ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find("pub use ") {
            rest = &rest[i + "pub use ".len()..];
            let stmt = &rest[..rest.find(';').unwrap_or(rest.len())];
            for word in stmt.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if word.starts_with(|c: char| c.is_ascii_uppercase()) {
                    names.insert(word.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn every_gluon_nn_layer_type_is_in_the_table() {
    // Types of gluon::nn that are not hybridizable layers, and why.
    let not_layers: BTreeSet<&str> = [
        "Sequential", // an imperative container (gluon's nn.Sequential is not a HybridBlock)
    ]
    .into_iter()
    .collect();
    let covered: BTreeSet<&str> = cases()
        .iter()
        .flat_map(|c| c.covers.iter().copied())
        .collect();
    let all = gluon_nn_types();
    assert!(
        all.contains("Dense") && all.contains("MaxPool2D"),
        "{all:?}"
    );
    let missing: Vec<&String> = all
        .iter()
        .filter(|n| !covered.contains(n.as_str()) && !not_layers.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "gluon::nn types with no case in the hybridize equivalence table: {missing:?}"
    );
    let unknown: Vec<&&str> = covered.iter().filter(|n| !all.contains(**n)).collect();
    assert!(
        unknown.is_empty(),
        "the table names unknown types: {unknown:?}"
    );
}
