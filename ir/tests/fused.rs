//! Fused kernels: validation, kinds, evaluation against the unfused ops, text and JSON forms.

use kiln_ir::interp::eval;
use kiln_ir::{
    BinaryOp, DType, FusedArg, FusedInst, FusedKernel, FusedKind, Graph, Op, ReduceOp, Tensor,
    TensorType, UnaryOp,
};

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(shape.to_vec(), DType::F32)
}

fn add() -> Op {
    Op::Binary { f: BinaryOp::Add }
}

fn unary(f: UnaryOp) -> Op {
    Op::Unary { f }
}

use FusedArg::{Input, Value};

/// tanh(x + b) * x, with a row-broadcast b.
fn bias_tanh_mul() -> FusedKernel {
    let t = f32t(&[3, 4]);
    FusedKernel::new(
        vec![t.clone(), f32t(&[4])],
        vec![
            FusedInst::new(add(), vec![Input(0), Input(1)], t.clone()),
            FusedInst::new(unary(UnaryOp::Tanh), vec![Value(0)], t.clone()),
            FusedInst::new(Op::Binary { f: BinaryOp::Mul }, vec![Value(1), Input(0)], t),
        ],
        2,
    )
    .unwrap()
}

fn ramp(shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| (i as f32 - n as f32 / 2.0) * scale)
        .collect();
    Tensor::from_vec(data, shape.to_vec()).unwrap()
}

#[test]
fn eval_equals_the_ops_run_one_by_one() {
    let k = bias_tanh_mul();
    let x = ramp(&[3, 4], 0.3);
    let b = ramp(&[4], 0.1);
    let fused = eval(
        &Op::Fused {
            kernel: Box::new(k.clone()),
        },
        &[x.view(), b.view()],
    )
    .unwrap();
    let s = eval(&add(), &[x.view(), b.view()]).unwrap();
    let t = eval(&unary(UnaryOp::Tanh), &[s.view()]).unwrap();
    let y = eval(&Op::Binary { f: BinaryOp::Mul }, &[t.view(), x.view()]).unwrap();
    assert_eq!(fused.to_f64_vec(), y.to_f64_vec());
    assert_eq!(fused.ty(), f32t(&[3, 4]));
}

#[test]
fn kinds() {
    assert_eq!(bias_tanh_mul().kind(), FusedKind::Elementwise);

    // sum(exp(x), axis=1) / 4: reduction with a prologue and an epilogue.
    let x = f32t(&[3, 4]);
    let r = f32t(&[3]);
    let red = FusedKernel::new(
        vec![x.clone()],
        vec![
            FusedInst::new(unary(UnaryOp::Exp), vec![Input(0)], x.clone()),
            FusedInst::new(
                Op::Reduce {
                    f: ReduceOp::Sum,
                    axes: Some(vec![1]),
                    keepdims: false,
                },
                vec![Value(0)],
                r.clone(),
            ),
            FusedInst::new(
                Op::Scalar {
                    f: BinaryOp::Div,
                    scalar: 4.0,
                    reverse: false,
                },
                vec![Value(1)],
                r,
            ),
        ],
        2,
    )
    .unwrap();
    assert_eq!(red.kind(), FusedKind::Reduction);
    assert_eq!(red.reduction(), Some(1));

    // relu(dot(a, w) + b): a GEMM epilogue.
    let a = f32t(&[2, 3]);
    let w = f32t(&[3, 5]);
    let o = f32t(&[2, 5]);
    let epi = FusedKernel::new(
        vec![a, w, f32t(&[5])],
        vec![
            FusedInst::new(
                Op::Dot {
                    transpose_a: false,
                    transpose_b: false,
                },
                vec![Input(0), Input(1)],
                o.clone(),
            ),
            FusedInst::new(add(), vec![Value(0), Input(2)], o.clone()),
            FusedInst::new(unary(UnaryOp::Relu), vec![Value(1)], o),
        ],
        2,
    )
    .unwrap();
    assert_eq!(epi.kind(), FusedKind::Epilogue);
    assert_eq!(epi.reduction(), None);

    // An elementwise body whose output is narrower than an instruction: generic.
    let wide = FusedKernel::new(
        vec![f32t(&[3, 4]), f32t(&[4])],
        vec![
            FusedInst::new(add(), vec![Input(0), Input(1)], f32t(&[3, 4])),
            FusedInst::new(unary(UnaryOp::Neg), vec![Input(1)], f32t(&[4])),
        ],
        1,
    )
    .unwrap();
    assert_eq!(wide.kind(), FusedKind::Generic);
}

#[test]
fn invalid_kernels_are_clear_errors() {
    let t = f32t(&[2]);
    let cases: Vec<(FusedKernel, &str)> = vec![
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![],
                output: 0,
                extra_outputs: vec![],
            },
            "at least one op",
        ),
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![FusedInst::new(
                    unary(UnaryOp::Neg),
                    vec![Input(1)],
                    t.clone(),
                )],
                output: 0,
                extra_outputs: vec![],
            },
            "operand in1 is not a kernel input",
        ),
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![FusedInst::new(
                    unary(UnaryOp::Neg),
                    vec![Value(0)],
                    t.clone(),
                )],
                output: 0,
                extra_outputs: vec![],
            },
            "operand $0 is not",
        ),
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![FusedInst::new(
                    unary(UnaryOp::Neg),
                    vec![Input(0)],
                    f32t(&[3]),
                )],
                output: 0,
                extra_outputs: vec![],
            },
            "declared type f32[3] but its operands give f32[2]",
        ),
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![FusedInst::new(
                    unary(UnaryOp::Neg),
                    vec![Input(0)],
                    t.clone(),
                )],
                output: 1,
                extra_outputs: vec![],
            },
            "output $1 out of range",
        ),
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![FusedInst::new(
                    Op::Dropout { p: 0.5, seed: 0 },
                    vec![Input(0)],
                    t.clone(),
                )],
                output: 0,
                extra_outputs: vec![],
            },
            "random op dropout cannot be fused",
        ),
        (
            FusedKernel {
                inputs: vec![t.clone()],
                body: vec![FusedInst::new(
                    Op::Fused {
                        kernel: Box::new(bias_tanh_mul()),
                    },
                    vec![Input(0)],
                    t.clone(),
                )],
                output: 0,
                extra_outputs: vec![],
            },
            "nested fused kernel",
        ),
    ];
    for (k, want) in cases {
        let err = FusedKernel::new(k.inputs.clone(), k.body.clone(), k.output)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
}

#[test]
fn a_fused_node_checks_its_inputs() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 5])).unwrap();
    let b = g.add_input("b", f32t(&[4])).unwrap();
    let err = g
        .add_op(
            Op::Fused {
                kernel: Box::new(bias_tanh_mul()),
            },
            &[x, b],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not match the kernel's"), "{err}");
}

#[test]
fn text_dot_and_json_forms() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 4])).unwrap();
    let b = g.add_param("b", f32t(&[4])).unwrap();
    let y = g
        .add_op(
            Op::Fused {
                kernel: Box::new(bias_tanh_mul()),
            },
            &[x, b],
        )
        .unwrap();
    g.set_outputs(vec![y]).unwrap();
    assert_eq!(
        g.to_text(),
        "%0 = input \"x\" : f32[3,4]\n\
         %1 = param \"b\" : f32[4]\n\
         %2 = fused.elementwise(%0, %1) : f32[3,4]\n\
         \x20   $0 = add(in0, in1) : f32[3,4]\n\
         \x20   $1 = tanh($0) : f32[3,4]\n\
         \x20   $2 = mul($1, in0) : f32[3,4]\n\
         return %2\n"
    );
    assert!(g.to_dot().contains("fused.elementwise"), "{}", g.to_dot());
    assert!(g.to_dot().contains("add+tanh+mul"));

    let back = Graph::from_json(&g.to_json()).unwrap();
    assert_eq!(back.to_text(), g.to_text());
    let xv = ramp(&[3, 4], 0.2);
    let bv = ramp(&[4], 0.5);
    let feed = [("x", xv.view()), ("b", bv.view())];
    assert_eq!(
        back.run(&feed).unwrap()[0].to_f64_vec(),
        g.run(&feed).unwrap()[0].to_f64_vec()
    );
}

#[test]
fn a_corrupt_fused_kernel_in_json_is_an_error() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 4])).unwrap();
    let b = g.add_param("b", f32t(&[4])).unwrap();
    let y = g
        .add_op(
            Op::Fused {
                kernel: Box::new(bias_tanh_mul()),
            },
            &[x, b],
        )
        .unwrap();
    g.set_outputs(vec![y]).unwrap();
    // Point the tanh at a later value.
    let json = g.to_json().replacen("{\"value\":0}", "{\"value\":2}", 1);
    assert_ne!(json, g.to_json(), "the test must corrupt something");
    let err = Graph::from_json(&json).unwrap_err().to_string();
    assert!(
        err.contains("is not a kernel input or an earlier value"),
        "{err}"
    );
}

#[test]
fn cache_keys_are_structural() {
    let a = bias_tanh_mul();
    let b = bias_tanh_mul();
    assert_eq!(a.cache_key(), b.cache_key());
    let mut c = bias_tanh_mul();
    c.body[1].op = unary(UnaryOp::Sigmoid);
    assert_ne!(a.cache_key(), c.cache_key());
}

#[test]
fn fused_nodes_have_no_vjp() {
    let op = Op::Fused {
        kernel: Box::new(bias_tanh_mul()),
    };
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[3, 4])).unwrap();
    let b = g.add_input("b", f32t(&[4])).unwrap();
    let y = g.add_op(op.clone(), &[x, b]).unwrap();
    let head = g.add_input("head", f32t(&[3, 4])).unwrap();
    let err = kiln_ir::vjp::vjp(&mut g, &op, &[x, b], &y, &head)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("formed after differentiation"), "{err}");
}

/// exp(x) and sum(x * y, 1) over a [3,4] input... as two siblings of different spaces, and
/// the elementwise pair exp(x), tanh(x) * y.
fn two_outputs() -> FusedKernel {
    let t = f32t(&[3, 4]);
    FusedKernel::with_outputs(
        vec![t.clone(), f32t(&[4])],
        vec![
            FusedInst::new(unary(UnaryOp::Exp), vec![Input(0)], t.clone()),
            FusedInst::new(unary(UnaryOp::Tanh), vec![Input(0)], t.clone()),
            FusedInst::new(Op::Binary { f: BinaryOp::Mul }, vec![Value(1), Input(1)], t),
        ],
        vec![0, 2],
    )
    .unwrap()
}

/// sum(dy, 0) and sum(dy * x, 0): two reductions over one space.
fn two_sums() -> FusedKernel {
    let t = f32t(&[5, 3]);
    let r = f32t(&[3]);
    let sum = |axes: Option<Vec<isize>>| Op::Reduce {
        f: ReduceOp::Sum,
        axes,
        keepdims: false,
    };
    FusedKernel::with_outputs(
        vec![t.clone(), t.clone()],
        vec![
            FusedInst::new(sum(Some(vec![0])), vec![Input(0)], r.clone()),
            FusedInst::new(Op::Binary { f: BinaryOp::Mul }, vec![Input(0), Input(1)], t),
            FusedInst::new(sum(Some(vec![-2])), vec![Value(1)], r.clone()),
            FusedInst::new(unary(UnaryOp::Neg), vec![Value(2)], r),
        ],
        vec![0, 3],
    )
    .unwrap()
}

#[test]
fn multi_output_kernels_validate_their_outputs() {
    let k = two_outputs();
    assert_eq!(k.outputs(), vec![0, 2]);
    assert_eq!(k.num_outputs(), 2);
    assert!(k.is_multi_output());
    assert_eq!(k.output_type_of(1), Some(&f32t(&[3, 4])));
    assert_eq!(k.output_type_of(2), None);
    for (outputs, want) in [
        (vec![], "needs an output"),
        (vec![0, 3], "output 1 is $3, out of range"),
        (vec![0, 0], "repeats an earlier output"),
        (vec![2, 1, 1], "output 2 ($1) repeats"),
    ] {
        let err = FusedKernel::with_outputs(k.inputs.clone(), k.body.clone(), outputs)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
}

#[test]
fn multi_output_kinds() {
    assert_eq!(two_outputs().kind(), FusedKind::Elementwise);
    let sums = two_sums();
    assert_eq!(sums.kind(), FusedKind::Reduction);
    assert_eq!(sums.reductions(), vec![0, 2]);
    // Outputs of different shapes are not one loop.
    let k = two_outputs();
    let mixed = FusedKernel::with_outputs(
        k.inputs.clone(),
        vec![
            FusedInst::new(unary(UnaryOp::Exp), vec![Input(0)], f32t(&[3, 4])),
            FusedInst::new(unary(UnaryOp::Exp), vec![Input(1)], f32t(&[4])),
        ],
        vec![0, 1],
    )
    .unwrap();
    assert_eq!(mixed.kind(), FusedKind::Generic);
    // Reductions over different axes are not one pass; neither is a full-size output next
    // to a reduced one.
    let mut other_axes = two_sums();
    other_axes.body[2].op = Op::Reduce {
        f: ReduceOp::Sum,
        axes: Some(vec![1]),
        keepdims: false,
    };
    other_axes.body[2].ty = f32t(&[5]);
    other_axes.body[3].ty = f32t(&[5]);
    other_axes.validate().unwrap();
    assert_eq!(other_axes.kind(), FusedKind::Generic);
    let mut wide = two_sums();
    wide.extra_outputs = vec![1];
    wide.validate().unwrap();
    assert_eq!(wide.kind(), FusedKind::Generic);
}

#[test]
fn eval_all_equals_the_ops_and_slices_equal_eval_all() {
    let x = ramp(&[3, 4], 0.3);
    let y = ramp(&[4], 0.2);
    let k = two_outputs();
    let all = k
        .eval_all(&[x.view(), y.view()], &mut |op, xs| eval(op, xs))
        .unwrap();
    let e = eval(&unary(UnaryOp::Exp), &[x.view()]).unwrap();
    let t = eval(&unary(UnaryOp::Tanh), &[x.view()]).unwrap();
    let m = eval(&Op::Binary { f: BinaryOp::Mul }, &[t.view(), y.view()]).unwrap();
    assert_eq!(all, vec![e, m]);
    // Output 1 alone reads both inputs; output 0 only x.
    let (s0, used0) = k.output_slice(0).unwrap();
    assert_eq!(used0, vec![0]);
    assert_eq!(s0.body_text(), "$0 = exp(in0) : f32[3,4]\n");
    let (s1, used1) = k.output_slice(1).unwrap();
    assert_eq!(used1, vec![0, 1]);
    assert_eq!(
        s1.body_text(),
        "$0 = tanh(in0) : f32[3,4]\n$1 = mul($0, in1) : f32[3,4]\n"
    );
    let got1 = s1
        .eval(&[x.view(), y.view()], &mut |op, xs| eval(op, xs))
        .unwrap();
    assert_eq!(got1, all[1]);
    assert!(k.output_slice(2).is_err());
    // A multi-output kernel is not one value: eval refuses it.
    let err = k
        .eval(&[x.view(), y.view()], &mut |op, xs| eval(op, xs))
        .unwrap_err()
        .to_string();
    assert!(err.contains("returns 2 values"), "{err}");
}

/// A graph reading both outputs of `two_sums` (output 1 through a fused_output node).
fn graph_with_two_sums() -> Graph {
    let mut g = Graph::new();
    let dy = g.add_input("dy", f32t(&[5, 3])).unwrap();
    let x = g.add_input("x", f32t(&[5, 3])).unwrap();
    let k = g
        .add_op(
            Op::Fused {
                kernel: Box::new(two_sums()),
            },
            &[dy, x],
        )
        .unwrap();
    let o1 = g
        .add_op(
            Op::FusedOutput {
                index: 1,
                ty: f32t(&[3]),
            },
            &[k],
        )
        .unwrap();
    let s = g.add_op(add(), &[k, o1]).unwrap();
    g.set_outputs(vec![s, o1]).unwrap();
    g
}

#[test]
fn multi_output_text_dot_json_and_run() {
    let g = graph_with_two_sums();
    assert_eq!(
        g.to_text(),
        "%0 = input \"dy\" : f32[5,3]\n\
         %1 = input \"x\" : f32[5,3]\n\
         %2 = fused.reduction(%0, %1) : f32[3]\n\
         \x20   $0 = sum(in0) {axes=[0], keepdims=false} : f32[3]  (output 0)\n\
         \x20   $1 = mul(in0, in1) : f32[5,3]\n\
         \x20   $2 = sum($1) {axes=[-2], keepdims=false} : f32[3]\n\
         \x20   $3 = neg($2) : f32[3]  (output 1)\n\
         %3 = fused_output(%2) {index=1} : f32[3]\n\
         %4 = add(%2, %3) : f32[3]\n\
         return %4, %3\n"
    );
    let dot = g.to_dot();
    assert!(dot.contains("%3 fused_output\\nindex=1\\nf32[3]"), "{dot}");
    let back = Graph::from_json(&g.to_json()).unwrap();
    assert_eq!(back.to_text(), g.to_text());
    assert_eq!(back.to_json(), g.to_json());

    let dy = ramp(&[5, 3], 0.25);
    let x = ramp(&[5, 3], -0.5);
    let out = back.run(&[("dy", dy.view()), ("x", x.view())]).unwrap();
    let s0 = eval(
        &Op::Reduce {
            f: ReduceOp::Sum,
            axes: Some(vec![0]),
            keepdims: false,
        },
        &[dy.view()],
    )
    .unwrap();
    let p = eval(&Op::Binary { f: BinaryOp::Mul }, &[dy.view(), x.view()]).unwrap();
    let s1 = eval(
        &Op::Reduce {
            f: ReduceOp::Sum,
            axes: Some(vec![0]),
            keepdims: false,
        },
        &[p.view()],
    )
    .unwrap();
    let n1 = eval(&unary(UnaryOp::Neg), &[s1.view()]).unwrap();
    let sum = eval(&add(), &[s0.view(), n1.view()]).unwrap();
    assert_eq!(out, vec![sum, n1]);
    // The kernel with one output serializes as before (no extra field), so caches keep keys.
    assert!(!bias_tanh_mul().cache_key().contains("extra_outputs"));
    assert!(two_sums().cache_key().contains("\"extra_outputs\":[3]"));
}

#[test]
fn fused_output_nodes_are_checked() {
    let mut g = Graph::new();
    let dy = g.add_input("dy", f32t(&[5, 3])).unwrap();
    let x = g.add_input("x", f32t(&[5, 3])).unwrap();
    let k = g
        .add_op(
            Op::Fused {
                kernel: Box::new(two_sums()),
            },
            &[dy, x],
        )
        .unwrap();
    let fo = |index, dims: &[usize]| Op::FusedOutput {
        index,
        ty: f32t(dims),
    };
    for (op, input, want) in [
        (fo(1, &[3]), dy, "not a fused node"),
        (fo(2, &[3]), k, "no output 2"),
        (fo(1, &[5, 3]), k, "has type f32[3], not f32[5,3]"),
        (fo(0, &[3]), k, "index 0 is the fused node's own value"),
    ] {
        let err = g.add_op(op, &[input]).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    let err = g.add_op(fo(1, &[3]), &[k, k]).unwrap_err().to_string();
    assert!(err.contains("takes one input"), "{err}");
    // Evaluated alone it has nothing to project.
    let t = ramp(&[3], 1.0);
    let err = eval(&fo(1, &[3]), &[t.view()]).unwrap_err().to_string();
    assert!(err.contains("fills it from the kernel's outputs"), "{err}");
    // Its VJP is refused like the fused node's.
    let head = g.add_input("head", f32t(&[3])).unwrap();
    let o = g.add_op(fo(1, &[3]), &[k]).unwrap();
    let err = kiln_ir::vjp::vjp(&mut g, &fo(1, &[3]), &[k], &o, &head)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("formed after differentiation"), "{err}");
}

#[test]
fn replacing_a_multi_output_node_keeps_its_projections() {
    // Replacing the fused node's value by another node leaves the fused_output on the fused
    // node, which keeps computing it.
    let mut g = graph_with_two_sums();
    let ids = g.topo_order();
    let (k, o1) = (ids[2], ids[3]);
    let c = g
        .add_const(Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3]).unwrap())
        .unwrap();
    g.replace_all_uses(k, c).unwrap();
    assert_eq!(g.inputs_of(o1).unwrap(), vec![k]);
    assert_eq!(g.use_count(k).unwrap(), 1);
}
