//! Property tests: on random well-typed graphs, each pass alone and each pipeline keep the
//! interpreter's results within `kiln_passes::testing::TOL` (relative, see there), keep every output's
//! type, and leave a graph the verifier accepts.
//!
//! Cases: 64 per property, or `KILN_PROPTEST_CASES`; a fixed generator seed, or
//! `KILN_PROPTEST_SEED`.

use kiln_passes::testing::{assert_close, feed, gen_graph, proptest_config, run, GenOptions};
use kiln_passes::{
    verify, ConstFold, Cse, Dce, FoldBatchNorm, Pass, PassManager, Pipeline, Simplify,
};
use proptest::prelude::*;

fn config() -> proptest::test_runner::Config {
    proptest_config(0x6b69_6c6e)
}

fn check_pass(pass: &dyn Pass, seed: u64, n_ops: usize, n_extra: usize, opts: GenOptions) {
    let g = gen_graph(seed, n_ops, n_extra, opts);
    let f = feed(&g, seed);
    let before = run(&g, &f);
    let mut h = g.clone();
    let report = pass.run(&mut h).expect("the pass runs");
    verify(&h).unwrap_or_else(|e| panic!("{} broke the graph: {e}\n{h}", pass.name()));
    assert_eq!(report.nodes_after, h.len());
    assert_close(&before, &run(&h, &f), pass.name());
}

const TRAIN: GenOptions = GenOptions::TRAINING;
const INFER: GenOptions = GenOptions::INFERENCE;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn simplify_keeps_results(seed in any::<u64>(), n in 2usize..14, extra in 0usize..14) {
        check_pass(&Simplify::default(), seed, n, extra, TRAIN);
    }

    #[test]
    fn const_fold_keeps_results(seed in any::<u64>(), n in 2usize..14, extra in 0usize..14) {
        check_pass(&ConstFold::default(), seed, n, extra, TRAIN);
    }

    #[test]
    fn cse_keeps_results(seed in any::<u64>(), n in 2usize..14, extra in 0usize..14) {
        check_pass(&Cse, seed, n, extra, TRAIN);
    }

    #[test]
    fn dce_keeps_results(seed in any::<u64>(), n in 2usize..14, extra in 0usize..14) {
        check_pass(&Dce, seed, n, extra, TRAIN);
    }

    #[test]
    fn bn_fold_keeps_results(seed in any::<u64>(), n in 2usize..10, extra in 0usize..14) {
        check_pass(&FoldBatchNorm, seed, n, extra, INFER);
    }

    #[test]
    fn training_pipeline_keeps_results_and_never_grows(
        seed in any::<u64>(), n in 2usize..14, extra in 0usize..14
    ) {
        let g = gen_graph(seed, n, extra, TRAIN);
        let f = feed(&g, seed);
        let before = run(&g, &f);
        let mut h = g.clone();
        let pm = PassManager::new(Pipeline::Training);
        prop_assert!(pm.verifies());
        let stats = pm.run(&mut h).expect("the pipeline runs");
        assert_close(&before, &run(&h, &f), "training pipeline");
        prop_assert!(h.len() <= g.len(), "{} -> {} nodes", g.len(), h.len());
        prop_assert_eq!(stats.rows.len(), pm.enabled_names().len());
        // DCE ran last among the passes that change the graph: nothing is dead.
        let all_live = h.node_ids().iter().all(|&id| {
            h.use_count(id).unwrap() > 0
                || matches!(
                    h.node(id).unwrap().kind,
                    kiln_ir::graph::NodeKind::Input { .. } | kiln_ir::graph::NodeKind::Param { .. }
                )
        });
        prop_assert!(all_live);
    }

    #[test]
    fn inference_pipeline_keeps_results(seed in any::<u64>(), n in 2usize..12, extra in 0usize..14) {
        let g = gen_graph(seed, n, extra, INFER);
        let f = feed(&g, seed);
        let before = run(&g, &f);
        let mut h = g.clone();
        PassManager::new(Pipeline::Inference).run(&mut h).expect("the pipeline runs");
        assert_close(&before, &run(&h, &f), "inference pipeline");
    }

    #[test]
    fn pipeline_is_idempotent_in_results(seed in any::<u64>(), n in 2usize..10, extra in 0usize..10) {
        let g = gen_graph(seed, n, extra, TRAIN);
        let pm = PassManager::new(Pipeline::Training);
        let mut once = g.clone();
        pm.run(&mut once).expect("runs");
        let mut twice = once.clone();
        pm.run(&mut twice).expect("runs again");
        let f = feed(&g, seed);
        assert_close(&run(&once, &f), &run(&twice, &f), "second run");
        prop_assert!(twice.len() <= once.len());
    }
}

/// The generator exercises what the passes look for: over 200 graphs, the pipelines fire
/// the rules the generator plants.
#[test]
fn generated_graphs_exercise_the_rules() {
    let mut totals: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut before, mut after) = ([0usize; 2], [0usize; 2]);
    for seed in 0..200u64 {
        for (k, (pipeline, opts)) in [(Pipeline::Training, TRAIN), (Pipeline::Inference, INFER)]
            .into_iter()
            .enumerate()
        {
            let mut g = gen_graph(seed, 6, 12, opts);
            before[k] += g.len();
            let stats = PassManager::new(pipeline).run(&mut g).unwrap();
            after[k] += g.len();
            for row in &stats.rows {
                for (name, n) in &row.firings {
                    *totals.entry(name.clone()).or_default() += n;
                }
            }
        }
    }
    eprintln!("{totals:#?}");
    eprintln!("nodes (training, inference): {before:?} -> {after:?}");
    assert!(after[0] < before[0] && after[1] < before[1]);
    for rule in [
        "neg-neg",
        "mul-one",
        "mul-one-left",
        "add-zero-right",
        "div-one",
        "max-self",
        "pow-two",
        "div-const",
        "div-const-tensor",
        "transpose-transpose",
        "reshape-reshape",
        "dot-transpose-a",
        "dot-transpose-b",
        "broadcast-scalar",
        "mul-broadcast-r",
        "fold-batch-norm",
        "dce-remove",
    ] {
        assert!(
            totals.get(rule).copied().unwrap_or(0) > 0,
            "{rule} never fired"
        );
    }
    assert!(totals.keys().any(|k| k.starts_with("cse-")));
    assert!(totals.keys().any(|k| k.starts_with("fold-")));
}

/// A random i32 graph built from the ops the simplification rules look at.
fn int_graph(seed: u64, n: usize) -> kiln_ir::Graph {
    use kiln_ir::{BinaryOp, DType, Op, TensorType, UnaryOp};
    use rand::Rng;
    let mut rng = kiln_ir::random::op_rng(seed);
    let mut g = kiln_ir::Graph::new();
    let ty = TensorType::new([4, 5], DType::I32);
    let mut vals = vec![
        g.add_input("a", ty.clone()).unwrap(),
        g.add_input("b", ty).unwrap(),
    ];
    let sc = |f, s: f64| Op::Scalar {
        f,
        scalar: s,
        reverse: false,
    };
    for _ in 0..n {
        let x = vals[rng.random_range(0..vals.len())];
        let y = vals[rng.random_range(0..vals.len())];
        let id = match rng.random_range(0..9) {
            0 => g.add_op(sc(BinaryOp::Mul, 1.0), &[x]),
            1 => g.add_op(sc(BinaryOp::Add, 0.0), &[x]),
            2 => g.add_op(sc(BinaryOp::Pow, 2.0), &[x]),
            3 => g.add_op(sc(BinaryOp::Div, 3.0), &[x]),
            4 => g.add_op(sc(BinaryOp::Mul, 7.0), &[x]),
            5 => g.add_op(Op::Unary { f: UnaryOp::Neg }, &[x]),
            6 => g
                .add_op(Op::Transpose { axes: None }, &[x])
                .and_then(|t| g.add_op(Op::Transpose { axes: None }, &[t])),
            7 => g.add_op(Op::Binary { f: BinaryOp::Sub }, &[x, y]),
            _ => g.add_op(
                Op::Binary {
                    f: BinaryOp::Maximum,
                },
                &[x, y],
            ),
        }
        .unwrap();
        vals.push(id);
    }
    let last = *vals.last().unwrap();
    g.set_outputs(vec![last, vals[vals.len() / 2]]).unwrap();
    g
}

proptest! {
    #![proptest_config(config())]

    /// Integer arithmetic wraps and truncates: the pipeline keeps results bit for bit.
    #[test]
    fn integer_graphs_keep_exact_results(seed in any::<u64>(), n in 1usize..24) {
        let g = int_graph(seed, n);
        let f = feed(&g, seed);
        let before = run(&g, &f);
        let mut h = g.clone();
        PassManager::new(Pipeline::Training).run(&mut h).unwrap();
        prop_assert_eq!(before, run(&h, &f));
    }
}
