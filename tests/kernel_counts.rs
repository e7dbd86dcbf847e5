//! Structural tests: the exact number of kernels (op nodes; a fused node is one kernel) each
//! chapter model compiles to, for the inference graph and the training forward and backward
//! graphs, with the default pipelines with and without fusion. A change to a pass that
//! fuses less (or differently) fails here with both numbers printed; update the table only
//! for an intended change, and say why in the commit.
//!
//! The models are traced by hybridize exactly as a user's training loop does (see
//! `tests/golden/models.rs`).

#[path = "golden/models.rs"]
mod models;

use kiln::passes::Pipeline;
use models::{fused_nodes, kernels, optimize, trace, MODELS};

/// Kernels per model: `[unfused, fused]` for inference, training forward, training backward.
struct Expected {
    name: &'static str,
    inference: [usize; 2],
    forward: [usize; 2],
    backward: [usize; 2],
    /// Fused nodes in the inference, forward and backward graphs.
    fused: [usize; 3],
}

const EXPECTED: [Expected; 4] = [
    Expected {
        name: "softmax_regression",
        inference: [0, 0],
        forward: [0, 0],
        backward: [0, 0],
        fused: [0, 0, 0],
    },
    Expected {
        name: "mlp",
        inference: [0, 0],
        forward: [0, 0],
        backward: [0, 0],
        fused: [0, 0, 0],
    },
    Expected {
        name: "lenet",
        inference: [0, 0],
        forward: [0, 0],
        backward: [0, 0],
        fused: [0, 0, 0],
    },
    Expected {
        name: "bn_cnn",
        inference: [0, 0],
        forward: [0, 0],
        backward: [0, 0],
        fused: [0, 0, 0],
    },
];

fn check(index: usize) {
    let model = &MODELS[index];
    let want = &EXPECTED[index];
    assert_eq!(model.name, want.name);
    let c = trace(model).expect("the model traces");
    let mut got = Vec::new();
    let mut fused = Vec::new();
    for (g, pipeline) in [
        (&c.inference, Pipeline::Inference),
        (&c.forward, Pipeline::Training),
        (&c.backward, Pipeline::Training),
    ] {
        let plain = optimize(g, pipeline, false).expect("the pipeline runs");
        let fast = optimize(g, pipeline, true).expect("the pipeline runs");
        got.push([kernels(&plain), kernels(&fast)]);
        fused.push(fused_nodes(&fast));
    }
    let report = format!(
        "{}: inference {:?}, forward {:?}, backward {:?} kernels ([without, with] fusion), fused nodes {:?}",
        model.name, got[0], got[1], got[2], fused
    );
    eprintln!("{report}");
    assert_eq!(
        (got[0], got[1], got[2], fused.as_slice()),
        (want.inference, want.forward, want.backward, &want.fused[..]),
        "{report}"
    );
    // Fusion never adds a kernel.
    assert!(got.iter().all(|[plain, fast]| fast <= plain), "{report}");
}

#[test]
fn softmax_regression_kernel_counts() {
    check(0);
}

#[test]
fn mlp_kernel_counts() {
    check(1);
}

#[test]
fn lenet_kernel_counts() {
    check(2);
}

#[test]
fn bn_cnn_kernel_counts() {
    check(3);
}
