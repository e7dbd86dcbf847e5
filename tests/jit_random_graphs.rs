//! Random graphs, fused, run through the Cranelift backend against the reference interpreter
//! on the unfused graph.
//!
//! Tolerance: relative 1e-5 of max(|expected|, 1) per element. The graphs use only ops that
//! keep values moderate (see `kiln_ir::graph::testing`), so the differences are the JIT's
//! transcendental polynomials (≤ 2 ulp each), FMA contraction and f32 reassociated sums,
//! compounded over at most a few dozen ops.

use kiln_backends::jit::{JitBackend, JitOptions};
use kiln_backends::Kernels;
use kiln_ir::graph::testing::{random_feed, random_graph};
use kiln_ir::{Op, Tensor};
use kiln_passes::{Fuse, Pass};

fn run(g: &kiln_ir::Graph, feed: &[(String, Tensor)], exec: &dyn Kernels) -> Vec<Tensor> {
    let views: Vec<(&str, kiln_ir::TensorView<'_>)> =
        feed.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    g.run_with(&views, &mut |op, xs| exec.execute(op, xs))
        .unwrap()
}

#[test]
fn fused_random_graphs_on_cranelift_match_the_interpreter() {
    let jit = JitBackend::with_options(JitOptions::default());
    let mut fused_nodes = 0;
    for seed in 0..60u64 {
        let g = random_graph(seed, 14);
        let feed = random_feed(&g, seed);
        let want = run(&g, &feed, &kiln_backends::Interpreter);
        let mut f = g.clone();
        Fuse::default().run(&mut f).unwrap();
        fused_nodes += f
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(f.op(id), Ok(Some(Op::Fused { .. }))))
            .count();
        let got = run(&f, &feed, &jit);
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.shape(), b.shape(), "seed {seed}");
            for (i, (x, y)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "seed {seed}, element {i}: cranelift {x} vs interpreter {y}\n{}",
                    f.to_text()
                );
            }
        }
    }
    assert!(fused_nodes > 0, "the fusion pass produced no fused nodes");
    let s = jit.stats();
    assert!(s.native_runs > 0, "no kernel ran natively: {s:?}");
}
