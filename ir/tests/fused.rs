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
