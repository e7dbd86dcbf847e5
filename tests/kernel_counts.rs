//! Structural tests: the number of kernels (op nodes; a fused node is one kernel, and the
//! `fused_output` nodes reading a multi-output kernel's further values are none) each
//! chapter model compiles to, for the inference graph and the training forward and backward
//! graphs, with the default pipelines with and without fusion: fusion must remove at least
//! one kernel per fused node, fuse every model with an activated layer, and make only
//! kernels of a compilable kind. The exact counts are pinned (and printed with `--nocapture`);
//! the exact graphs are pinned by `tests/golden_dumps.rs`.
//!
//! The training forward graphs fuse like the inference graphs: autodiff saves each relu's
//! output (which the next layer's VJP reads anyway) rather than its pre-activation, so the
//! dense/convolution + bias + relu epilogue stays one kernel (fusion never hides a value that
//! is needed outside the kernel, and a saved value is a graph output).
//!
//! The models are traced by hybridize exactly as a user's training loop does (see
//! `tests/golden/models.rs`).

#[path = "golden/models.rs"]
mod models;

use kiln::passes::stats::GraphCost;
use kiln::passes::Pipeline;
use models::{fused_nodes, optimize, trace, MODELS};

/// Kernels one run launches: op nodes, a fused node counting once however many outputs it
/// has (its `fused_output` projections are not kernels).
fn kernels(g: &kiln::ir::Graph) -> usize {
    GraphCost::of(g).kernels
}

/// The pinned counts: per graph (inference, training forward, training backward), kernels
/// `[without, with]` fusion. A change here is a change in what the compiler makes of the
/// book's models; update it together with the golden dumps, after review.
type Counts = [[usize; 2]; 3];

fn check(index: usize, want: Counts) {
    let model = &MODELS[index];
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
        // Every fused kernel is of a kind a code generator compiles.
        for id in fast.node_ids() {
            if let Ok(Some(kiln::ir::Op::Fused { kernel })) = fast.op(id) {
                assert_ne!(
                    kernel.kind(),
                    kiln::ir::FusedKind::Generic,
                    "{}: {}",
                    model.name,
                    kernel.body_text()
                );
            }
        }
    }
    let report = format!(
        "{}: inference {:?}, forward {:?}, backward {:?} kernels ([without, with] fusion), fused nodes {:?}",
        model.name, got[0], got[1], got[2], fused
    );
    eprintln!("{report}");
    assert_eq!(got, want, "{report}");
    // Each fused node replaces at least one kernel, and fusion never adds one.
    for (k, [plain, fast]) in got.iter().enumerate() {
        assert!(fast + fused[k] <= *plain, "{report}");
    }
    // Every model but softmax regression (one dense layer, nothing to attach) has an
    // activation after a dense or convolution layer in its inference graph.
    if model.name != "softmax_regression" {
        assert!(fused[0] > 0 && got[0][1] < got[0][0], "{report}");
    }
}

#[test]
fn softmax_regression_kernel_counts() {
    check(0, [[1, 1], [1, 1], [2, 2]]);
}

#[test]
fn mlp_kernel_counts() {
    check(1, [[5, 3], [5, 3], [12, 8]]);
}

#[test]
fn lenet_kernel_counts() {
    check(2, [[10, 7], [10, 7], [20, 16]]);
}

#[test]
fn bn_cnn_kernel_counts() {
    check(3, [[34, 19], [46, 28], [107, 55]]);
}
