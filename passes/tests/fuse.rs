//! The fusion pass: exact graph text on small graphs (chains, a diamond, shared producers,
//! reductions with prologue and epilogue, GEMM/convolution epilogues, the input cap, random
//! ops, horizontal fusion of siblings into multi-output kernels), bitwise-equal interpreter
//! results, and property tests on random graphs (the pass alone keeps results bit for bit on
//! the interpreter and on the CPU backend, multi-output kernels run through
//! `Kernels::execute_fused`; the pipelines with fusion agree with the unoptimized graph
//! within `kiln_passes::testing::TOL`).
//!
//! Cases: 64 per property, or `KILN_PROPTEST_CASES`; a fixed seed, or `KILN_PROPTEST_SEED`.

use kiln_backends::jit::JitBackend;
use kiln_backends::{CpuBackend, Interpreter, Kernels};
use kiln_ir::graph::NodeKind;
use kiln_ir::{
    BinaryOp, DType, FusedKind, Graph, NodeId, Op, ReduceOp, Tensor, TensorType, UnaryOp,
};
use kiln_passes::fuse::MAX_KERNEL_INPUTS;
use kiln_passes::testing::{
    assert_close, feed, gen_graph, proptest_config, random_graph, run, GenOptions,
};
use kiln_passes::{verify, Fuse, Pass, PassManager, Pipeline};
use proptest::prelude::*;
use std::collections::HashMap;

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::new(dims.to_vec(), DType::F32)
}

fn un(g: &mut Graph, f: UnaryOp, x: NodeId) -> NodeId {
    g.add_op(Op::Unary { f }, &[x]).unwrap()
}

fn bin(g: &mut Graph, f: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
    g.add_op(Op::Binary { f }, &[a, b]).unwrap()
}

fn sc(g: &mut Graph, f: BinaryOp, s: f64, x: NodeId) -> NodeId {
    g.add_op(
        Op::Scalar {
            f,
            scalar: s,
            reverse: false,
        },
        &[x],
    )
    .unwrap()
}

fn reduce(g: &mut Graph, f: ReduceOp, axes: &[isize], keepdims: bool, x: NodeId) -> NodeId {
    g.add_op(
        Op::Reduce {
            f,
            axes: Some(axes.to_vec()),
            keepdims,
        },
        &[x],
    )
    .unwrap()
}

/// Bit patterns of every output, so that equality is exact (NaN included).
fn bits(outs: &[Tensor]) -> Vec<(TensorType, Vec<u64>)> {
    outs.iter()
        .map(|t| (t.ty(), t.to_f64_vec().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// Runs fusion on a copy of `g`; checks the verifier, bitwise-equal results on a random
/// feed, and that a second run changes nothing. Returns the fused graph and the firings.
fn fuse_checked(g: &Graph, pass: Fuse) -> (Graph, Vec<(String, usize)>) {
    let f = feed(g, 11);
    let before = run(g, &f);
    let mut h = g.clone();
    let report = pass.run(&mut h).expect("fusion runs");
    verify(&h).unwrap_or_else(|e| panic!("fusion broke the graph: {e}\n{h}"));
    assert_eq!(bits(&before), bits(&run(&h, &f)), "results changed:\n{h}");
    let text = h.to_text();
    let again = pass.run(&mut h).expect("fusion runs again");
    assert!(
        again.firings.is_empty(),
        "second run fired {:?}",
        again.firings
    );
    assert_eq!(h.to_text(), text, "second run changed the graph");
    (h, report.firings)
}

fn firings(list: &[(&str, usize)]) -> Vec<(String, usize)> {
    list.iter().map(|&(n, c)| (n.to_string(), c)).collect()
}

fn fused_kinds(g: &Graph) -> Vec<FusedKind> {
    g.topo_order()
        .into_iter()
        .filter_map(|id| match g.op(id).unwrap() {
            Some(Op::Fused { kernel }) => Some(kernel.kind()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_elementwise_chain_with_broadcasting_becomes_one_kernel() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4, 5])).unwrap();
    let b = g.add_param("b", f32t(&[5])).unwrap();
    let e = un(&mut g, UnaryOp::Exp, x);
    let m = sc(&mut g, BinaryOp::Mul, 2.0, e);
    let a = bin(&mut g, BinaryOp::Add, m, b);
    let y = un(&mut g, UnaryOp::Tanh, a);
    g.set_outputs(vec![y]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("elementwise_chain", 1)]));
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[4,5]
%1 = param \"b\" : f32[5]
%2 = fused.elementwise(%0, %1) : f32[4,5]
    $0 = exp(in0) : f32[4,5]
    $1 = mul_scalar($0) {scalar=2.0, reverse=false} : f32[4,5]
    $2 = add($1, in1) : f32[4,5]
    $3 = tanh($2) : f32[4,5]
return %2
"
    );
    assert_eq!(fused_kinds(&h), vec![FusedKind::Elementwise]);
}

#[test]
fn a_diamond_is_one_kernel_reading_its_input_once() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 2])).unwrap();
    let a = un(&mut g, UnaryOp::Exp, x);
    let b = un(&mut g, UnaryOp::Tanh, a);
    let c = un(&mut g, UnaryOp::Sin, a);
    let d = bin(&mut g, BinaryOp::Add, b, c);
    g.set_outputs(vec![d]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("elementwise_chain", 1)]));
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[3,2]
%1 = fused.elementwise(%0) : f32[3,2]
    $0 = exp(in0) : f32[3,2]
    $1 = tanh($0) : f32[3,2]
    $2 = sin($0) : f32[3,2]
    $3 = add($1, $2) : f32[3,2]
return %1
"
    );
}

#[test]
fn a_producer_shared_by_two_kernels_is_computed_once_outside_both() {
    // a = exp(x) feeds the chain tanh(a * 2) and neg(a): it is never recomputed, so it stays a
    // node of its own; the chain fuses, and neg, its sibling over a, joins it horizontally.
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 2])).unwrap();
    let a = un(&mut g, UnaryOp::Exp, x);
    let m = sc(&mut g, BinaryOp::Mul, 2.0, a);
    let t = un(&mut g, UnaryOp::Tanh, m);
    let n = un(&mut g, UnaryOp::Neg, a);
    g.set_outputs(vec![t, n]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(
        fired,
        firings(&[("elementwise_chain", 1), ("horizontal_elementwise", 1)])
    );
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[3,2]
%1 = exp(%0) : f32[3,2]
%2 = fused.elementwise(%1) : f32[3,2]
    $0 = neg(in0) : f32[3,2]  (output 0)
    $1 = mul_scalar(in0) {scalar=2.0, reverse=false} : f32[3,2]
    $2 = tanh($1) : f32[3,2]  (output 1)
%3 = fused_output(%2) {index=1} : f32[3,2]
return %3, %2
"
    );
}

#[test]
fn siblings_reading_one_input_become_one_multi_output_kernel() {
    // exp(x), tanh(x) * 3 and x + b read x with one iteration space [4,5]; sum(x, 1) has
    // another; exp(b) reads b with shape [5].
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4, 5])).unwrap();
    let b = g.add_param("b", f32t(&[5])).unwrap();
    let e = un(&mut g, UnaryOp::Exp, x);
    let t = un(&mut g, UnaryOp::Tanh, x);
    let t3 = sc(&mut g, BinaryOp::Mul, 3.0, t);
    let xb = bin(&mut g, BinaryOp::Add, x, b);
    let s = reduce(&mut g, ReduceOp::Sum, &[1], false, x);
    let eb = un(&mut g, UnaryOp::Exp, b);
    g.set_outputs(vec![e, t3, xb, s, eb]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(
        fired,
        firings(&[("elementwise_chain", 1), ("horizontal_elementwise", 1)])
    );
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[4,5]
%1 = param \"b\" : f32[5]
%2 = fused.elementwise(%0, %1) : f32[4,5]
    $0 = exp(in0) : f32[4,5]  (output 0)
    $1 = add(in0, in1) : f32[4,5]  (output 1)
    $2 = tanh(in0) : f32[4,5]
    $3 = mul_scalar($2) {scalar=3.0, reverse=false} : f32[4,5]  (output 2)
%3 = fused_output(%2) {index=1} : f32[4,5]
%4 = fused_output(%2) {index=2} : f32[4,5]
%5 = sum(%0) {axes=[1], keepdims=false} : f32[4]
%6 = exp(%1) : f32[5]
return %2, %4, %3, %5, %6
"
    );
    assert_eq!(fused_kinds(&h), vec![FusedKind::Elementwise]);
}

#[test]
fn sibling_reductions_over_one_space_share_a_kernel() {
    // The dense layer's bias gradient sum(dy, 0), the batch-norm-style sum(dy * x, 0), and
    // sum(dy, 1) over other axes (not a sibling of the first two).
    let mut g = Graph::new();
    let dy = g.add_input("dy", f32t(&[6, 3])).unwrap();
    let x = g.add_input("x", f32t(&[6, 3])).unwrap();
    let db = reduce(&mut g, ReduceOp::Sum, &[0], false, dy);
    let p = bin(&mut g, BinaryOp::Mul, dy, x);
    let dg = reduce(&mut g, ReduceOp::Sum, &[-2], false, p);
    let r = reduce(&mut g, ReduceOp::Sum, &[1], false, dy);
    g.set_outputs(vec![db, dg, r]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(
        fired,
        firings(&[("reduction_prologue", 1), ("horizontal_reduction", 1)])
    );
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"dy\" : f32[6,3]
%1 = input \"x\" : f32[6,3]
%2 = fused.reduction(%0, %1) : f32[3]
    $0 = sum(in0) {axes=[0], keepdims=false} : f32[3]  (output 0)
    $1 = mul(in0, in1) : f32[6,3]
    $2 = sum($1) {axes=[-2], keepdims=false} : f32[3]  (output 1)
%3 = fused_output(%2) {index=1} : f32[3]
%4 = sum(%0) {axes=[1], keepdims=false} : f32[6]
return %2, %3, %4
"
    );
    assert_eq!(fused_kinds(&h), vec![FusedKind::Reduction]);
}

#[test]
fn a_sibling_that_depends_on_another_is_not_merged() {
    // b reads x and, through a reshape round trip (never fused), a = exp(x): merging a and b
    // would make the merged node its own ancestor.
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[2, 3])).unwrap();
    let a = un(&mut g, UnaryOp::Exp, x);
    let r = g.add_op(Op::Reshape { shape: vec![6] }, &[a]).unwrap();
    let r2 = g.add_op(Op::Reshape { shape: vec![2, 3] }, &[r]).unwrap();
    let b = bin(&mut g, BinaryOp::Add, x, r2);
    g.set_outputs(vec![b]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert!(fired.is_empty(), "{fired:?}");
    assert_eq!(h.to_text(), g.to_text());
}

#[test]
fn the_input_cap_keeps_siblings_apart() {
    // Three siblings over x, the chains x * y_i + z_i, each with two inputs of its own:
    // 7 distinct inputs in all; with a cap of 5 the third stays apart.
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4])).unwrap();
    let mut outs = Vec::new();
    for i in 0..3 {
        let y = g.add_input(format!("y{i}"), f32t(&[4])).unwrap();
        let z = g.add_input(format!("z{i}"), f32t(&[4])).unwrap();
        let m = bin(&mut g, BinaryOp::Mul, x, y);
        outs.push(bin(&mut g, BinaryOp::Add, m, z));
    }
    g.set_outputs(outs).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::with_max_inputs(5));
    assert_eq!(
        fired,
        firings(&[
            ("elementwise_chain", 3),
            ("horizontal_elementwise", 1),
            ("input_cap", 1)
        ])
    );
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[4]
%1 = input \"y0\" : f32[4]
%2 = input \"z0\" : f32[4]
%3 = input \"y1\" : f32[4]
%4 = input \"z1\" : f32[4]
%5 = input \"y2\" : f32[4]
%6 = input \"z2\" : f32[4]
%7 = fused.elementwise(%0, %1, %2, %3, %4) : f32[4]
    $0 = mul(in0, in1) : f32[4]
    $1 = add($0, in2) : f32[4]  (output 0)
    $2 = mul(in0, in3) : f32[4]
    $3 = add($2, in4) : f32[4]  (output 1)
%8 = fused_output(%7) {index=1} : f32[4]
%9 = fused.elementwise(%0, %5, %6) : f32[4]
    $0 = mul(in0, in1) : f32[4]
    $1 = add($0, in2) : f32[4]
return %7, %8, %9
"
    );
    let (_, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(
        fired,
        firings(&[("elementwise_chain", 3), ("horizontal_elementwise", 1)])
    );
}

#[test]
fn multi_output_kernels_refuse_single_value_paths_and_autodiff() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3])).unwrap();
    let e = un(&mut g, UnaryOp::Exp, x);
    let t = un(&mut g, UnaryOp::Tanh, x);
    g.set_outputs(vec![e, t]).unwrap();
    let mut h = g.clone();
    Fuse::default().run(&mut h).unwrap();
    let fused = h
        .node_ids()
        .into_iter()
        .find(|&id| matches!(h.op(id).unwrap(), Some(Op::Fused { .. })))
        .unwrap();
    let Some(Op::Fused { kernel }) = h.op(fused).unwrap() else {
        unreachable!()
    };
    assert_eq!(kernel.num_outputs(), 2);
    let xv = Tensor::from_vec(vec![0.5f32, -1.0, 2.0], [3]).unwrap();
    // One op evaluated alone cannot stand for two values.
    let op = Op::Fused {
        kernel: kernel.clone(),
    };
    let err = kiln_ir::interp::eval(&op, &[xv.view()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("returns 2 values"), "{err}");
    let err = CpuBackend
        .execute(&op, &[xv.view()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("eval_all"), "{err}");
    // The JIT declines it (not lowered yet) and runs its single-output slices instead.
    let jit = JitBackend::global();
    assert!(!jit.compiles(kernel, &[xv.view()]));
    let want = CpuBackend.execute_fused(kernel, &[xv.view()]).unwrap();
    let got = jit.execute_fused(kernel, &[xv.view()]).unwrap();
    assert_eq!(got.len(), 2);
    for (a, b) in got.iter().zip(&want) {
        for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!((p - q).abs() <= 1e-6 * q.abs().max(1.0), "{p} vs {q}");
        }
    }
    // Differentiating a fused graph is refused with a clear message.
    let Err(e) = kiln_passes::autodiff::differentiate(&h, &["x"]) else {
        panic!("a fused graph has no gradient");
    };
    let err = e.to_string();
    assert!(err.contains("no VJP"), "{err}");
}
#[test]
fn graph_outputs_and_smaller_computed_values_stay_nodes() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4, 5])).unwrap();
    let b = g.add_param("b", f32t(&[5])).unwrap();
    // exp(b) has shape [5]: computing it inside a [4,5] kernel would compute it 4 times.
    let eb = un(&mut g, UnaryOp::Exp, b);
    let a = bin(&mut g, BinaryOp::Add, x, eb);
    // a is an output too: it cannot disappear into the kernel of tanh(a).
    let t = un(&mut g, UnaryOp::Tanh, a);
    g.set_outputs(vec![t, a]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert!(fired.is_empty(), "{fired:?}");
    assert_eq!(h.to_text(), g.to_text());
}

#[test]
fn mean_and_variance_fuse_into_reduction_kernels() {
    // Batch-norm statistics: m = mean(x), v = mean((x - m)^2), s = sqrt(v + eps).
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4, 6])).unwrap();
    let m = reduce(&mut g, ReduceOp::Mean, &[1], true, x);
    let xc = bin(&mut g, BinaryOp::Sub, x, m);
    let sq = un(&mut g, UnaryOp::Square, xc);
    let v = reduce(&mut g, ReduceOp::Mean, &[1], false, sq);
    let ve = sc(&mut g, BinaryOp::Add, 1e-5, v);
    let s = un(&mut g, UnaryOp::Sqrt, ve);
    g.set_outputs(vec![s]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("reduction_prologue_epilogue", 1)]));
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[4,6]
%1 = mean(%0) {axes=[1], keepdims=true} : f32[4,1]
%2 = fused.reduction(%0, %1) : f32[4]
    $0 = sub(in0, in1) : f32[4,6]
    $1 = square($0) : f32[4,6]
    $2 = mean($1) {axes=[1], keepdims=false} : f32[4]
    $3 = add_scalar($2) {scalar=0.00001, reverse=false} : f32[4]
    $4 = sqrt($3) : f32[4]
return %2
"
    );
    assert_eq!(fused_kinds(&h), vec![FusedKind::Reduction]);
}

#[test]
fn softmax_and_cross_entropy_take_their_producers() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 4])).unwrap();
    let labels = g.add_input("labels", f32t(&[3])).unwrap();
    let t = sc(&mut g, BinaryOp::Div, 2.0, x);
    let p = g.add_op(Op::Softmax { axis: -1 }, &[t]).unwrap();
    let l = sc(&mut g, BinaryOp::Mul, 3.0, x);
    let ce = g.add_op(Op::SoftmaxCrossEntropy, &[l, labels]).unwrap();
    let loss = reduce(&mut g, ReduceOp::Mean, &[0], false, ce);
    g.set_outputs(vec![p, loss]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("reduction_prologue", 2)]));
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[3,4]
%1 = input \"labels\" : f32[3]
%2 = fused.reduction(%0) : f32[3,4]
    $0 = div_scalar(in0) {scalar=2.0, reverse=false} : f32[3,4]
    $1 = softmax($0) {axis=-1} : f32[3,4]
%3 = fused.reduction(%0, %1) : f32[3]
    $0 = mul_scalar(in0) {scalar=3.0, reverse=false} : f32[3,4]
    $1 = softmax_cross_entropy($0, in1) : f32[3]
%4 = mean(%3) {axes=[0], keepdims=false} : f32[]
return %2, %4
"
    );
    assert_eq!(
        fused_kinds(&h),
        vec![FusedKind::Reduction, FusedKind::Reduction]
    );
}

#[test]
fn dense_bias_relu_is_one_epilogue_kernel() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[2, 3])).unwrap();
    let w = g.add_param("w", f32t(&[3, 4])).unwrap();
    let b = g.add_param("b", f32t(&[4])).unwrap();
    let d = g
        .add_op(
            Op::Dot {
                transpose_a: false,
                transpose_b: false,
            },
            &[x, w],
        )
        .unwrap();
    let y = bin(&mut g, BinaryOp::Add, d, b);
    let r = un(&mut g, UnaryOp::Relu, y);
    g.set_outputs(vec![r]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("epilogue", 1)]));
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x\" : f32[2,3]
%1 = param \"w\" : f32[3,4]
%2 = param \"b\" : f32[4]
%3 = fused.epilogue(%0, %1, %2) : f32[2,4]
    $0 = dot(in0, in1) {transpose_a=false, transpose_b=false} : f32[2,4]
    $1 = add($0, in2) : f32[2,4]
    $2 = relu($1) : f32[2,4]
return %3
"
    );
    assert_eq!(fused_kinds(&h), vec![FusedKind::Epilogue]);
}

#[test]
fn convolution_activation_and_residual_add_are_one_epilogue_kernel() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[1, 2, 4, 4])).unwrap();
    let w = g.add_param("w", f32t(&[2, 2, 3, 3])).unwrap();
    let b = g.add_param("b", f32t(&[2])).unwrap();
    let c = g
        .add_op(
            Op::Convolution {
                stride: vec![1, 1],
                pad: vec![1, 1],
                dilation: vec![1, 1],
                groups: 1,
                no_bias: false,
            },
            &[x, w, b],
        )
        .unwrap();
    let r = un(&mut g, UnaryOp::Relu, c);
    let y = bin(&mut g, BinaryOp::Add, r, x);
    g.set_outputs(vec![y]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("epilogue", 1)]));
    assert_eq!(h.to_text(), "\
%0 = input \"x\" : f32[1,2,4,4]
%1 = param \"w\" : f32[2,2,3,3]
%2 = param \"b\" : f32[2]
%3 = fused.epilogue(%0, %1, %2) : f32[1,2,4,4]
    $0 = convolution(in0, in1, in2) {stride=[1,1], pad=[1,1], dilation=[1,1], groups=1, no_bias=false} : f32[1,2,4,4]
    $1 = relu($0) : f32[1,2,4,4]
    $2 = add($1, in0) : f32[1,2,4,4]
return %3
");
}

#[test]
fn the_input_cap_splits_long_chains() {
    // y = ((x0 + x1) + x2) + ... + x9: ten inputs.
    let mut g = Graph::new();
    let xs: Vec<NodeId> = (0..10)
        .map(|i| g.add_input(format!("x{i}"), f32t(&[2])).unwrap())
        .collect();
    let mut acc = xs[0];
    for &x in &xs[1..] {
        acc = bin(&mut g, BinaryOp::Add, acc, x);
    }
    g.set_outputs(vec![acc]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::with_max_inputs(4));
    assert_eq!(
        fired,
        firings(&[("input_cap", 2), ("elementwise_chain", 3)])
    );
    assert_eq!(
        h.to_text(),
        "\
%0 = input \"x0\" : f32[2]
%1 = input \"x1\" : f32[2]
%2 = input \"x2\" : f32[2]
%3 = input \"x3\" : f32[2]
%4 = input \"x4\" : f32[2]
%5 = input \"x5\" : f32[2]
%6 = input \"x6\" : f32[2]
%7 = input \"x7\" : f32[2]
%8 = input \"x8\" : f32[2]
%9 = input \"x9\" : f32[2]
%10 = fused.elementwise(%0, %1, %2, %3) : f32[2]
    $0 = add(in0, in1) : f32[2]
    $1 = add($0, in2) : f32[2]
    $2 = add($1, in3) : f32[2]
%11 = fused.elementwise(%10, %4, %5, %6) : f32[2]
    $0 = add(in0, in1) : f32[2]
    $1 = add($0, in2) : f32[2]
    $2 = add($1, in3) : f32[2]
%12 = fused.elementwise(%11, %7, %8, %9) : f32[2]
    $0 = add(in0, in1) : f32[2]
    $1 = add($0, in2) : f32[2]
    $2 = add($1, in3) : f32[2]
return %12
"
    );
    for id in h.node_ids() {
        if let Some(Op::Fused { kernel }) = h.op(id).unwrap() {
            assert!(kernel.inputs.len() <= 4);
        }
    }
    // Under the default cap the whole chain is one kernel.
    assert_eq!(MAX_KERNEL_INPUTS, 16);
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert_eq!(fired, firings(&[("elementwise_chain", 1)]));
    assert_eq!(fused_kinds(&h).len(), 1);
}

#[test]
fn random_ops_and_shape_ops_are_never_fused() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4, 5])).unwrap();
    let e = un(&mut g, UnaryOp::Exp, x);
    let d = g.add_op(Op::Dropout { p: 0.5, seed: 3 }, &[e]).unwrap();
    let t = un(&mut g, UnaryOp::Tanh, d);
    let r = g.add_op(Op::Reshape { shape: vec![20] }, &[t]).unwrap();
    let s = un(&mut g, UnaryOp::Sin, r);
    g.set_outputs(vec![s]).unwrap();
    let (h, fired) = fuse_checked(&g, Fuse::default());
    assert!(fired.is_empty(), "{fired:?}");
    assert_eq!(h.to_text(), g.to_text());
}

#[test]
fn the_pipelines_run_fuse_after_dce_and_it_can_be_switched_off() {
    let pm = PassManager::new(Pipeline::Training);
    let names = pm.pass_names();
    let dce = names.iter().position(|&n| n == "dce").unwrap();
    assert_eq!(names[dce + 1], "fuse");
    let pm = PassManager::new(Pipeline::Inference);
    let names = pm.pass_names();
    let dce = names.iter().position(|&n| n == "dce").unwrap();
    assert_eq!(names[dce + 1], "fuse");

    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[4])).unwrap();
    let e = un(&mut g, UnaryOp::Exp, x);
    let t = un(&mut g, UnaryOp::Tanh, e);
    g.set_outputs(vec![t]).unwrap();
    let mut on = g.clone();
    let stats = PassManager::new(Pipeline::Training).run(&mut on).unwrap();
    let row = stats.get("fuse").unwrap();
    assert_eq!((row.before.kernels, row.after.kernels), (2, 1));
    // One kernel reading x and writing the result: 16 + 16 bytes instead of 4 * 16.
    assert_eq!((row.before.bytes_moved, row.after.bytes_moved), (64, 32));
    let mut off = g.clone();
    let mut pm = PassManager::new(Pipeline::Training);
    pm.disable("fuse").unwrap();
    let stats = pm.run(&mut off).unwrap();
    assert!(stats.get("fuse").is_none());
    assert_eq!(off.to_text(), g.to_text());
}

fn config() -> proptest::test_runner::Config {
    proptest_config(0x6675_7365)
}

const TRAIN: GenOptions = GenOptions::TRAINING;
const INFER: GenOptions = GenOptions::INFERENCE;

/// Runs `g` on `kernels` as an executor does: every fused node through
/// [`Kernels::execute_fused`], `fused_output` nodes from its further outputs.
fn run_on(g: &Graph, feed: &[(String, Tensor)], kernels: &dyn Kernels) -> Vec<Tensor> {
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    let mut extras: HashMap<NodeId, Vec<Tensor>> = HashMap::new();
    for id in g.topo_order() {
        let value = match &g.node(id).unwrap().kind {
            NodeKind::Input { name } | NodeKind::Param { name } => {
                feed.iter().find(|(n, _)| n == name).unwrap().1.clone()
            }
            NodeKind::Const(t) => t.clone(),
            NodeKind::Op(op) => {
                let args = g.inputs_of(id).unwrap();
                let views: Vec<_> = args.iter().map(|a| values[a].view()).collect();
                match op {
                    Op::FusedOutput { index, .. } => extras[&args[0]][index - 1].clone(),
                    Op::Fused { kernel } => {
                        let mut all = kernels.execute_fused(kernel, &views).unwrap();
                        assert_eq!(all.len(), kernel.num_outputs());
                        let first = all.remove(0);
                        extras.insert(id, all);
                        first
                    }
                    _ => kernels.execute(op, &views).unwrap(),
                }
            }
        };
        values.insert(id, value);
    }
    g.outputs().iter().map(|o| values[o].clone()).collect()
}

/// Fusion alone on `g`: the verifier accepts the result, results are equal bit for bit (on
/// the interpreter, and on the CPU backend and the interpreter backend through
/// `Kernels::execute_fused`), and a fused node never reads more than the cap.
fn check_fuse_alone(g: &Graph, seed: u64, cap: usize) {
    let f = feed(g, seed);
    let before = run(g, &f);
    let mut h = g.clone();
    let report = Fuse::with_max_inputs(cap).run(&mut h).expect("fusion runs");
    verify(&h).unwrap_or_else(|e| panic!("fusion broke the graph: {e}\n{h}"));
    assert_eq!(report.nodes_after, h.len());
    assert_eq!(
        bits(&before),
        bits(&run(&h, &f)),
        "results changed:\n{g}\n{h}"
    );
    let cpu_before = run_on(g, &f, &CpuBackend);
    assert_eq!(
        bits(&cpu_before),
        bits(&run_on(&h, &f, &CpuBackend)),
        "CPU results changed:\n{g}\n{h}"
    );
    assert_eq!(
        bits(&before),
        bits(&run_on(&h, &f, &Interpreter)),
        "interpreter-backend results changed:\n{g}\n{h}"
    );
    for id in h.node_ids() {
        if let Some(Op::Fused { kernel }) = h.op(id).unwrap() {
            assert!(kernel.inputs.len() <= cap, "{}", kernel.body_text());
            assert_ne!(kernel.kind(), FusedKind::Generic, "{}", kernel.body_text());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fusion_keeps_results_bitwise_on_random_graphs(seed in any::<u64>(), n in 2usize..24) {
        check_fuse_alone(&random_graph(seed, n), seed, MAX_KERNEL_INPUTS);
    }

    #[test]
    fn fusion_keeps_results_bitwise_with_a_small_cap(
        seed in any::<u64>(), n in 2usize..16, extra in 0usize..14, cap in 1usize..5
    ) {
        check_fuse_alone(&gen_graph(seed, n, extra, TRAIN), seed, cap);
    }

    #[test]
    fn the_training_pipeline_with_fusion_agrees_with_the_unoptimized_graph(
        seed in any::<u64>(), n in 2usize..14, extra in 0usize..14
    ) {
        let g = gen_graph(seed, n, extra, TRAIN);
        let f = feed(&g, seed);
        let mut h = g.clone();
        let stats = PassManager::new(Pipeline::Training).run(&mut h).expect("the pipeline runs");
        prop_assert!(stats.get("fuse").is_some());
        verify(&h).unwrap();
        assert_close(&run(&g, &f), &run(&h, &f), "training pipeline with fusion");
    }

    #[test]
    fn the_inference_pipeline_with_fusion_agrees_with_the_unoptimized_graph(
        seed in any::<u64>(), n in 2usize..12, extra in 0usize..14
    ) {
        let g = gen_graph(seed, n, extra, INFER);
        let f = feed(&g, seed);
        let mut h = g.clone();
        let stats = PassManager::new(Pipeline::Inference).run(&mut h).expect("the pipeline runs");
        prop_assert!(stats.get("fuse").is_some());
        assert_close(&run(&g, &f), &run(&h, &f), "inference pipeline with fusion");
    }
}

/// Over 200 generated graphs fusion fires, and every kernel it makes is of a kind a backend
/// compiles (elementwise, reduction or epilogue), never the generic fallback.
#[test]
fn generated_graphs_exercise_fusion() {
    let mut totals: std::collections::BTreeMap<String, usize> = Default::default();
    for seed in 0..200u64 {
        let mut g = gen_graph(seed, 8, 12, TRAIN);
        let report = Fuse::default().run(&mut g).unwrap();
        for (name, n) in report.firings {
            *totals.entry(name).or_default() += n;
        }
        assert!(!fused_kinds(&g).contains(&FusedKind::Generic));
    }
    eprintln!("{totals:#?}");
    for name in [
        "elementwise_chain",
        "reduction_prologue",
        "reduction_epilogue",
        "reduction_prologue_epilogue",
        "horizontal_elementwise",
    ] {
        assert!(
            totals.get(name).copied().unwrap_or(0) > 0,
            "{name} never fired: {totals:?}"
        );
    }
}
