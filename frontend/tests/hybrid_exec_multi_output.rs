//! The executor runs multi-output fused kernels (horizontal fusion): the fused step returns
//! every output through `Kernels::execute_fused` and its `fused_output` steps hand them on.
//! Fused graphs give bitwise the unfused results on the CPU and interpreter backends (with
//! and without buffer recycling, over repeated runs) and agree within 1e-5 relative on the
//! Cranelift backend, which runs each output's slice as its own compiled kernel.

use kiln_frontend::hybrid::{BackendChoice, Executor};
use kiln_ir::graph::testing::{random_feed, random_graph};
use kiln_ir::{BinaryOp, DType, Graph, Op, ReduceOp, Tensor, TensorType, TensorView, UnaryOp};
use kiln_passes::{Fuse, Pass};

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::new(dims.to_vec(), DType::F32)
}

/// Siblings over `x` of both kinds: exp(x), tanh(x) * 3 and x + b (one [8,16] loop), and
/// sum(dy, 0) with sum(dy * x, 0) (one pass over [8,16]).
fn siblings() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[8, 16])).unwrap();
    let dy = g.add_input("dy", f32t(&[8, 16])).unwrap();
    let b = g.add_param("b", f32t(&[16])).unwrap();
    let e = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x]).unwrap();
    let t = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[x]).unwrap();
    let t3 = g
        .add_op(
            Op::Scalar {
                f: BinaryOp::Mul,
                scalar: 3.0,
                reverse: false,
            },
            &[t],
        )
        .unwrap();
    let xb = g.add_op(Op::Binary { f: BinaryOp::Add }, &[x, b]).unwrap();
    let sum0 = Op::Reduce {
        f: ReduceOp::Sum,
        axes: Some(vec![0]),
        keepdims: false,
    };
    let db = g.add_op(sum0.clone(), &[dy]).unwrap();
    let p = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[dy, x]).unwrap();
    let dg = g.add_op(sum0, &[p]).unwrap();
    // One output read by a later op, so a fused_output value is an intermediate too.
    let mix = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[e, xb]).unwrap();
    g.set_outputs(vec![mix, t3, db, dg]).unwrap();
    g
}

fn feed_for(exec: &Executor, feed: &[(String, Tensor)]) -> Vec<Tensor> {
    exec.bindings()
        .map(|(name, _)| feed.iter().find(|(n, _)| n == name).unwrap().1.clone())
        .collect()
}

fn run(
    g: &Graph,
    backend: BackendChoice,
    reuse: bool,
    feed: &[(String, Tensor)],
) -> Vec<Vec<Tensor>> {
    let mut exec = Executor::new(g, 0, backend).unwrap();
    exec.set_buffer_reuse(reuse);
    let values = feed_for(&exec, feed);
    let views: Vec<TensorView<'_>> = values.iter().map(Tensor::view).collect();
    (0..3).map(|_| exec.run(&views, &[]).unwrap()).collect()
}

fn multi_output_nodes(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(
            |&id| matches!(g.op(id), Ok(Some(Op::Fused { kernel })) if kernel.is_multi_output()),
        )
        .count()
}

#[test]
fn fused_siblings_run_bitwise_like_the_unfused_graph() {
    let g = siblings();
    let mut h = g.clone();
    Fuse::default().run(&mut h).unwrap();
    assert_eq!(multi_output_nodes(&h), 2, "{h}");
    let feed = random_feed(&g, 7);
    for backend in [BackendChoice::Cpu, BackendChoice::Interpreter] {
        let want = run(&g, backend, false, &feed).remove(0);
        for reuse in [false, true] {
            for got in run(&h, backend, reuse, &feed) {
                assert_eq!(got, want, "{} reuse={reuse}", backend.name());
            }
        }
    }
    let want = run(&g, BackendChoice::Interpreter, false, &feed).remove(0);
    for got in run(&h, BackendChoice::Cranelift, true, &feed) {
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.ty(), b.ty());
            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-5 * q.abs().max(1.0), "{p} vs {q}");
            }
        }
    }
}

#[test]
fn fused_random_graphs_run_bitwise_like_the_unfused_ones() {
    let mut merged = 0;
    for seed in 0..32u64 {
        let g = random_graph(seed, 16);
        let mut h = g.clone();
        Fuse::default().run(&mut h).unwrap();
        merged += multi_output_nodes(&h);
        let feed = random_feed(&g, seed);
        let want = run(&g, BackendChoice::Cpu, false, &feed).remove(0);
        for got in run(&h, BackendChoice::Cpu, true, &feed) {
            assert_eq!(got, want, "seed {seed}\n{h}");
        }
    }
    assert!(merged > 0, "no random graph had siblings to merge");
}
