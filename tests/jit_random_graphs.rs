//! Random well-typed graphs, differentiated and optimized by the full training pipeline, run
//! on the Cranelift backend and compared with the unoptimized graph on the interpreter.
//!
//! Each case: `kiln_passes::testing::gen_graph` builds a graph (broadcasts, reductions,
//! dropout, transposes, dots, ...); autodiff adds the backward for every f32 binding and
//! the forward and backward are joined into one training-step graph; the training pipeline
//! (simplify, fold, CSE, DCE, fuse, plan_memory) optimizes it; the JIT runs the optimized
//! graph (fused kernels compiled, everything else on the CPU kernels) and the interpreter
//! runs the original.
//!
//! Tolerance: `|jit - interp| <= 1e-5 · max(1, |jit|, |interp|)`, NaN equal to NaN (the worst
//! seen over the default 48 training graphs is 5.6e-7). The
//! differences are f32 accumulation in another order (reductions, GEMM), fused
//! multiply-adds, the polynomial transcendentals (≤ 2 ulp each) and the pipeline's own
//! rewrites (within `kiln_passes::testing::TOL`), compounded through a few dozen ops.
//! Cases: `KILN_PROPTEST_CASES` (default 48), seeds from `KILN_PROPTEST_SEED` (default 0).

use kiln_backends::jit::JitBackend;
use kiln_backends::Kernels;
use kiln_ir::{DType, Graph, Tensor, TensorView};
use kiln_passes::testing::{feed, gen_graph, run, GenOptions};
use kiln_passes::{autodiff, PassManager, Pipeline};

const TOL: f64 = 1e-5;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The training-step graph of `g`: its outputs, then the gradients of every f32 binding.
fn training_step(g: &Graph) -> Option<Graph> {
    let names: Vec<String> = g
        .bindings()
        .into_iter()
        .filter(|(_, id)| g.ty(*id).is_ok_and(|t| t.dtype == DType::F32))
        .map(|(n, _)| n.to_string())
        .collect();
    let wrt: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    autodiff::differentiate(g, &wrt).ok()?.joint().ok()
}

fn run_jit(jit: &JitBackend, g: &Graph, feed: &[(String, Tensor)]) -> Vec<Tensor> {
    let views: Vec<(&str, TensorView<'_>)> =
        feed.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    g.run_with(&views, &mut |op, xs| jit.execute(op, xs))
        .expect("the optimized graph runs on the JIT")
}

/// The largest relative difference, asserting it is within `TOL`.
fn compare(want: &[Tensor], got: &[Tensor], what: &str) -> f64 {
    assert_eq!(want.len(), got.len(), "{what}: output count");
    let mut worst = 0f64;
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert_eq!(a.ty(), b.ty(), "{what}: output {i} type");
        for (k, (x, y)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
            if (x.is_nan() && y.is_nan()) || *x == y {
                continue;
            }
            let rel = (x - y).abs() / 1f64.max(x.abs()).max(y.abs());
            assert!(
                rel <= TOL,
                "{what}: output {i} element {k}: interpreter {x}, jit {y} (relative {rel:e})"
            );
            worst = worst.max(rel);
        }
    }
    worst
}

#[test]
fn random_training_graphs_agree_with_the_interpreter() {
    let cases = env("KILN_PROPTEST_CASES", 48);
    let base = env("KILN_PROPTEST_SEED", 0);
    let jit = JitBackend::new();
    let (mut differentiated, mut worst) = (0, 0f64);
    for case in 0..cases {
        let seed = base.wrapping_add(case);
        let g = gen_graph(seed, 10, 10, GenOptions::TRAINING);
        let (g, what) = match training_step(&g) {
            Some(step) => {
                differentiated += 1;
                (step, format!("seed {seed} (training step)"))
            }
            None => (g, format!("seed {seed} (forward only)")),
        };
        let f = feed(&g, seed);
        let want = run(&g, &f);
        let mut opt = g.clone();
        PassManager::new(Pipeline::Training)
            .run(&mut opt)
            .unwrap_or_else(|e| panic!("{what}: pipeline: {e}"));
        let got = run_jit(&jit, &opt, &f);
        worst = worst.max(compare(&want, &got, &what));
    }
    let s = jit.stats();
    eprintln!(
        "{cases} graphs ({differentiated} with a backward): {} native kernel runs, {} fallbacks, \
         {} kernels compiled in {:?}; worst relative difference {worst:e}",
        s.native_runs, s.fallback_runs, s.kernels_compiled, s.compile_time
    );
    assert!(
        differentiated * 2 >= cases as usize,
        "most graphs differentiate"
    );
    assert!(
        s.native_runs > 0,
        "the JIT compiled some of the fused kernels"
    );
}

/// The inference pipeline (dropout removed, batch norm folded) on graphs with dense +
/// batch-norm blocks, also through the JIT.
#[test]
fn random_inference_graphs_agree_with_the_interpreter() {
    let cases = env("KILN_PROPTEST_CASES", 48);
    let base = env("KILN_PROPTEST_SEED", 0).wrapping_add(1000);
    let jit = JitBackend::new();
    for case in 0..cases {
        let seed = base.wrapping_add(case);
        let g = gen_graph(seed, 10, 10, GenOptions::INFERENCE);
        let f = feed(&g, seed);
        let want = run(&g, &f);
        let mut opt = g.clone();
        PassManager::new(Pipeline::Inference)
            .run(&mut opt)
            .unwrap_or_else(|e| panic!("seed {seed}: pipeline: {e}"));
        compare(&want, &run_jit(&jit, &opt, &f), &format!("seed {seed}"));
    }
    assert!(jit.stats().native_runs > 0);
}
