//! What the chapter-4 gluon CNN examples share: printing a `Sequential`'s per-layer output
//! shapes, and the initializer choice of the deeper networks.
#![allow(dead_code)] // each example binary uses a different part of the shared module

use super::Fallible;
use kiln::gluon::init::{FactorType, Initializer, RandType, Xavier};
use kiln::gluon::nn::Sequential;
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// Runs `x` through `net`'s layers one by one in predict mode (so dropout and batch norm
/// leave their state alone), printing each layer's name and output shape; returns the shapes.
pub fn print_layer_shapes(
    net: &Sequential,
    x: &NDArray,
    out: &mut dyn Write,
) -> Fallible<Vec<Vec<usize>>> {
    let mut shapes = Vec::new();
    let mut h = x.clone();
    for i in 0..net.len() {
        let Some(layer) = net.get(i) else { break };
        h = autograd::predict_mode(|| layer.forward(&h))?;
        writeln!(out, "  {:<24} output shape {}", layer.prefix(), h.shape())?;
        shapes.push(h.shape().dims().to_vec());
    }
    Ok(shapes)
}

/// The notebooks' initializer, `Xavier(magnitude = 2.24)` (uniform, average fan).
pub fn book_xavier() -> Arc<dyn Initializer> {
    Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24))
}

/// The initializer of the deeper networks (AlexNet, VGG) and its description: the
/// notebooks' `Xavier(2.24)`, or under `--quick` He et al.'s `N(0, 2 / fan_in)`.
///
/// Xavier's average-fan variance `0.75 / fan` keeps less than ReLU's halving needs, so the
/// signal shrinks layer by layer and an eight- or nine-layer network starts on a long
/// plateau at loss ln 10: a full epoch leaves it (the book's own VGG run was still at 2.29
/// after 200 batches), a quick run's few dozen batches do not.
pub fn deep_init(quick: bool) -> (Arc<dyn Initializer>, &'static str) {
    if quick {
        (
            Arc::new(Xavier::new(RandType::Gaussian, FactorType::In, 2.0)),
            "He N(0, 2/fan_in) for --quick (Xavier(2.24)'s loss plateau outlasts a quick run)",
        )
    } else {
        (book_xavier(), "Xavier(magnitude 2.24)")
    }
}
