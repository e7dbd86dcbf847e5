//! End to end: an MLP trained on a slice of the shipped MNIST with a shuffled `DataLoader`,
//! `SoftmaxCrossEntropyLoss`, `Trainer` (SGD) and `backward`; the training loss must fall and
//! the accuracy on held-out images (never trained on) must rise from chance to well above it.

use kiln::gluon::data::{ArrayDataset, DataLoader, Dataset};
use kiln::gluon::init::Xavier;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Dense, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::sync::Arc;

const TRAIN: usize = 2000;
const HELD_OUT: usize = 1000;
const EPOCHS: usize = 6;
const BATCH: usize = 50;

/// Images `[lo, hi)` of MNIST's test split as `[n, 784]` f32 in [0, 1], with f32 labels.
fn slice(all: &ArrayDataset, lo: usize, hi: usize) -> Result<ArrayDataset> {
    let x = all.data().slice_axis0(lo..hi)?;
    let x = (x.reshape(&[(hi - lo) as i64, 784])?.astype(DType::F32)? / 255.0)?;
    let y = all.label().slice_axis0(lo..hi)?.astype(DType::F32)?;
    ArrayDataset::new(x, y)
}

/// The fraction of `data` that `net` classifies correctly.
fn accuracy(net: &Sequential, data: &ArrayDataset) -> Result<f64> {
    let predicted = net.forward(data.data())?.argmax(1)?.astype(DType::F32)?;
    let hits = predicted.eq(data.label())?.sum()?.as_scalar_f64()?;
    Ok(hits / data.len() as f64)
}

#[test]
fn an_mlp_learns_mnist_digits_it_was_not_trained_on() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    // The 10,000-image test split is the quicker file to read; its first images train and
    // its last ones are held out.
    let mnist = kiln::gluon::data::vision::MNIST::new(&dir, false)?;
    let all = mnist.arrays();
    let train = slice(all, 0, TRAIN)?;
    let held_out = slice(all, all.len() - HELD_OUT, all.len())?;

    kiln::random::seed(5);
    let net = Sequential::new();
    net.name_scope(|| {
        net.add(Dense::new(64).activation(ActivationKind::Relu));
        net.add(Dense::new(10));
    });
    net.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let before = accuracy(&net, &held_out)?;
    let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.2)])?;

    let loader = DataLoader::new(train.clone(), BATCH).shuffle(true);
    let mut epoch_loss = Vec::new();
    for _ in 0..EPOCHS {
        let (mut total, mut n) = (0.0, 0usize);
        for b in loader.iter() {
            let (x, y) = b?;
            let loss = autograd::record(|| loss_fn.forward(&net.forward(&x)?, &y))?;
            loss.backward()?;
            trainer.step(x.shape().dims()[0])?;
            total += loss.sum()?.as_scalar_f64()?;
            n += x.shape().dims()[0];
        }
        assert_eq!(n, TRAIN, "every sample seen once per epoch");
        epoch_loss.push(total / n as f64);
    }
    let after = accuracy(&net, &held_out)?;

    // A random 10-way classifier starts near chance, with a loss near ln 10 = 2.3.
    assert!(before < 0.3, "accuracy before training: {before}");
    assert!(
        epoch_loss[0] > 0.4 && epoch_loss[0] < 2.4,
        "first epoch loss {epoch_loss:?}"
    );
    for w in epoch_loss.windows(2) {
        assert!(w[1] < w[0], "the epoch loss did not fall: {epoch_loss:?}");
    }
    assert!(
        epoch_loss[EPOCHS - 1] < 0.6 * epoch_loss[0],
        "the loss fell too little: {epoch_loss:?}"
    );
    eprintln!("held-out accuracy {before:.3} -> {after:.3}; epoch losses {epoch_loss:?}");
    assert!(after > 0.8, "held-out accuracy after training: {after}");
    Ok(())
}
