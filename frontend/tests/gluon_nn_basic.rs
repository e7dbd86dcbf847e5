//! gluon's basic layers and sequential containers: MXNet's parameter names, deferred
//! initialization, forward values against `x·Wᵀ + b`, gradients, weight tying, custom blocks,
//! train/predict behaviour and printing.

use kiln_frontend::gluon::init::{Constant, Normal, Xavier, Zero};
use kiln_frontend::gluon::name::{name_scope, unique_prefix};
use kiln_frontend::gluon::nn::{
    self, Activation, ActivationKind, Dense, Dropout, Embedding, Flatten, LeakyReLU,
};
use kiln_frontend::gluon::{Block, HybridBlock, Parameter};
use kiln_frontend::{autograd, nd, random, Context, DType, NDArray, Result};
use std::sync::Arc;

fn cpu() -> Context {
    Context::cpu()
}

fn mat(rows: usize, cols: usize, v: &[f32]) -> NDArray {
    NDArray::from_vec(v.to_vec(), [rows, cols]).unwrap()
}

fn f32s(a: &NDArray) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

/// A `Dense(2)` on 3 inputs with W = [[1, 2, 3], [4, 5, 6]] and b = [0.5, -1].
fn fixed_dense(layer: Dense) -> Result<Dense> {
    let layer = layer.in_units(3);
    layer.initialize(Arc::new(Zero), cpu())?;
    layer
        .weight()
        .set_data(&mat(2, 3, &[1., 2., 3., 4., 5., 6.]))?;
    layer
        .bias()
        .expect("has a bias")
        .set_data(&NDArray::from_slice(&[0.5f32, -1.0]))?;
    Ok(layer)
}

fn x23() -> NDArray {
    mat(2, 3, &[1., 0., -1., 2., 1., 0.])
}

// ----- Sequential MLP -----------------------------------------------------------------------

#[test]
fn mlp_names_deferred_shapes_and_forward() -> Result<()> {
    let net = nn::Sequential::new();
    assert_eq!(net.prefix(), "sequential0_");
    net.name_scope(|| {
        net.add(Dense::new(8).activation(ActivationKind::Relu));
        net.add(Dense::new(3));
    });
    assert_eq!(net.len(), 2);
    assert_eq!(
        net.get(1).map(|b| b.prefix()).as_deref(),
        Some("sequential0_dense1_")
    );
    assert!(net.get(2).is_none());

    let params = net.collect_params()?;
    assert_eq!(
        params.names(),
        [
            "sequential0_dense0_weight",
            "sequential0_dense0_bias",
            "sequential0_dense1_weight",
            "sequential0_dense1_bias"
        ]
    );
    let shapes = |net: &nn::Sequential| -> Result<Vec<Vec<usize>>> {
        Ok(net
            .collect_params()?
            .iter()
            .map(|p| p.shape().dims().to_vec())
            .collect())
    };
    assert_eq!(shapes(&net)?, [vec![8, 0], vec![8], vec![3, 0], vec![3]]);

    net.initialize(Arc::new(Xavier::default()), cpu())?;
    let w0 = params.get("sequential0_dense0_weight").expect("present");
    let err = w0.data().unwrap_err().to_string();
    assert!(err.contains("deferred"), "{err}");

    let y = net.forward(&nd::ones([4, 5])?)?;
    assert_eq!(y.shape().dims(), &[4, 3]);
    // in_units learnt: 5 for the first layer, 8 for the second.
    assert_eq!(shapes(&net)?, [vec![8, 5], vec![8], vec![3, 8], vec![3]]);
    assert!(f32s(&w0.data()?).iter().any(|&v| v != 0.0));
    assert_eq!(
        f32s(&params.get("sequential0_dense0_bias").unwrap().data()?),
        vec![0.0; 8]
    );

    // A second container and a second layer kind get their own counters.
    let net2 = nn::Sequential::new();
    assert_eq!(net2.prefix(), "sequential1_");
    net2.name_scope(|| net2.add(Dense::new(1)));
    assert_eq!(
        net2.collect_params()?.names()[0],
        "sequential1_dense0_weight"
    );
    Ok(())
}

#[test]
fn nested_containers_compose_names_and_forward() -> Result<()> {
    let outer = nn::Sequential::new();
    outer.name_scope(|| {
        let inner = nn::HybridSequential::new();
        inner.name_scope(|| {
            inner.add(Dense::new(4).activation(ActivationKind::Tanh));
            inner.add(Flatten::new());
        });
        outer.add(inner);
        outer.add(Dense::new(2));
    });
    assert_eq!(
        outer.collect_params()?.names(),
        [
            "sequential0_hybridsequential0_dense0_weight",
            "sequential0_hybridsequential0_dense0_bias",
            "sequential0_dense0_weight",
            "sequential0_dense0_bias"
        ]
    );
    outer.initialize(Arc::new(Normal::new(0.1)), cpu())?;
    let y = outer.forward(&nd::ones([3, 2, 2])?)?;
    assert_eq!(y.shape().dims(), &[3, 2]);
    let mut kids = Vec::new();
    outer.visit_children(&mut |c| kids.push(c.prefix()));
    assert_eq!(
        kids,
        ["sequential0_hybridsequential0_", "sequential0_dense0_"]
    );
    Ok(())
}

#[test]
fn hybrid_sequential_holds_hybrid_blocks() -> Result<()> {
    let net = nn::HybridSequential::new();
    assert_eq!(net.prefix(), "hybridsequential0_");
    net.name_scope(|| {
        net.add(Dense::new(3).in_units(2));
        net.add(Activation::new("sigmoid").expect("known"));
    });
    let child: Arc<dyn HybridBlock> = net.get(1).expect("two children");
    assert_eq!(child.prefix(), "hybridsequential0_sigmoid0_");
    assert_eq!(net.children().len(), 2);
    net.initialize(Arc::new(Zero), cpu())?;
    // Zero weights and bias: sigmoid(0) everywhere.
    let y = net.forward(&nd::ones([2, 2])?)?;
    assert_eq!(f32s(&y), vec![0.5; 6]);
    let empty = nn::Sequential::new();
    assert!(empty.is_empty());
    assert_eq!(f32s(&empty.forward(&y)?), vec![0.5; 6]);
    Ok(())
}

// ----- Dense values, options and errors -----------------------------------------------------

#[test]
fn dense_forward_is_x_times_w_transposed_plus_b() -> Result<()> {
    let d = fixed_dense(Dense::new(2))?;
    // x = [[1, 0, -1], [2, 1, 0]]: x·Wᵀ = [[-2, -2], [4, 13]], plus b = [0.5, -1].
    assert_close(&f32s(&d.forward(&x23())?), &[-1.5, -3.0, 4.5, 12.0]);

    let relu = fixed_dense(Dense::new(2).activation(ActivationKind::Relu))?;
    assert_close(&f32s(&relu.forward(&x23())?), &[0.0, 0.0, 4.5, 12.0]);

    let nb = Dense::new(2).use_bias(false).in_units(3);
    assert_eq!(nb.collect_params()?.len(), 1);
    nb.initialize(Arc::new(Zero), cpu())?;
    nb.weight()
        .set_data(&mat(2, 3, &[1., 2., 3., 4., 5., 6.]))?;
    assert_close(&f32s(&nb.forward(&x23())?), &[-2.0, -2.0, 4.0, 13.0]);

    // flatten: [2, 1, 3] is seen as [2, 3].
    let x213 = x23().reshape(&[2, 1, 3])?;
    let y = d.forward(&x213)?;
    assert_eq!(y.shape().dims(), &[2, 2]);
    assert_close(&f32s(&y), &[-1.5, -3.0, 4.5, 12.0]);
    // without flatten the last axis is contracted: [1, 2, 3] -> [1, 2, 2].
    let nf = fixed_dense(Dense::new(2).flatten(false))?;
    let y = nf.forward(&x23().reshape(&[1, 2, 3])?)?;
    assert_eq!(y.shape().dims(), &[1, 2, 2]);
    assert_close(&f32s(&y), &[-1.5, -3.0, 4.5, 12.0]);
    Ok(())
}

#[test]
fn dense_initializers_and_dtype() -> Result<()> {
    let d = Dense::new(2)
        .in_units(2)
        .weight_initializer(Arc::new(Constant(3.0)))
        .bias_initializer(Arc::new(Constant(1.0)));
    d.initialize(Arc::new(Zero), cpu())?;
    assert_eq!(f32s(&d.weight().data()?), vec![3.0; 4]);
    assert_eq!(f32s(&d.bias().unwrap().data()?), vec![1.0; 2]);
    // [1, 2]·[[3, 3], [3, 3]]ᵀ + 1 = [10, 10]
    assert_eq!(f32s(&d.forward(&mat(1, 2, &[1., 2.]))?), vec![10.0, 10.0]);

    let d64 = Dense::new(2).dtype(DType::F64);
    d64.initialize(Arc::new(Constant(0.5)), cpu())?;
    let x = NDArray::from_vec(vec![1.0f64, 3.0], [1, 2])?;
    let y = d64.forward(&x)?;
    assert_eq!(
        (y.dtype(), y.to_vec::<f64>()?),
        (DType::F64, vec![2.0, 2.0])
    );
    assert_eq!(d64.weight().dtype(), DType::F64);
    assert_eq!(d64.units(), 2);
    Ok(())
}

#[test]
fn dense_errors_are_clear() -> Result<()> {
    // Using a layer before initialize().
    let d = Dense::new(2);
    let err = d.forward(&nd::ones([1, 3])?).unwrap_err().to_string();
    assert!(
        err.contains("dense0_weight") && err.contains("initialize"),
        "{err}"
    );

    // Wrong input rank.
    d.initialize(Arc::new(Zero), cpu())?;
    let err = d.forward(&nd::ones([3])?).unwrap_err().to_string();
    assert!(
        err.contains("dense0_") && err.contains("[3]") && err.contains("rank"),
        "{err}"
    );

    // A deferred-shape conflict: learnt 3 inputs, then given 4.
    d.forward(&nd::ones([1, 3])?)?;
    let err = d.forward(&nd::ones([1, 4])?).unwrap_err().to_string();
    assert!(
        err.contains("4 features") && err.contains("[2, 3]"),
        "{err}"
    );

    // A dtype mismatch.
    let x64 = NDArray::from_vec(vec![1.0f64, 2.0, 3.0], [1, 3])?;
    let err = d.forward(&x64).unwrap_err().to_string();
    assert!(err.contains("f64") && err.contains("f32"), "{err}");

    let err = Dense::new(0)
        .forward(&nd::ones([1, 3])?)
        .unwrap_err()
        .to_string();
    assert!(err.contains("units must be positive"), "{err}");
    Ok(())
}

#[test]
fn activation_names_and_values() -> Result<()> {
    let err = Activation::new("swish").unwrap_err().to_string();
    assert!(err.contains("swish") && err.contains("relu"), "{err}");
    let x = NDArray::from_slice(&[-3.0f32, 0.0, 1.0]);
    let run = |name: &str| -> Result<Vec<f32>> {
        let a = Activation::new(name)?;
        assert_eq!(a.kind().name(), name);
        Ok(f32s(&a.forward(&x)?))
    };
    assert_close(&run("relu")?, &[0.0, 0.0, 1.0]);
    assert_close(&run("sigmoid")?, &[0.047_425_87, 0.5, 0.731_058_6]);
    assert_close(&run("tanh")?, &[-0.995_055, 0.0, 0.761_594_2]);
    assert_close(
        &run("softrelu")?,
        &[0.048_587_35, std::f32::consts::LN_2, 1.313_261_7],
    );
    assert_close(&run("softsign")?, &[-0.75, 0.0, 0.5]);
    assert_eq!(Activation::new("relu")?.prefix(), "relu1_");
    Ok(())
}

#[test]
fn leaky_relu_and_flatten() -> Result<()> {
    let l = LeakyReLU::new(0.1);
    assert_eq!(l.prefix(), "leakyrelu0_");
    let y = l.forward(&NDArray::from_slice(&[-2.0f32, 0.0, 3.0]))?;
    assert_close(&f32s(&y), &[-0.2, 0.0, 3.0]);

    let f = Flatten::new();
    let y = f.forward(&nd::arange(24.0)?.reshape(&[2, 3, 4])?)?;
    assert_eq!(y.shape().dims(), &[2, 12]);
    assert_eq!(f32s(&y), (0..24).map(|v| v as f32).collect::<Vec<_>>());
    let err = f.forward(&NDArray::scalar(1.0f32)).unwrap_err().to_string();
    assert!(err.contains("flatten0_") && err.contains("scalar"), "{err}");
    Ok(())
}

// ----- Dropout ------------------------------------------------------------------------------

#[test]
fn dropout_is_active_only_in_training() -> Result<()> {
    assert!(Dropout::new(1.0).is_err());
    assert!(Dropout::new(-0.1).is_err());
    let d = Dropout::new(0.5)?;
    let x = nd::ones([100, 100])?;
    // Predict mode: the identity.
    assert_eq!(f32s(&d.forward(&x)?), vec![1.0; 10_000]);

    random::seed(3);
    let y = autograd::record(|| d.forward(&x))?;
    let v = f32s(&y);
    let kept = v.iter().filter(|&&e| e != 0.0).count();
    assert!((4_000..6_000).contains(&kept), "kept {kept} of 10000");
    // Survivors are scaled by 1 / (1 - p).
    assert!(v.iter().all(|&e| e == 0.0 || e == 2.0));

    // Recording in predict mode leaves the input alone.
    let y = autograd::record_with(false, || d.forward(&x))?;
    assert_eq!(f32s(&y), vec![1.0; 10_000]);
    Ok(())
}

// ----- Embedding ----------------------------------------------------------------------------

#[test]
fn embedding_looks_up_rows() -> Result<()> {
    let e = Embedding::new(5, 3);
    assert_eq!(e.prefix(), "embedding0_");
    assert_eq!(e.weight().name(), "embedding0_weight");
    assert_eq!(e.weight().shape().dims(), &[5, 3]);
    e.initialize(Arc::new(Normal::default()), cpu())?;
    let table = nd::arange(15.0)?.reshape(&[5, 3])?;
    e.weight().set_data(&table)?;
    let idx = mat(2, 2, &[0., 4., 2., 2.]);
    let y = e.forward(&idx)?;
    assert_eq!(y.shape().dims(), &[2, 2, 3]);
    assert_eq!(
        f32s(&y),
        vec![0., 1., 2., 12., 13., 14., 6., 7., 8., 6., 7., 8.]
    );
    let ints = e.forward(&NDArray::from_slice(&[1i64, 3]))?;
    assert_eq!(f32s(&ints), vec![3., 4., 5., 9., 10., 11.]);
    Ok(())
}

// ----- gradients ----------------------------------------------------------------------------

#[test]
fn gradient_through_dense_matches_the_analytic_formula() -> Result<()> {
    // L = Σ c ⊙ y with y = x·Wᵀ + b: dL/dW = cᵀ·x, dL/db = Σ_n c[n, :].
    let c = mat(2, 2, &[1., 2., 3., 4.]);
    let d = fixed_dense(Dense::new(2))?;
    let loss = autograd::record(|| d.forward(&x23())?.mul(&c)?.sum())?;
    loss.backward()?;
    // cᵀ·x = [[1·[1,0,-1] + 3·[2,1,0]], [2·[1,0,-1] + 4·[2,1,0]]]
    assert_close(&f32s(&d.weight().grad()?), &[7., 3., -1., 10., 4., -2.]);
    assert_close(&f32s(&d.bias().unwrap().grad()?), &[4., 6.]);

    // With relu, the first row (pre-activation [-1.5, -3]) passes no gradient.
    let r = fixed_dense(Dense::new(2).activation(ActivationKind::Relu))?;
    let loss = autograd::record(|| r.forward(&x23())?.mul(&c)?.sum())?;
    loss.backward()?;
    assert_close(&f32s(&r.weight().grad()?), &[6., 3., 0., 8., 4., 0.]);
    assert_close(&f32s(&r.bias().unwrap().grad()?), &[3., 4.]);
    Ok(())
}

// ----- weight tying -------------------------------------------------------------------------

#[test]
fn layers_can_share_parameters() -> Result<()> {
    let net = nn::Sequential::new();
    let (first, second) = net.name_scope(|| {
        let first = Dense::new(2).in_units(3);
        let second = Dense::new(2).share_params(&first);
        (first, second)
    });
    let w = first.weight().clone();
    let third = Dense::from_params(w.clone(), None)?;
    net.add(first);
    net.add(second);
    // The tied parameters are listed once.
    assert_eq!(
        net.collect_params()?.names(),
        ["sequential0_dense0_weight", "sequential0_dense0_bias"]
    );
    net.initialize(Arc::new(Zero), cpu())?;
    w.set_data(&mat(2, 3, &[1., 0., 0., 0., 1., 0.]))?;
    // Both layers compute x·Wᵀ + b with the one W (here picking x0 and x1).
    let a = net.get(0).expect("first").forward(&x23())?;
    let b = net.get(1).expect("second");
    assert_close(&f32s(&a), &[1., 0., 2., 1.]);
    // W takes 3 inputs, so feeding the first layer's 2 outputs to the second is an error.
    let err = b.forward(&a).unwrap_err().to_string();
    assert!(err.contains("sequential0_dense0_weight"), "{err}");
    assert_close(&f32s(&third.forward(&x23())?), &[1., 0., 2., 1.]);
    assert!(Dense::from_params(Parameter::new("v", [3]), None).is_err());
    let err = Dense::from_params(w.clone(), Some(Parameter::new("b", [5])))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2]") && err.contains("[5]"), "{err}");

    // Gradients through two uses of one weight add up.
    let shared = Dense::new(3).in_units(3).use_bias(false);
    let again = Dense::new(3).share_params(&shared);
    shared.initialize(Arc::new(Zero), cpu())?;
    shared
        .weight()
        .set_data(&mat(3, 3, &[1., 0., 0., 0., 1., 0., 0., 0., 1.]))?;
    let x = mat(1, 3, &[1., 2., 3.]);
    // L = Σ W·(W·x) with W = I: dL/dW = 1·(W·x)ᵀ + Wᵀ·1·xᵀ = rows [1,2,3] twice summed.
    let loss = autograd::record(|| again.forward(&shared.forward(&x)?)?.sum())?;
    loss.backward()?;
    assert_close(
        &f32s(&shared.weight().grad()?),
        &[2., 4., 6., 2., 4., 6., 2., 4., 6.],
    );
    Ok(())
}

// ----- custom blocks ------------------------------------------------------------------------

/// `y = scale · hidden(x)`: a user block with its own parameter and a child layer.
struct ScaledDense {
    prefix: String,
    hidden: Dense,
    scale: Parameter,
}

impl ScaledDense {
    fn new(units: usize) -> Self {
        let prefix = unique_prefix("scaleddense");
        let hidden = name_scope(&prefix, || Dense::new(units));
        let scale =
            Parameter::new(format!("{prefix}scale"), [1]).with_init(Arc::new(Constant(2.0)));
        ScaledDense {
            prefix,
            hidden,
            scale,
        }
    }
}

impl Block for ScaledDense {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }
    fn params(&self) -> Vec<Parameter> {
        vec![self.scale.clone()]
    }
    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(&self.hidden);
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        self.hidden.forward(x)?.mul(&self.scale.data()?)
    }
}

#[test]
fn custom_block_with_a_child_inside_a_sequential() -> Result<()> {
    let net = nn::Sequential::new();
    net.name_scope(|| {
        net.add(ScaledDense::new(2));
        net.add(Activation::from_kind(ActivationKind::Relu));
    });
    assert_eq!(
        net.collect_params()?.names(),
        [
            "sequential0_scaleddense0_scale",
            "sequential0_scaleddense0_dense0_weight",
            "sequential0_scaleddense0_dense0_bias"
        ]
    );
    net.initialize(Arc::new(Constant(1.0)), cpu())?;
    // Weight all ones, bias 0, scale 2: relu(2 · Σx).
    let y = net.forward(&x23())?;
    assert_eq!(f32s(&y), vec![0.0, 0.0, 6.0, 6.0]);
    Ok(())
}

// ----- printing -----------------------------------------------------------------------------

#[test]
fn containers_print_like_gluon() -> Result<()> {
    let net = nn::Sequential::new();
    net.name_scope(|| -> Result<()> {
        net.add(Dense::new(8).activation(ActivationKind::Relu));
        net.add(Dropout::new(0.5)?);
        let inner = nn::HybridSequential::new();
        inner.add(Dense::new(4));
        inner.add(LeakyReLU::new(0.1));
        net.add(inner);
        net.add(ScaledDense::new(2));
        net.add(Embedding::new(10, 3));
        Ok(())
    })?;
    let before = net.to_string();
    assert_eq!(
        before,
        "Sequential(\n  (0): Dense(None -> 8, Activation(relu))\n  (1): Dropout(p = 0.5, \
         axes=())\n  (2): HybridSequential(\n    (0): Dense(None -> 4, linear)\n    (1): \
         LeakyReLU(0.1)\n  )\n  (3): ScaledDense\n  (4): Embedding(10 -> 3, f32)\n)"
    );
    let first = Dense::new(8).in_units(5);
    assert_eq!(first.to_string(), "Dense(5 -> 8, linear)");
    first.initialize(Arc::new(Zero), cpu())?;
    let d = Dense::new(3);
    d.initialize(Arc::new(Zero), cpu())?;
    d.forward(&nd::ones([1, 7])?)?;
    assert_eq!(d.to_string(), "Dense(7 -> 3, linear)");
    assert_eq!(Activation::new("tanh")?.to_string(), "Activation(tanh)");
    assert_eq!(Flatten::new().to_string(), "Flatten");
    Ok(())
}
