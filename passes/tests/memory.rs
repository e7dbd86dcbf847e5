//! Memory planning: exact plans on small graphs (multi-output fused kernels included), and
//! invariants on random graphs (no two values alive at once share a buffer, outputs and
//! graph inputs are never written, the plan never needs more than one buffer per value; a
//! multi-output kernel writes all its outputs at its own step, each into its own buffer).
//!
//! Property cases: 64, or `KILN_PROPTEST_CASES`; a fixed generator seed, or
//! `KILN_PROPTEST_SEED`.

use kiln_ir::graph::NodeKind;
use kiln_ir::{BinaryOp, DType, Graph, NodeId, Op, ReduceOp, TensorType, UnaryOp};
use kiln_passes::memory::{plan, MemoryPlan, PlanMemory};
use kiln_passes::testing::{gen_graph, proptest_config, random_graph, GenOptions};
use kiln_passes::{DumpOptions, Pass, PassManager, Pipeline};
use proptest::prelude::*;

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::new(dims, DType::F32)
}

fn unary(f: UnaryOp) -> Op {
    Op::Unary { f }
}

fn transpose() -> Op {
    Op::Transpose { axes: None }
}

fn dot() -> Op {
    Op::Dot {
        transpose_a: false,
        transpose_b: false,
    }
}

fn sum_rows() -> Op {
    Op::Reduce {
        f: ReduceOp::Sum,
        axes: Some(vec![1]),
        keepdims: false,
    }
}

#[test]
fn a_chain_ping_pongs_between_two_buffers() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[4, 4])).unwrap();
    let mut v = x;
    for _ in 0..4 {
        v = g.add_op(transpose(), &[v]).unwrap();
    }
    g.set_outputs(vec![v]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(
        p.to_string(),
        "\
buf0: 64 bytes
buf1: 64 bytes
%1 -> buf0
%2 -> buf1
%3 -> buf0
%4 -> buf1
peak 128 bytes planned vs 256 bytes one buffer per value (50.0%); 4 values in 2 buffers, 0 in place
"
    );
    assert_eq!((p.peak_bytes, p.naive_bytes, p.live_bytes), (128, 256, 128));
    assert_eq!(p.buffer_of(x), None, "graph inputs are not planned");
}

#[test]
fn a_diamond_keeps_the_shared_value_until_its_last_user() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[4, 4])).unwrap();
    let a = g.add_op(unary(UnaryOp::Exp), &[x]).unwrap();
    let b = g.add_op(transpose(), &[a]).unwrap();
    let c = g.add_op(dot(), &[a, a]).unwrap();
    let d = g.add_op(Op::Binary { f: BinaryOp::Add }, &[b, c]).unwrap();
    g.set_outputs(vec![d]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(
        p.to_string(),
        "\
buf0: 64 bytes
buf1: 64 bytes
buf2: 64 bytes
%1 -> buf0
%2 -> buf1
%3 -> buf2
%4 -> buf1 (in place of %2)
peak 192 bytes planned vs 256 bytes one buffer per value (75.0%); 4 values in 3 buffers, 1 in place
"
    );
    assert_eq!(p.in_place, vec![(d, b)]);
}

#[test]
fn elementwise_ops_overwrite_inputs_that_die_there() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[8])).unwrap();
    let a = g.add_op(unary(UnaryOp::Exp), &[x]).unwrap();
    let b = g.add_op(unary(UnaryOp::Tanh), &[a]).unwrap();
    let c = g.add_op(unary(UnaryOp::Sigmoid), &[b]).unwrap();
    g.set_outputs(vec![c]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(
        p.to_string(),
        "\
buf0: 32 bytes
%1 -> buf0
%2 -> buf0 (in place of %1)
%3 -> buf0 (in place of %2)
peak 32 bytes planned vs 96 bytes one buffer per value (33.3%); 3 values in 1 buffers, 2 in place
"
    );
    assert_eq!(p.in_place, vec![(b, a), (c, b)]);
    assert_eq!(p.live_bytes, 32);
}

#[test]
fn fused_elementwise_kernels_run_in_place_and_others_do_not() {
    use kiln_ir::{FusedArg, FusedInst, FusedKernel};
    let ty = f32s(&[4, 4]);
    let chain = FusedKernel::new(
        vec![ty.clone()],
        vec![
            FusedInst::new(unary(UnaryOp::Exp), vec![FusedArg::Input(0)], ty.clone()),
            FusedInst::new(unary(UnaryOp::Tanh), vec![FusedArg::Value(0)], ty.clone()),
        ],
        1,
    )
    .unwrap();
    let epilogue = FusedKernel::new(
        vec![ty.clone(), ty.clone()],
        vec![
            FusedInst::new(
                dot(),
                vec![FusedArg::Input(0), FusedArg::Input(1)],
                ty.clone(),
            ),
            FusedInst::new(unary(UnaryOp::Relu), vec![FusedArg::Value(0)], ty.clone()),
        ],
        1,
    )
    .unwrap();
    let mut g = Graph::new();
    let x = g.add_input("x", ty.clone()).unwrap();
    let a = g.add_op(transpose(), &[x]).unwrap();
    let fused = |k: &FusedKernel| Op::Fused {
        kernel: Box::new(k.clone()),
    };
    let b = g.add_op(fused(&chain), &[a]).unwrap();
    let c = g.add_op(fused(&epilogue), &[b, b]).unwrap();
    g.set_outputs(vec![c]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(
        p.in_place,
        vec![(b, a)],
        "only the elementwise kernel runs in place"
    );
    assert_eq!(p.buffers.len(), 2);
}

/// `x: f32[4]` and a fused node computing exp(x) (output 0) and tanh(x) (output 1), with
/// output 1 read through a fused_output node.
fn two_output_graph() -> (Graph, NodeId, NodeId, NodeId) {
    use kiln_ir::{FusedArg, FusedInst, FusedKernel};
    let ty = f32s(&[4]);
    let kernel = FusedKernel::with_outputs(
        vec![ty.clone()],
        vec![
            FusedInst::new(unary(UnaryOp::Exp), vec![FusedArg::Input(0)], ty.clone()),
            FusedInst::new(unary(UnaryOp::Tanh), vec![FusedArg::Input(0)], ty.clone()),
        ],
        vec![0, 1],
    )
    .unwrap();
    let mut g = Graph::new();
    let x = g.add_input("x", ty.clone()).unwrap();
    let k = g
        .add_op(
            Op::Fused {
                kernel: Box::new(kernel),
            },
            &[x],
        )
        .unwrap();
    let o = g.add_op(Op::FusedOutput { index: 1, ty }, &[k]).unwrap();
    (g, x, k, o)
}

#[test]
fn each_output_of_a_multi_output_kernel_has_its_own_buffer() {
    let (mut g, _, k, o) = two_output_graph();
    let n = g.add_op(unary(UnaryOp::Neg), &[o]).unwrap();
    let m = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[k, n]).unwrap();
    g.set_outputs(vec![m]).unwrap();
    let p = plan(&g).unwrap();
    // Both outputs are written when the kernel runs; each then lives to its own last use.
    assert_eq!(
        p.to_string(),
        "\
buf0: 16 bytes
buf1: 16 bytes
%1 -> buf0
%2 -> buf1 (written by %1)
%3 -> buf1 (in place of %2)
%4 -> buf0 (in place of %1)
peak 32 bytes planned vs 64 bytes one buffer per value (50.0%); 4 values in 2 buffers, 2 in place
"
    );
    assert_eq!(p.fused_outputs, vec![(o, k)]);
    check_plan(&g, &p).unwrap();
}

#[test]
fn an_unread_first_output_frees_its_buffer_when_the_kernel_ends() {
    let (mut g, _, k, o) = two_output_graph();
    let all = Op::Reduce {
        f: ReduceOp::Sum,
        axes: None,
        keepdims: false,
    };
    let r = g.add_op(all, &[o]).unwrap();
    let t = g.add_op(unary(UnaryOp::Neg), &[r]).unwrap();
    g.set_outputs(vec![t]).unwrap();
    let p = plan(&g).unwrap();
    // exp(x) is never read: its buffer is free once the kernel has run, so the sum takes
    // it while tanh(x) is still being read.
    assert_eq!(
        p.to_string(),
        "\
buf0: 16 bytes
buf1: 16 bytes
%1 -> buf0
%2 -> buf1 (written by %1)
%3 -> buf0
%4 -> buf0 (in place of %3)
peak 32 bytes planned vs 40 bytes one buffer per value (80.0%); 4 values in 2 buffers, 1 in place
"
    );
    // A multi-output kernel never writes over its input (its other outputs read it too).
    assert!(!kiln_passes::memory::writes_elementwise(
        g.op(k).unwrap().unwrap()
    ));
    check_plan(&g, &p).unwrap();
}

#[test]
fn a_value_read_later_is_not_overwritten() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[8])).unwrap();
    let a = g.add_op(unary(UnaryOp::Exp), &[x]).unwrap();
    let b = g.add_op(unary(UnaryOp::Tanh), &[a]).unwrap();
    let c = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[a, b]).unwrap();
    g.set_outputs(vec![c]).unwrap();
    let p = plan(&g).unwrap();
    // tanh cannot overwrite exp's value (mul reads it); mul overwrites the first input
    // that dies there.
    assert_eq!(p.buffer_of(a), Some(0));
    assert_eq!(p.buffer_of(b), Some(1));
    assert_eq!(p.in_place, vec![(c, a)]);
    assert_eq!(p.buffer_of(c), Some(0));
    assert_eq!((p.peak_bytes, p.naive_bytes), (64, 96));
}

#[test]
fn outputs_are_never_reused_or_overwritten() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[4, 4])).unwrap();
    let a = g.add_op(unary(UnaryOp::Exp), &[x]).unwrap();
    let b = g.add_op(transpose(), &[a]).unwrap();
    let c = g.add_op(unary(UnaryOp::Neg), &[a]).unwrap();
    let d = g.add_op(transpose(), &[b]).unwrap();
    let e = g.add_op(transpose(), &[d]).unwrap();
    let f = g.add_op(Op::Binary { f: BinaryOp::Add }, &[c, e]).unwrap();
    g.set_outputs(vec![a, f]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(
        p.to_string(),
        "\
buf0: 64 bytes
buf1: 64 bytes
buf2: 64 bytes
buf3: 64 bytes
%1 -> buf0
%2 -> buf1
%3 -> buf2
%4 -> buf3
%5 -> buf1
%6 -> buf2 (in place of %3)
peak 256 bytes planned vs 384 bytes one buffer per value (66.7%); 6 values in 4 buffers, 1 in place
"
    );
    // neg reads the output `a` as its last use but may not overwrite it.
    assert_eq!(p.in_place_of(c), None);
    assert!(p.assignment.iter().all(|&(n, buf)| n == a || buf != 0));
}

#[test]
fn graph_inputs_params_and_consts_are_never_written() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[3])).unwrap();
    let w = g.add_param("w", f32s(&[3])).unwrap();
    let k = g
        .add_const(kiln_ir::Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3]).unwrap())
        .unwrap();
    let a = g.add_op(unary(UnaryOp::Neg), &[x]).unwrap();
    let b = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[w, k]).unwrap();
    let c = g.add_op(Op::Binary { f: BinaryOp::Add }, &[a, b]).unwrap();
    g.set_outputs(vec![c]).unwrap();
    let p = plan(&g).unwrap();
    for id in [x, w, k] {
        assert_eq!(p.buffer_of(id), None);
    }
    // neg and mul read only bound values: new buffers; add overwrites neg's value.
    assert_eq!(p.in_place, vec![(c, a)]);
    assert_eq!(p.buffers.len(), 2);
}

#[test]
fn best_fit_takes_the_smallest_free_buffer_that_is_large_enough() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[4, 4])).unwrap();
    let a = g.add_op(unary(UnaryOp::Exp), &[x]).unwrap(); // 64 bytes
    let s = g.add_op(sum_rows(), &[a]).unwrap(); // 16 bytes
    let c = g.add_op(dot(), &[a, a]).unwrap(); // a dies: buf0 (64) free
    let d = g.add_op(transpose(), &[c]).unwrap(); // takes buf0; c dies: buf2 free
    let e = g.add_op(Op::Reshape { shape: vec![2, 2] }, &[s]).unwrap(); // 16 bytes
    let f = g.add_op(transpose(), &[e]).unwrap(); // free: buf1 (16, s) and buf2 (64, c)
    g.set_outputs(vec![d, f]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(p.buffer_of(s), Some(1));
    assert_eq!(p.buffer_of(d), Some(0));
    assert_eq!(
        p.buffer_of(e),
        Some(2),
        "only buf2 is free when reshape runs"
    );
    assert_eq!(
        p.buffer_of(f),
        Some(1),
        "16-byte buf1 fits better than 64-byte buf2"
    );
    assert_eq!(
        p.buffers.iter().map(|b| b.bytes).collect::<Vec<_>>(),
        vec![64, 16, 64]
    );
}

#[test]
fn dead_ops_are_not_planned() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(&[2])).unwrap();
    let dead = g.add_op(unary(UnaryOp::Exp), &[x]).unwrap();
    let y = g.add_op(unary(UnaryOp::Tanh), &[x]).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let p = plan(&g).unwrap();
    assert_eq!(p.buffer_of(dead), None);
    assert_eq!(p.assignment, vec![(y, 0)]);
    assert_eq!(p.naive_bytes, 8);
}

#[test]
fn the_pass_reports_bytes_and_leaves_the_graph_alone() {
    let mut g = random_graph(3, 12);
    let text = g.to_text();
    let report = PlanMemory.run(&mut g).unwrap();
    assert_eq!(g.to_text(), text);
    assert!(!report.changed);
    let p = plan(&g).unwrap();
    let m = report.memory.unwrap();
    assert_eq!((m.peak_bytes, m.naive_bytes), (p.peak_bytes, p.naive_bytes));
    assert_eq!((m.buffers, m.in_place), (p.buffers.len(), p.in_place.len()));
    assert_eq!(
        report.artifacts,
        vec![("plan.txt".to_string(), p.to_string())]
    );
}

#[test]
fn the_pipelines_end_with_plan_memory_and_report_it() {
    for pipeline in [Pipeline::Training, Pipeline::Inference] {
        let pm = PassManager::new(pipeline);
        assert_eq!(pm.pass_names().last(), Some(&"plan_memory"));
    }
    let mut g = random_graph(5, 10);
    let stats = PassManager::new(Pipeline::Training).run(&mut g).unwrap();
    let m = stats.memory().expect("plan_memory ran");
    assert_eq!(m.peak_bytes, plan(&g).unwrap().peak_bytes);
    assert!(m.peak_bytes <= m.naive_bytes);
    let table = stats.to_string();
    assert!(
        table.contains(&format!(
            "plan_memory: peak {} bytes planned vs {} bytes naive",
            m.peak_bytes, m.naive_bytes
        )),
        "{table}"
    );
    let mut pm = PassManager::new(Pipeline::Training);
    pm.disable("plan_memory").unwrap();
    assert!(pm.run(&mut g).unwrap().memory().is_none());
}

#[test]
fn dumps_write_the_plan_next_to_the_graph() {
    let dir = std::env::temp_dir().join(format!("kiln-memplan-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut g = random_graph(9, 8);
    let mut pm = PassManager::new(Pipeline::Training);
    pm.set_dump(DumpOptions {
        stderr: None,
        dir: Some(dir.clone()),
    });
    pm.run(&mut g).unwrap();
    let written = std::fs::read_to_string(dir.join("06-plan_memory.plan.txt")).unwrap();
    assert_eq!(written, plan(&g).unwrap().to_string());
    assert!(dir.join("06-plan_memory.txt").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Checks the plan's invariants on `g`; returns a message for the first violation.
fn check_plan(g: &Graph, p: &MemoryPlan) -> Result<(), String> {
    let order = g.topo_order();
    let pos = |id: NodeId| order.iter().position(|&n| n == id).unwrap();
    let bytes = |id: NodeId| {
        let t = g.ty(id).unwrap();
        t.shape.numel() * t.dtype.size_of()
    };
    // Live ops (those the outputs need): exactly the planned nodes.
    let mut live = vec![false; order.iter().map(|n| n.index() + 1).max().unwrap_or(0)];
    let mut stack = g.outputs().to_vec();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id.index()], true) {
            stack.extend(g.inputs_of(id).unwrap());
        }
    }
    for &id in &order {
        let is_op = matches!(g.node(id).unwrap().kind, NodeKind::Op(_));
        if p.buffer_of(id).is_some() != (is_op && live[id.index()]) {
            return Err(format!("%{} planned wrongly", pos(id)));
        }
    }
    let is_projection = |id: NodeId| matches!(g.op(id).unwrap(), Some(Op::FusedOutput { .. }));
    // Where a value is written: a fused_output's by its fused node.
    let def = |id: NodeId| -> usize {
        if is_projection(id) {
            pos(g.inputs_of(id).unwrap()[0])
        } else {
            pos(id)
        }
    };
    // Its last read (a fused_output reads the kernel's other output, not this value).
    let last_use = |id: NodeId| -> usize {
        if g.outputs().contains(&id) {
            return usize::MAX;
        }
        g.users(id)
            .unwrap()
            .into_iter()
            .filter(|&u| live[u.index()] && !is_projection(u))
            .map(pos)
            .max()
            .unwrap_or(def(id))
    };
    for &(id, buf) in &p.assignment {
        if p.buffers[buf].bytes < bytes(id) {
            return Err(format!("%{} does not fit buf{buf}", pos(id)));
        }
    }
    for &(id, input) in &p.in_place {
        let op = g.op(id).unwrap().unwrap();
        if !kiln_passes::memory::writes_elementwise(op)
            || last_use(input) != pos(id)
            || bytes(input) != bytes(id)
            || !g.inputs_of(id).unwrap().contains(&input)
            || p.buffer_of(id) != p.buffer_of(input)
        {
            return Err(format!("bad in-place %{} over %{}", pos(id), pos(input)));
        }
    }
    // Two values in one buffer: the earlier one's life ends before the later one starts,
    // or exactly where it starts when the later one overwrites it in place.
    for (i, &(u, bu)) in p.assignment.iter().enumerate() {
        for &(v, bv) in &p.assignment[i + 1..] {
            if bu != bv {
                continue;
            }
            let (du, lu, dv) = (def(u), last_use(u), def(v));
            let in_place_chain = lu == dv && p.in_place_of(v) == Some(u);
            if !(lu < dv || in_place_chain) {
                return Err(format!(
                    "%{du} (live to {lu}) and %{dv} share buf{bu}\n{p}\n{g}"
                ));
            }
        }
    }
    let naive: usize = p.assignment.iter().map(|&(n, _)| bytes(n)).sum();
    let total: usize = p.buffers.iter().map(|b| b.bytes).sum();
    if naive != p.naive_bytes || total != p.peak_bytes {
        return Err("byte totals disagree".into());
    }
    if !(p.live_bytes <= p.peak_bytes && p.peak_bytes <= p.naive_bytes) {
        return Err(format!(
            "live {} <= peak {} <= naive {} fails",
            p.live_bytes, p.peak_bytes, p.naive_bytes
        ));
    }
    Ok(())
}

fn config() -> proptest::test_runner::Config {
    proptest_config(0x6d65_6d70)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn plans_of_random_graphs_keep_the_invariants(seed in any::<u64>(), n in 1usize..40) {
        let g = random_graph(seed, n);
        let p = plan(&g).unwrap();
        if let Err(msg) = check_plan(&g, &p) {
            return Err(TestCaseError::fail(msg));
        }
    }

    #[test]
    fn plans_after_the_pipeline_keep_the_invariants(
        seed in any::<u64>(), n in 2usize..14, extra in 0usize..14
    ) {
        let mut g = gen_graph(seed, n, extra, GenOptions::TRAINING);
        PassManager::new(Pipeline::Training).run(&mut g).unwrap();
        let p = plan(&g).unwrap();
        if let Err(msg) = check_plan(&g, &p) {
            return Err(TestCaseError::fail(msg));
        }
    }
}
