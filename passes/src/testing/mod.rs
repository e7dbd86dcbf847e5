//! A random-graph generator for tests of passes and backends (cargo feature `testing`).
//!
//! [`gen_graph`] starts from `kiln_ir`'s `random_graph` and plants what the passes look for:
//! duplicates, dead branches, identities, strength reductions, transpose and reshape chains,
//! dots with transposes, constant subgraphs, broadcasts, dropout, dense + batch norm. [`feed`]
//! gives inputs, [`run`] runs a graph on the reference interpreter, and [`assert_close`]
//! compares two runs within the tolerance [`TOL`] the property tests state.
//! [`proptest_config`] is the property-test configuration every suite shares (case count
//! and seed from `KILN_PROPTEST_CASES` / `KILN_PROPTEST_SEED`).
//!
//! ```
//! use kiln_passes::testing::{assert_close, feed, gen_graph, run, GenOptions};
//! use kiln_passes::{PassManager, Pipeline};
//! let g = gen_graph(7, 8, 8, GenOptions::TRAINING);
//! let f = feed(&g, 7);
//! let mut h = g.clone();
//! PassManager::new(Pipeline::Training).run(&mut h).unwrap();
//! assert_close(&run(&g, &f), &run(&h, &f), "training pipeline");
//! ```
//!
//! Use it from another crate's tests as a dev-dependency:
//! `kiln-passes = { path = "...", features = ["testing"] }`.
//!
//! This module is test support: its functions panic (with a message) where a test should
//! fail, and never run on user input.

pub use kiln_ir::graph::testing::{random_feed, random_graph};
use kiln_ir::random::op_rng;
use kiln_ir::{BinaryOp, DType, Graph, NodeId, Op, Tensor, TensorType, UnaryOp};
use rand::Rng;

pub use proptest;

/// What to put in a generated graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenOptions {
    /// Random dropout ops (only for pipelines that keep them).
    pub dropout: bool,
    /// Dense + batch-norm blocks with running statistics.
    pub batch_norm: bool,
}

impl GenOptions {
    /// Graphs for the training pipeline: dropout, no batch norm with running statistics.
    pub const TRAINING: GenOptions = GenOptions {
        dropout: true,
        batch_norm: false,
    };
    /// Graphs for the inference pipeline: dense + batch norm, no dropout (the pipeline
    /// removes it, which changes results).
    pub const INFERENCE: GenOptions = GenOptions {
        dropout: false,
        batch_norm: true,
    };
}

fn op(g: &mut Graph, op: Op, inputs: &[NodeId]) -> Option<NodeId> {
    g.add_op(op, inputs).ok()
}

fn scalar(f: BinaryOp, s: f64, reverse: bool) -> Op {
    Op::Scalar {
        f,
        scalar: s,
        reverse,
    }
}

/// A random well-typed f32 graph (see the module docs), reproducible from `seed`.
pub fn gen_graph(seed: u64, n_ops: usize, n_extra: usize, opts: GenOptions) -> Graph {
    let mut g = random_graph(seed, n_ops);
    let mut rng = op_rng(seed.wrapping_mul(31).wrapping_add(7));
    let mut values: Vec<NodeId> = g.topo_order();
    let mut outs: Vec<NodeId> = g.outputs().to_vec();
    let full45 =
        |g: &Graph, id: NodeId| g.ty(id).map(|t| t.shape.dims() == [4, 5]).unwrap_or(false);
    let mut bn_count = 0;
    for _ in 0..n_extra {
        let x = values[rng.random_range(0..values.len())];
        let y = values[rng.random_range(0..values.len())];
        let mut make = || -> Option<NodeId> {
            match rng.random_range(0..12) {
                // a duplicate of an existing op node
                0 => {
                    let ids: Vec<NodeId> = g
                        .node_ids()
                        .into_iter()
                        .filter(|&i| g.op(i).ok().flatten().is_some())
                        .collect();
                    if ids.is_empty() {
                        None
                    } else {
                        let d = ids[rng.random_range(0..ids.len())];
                        let o = g.op(d).ok().flatten().cloned();
                        let ins = g.inputs_of(d).unwrap_or_default();
                        o.and_then(|o| op(&mut g, o, &ins))
                    }
                }
                // identities
                1 => {
                    let k = rng.random_range(0..7);
                    match k {
                        0 => op(
                            &mut g,
                            scalar(BinaryOp::Mul, 1.0, rng.random_bool(0.5)),
                            &[x],
                        ),
                        1 => op(&mut g, scalar(BinaryOp::Add, 0.0, false), &[x]),
                        2 => op(&mut g, scalar(BinaryOp::Div, 1.0, false), &[x]),
                        3 => {
                            let n = op(&mut g, Op::Unary { f: UnaryOp::Neg }, &[x])?;
                            op(&mut g, Op::Unary { f: UnaryOp::Neg }, &[n])
                        }
                        4 => {
                            let one = g.add_const(Tensor::scalar(1.0f32)).ok()?;
                            op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[one, x])
                        }
                        5 => {
                            let zero = g.add_const(Tensor::zeros([5], DType::F32)).ok()?;
                            op(&mut g, Op::Binary { f: BinaryOp::Add }, &[x, zero])
                        }
                        _ => op(
                            &mut g,
                            Op::Binary {
                                f: BinaryOp::Maximum,
                            },
                            &[x, x],
                        ),
                    }
                }
                // strength reductions
                2 => match rng.random_range(0..3) {
                    0 => op(&mut g, scalar(BinaryOp::Pow, 2.0, false), &[x]),
                    1 => {
                        let c = [2.0, 4.0, 0.5, 3.0, 10.0][rng.random_range(0..5)];
                        op(&mut g, scalar(BinaryOp::Div, c, false), &[x])
                    }
                    _ => {
                        let c = g.add_const(Tensor::scalar(8.0f32)).ok()?;
                        op(&mut g, Op::Binary { f: BinaryOp::Div }, &[x, c])
                    }
                },
                // transpose and reshape chains on [4, 5] values
                3 if full45(&g, x) => {
                    if rng.random_bool(0.5) {
                        // rank 3: two random permutations compose into a third
                        const PERMS: [[usize; 3]; 6] = [
                            [0, 1, 2],
                            [0, 2, 1],
                            [1, 0, 2],
                            [1, 2, 0],
                            [2, 0, 1],
                            [2, 1, 0],
                        ];
                        // a cube, so that only the values tell permutations apart
                        let flat = op(&mut g, Op::Reshape { shape: vec![20] }, &[x])?;
                        let first = op(
                            &mut g,
                            Op::SliceAxis {
                                axis: 0,
                                begin: 0,
                                end: Some(8),
                            },
                            &[flat],
                        )?;
                        let r = op(
                            &mut g,
                            Op::Reshape {
                                shape: vec![2, 2, 2],
                            },
                            &[first],
                        )?;
                        let p1 = PERMS[rng.random_range(0..6)].to_vec();
                        let p2 = PERMS[rng.random_range(0..6)].to_vec();
                        let t1 = op(&mut g, Op::Transpose { axes: Some(p1) }, &[r])?;
                        return op(&mut g, Op::Transpose { axes: Some(p2) }, &[t1]);
                    }
                    let t1 = op(&mut g, Op::Transpose { axes: None }, &[x])?;
                    let axes = if rng.random_bool(0.5) {
                        None
                    } else {
                        Some(vec![1, 0])
                    };
                    op(&mut g, Op::Transpose { axes }, &[t1])
                }
                4 if full45(&g, x) => {
                    let r1 = op(&mut g, Op::Reshape { shape: vec![20] }, &[x])?;
                    let r2 = op(&mut g, Op::Reshape { shape: vec![2, -1] }, &[r1])?;
                    op(&mut g, Op::Reshape { shape: vec![4, 5] }, &[r2])
                }
                // dots with transposed operands
                5 if full45(&g, x) && full45(&g, y) => {
                    let ty = op(&mut g, Op::Transpose { axes: None }, &[y])?;
                    let d = op(
                        &mut g,
                        Op::Dot {
                            transpose_a: false,
                            transpose_b: false,
                        },
                        &[x, ty],
                    )?; // [4, 4]
                    let tx = op(
                        &mut g,
                        Op::Transpose {
                            axes: Some(vec![1, 0]),
                        },
                        &[x],
                    )?;
                    let d2 = op(
                        &mut g,
                        Op::Dot {
                            transpose_a: false,
                            transpose_b: false,
                        },
                        &[tx, d],
                    )?; // [5, 4]
                    op(&mut g, Op::Transpose { axes: None }, &[d2]) // [4, 5]
                }
                // a constant subgraph feeding a live value
                6 => {
                    let c1 = g
                        .add_const(Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.25, 1.5], [5]).ok()?)
                        .ok()?;
                    let c2 = g.add_const(Tensor::scalar(0.75f32)).ok()?;
                    let s = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[c1, c2])?;
                    let e = op(&mut g, Op::Unary { f: UnaryOp::Tanh }, &[s])?;
                    op(&mut g, Op::Binary { f: BinaryOp::Add }, &[x, e])
                }
                // a dead branch
                7 => {
                    let d = op(&mut g, Op::Unary { f: UnaryOp::Sin }, &[x])?;
                    op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[d, y]);
                    None
                }
                // broadcasts
                8 => {
                    if rng.random_bool(0.5) {
                        let c = g.add_const(Tensor::scalar(1.25f32)).ok()?;
                        let b = op(
                            &mut g,
                            Op::BroadcastTo {
                                shape: [4, 5].into(),
                            },
                            &[c],
                        )?;
                        op(&mut g, Op::Binary { f: BinaryOp::Sub }, &[b, x])
                    } else {
                        let b = op(
                            &mut g,
                            Op::BroadcastTo {
                                shape: [4, 5].into(),
                            },
                            &[y],
                        )?;
                        op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[x, b])
                    }
                }
                // two dropouts with one seed (CSE must keep both)
                9 if opts.dropout => {
                    let d1 = op(&mut g, Op::Dropout { p: 0.5, seed: 3 }, &[x])?;
                    let d2 = op(&mut g, Op::Dropout { p: 0.5, seed: 3 }, &[x])?;
                    op(&mut g, Op::Binary { f: BinaryOp::Add }, &[d1, d2])
                }
                // dense + batch norm with running statistics (constant or parameter weights)
                10 if opts.batch_norm && full45(&g, x) => {
                    bn_count += 1;
                    let w = if rng.random_bool(0.5) {
                        let v: Vec<f32> = (0..15).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                        g.add_const(Tensor::from_vec(v, [3, 5]).ok()?).ok()?
                    } else {
                        g.add_param(
                            format!("bn_w{bn_count}"),
                            TensorType::new([3, 5], DType::F32),
                        )
                        .ok()?
                    };
                    let mut c = |lo: f32, hi: f32| -> Option<NodeId> {
                        let v: Vec<f32> = (0..3).map(|_| rng.random_range(lo..hi)).collect();
                        g.add_const(Tensor::from_vec(v, [3]).ok()?).ok()
                    };
                    let (b, gamma, beta, mean, var) = (
                        c(-1.0, 1.0)?,
                        c(0.5, 2.0)?,
                        c(-1.0, 1.0)?,
                        c(-1.0, 1.0)?,
                        c(0.5, 2.0)?,
                    );
                    let fc = op(
                        &mut g,
                        Op::FullyConnected {
                            flatten: true,
                            no_bias: false,
                        },
                        &[x, w, b],
                    )?;
                    let bn = Op::BatchNorm {
                        eps: 1e-5,
                        axis: 1,
                        use_batch_stats: false,
                    };
                    op(&mut g, bn, &[fc, gamma, beta, mean, var])
                }
                _ => op(&mut g, Op::Unary { f: UnaryOp::Tanh }, &[x]),
            }
        };
        let made = make();
        if let Some(m) = made {
            values.push(m);
            if m.index() % 2 == 0 {
                outs.push(m);
            }
        }
    }
    let _ = g.set_outputs(outs);
    g
}

/// Runs `g` on `feed`.
pub fn run(g: &Graph, feed: &[(String, Tensor)]) -> Vec<Tensor> {
    let views: Vec<(&str, kiln_ir::TensorView<'_>)> =
        feed.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    g.run(&views).expect("the graph runs")
}

/// The feed for a generated graph.
pub fn feed(g: &Graph, seed: u64) -> Vec<(String, Tensor)> {
    random_feed(g, seed)
}

/// The tolerance the property tests state: `|a - b| <= TOL * max(1, |a|, |b|)`, NaN equal to
/// NaN. It covers the documented float effects (division by a constant as multiplication
/// by its reciprocal, batch norm folded into weights), each a few f32 ulps.
pub const TOL: f64 = 1e-5;

/// Checks two runs agree within [`TOL`], with the same types.
pub fn assert_close(before: &[Tensor], after: &[Tensor], what: &str) {
    assert_eq!(before.len(), after.len(), "{what}: output count");
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        assert_eq!(a.ty(), b.ty(), "{what}: output {i} type");
        for (k, (x, y)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
            let ok = (x.is_nan() && y.is_nan())
                || x == &y
                || (x - y).abs() <= TOL * 1f64.max(x.abs()).max(y.abs());
            assert!(ok, "{what}: output {i} element {k}: {x} before, {y} after");
        }
    }
}

/// The property-test configuration the suites share: `KILN_PROPTEST_CASES` cases (default
/// 64), no failure persistence, and a fixed seed, `KILN_PROPTEST_SEED` or `default_seed` (each
/// suite passes its own, so suites explore different graphs).
pub fn proptest_config(default_seed: u64) -> proptest::test_runner::Config {
    fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
        std::env::var(name).ok().and_then(|c| c.parse().ok())
    }
    proptest::test_runner::Config {
        cases: env("KILN_PROPTEST_CASES").unwrap_or(64),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            env("KILN_PROPTEST_SEED").unwrap_or(default_seed),
        ),
        ..proptest::test_runner::Config::default()
    }
}
