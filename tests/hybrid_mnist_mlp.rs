//! The book's MLP (784-256-256-10) on the shipped MNIST, end to end: a few SGD steps
//! imperatively and hybridized from the same weights give the same losses and weights; the
//! hybridized model traces once for the training signature, exports, and the re-imported
//! `SymbolBlock` predicts exactly what the model predicts.

use kiln::frontend::data::mnist::{default_data_dir, load_mnist};
use kiln::frontend::hybrid::SymbolBlock;
use kiln::gluon::init::Normal;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Dense, HybridSequential};
use kiln::gluon::{Block, HybridBlock, Trainer};
use kiln::{autograd, Context, NDArray, Result};
use std::sync::Arc;

const N: usize = 256;
const BATCH: usize = 64;

/// The first `N` test images as `[N, 784]` f32 in [0, 1], and their labels as f32.
fn data() -> Result<(NDArray, NDArray)> {
    let split = load_mnist(default_data_dir().join("mnist"), false)?;
    let images = NDArray::from_tensor(split.images, Context::cpu());
    let x = images
        .slice_axis0(..N)?
        .cast(kiln::DType::F32)?
        .reshape(&[N as i64, 784])?
        .div_scalar(255.0)?;
    let labels = NDArray::from_tensor(split.labels, Context::cpu());
    let y = labels.slice_axis0(..N)?.cast(kiln::DType::F32)?;
    Ok((x, y))
}

fn mlp() -> HybridSequential {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Dense::new(256).activation(ActivationKind::Relu));
        net.add(Dense::new(256).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    net
}

/// One epoch of SGD over the `N` examples; returns the mean loss of each batch.
fn epoch(net: &HybridSequential, x: &NDArray, y: &NDArray) -> Result<Vec<f64>> {
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.1)])?;
    let mut losses = Vec::new();
    for b in 0..N / BATCH {
        let xb = x.slice_axis0(b * BATCH..(b + 1) * BATCH)?;
        let yb = y.slice_axis0(b * BATCH..(b + 1) * BATCH)?;
        let loss = autograd::record(|| loss_fn.forward(&net.forward(&xb)?, &yb))?;
        loss.backward()?;
        trainer.step(BATCH)?;
        losses.push(loss.mean()?.as_scalar::<f32>()? as f64);
    }
    Ok(losses)
}

fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(1e-30f64, |m, w| m.max(w.abs()));
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()))
        / scale
}

#[test]
fn hybridized_mlp_trains_like_the_imperative_one_and_exports() -> Result<()> {
    let (x, y) = data()?;
    let net = mlp();
    net.initialize(Arc::new(Normal::new(0.05)), Context::cpu())?;
    autograd::predict_mode(|| net.forward(&x.slice_axis0(..1)?))?;
    let params = net.collect_params()?;
    let start: Vec<NDArray> = params
        .iter()
        .map(|p| p.data()?.copy())
        .collect::<Result<_>>()?;

    let eager = epoch(&net, &x, &y)?;
    let eager_weights: Vec<Vec<f64>> = params
        .iter()
        .map(|p| Ok(p.data()?.to_vec_f64()))
        .collect::<Result<_>>()?;

    for (p, v) in params.iter().zip(&start) {
        p.data()?.assign(v)?;
    }
    net.hybridize();
    let hybrid = epoch(&net, &x, &y)?;
    let stats = net.cache_stats();
    assert_eq!(
        (stats.traces, stats.hits),
        (1, 3),
        "one trace for the training signature"
    );
    let e = max_rel_err(&hybrid, &eager);
    assert!(e <= 1e-5, "losses {hybrid:?} vs {eager:?} (rel err {e:e})");
    assert!(eager[3] < eager[0], "the loss falls: {eager:?}");
    for (p, want) in params.iter().zip(&eager_weights) {
        let e = max_rel_err(&p.data()?.to_vec_f64(), want);
        assert!(e <= 1e-5, "{}: rel err {e:e}", p.name());
    }

    // Export the trained model and load it back with no model code.
    let predicted = autograd::predict_mode(|| net.forward(&x))?;
    let dir = std::env::temp_dir().join(format!("kiln-hybrid-mnist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| kiln::Error::invalid("test", e.to_string()))?;
    let (graph_path, params_path) = net.export(&dir.join("mlp"))?;
    let imported = SymbolBlock::imports(&graph_path, &["data"], &params_path, Context::cpu())?;
    let again = imported.forward(&x)?;
    assert_eq!(
        again.to_vec_f64(),
        predicted.to_vec_f64(),
        "same graph, same kernels"
    );
    std::fs::remove_dir_all(&dir).map_err(|e| kiln::Error::invalid("test", e.to_string()))?;
    Ok(())
}
