//! MXNet symbol conversion, op by op: hand-written symbols run on kiln's interpreter and
//! compared with values computed here with NumPy/MXNet semantics.

// Case tables are tuples; the pooling reference takes MXNet's attributes one by one.
#![allow(clippy::type_complexity, clippy::too_many_arguments)]

use kiln_frontend::mxnet::{convert, Symbol};
use kiln_ir::{DType, Tensor, TensorType};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A node: op, name, attributes, inputs as `(node, output)`.
struct N<'a>(
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(usize, usize)>,
);

fn symbol(nodes: &[N<'_>], heads: &[(usize, usize)]) -> Symbol {
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|N(op, name, attrs, inputs)| {
            let attrs: serde_json::Map<String, Value> = attrs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            let inputs: Vec<Value> = inputs.iter().map(|(n, i)| json!([n, i, 0])).collect();
            json!({"op": op, "name": name, "attrs": attrs, "inputs": inputs})
        })
        .collect();
    let heads: Vec<Value> = heads.iter().map(|(n, i)| json!([n, i, 0])).collect();
    Symbol::from_value(&json!({"nodes": nodes, "heads": heads})).unwrap()
}

fn t(v: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims.to_vec()).unwrap()
}

/// Converts with `inputs` as data and `params` as parameters, runs on the interpreter.
fn run_all(sym: &Symbol, inputs: &[(&str, Tensor)], params: &[(&str, Tensor)]) -> Vec<Tensor> {
    let in_types: Vec<(String, TensorType)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.ty()))
        .collect();
    let p_types: BTreeMap<String, TensorType> = params
        .iter()
        .map(|(n, t)| (n.to_string(), t.ty()))
        .collect();
    let c = convert(sym, &in_types, &p_types).unwrap();
    let bind: Vec<(&str, kiln_ir::TensorView<'_>)> = inputs
        .iter()
        .chain(params)
        .filter(|(n, _)| c.graph.input_id(n).is_some())
        .map(|(n, t)| (*n, t.view()))
        .collect();
    c.graph.run(&bind).unwrap()
}

fn run1(sym: &Symbol, inputs: &[(&str, Tensor)], params: &[(&str, Tensor)]) -> Tensor {
    run_all(sym, inputs, params).remove(0)
}

fn close(got: &Tensor, dims: &[usize], want: &[f64], tol: f64) {
    assert_eq!(got.shape().dims(), dims, "shape");
    let g = got.to_f64_vec();
    assert_eq!(g.len(), want.len());
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol || (a.is_nan() && b.is_nan()),
            "element {i}: got {a}, want {b} (all: {g:?})"
        );
    }
}

/// A one-op symbol on input `x` (and more variables named in `extra`).
fn unary_sym(op: &str, attrs: Vec<(&str, &str)>) -> Symbol {
    symbol(
        &[
            N("null", "x", vec![], vec![]),
            N(op, "y", attrs, vec![(0, 0)]),
        ],
        &[(1, 0)],
    )
}

fn binary_sym(op: &str) -> Symbol {
    symbol(
        &[
            N("null", "a", vec![], vec![]),
            N("null", "b", vec![], vec![]),
            N(op, "y", vec![], vec![(0, 0), (1, 0)]),
        ],
        &[(2, 0)],
    )
}

const XS: [f32; 6] = [-2.0, -0.5, 0.0, 0.25, 1.0, 3.0];

fn apply(f: impl Fn(f64) -> f64) -> Vec<f64> {
    XS.iter().map(|&x| f(x as f64)).collect()
}

fn erf_ref(x: f64) -> f64 {
    // Maclaurin series; converges fast for |x| < 3.
    let mut sum = 0.0;
    let mut term = x;
    for n in 0..80 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn unary_ops_and_activations() {
    let x = t(&XS, &[2, 3]);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let softplus = |v: f64| (1.0 + v.exp()).ln();
    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<f64>)> = vec![
        ("abs", vec![], apply(f64::abs)),
        ("square", vec![], apply(|v| v * v)),
        ("exp", vec![], apply(f64::exp)),
        ("relu", vec![], apply(|v| v.max(0.0))),
        ("sigmoid", vec![], apply(sig)),
        ("tanh", vec![], apply(f64::tanh)),
        ("negative", vec![], apply(|v| -v)),
        (
            "sign",
            vec![],
            apply(|v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }),
        ),
        ("floor", vec![], apply(f64::floor)),
        ("fix", vec![], apply(f64::trunc)),
        ("softsign", vec![], apply(|v| v / (1.0 + v.abs()))),
        ("log_sigmoid", vec![], apply(|v| sig(v).ln())),
        ("mish", vec![], apply(|v| v * softplus(v).tanh())),
        ("erf", vec![], apply(erf_ref)),
        ("_copy", vec![], apply(|v| v)),
        ("BlockGrad", vec![], apply(|v| v)),
        (
            "Activation",
            vec![("act_type", "relu")],
            apply(|v| v.max(0.0)),
        ),
        (
            "Activation",
            vec![("act_type", "softrelu")],
            apply(softplus),
        ),
        (
            "Activation",
            vec![("act_type", "softsign")],
            apply(|v| v / (1.0 + v.abs())),
        ),
        ("Activation", vec![("act_type", "sigmoid")], apply(sig)),
        (
            "LeakyReLU",
            vec![],
            apply(|v| if v > 0.0 { v } else { 0.25 * v }),
        ),
        (
            "LeakyReLU",
            vec![("act_type", "leaky"), ("slope", "0.1")],
            apply(|v| if v > 0.0 { v } else { 0.1 * v }),
        ),
        (
            "LeakyReLU",
            vec![("act_type", "elu"), ("slope", "0.5")],
            apply(|v| if v > 0.0 { v } else { 0.5 * (v.exp() - 1.0) }),
        ),
        (
            "LeakyReLU",
            vec![("act_type", "selu")],
            apply(|v| {
                1.050_700_987_355_480_5
                    * if v > 0.0 {
                        v
                    } else {
                        1.673_263_242_354_377_3 * (v.exp() - 1.0)
                    }
            }),
        ),
        (
            "LeakyReLU",
            vec![("act_type", "gelu")],
            apply(|v| 0.5 * v * (1.0 + erf_ref(v / std::f64::consts::SQRT_2))),
        ),
        (
            "LeakyReLU",
            vec![
                ("act_type", "rrelu"),
                ("lower_bound", "0.1"),
                ("upper_bound", "0.3"),
            ],
            apply(|v| if v > 0.0 { v } else { 0.2 * v }),
        ),
        (
            "clip",
            vec![("a_min", "-1"), ("a_max", "0.5")],
            apply(|v| v.clamp(-1.0, 0.5)),
        ),
        ("_plus_scalar", vec![("scalar", "1.5")], apply(|v| v + 1.5)),
        ("_minus_scalar", vec![("scalar", "1.5")], apply(|v| v - 1.5)),
        (
            "_rminus_scalar",
            vec![("scalar", "1.5")],
            apply(|v| 1.5 - v),
        ),
        ("_mul_scalar", vec![("scalar", "-2")], apply(|v| v * -2.0)),
        ("_div_scalar", vec![("scalar", "4")], apply(|v| v / 4.0)),
        ("_rdiv_scalar", vec![("scalar", "1")], apply(|v| 1.0 / v)),
        ("_power_scalar", vec![("scalar", "2")], apply(|v| v * v)),
        (
            "_rpower_scalar",
            vec![("scalar", "2")],
            apply(|v| 2f64.powf(v)),
        ),
        (
            "_maximum_scalar",
            vec![("scalar", "0.1")],
            apply(|v| v.max(0.1)),
        ),
        (
            "_minimum_scalar",
            vec![("scalar", "0.1")],
            apply(|v| v.min(0.1)),
        ),
        (
            "_greater_scalar",
            vec![("scalar", "0")],
            apply(|v| (v > 0.0) as u8 as f64),
        ),
        (
            "_greater_equal_scalar",
            vec![("scalar", "0")],
            apply(|v| (v >= 0.0) as u8 as f64),
        ),
        (
            "_lesser_scalar",
            vec![("scalar", "0")],
            apply(|v| (v < 0.0) as u8 as f64),
        ),
        (
            "_lesser_equal_scalar",
            vec![("scalar", "0")],
            apply(|v| (v <= 0.0) as u8 as f64),
        ),
        (
            "_equal_scalar",
            vec![("scalar", "1")],
            apply(|v| (v == 1.0) as u8 as f64),
        ),
        (
            "_not_equal_scalar",
            vec![("scalar", "1")],
            apply(|v| (v != 1.0) as u8 as f64),
        ),
        ("Dropout", vec![("p", "0.5")], apply(|v| v)),
        ("zeros_like", vec![], apply(|_| 0.0)),
        ("ones_like", vec![], apply(|_| 1.0)),
    ];
    for (op, attrs, want) in cases {
        let label = format!("{op} {attrs:?}");
        let y = run1(&unary_sym(op, attrs), &[("x", x.clone())], &[]);
        assert_eq!(y.shape().dims(), &[2, 3], "{label}");
        for (i, (a, b)) in y.to_f64_vec().iter().zip(&want).enumerate() {
            assert!(
                a == b || (a - b).abs() < 2e-6,
                "{label}: element {i}: got {a}, want {b}"
            );
        }
    }
    // sqrt and log on positive values.
    let p = t(&[0.25, 1.0, 4.0], &[3]);
    close(
        &run1(&unary_sym("sqrt", vec![]), &[("x", p.clone())], &[]),
        &[3],
        &[0.5, 1.0, 2.0],
        1e-6,
    );
    close(
        &run1(&unary_sym("rsqrt", vec![]), &[("x", p.clone())], &[]),
        &[3],
        &[2.0, 1.0, 0.5],
        1e-6,
    );
    close(
        &run1(&unary_sym("log", vec![]), &[("x", p)], &[]),
        &[3],
        &[0.25f64.ln(), 0.0, 4f64.ln()],
        1e-6,
    );
}

#[test]
fn binary_ops_broadcast_and_logical() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[2.0, 2.0, 0.0], &[1, 3]);
    let av = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let bv = [2.0, 2.0, 0.0];
    let cases: Vec<(&str, fn(f64, f64) -> f64)> = vec![
        ("broadcast_add", |x, y| x + y),
        ("broadcast_plus", |x, y| x + y),
        ("broadcast_sub", |x, y| x - y),
        ("broadcast_mul", |x, y| x * y),
        ("broadcast_power", |x, y| x.powf(y)),
        ("broadcast_maximum", f64::max),
        ("broadcast_minimum", f64::min),
        ("broadcast_equal", |x, y| (x == y) as u8 as f64),
        ("broadcast_not_equal", |x, y| (x != y) as u8 as f64),
        ("broadcast_greater", |x, y| (x > y) as u8 as f64),
        ("broadcast_greater_equal", |x, y| (x >= y) as u8 as f64),
        ("broadcast_lesser", |x, y| (x < y) as u8 as f64),
        ("broadcast_lesser_equal", |x, y| (x <= y) as u8 as f64),
        ("broadcast_logical_and", |x, y| {
            ((x != 0.0) && (y != 0.0)) as u8 as f64
        }),
        ("broadcast_logical_or", |x, y| {
            ((x != 0.0) || (y != 0.0)) as u8 as f64
        }),
        ("broadcast_logical_xor", |x, y| {
            ((x != 0.0) != (y != 0.0)) as u8 as f64
        }),
    ];
    for (op, f) in cases {
        let want: Vec<f64> = (0..6).map(|i| f(av[i], bv[i % 3])).collect();
        let y = run1(&binary_sym(op), &[("a", a.clone()), ("b", b.clone())], &[]);
        close(&y, &[2, 3], &want, 1e-6);
    }
    let b2 = t(&[2.0, 4.0, 1.0, 1.0, 2.0, 3.0], &[2, 3]);
    let bv2 = [2.0, 4.0, 1.0, 1.0, 2.0, 3.0];
    for (op, f) in [
        ("elemwise_add", (|x, y| x + y) as fn(f64, f64) -> f64),
        ("elemwise_sub", |x, y| x - y),
        ("elemwise_mul", |x, y| x * y),
        ("elemwise_div", |x, y| x / y),
        ("_plus", |x, y| x + y),
        ("_maximum", f64::max),
        ("_minimum", f64::min),
    ] {
        let want: Vec<f64> = (0..6).map(|i| f(av[i], bv2[i])).collect();
        let y = run1(&binary_sym(op), &[("a", a.clone()), ("b", b2.clone())], &[]);
        close(&y, &[2, 3], &want, 1e-6);
    }
    // add_n of three inputs.
    let s = symbol(
        &[
            N("null", "a", vec![], vec![]),
            N("null", "b", vec![], vec![]),
            N(
                "add_n",
                "y",
                vec![("num_args", "3")],
                vec![(0, 0), (1, 0), (0, 0)],
            ),
        ],
        &[(2, 0)],
    );
    let y = run1(&s, &[("a", a.clone()), ("b", b2.clone())], &[]);
    close(
        &y,
        &[2, 3],
        &(0..6).map(|i| 2.0 * av[i] + bv2[i]).collect::<Vec<_>>(),
        1e-6,
    );
    // where with a row condition.
    let s = symbol(
        &[
            N("null", "c", vec![], vec![]),
            N("null", "a", vec![], vec![]),
            N("null", "b", vec![], vec![]),
            N("where", "y", vec![], vec![(0, 0), (1, 0), (2, 0)]),
        ],
        &[(3, 0)],
    );
    let y = run1(
        &s,
        &[
            ("c", t(&[0.0, 1.0], &[2])),
            ("a", a.clone()),
            ("b", b2.clone()),
        ],
        &[],
    );
    close(&y, &[2, 3], &[2.0, 4.0, 1.0, 4.0, 5.0, 6.0], 0.0);
}

#[test]
fn fills_casts_and_ranges() {
    let s = symbol(
        &[
            N("_ones", "o", vec![("shape", "(2, 2)")], vec![]),
            N(
                "_full",
                "f",
                vec![("shape", "(2,)"), ("value", "7")],
                vec![],
            ),
            N(
                "_arange",
                "r",
                vec![("start", "1"), ("stop", "4"), ("repeat", "2")],
                vec![],
            ),
            N("null", "x", vec![], vec![]),
            N("Cast", "c", vec![("dtype", "int32")], vec![(3, 0)]),
            N("shape_array", "s", vec![], vec![(3, 0)]),
            N("_zeros", "z", vec![("shape", "(0, 3)")], vec![]),
            N("broadcast_add", "zx", vec![], vec![(6, 0), (3, 0)]),
        ],
        &[(0, 0), (1, 0), (2, 0), (4, 0), (5, 0), (7, 0)],
    );
    let out = run_all(
        &s,
        &[("x", t(&[1.7, -1.7, 0.2, 3.0, 4.0, 5.0], &[2, 3]))],
        &[],
    );
    close(&out[0], &[2, 2], &[1.0; 4], 0.0);
    close(&out[1], &[2], &[7.0, 7.0], 0.0);
    close(&out[2], &[6], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], 0.0);
    assert_eq!(out[3].dtype(), DType::I32);
    close(&out[3], &[2, 3], &[1.0, -1.0, 0.0, 3.0, 4.0, 5.0], 0.0);
    assert_eq!(out[4].dtype(), DType::I64);
    close(&out[4], &[2], &[2.0, 3.0], 0.0);
    // A _zeros with an unknown dim takes its shape from the other operand.
    close(&out[5], &[2, 3], &[1.7, -1.7, 0.2, 3.0, 4.0, 5.0], 1e-6);
}

#[test]
fn reductions() {
    let x = t(&[1.0, -2.0, 3.0, 4.0, 5.0, -6.0], &[2, 3]);
    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<usize>, Vec<f64>)> = vec![
        ("sum", vec![], vec![1], vec![5.0]),
        ("sum", vec![("axis", "()")], vec![1], vec![5.0]),
        ("sum", vec![("axis", "1")], vec![2], vec![2.0, 3.0]),
        (
            "sum",
            vec![("axis", "(0,)"), ("keepdims", "True")],
            vec![1, 3],
            vec![5.0, 3.0, -3.0],
        ),
        (
            "sum",
            vec![("axis", "1"), ("exclude", "True")],
            vec![3],
            vec![5.0, 3.0, -3.0],
        ),
        ("mean", vec![("axis", "-1")], vec![2], vec![2.0 / 3.0, 1.0]),
        ("max", vec![("axis", "0")], vec![3], vec![4.0, 5.0, 3.0]),
        ("min", vec![("axis", "1")], vec![2], vec![-2.0, -6.0]),
        ("prod", vec![("axis", "1")], vec![2], vec![-6.0, -120.0]),
        (
            "norm",
            vec![],
            vec![1],
            vec![(1.0f64 + 4.0 + 9.0 + 16.0 + 25.0 + 36.0).sqrt()],
        ),
        (
            "norm",
            vec![("ord", "1"), ("axis", "1")],
            vec![2],
            vec![6.0, 15.0],
        ),
        ("argmax", vec![("axis", "1")], vec![2], vec![2.0, 1.0]),
        (
            "argmin",
            vec![("axis", "0"), ("keepdims", "True")],
            vec![1, 3],
            vec![0.0, 0.0, 1.0],
        ),
    ];
    for (op, attrs, dims, want) in cases {
        let y = run1(&unary_sym(op, attrs), &[("x", x.clone())], &[]);
        close(&y, &dims, &want, 1e-5);
    }
}

#[test]
fn softmax_family() {
    let x = t(&[1.0, 2.0, 3.0, 1.0, 1.0, 1.0], &[2, 3]);
    let sm = |row: &[f64], temp: f64| -> Vec<f64> {
        let e: Vec<f64> = row.iter().map(|v| (v / temp).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    };
    let mut want = sm(&[1.0, 2.0, 3.0], 1.0);
    want.extend(sm(&[1.0, 1.0, 1.0], 1.0));
    for op in ["softmax", "SoftmaxOutput", "SoftmaxActivation"] {
        let y = run1(&unary_sym(op, vec![]), &[("x", x.clone())], &[]);
        close(&y, &[2, 3], &want, 1e-6);
    }
    let mut want_t = sm(&[1.0, 2.0, 3.0], 2.0);
    want_t.extend(sm(&[1.0, 1.0, 1.0], 2.0));
    let y = run1(
        &unary_sym("softmax", vec![("temperature", "2.0")]),
        &[("x", x.clone())],
        &[],
    );
    close(&y, &[2, 3], &want_t, 1e-6);
    let y = run1(
        &unary_sym("log_softmax", vec![("axis", "1")]),
        &[("x", x.clone())],
        &[],
    );
    close(
        &y,
        &[2, 3],
        &want.iter().map(|v| v.ln()).collect::<Vec<_>>(),
        1e-6,
    );
    // SoftmaxOutput ignores its label, which need not be given.
    let s = symbol(
        &[
            N("null", "data", vec![], vec![]),
            N("null", "softmax_label", vec![], vec![]),
            N("SoftmaxOutput", "softmax", vec![], vec![(0, 0), (1, 0)]),
        ],
        &[(2, 0)],
    );
    close(&run1(&s, &[("data", x.clone())], &[]), &[2, 3], &want, 1e-6);
    // Instance mode softmax over all but the first axis; channel mode over axis 1.
    let x3 = t(&[0.0, 1.0, 2.0, 3.0], &[1, 2, 2]);
    let all = sm(&[0.0, 1.0, 2.0, 3.0], 1.0);
    close(
        &run1(
            &unary_sym("SoftmaxActivation", vec![]),
            &[("x", x3.clone())],
            &[],
        ),
        &[1, 2, 2],
        &all,
        1e-6,
    );
    let ch = {
        let a = sm(&[0.0, 2.0], 1.0);
        let b = sm(&[1.0, 3.0], 1.0);
        vec![a[0], b[0], a[1], b[1]]
    };
    close(
        &run1(
            &unary_sym("SoftmaxActivation", vec![("mode", "channel")]),
            &[("x", x3.clone())],
            &[],
        ),
        &[1, 2, 2],
        &ch,
        1e-6,
    );
    close(
        &run1(
            &unary_sym("SoftmaxOutput", vec![("multi_output", "True")]),
            &[("x", x3)],
            &[],
        ),
        &[1, 2, 2],
        &ch,
        1e-6,
    );
    close(
        &run1(
            &unary_sym("LogisticRegressionOutput", vec![]),
            &[("x", t(&[0.0], &[1]))],
            &[],
        ),
        &[1],
        &[0.5],
        1e-7,
    );
}

#[test]
fn shape_ops() {
    let x = t(&(0..24).map(|v| v as f32).collect::<Vec<_>>(), &[2, 3, 4]);
    let iota = |n: usize| (0..n).map(|v| v as f64).collect::<Vec<_>>();
    let shapes: Vec<(&str, Vec<(&str, &str)>, Vec<usize>)> = vec![
        (
            "Reshape",
            vec![("shape", "(-1, 0)"), ("reverse", "True")],
            vec![6, 4],
        ),
        ("Reshape", vec![("shape", "(0, -3)")], vec![2, 12]),
        (
            "Reshape",
            vec![("shape", "(-4, 1, 2, -2)")],
            vec![1, 2, 3, 4],
        ),
        ("Reshape", vec![("target_shape", "(0, 4)")], vec![6, 4]),
        ("Flatten", vec![], vec![2, 12]),
        ("expand_dims", vec![("axis", "1")], vec![2, 1, 3, 4]),
    ];
    for (op, attrs, dims) in shapes {
        let y = run1(&unary_sym(op, attrs), &[("x", x.clone())], &[]);
        close(&y, &dims, &iota(24), 0.0);
    }
    // transpose and SwapAxis.
    let y = run1(
        &unary_sym("transpose", vec![("axes", "(1, 0, 2)")]),
        &[("x", x.clone())],
        &[],
    );
    assert_eq!(y.shape().dims(), &[3, 2, 4]);
    assert_eq!(y.to_f64_vec()[4], 12.0);
    let y2 = run1(
        &unary_sym("SwapAxis", vec![("dim1", "0"), ("dim2", "1")]),
        &[("x", x.clone())],
        &[],
    );
    assert_eq!(y2.to_f64_vec(), y.to_f64_vec());
    let y = run1(&unary_sym("transpose", vec![]), &[("x", x.clone())], &[]);
    assert_eq!(y.shape().dims(), &[4, 3, 2]);
    assert_eq!(y.to_f64_vec()[1], 12.0);
    // slicing.
    let y = run1(
        &unary_sym(
            "slice",
            vec![
                ("begin", "(None, 1)"),
                ("end", "(1, None)"),
                ("step", "(None, 2)"),
            ],
        ),
        &[("x", x.clone())],
        &[],
    );
    close(&y, &[1, 1, 4], &[4.0, 5.0, 6.0, 7.0], 0.0);
    let y = run1(
        &unary_sym(
            "slice_axis",
            vec![("axis", "2"), ("begin", "-2"), ("end", "None")],
        ),
        &[("x", x.clone())],
        &[],
    );
    assert_eq!(y.shape().dims(), &[2, 3, 2]);
    assert_eq!(&y.to_f64_vec()[..2], &[2.0, 3.0]);
    let y = run1(
        &unary_sym("reverse", vec![("axis", "0")]),
        &[("x", x.clone())],
        &[],
    );
    assert_eq!(y.to_f64_vec()[0], 12.0);
    let y = run1(
        &unary_sym("tile", vec![("reps", "(2,)")]),
        &[("x", t(&[1.0, 2.0], &[2]))],
        &[],
    );
    close(&y, &[4], &[1.0, 2.0, 1.0, 2.0], 0.0);
    let y = run1(
        &unary_sym("repeat", vec![("repeats", "2"), ("axis", "0")]),
        &[("x", t(&[1.0, 2.0], &[2]))],
        &[],
    );
    close(&y, &[4], &[1.0, 1.0, 2.0, 2.0], 0.0);
    let y = run1(
        &unary_sym("broadcast_to", vec![("shape", "(2, 0)")]),
        &[("x", t(&[1.0, 2.0], &[1, 2]))],
        &[],
    );
    close(&y, &[2, 2], &[1.0, 2.0, 1.0, 2.0], 0.0);
    let y = run1(
        &unary_sym("broadcast_axis", vec![("axis", "(0,)"), ("size", "(3,)")]),
        &[("x", t(&[1.0, 2.0], &[1, 2]))],
        &[],
    );
    close(&y, &[3, 2], &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0], 0.0);
    let y = run1(
        &unary_sym("squeeze", vec![]),
        &[("x", t(&[5.0], &[1, 1]))],
        &[],
    );
    close(&y, &[1], &[5.0], 0.0);
    let y = run1(&unary_sym("size_array", vec![]), &[("x", x.clone())], &[]);
    close(&y, &[1], &[24.0], 0.0);
}

#[test]
fn multi_input_and_multi_output_shape_ops() {
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t(&[5.0, 6.0], &[2, 1]);
    let s = symbol(
        &[
            N("null", "a", vec![], vec![]),
            N("null", "b", vec![], vec![]),
            N(
                "Concat",
                "c",
                vec![("dim", "1"), ("num_args", "2")],
                vec![(0, 0), (1, 0)],
            ),
            N(
                "SliceChannel",
                "s",
                vec![("num_outputs", "3"), ("axis", "1")],
                vec![(2, 0)],
            ),
            N(
                "SliceChannel",
                "q",
                vec![("num_outputs", "2"), ("axis", "0"), ("squeeze_axis", "1")],
                vec![(0, 0)],
            ),
            N("stack", "st", vec![("axis", "1")], vec![(4, 0), (4, 1)]),
            N("broadcast_like", "bl", vec![], vec![(1, 0), (2, 0)]),
        ],
        &[(2, 0), (3, 2), (3, 0), (4, 1), (5, 0), (6, 0)],
    );
    let out = run_all(&s, &[("a", a), ("b", b)], &[]);
    close(&out[0], &[2, 3], &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0], 0.0);
    close(&out[1], &[2, 1], &[5.0, 6.0], 0.0);
    close(&out[2], &[2, 1], &[1.0, 3.0], 0.0);
    close(&out[3], &[2], &[3.0, 4.0], 0.0);
    close(&out[4], &[2, 2], &[1.0, 3.0, 2.0, 4.0], 0.0);
    close(&out[5], &[2, 3], &[5.0, 5.0, 5.0, 6.0, 6.0, 6.0], 0.0);
}

#[test]
fn indexing_and_products() {
    let data = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let idx = t(&[2.0, 0.0, 9.0], &[3]);
    let s = symbol(
        &[
            N("null", "data", vec![], vec![]),
            N("null", "idx", vec![], vec![]),
            N("take", "t", vec![], vec![(0, 0), (1, 0)]),
            N(
                "one_hot",
                "o",
                vec![("depth", "3"), ("on_value", "2")],
                vec![(1, 0)],
            ),
            N("null", "pidx", vec![], vec![]),
            N("pick", "p", vec![("axis", "1")], vec![(0, 0), (4, 0)]),
            N("null", "w", vec![], vec![]),
            N(
                "Embedding",
                "e",
                vec![("input_dim", "3"), ("output_dim", "2")],
                vec![(1, 0), (6, 0)],
            ),
            N(
                "dot",
                "d",
                vec![("transpose_a", "True")],
                vec![(0, 0), (0, 0)],
            ),
            N(
                "batch_dot",
                "bd",
                vec![("transpose_b", "True")],
                vec![(10, 0), (10, 0)],
            ),
            N("Reshape", "r", vec![("shape", "(1, 3, 2)")], vec![(0, 0)]),
        ],
        &[(2, 0), (3, 0), (5, 0), (7, 0), (8, 0), (9, 0)],
    );
    let out = run_all(
        &s,
        &[
            ("data", data.clone()),
            ("idx", idx),
            ("pidx", t(&[1.0, 0.0, 1.0], &[3])),
        ],
        &[("w", data)],
    );
    // take clips the out-of-range 9 to 2.
    close(&out[0], &[3, 2], &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0], 0.0);
    close(
        &out[1],
        &[3, 3],
        &[0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        0.0,
    );
    close(&out[2], &[3], &[2.0, 3.0, 6.0], 0.0);
    close(&out[3], &[3, 2], &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0], 0.0);
    // dᵀd = [[35, 44], [44, 56]]
    close(&out[4], &[2, 2], &[35.0, 44.0, 44.0, 56.0], 1e-5);
    close(
        &out[5],
        &[1, 3, 3],
        &[5.0, 11.0, 17.0, 11.0, 25.0, 39.0, 17.0, 39.0, 61.0],
        1e-5,
    );
}

#[test]
fn dense_conv_and_normalization_layers() {
    // FullyConnected with and without flatten.
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 2]);
    let w = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
    let bias = t(&[0.5, 0.0, -1.0], &[3]);
    let fc = |flatten: &'static str| {
        symbol(
            &[
                N("null", "x", vec![], vec![]),
                N("null", "w", vec![], vec![]),
                N("null", "b", vec![], vec![]),
                N(
                    "FullyConnected",
                    "fc",
                    vec![("num_hidden", "3"), ("flatten", flatten)],
                    vec![(0, 0), (1, 0), (2, 0)],
                ),
            ],
            &[(3, 0)],
        )
    };
    let y = run1(
        &fc("False"),
        &[("x", x.clone())],
        &[("w", w.clone()), ("b", bias.clone())],
    );
    close(&y, &[1, 2, 3], &[1.5, 2.0, 2.0, 3.5, 4.0, 6.0], 1e-6);
    let w4 = t(
        &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        &[3, 4],
    );
    let y = run1(
        &fc("True"),
        &[("x", x.clone())],
        &[("w", w4), ("b", bias.clone())],
    );
    close(&y, &[1, 3], &[10.5, 4.0, 0.0], 1e-6);

    // Convolution 1-D with padding, no bias.
    let s = symbol(
        &[
            N("null", "x", vec![], vec![]),
            N("null", "w", vec![], vec![]),
            N(
                "Convolution",
                "c",
                vec![
                    ("kernel", "(3,)"),
                    ("pad", "(1,)"),
                    ("num_filter", "1"),
                    ("no_bias", "True"),
                ],
                vec![(0, 0), (1, 0)],
            ),
        ],
        &[(2, 0)],
    );
    let y = run1(
        &s,
        &[("x", t(&[1.0, 2.0, 3.0], &[1, 1, 3]))],
        &[("w", t(&[1.0, 1.0, 1.0], &[1, 1, 3]))],
    );
    close(&y, &[1, 1, 3], &[3.0, 6.0, 5.0], 1e-6);
    // Deconvolution 1-D stride 2 (no bias by default).
    let s = symbol(
        &[
            N("null", "x", vec![], vec![]),
            N("null", "w", vec![], vec![]),
            N(
                "Deconvolution",
                "d",
                vec![("kernel", "(2,)"), ("stride", "(2,)"), ("num_filter", "1")],
                vec![(0, 0), (1, 0)],
            ),
        ],
        &[(2, 0)],
    );
    let y = run1(
        &s,
        &[("x", t(&[1.0, 2.0], &[1, 1, 2]))],
        &[("w", t(&[1.0, 10.0], &[1, 1, 2]))],
    );
    close(&y, &[1, 1, 4], &[1.0, 10.0, 2.0, 20.0], 1e-6);

    // BatchNorm: fix_gamma (default True) ignores gamma.
    let bn = |fix: &'static str| {
        symbol(
            &[
                N("null", "x", vec![], vec![]),
                N("null", "g", vec![], vec![]),
                N("null", "b", vec![], vec![]),
                N("null", "m", vec![], vec![]),
                N("null", "v", vec![], vec![]),
                N(
                    "BatchNorm",
                    "bn",
                    vec![("eps", "0.0"), ("fix_gamma", fix)],
                    vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
                ),
            ],
            &[(5, 0)],
        )
    };
    let bx = t(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 2]);
    let p = [
        ("g", t(&[2.0, 3.0], &[2])),
        ("b", t(&[0.0, 1.0], &[2])),
        ("m", t(&[1.0, 2.0], &[2])),
        ("v", t(&[4.0, 1.0], &[2])),
    ];
    let y = run1(&bn("False"), &[("x", bx.clone())], &p);
    close(&y, &[1, 2, 2], &[0.0, 1.0, 4.0, 7.0], 1e-6);
    let in_types = vec![("x".to_string(), bx.ty())];
    let types = p.iter().map(|(n, t)| (n.to_string(), t.ty())).collect();
    let c = convert(&bn("True"), &in_types, &types).unwrap();
    assert!(c.graph.input_id("g").is_none(), "fix_gamma drops gamma");
    assert_eq!(
        c.aux.iter().cloned().collect::<Vec<_>>(),
        vec!["m".to_string(), "v".to_string()]
    );
    let y = run1(&bn("True"), &[("x", bx.clone())], &p);
    close(&y, &[1, 2, 2], &[0.0, 0.5, 2.0, 3.0], 1e-6);

    // LayerNorm over the last axis.
    let s = symbol(
        &[
            N("null", "x", vec![], vec![]),
            N("null", "g", vec![], vec![]),
            N("null", "b", vec![], vec![]),
            N(
                "LayerNorm",
                "ln",
                vec![("eps", "0")],
                vec![(0, 0), (1, 0), (2, 0)],
            ),
        ],
        &[(3, 0)],
    );
    let y = run1(
        &s,
        &[("x", t(&[1.0, 3.0, 0.0, 4.0], &[2, 2]))],
        &[("g", t(&[1.0, 2.0], &[2])), ("b", t(&[0.0, 1.0], &[2]))],
    );
    close(&y, &[2, 2], &[-1.0, 3.0, -1.0, 3.0], 1e-5);

    // PReLU with a per-channel gamma.
    let s = symbol(
        &[
            N("null", "x", vec![], vec![]),
            N("null", "gamma", vec![], vec![]),
            N(
                "LeakyReLU",
                "p",
                vec![("act_type", "prelu")],
                vec![(0, 0), (1, 0)],
            ),
        ],
        &[(2, 0)],
    );
    let y = run1(
        &s,
        &[("x", t(&[-1.0, 2.0, -3.0, -4.0], &[1, 2, 2]))],
        &[("gamma", t(&[0.5, 0.1], &[2]))],
    );
    close(&y, &[1, 2, 2], &[-0.5, 2.0, -0.3, -0.4], 1e-6);
}

/// MXNet's pooling, written out: windows start at `o*s - p`; max ignores padding; avg
/// divides by the window clipped to `[-p, len+p)` (count_include_pad) or to `[0, len)`.
fn pool_ref(
    x: &[f64],
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    full: bool,
    kind: &str,
    cip: bool,
) -> (usize, Vec<f64>) {
    let out = |len: usize| {
        let span = len + 2 * p - k;
        if full {
            span.div_ceil(s) + 1
        } else {
            span / s + 1
        }
    };
    let (oh, ow) = (out(h), out(w));
    let mut y = Vec::new();
    for i in 0..oh {
        for j in 0..ow {
            let (hs, ws) = ((i * s) as i64 - p as i64, (j * s) as i64 - p as i64);
            let (he, we) = (
                (hs + k as i64).min((h + p) as i64),
                (ws + k as i64).min((w + p) as i64),
            );
            let mut acc = if kind == "max" {
                f64::NEG_INFINITY
            } else {
                0.0
            };
            for a in hs.max(0)..he.min(h as i64) {
                for b in ws.max(0)..we.min(w as i64) {
                    let v = x[a as usize * w + b as usize];
                    acc = if kind == "max" { acc.max(v) } else { acc + v };
                }
            }
            let count = if cip {
                (he - hs) * (we - ws)
            } else {
                (he.min(h as i64) - hs.max(0)) * (we.min(w as i64) - ws.max(0))
            };
            y.push(match kind {
                "avg" => acc / count as f64,
                _ => acc,
            });
        }
    }
    assert_eq!(y.len(), oh * ow);
    (oh, y)
}

#[test]
fn pooling_conventions_and_kinds() {
    let (h, w) = (5, 5);
    let xs: Vec<f64> = (0..25).map(|v| ((v * 7) % 11) as f64 - 5.0).collect();
    let x = Tensor::from_vec(
        xs.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        [1, 1, h, w],
    )
    .unwrap();
    for kind in ["max", "avg", "sum"] {
        for full in [false, true] {
            for cip in [true, false] {
                for (k, s, p) in [(2, 2, 0), (3, 2, 1), (2, 1, 1), (3, 3, 0)] {
                    let conv = if full { "full" } else { "valid" };
                    let (ks, ss, ps) = (
                        format!("({k}, {k})"),
                        format!("({s}, {s})"),
                        format!("({p}, {p})"),
                    );
                    let cips = if cip { "True" } else { "False" };
                    let attrs = vec![
                        ("pool_type", kind),
                        ("kernel", ks.as_str()),
                        ("stride", ss.as_str()),
                        ("pad", ps.as_str()),
                        ("pooling_convention", conv),
                        ("count_include_pad", cips),
                    ];
                    let y = run1(&unary_sym("Pooling", attrs), &[("x", x.clone())], &[]);
                    let (o, want) = pool_ref(&xs, h, w, k, s, p, full, kind, cip);
                    let label = format!("{kind} {conv} cip={cip} k={k} s={s} p={p}");
                    assert_eq!(y.shape().dims(), &[1, 1, o, o], "{label}");
                    for (i, (a, b)) in y.to_f64_vec().iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() < 1e-5,
                            "{label}: element {i}: got {a}, want {b}"
                        );
                    }
                }
            }
        }
    }
    // Global pooling.
    for (kind, want) in [
        ("max", 5.0),
        ("avg", xs.iter().sum::<f64>() / 25.0),
        ("sum", xs.iter().sum::<f64>()),
    ] {
        let y = run1(
            &unary_sym(
                "Pooling",
                vec![
                    ("pool_type", kind),
                    ("global_pool", "True"),
                    ("kernel", "(1, 1)"),
                ],
            ),
            &[("x", x.clone())],
            &[],
        );
        close(&y, &[1, 1, 1, 1], &[want], 1e-5);
    }
}

#[test]
fn unknown_ops_are_listed_together() {
    let s = symbol(
        &[
            N("null", "x", vec![], vec![]),
            N("Crop", "crop0", vec![], vec![(0, 0)]),
            N("relu", "r", vec![], vec![(1, 0)]),
            N("_contrib_quantize", "q0", vec![], vec![(2, 0)]),
            N("Crop", "crop1", vec![], vec![(3, 0)]),
        ],
        &[(4, 0)],
    );
    let e = convert(
        &s,
        &[("x".into(), TensorType::new([2], DType::F32))],
        &BTreeMap::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 op(s) kiln does not support"), "{e}");
    assert!(e.contains("Crop (node \"crop0\", \"crop1\")"), "{e}");
    assert!(e.contains("_contrib_quantize (node \"q0\")"), "{e}");
}

#[test]
fn conversion_errors_name_the_node() {
    let f32s = |d: &[usize]| TensorType::new(d.to_vec(), DType::F32);
    let cases: Vec<(Symbol, Vec<(String, TensorType)>, &str)> = vec![
        (
            unary_sym("Reshape", vec![("shape", "(5, -1)")]),
            vec![("x".into(), f32s(&[2, 3]))],
            "MXNet node \"y\" (Reshape)",
        ),
        (
            unary_sym("Activation", vec![("act_type", "swish")]),
            vec![("x".into(), f32s(&[2]))],
            "act_type swish is not supported",
        ),
        (
            unary_sym("Pooling", vec![("kernel", "(2, 2, 2)")]),
            vec![("x".into(), f32s(&[1, 1, 4, 4]))],
            "kernel [2, 2, 2]",
        ),
        (
            unary_sym(
                "Pooling",
                vec![("kernel", "(2, 2)"), ("pooling_convention", "same")],
            ),
            vec![("x".into(), f32s(&[1, 1, 4, 4]))],
            "pooling_convention same",
        ),
        (
            unary_sym("_plus_scalar", vec![]),
            vec![("x".into(), f32s(&[2]))],
            "the attribute scalar is required",
        ),
        (
            unary_sym(
                "Convolution",
                vec![("kernel", "(3, 3, 3)"), ("num_filter", "1")],
            ),
            vec![("x".into(), f32s(&[1, 1, 4, 4]))],
            "3-D kernel",
        ),
        (
            unary_sym("take", vec![("mode", "wrap")]),
            vec![("x".into(), f32s(&[2]))],
            "mode=wrap",
        ),
        (
            unary_sym("relu", vec![]),
            vec![],
            "variable \"x\" is neither a parameter",
        ),
        (
            symbol(
                &[
                    N("null", "x", vec![], vec![]),
                    N("null", "fc_weight", vec![("__shape__", "(2, 2)")], vec![]),
                    N(
                        "FullyConnected",
                        "fc",
                        vec![("num_hidden", "2"), ("no_bias", "True")],
                        vec![(0, 0), (1, 0)],
                    ),
                ],
                &[(2, 0)],
            ),
            vec![("x".into(), f32s(&[1, 2]))],
            "\"fc_weight\" is a parameter of shape (2, 2) missing from the parameters",
        ),
        (
            unary_sym("relu", vec![]),
            vec![("x".into(), f32s(&[2])), ("nope".into(), f32s(&[2]))],
            "the symbol has no input \"nope\"",
        ),
        (
            symbol(
                &[
                    N("null", "x", vec![], vec![]),
                    N("Dropout", "d", vec![], vec![(0, 0)]),
                ],
                &[(1, 1)],
            ),
            vec![("x".into(), f32s(&[2]))],
            "output 1 is used",
        ),
    ];
    for (sym, inputs, want) in cases {
        let e = convert(&sym, &inputs, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e} (wanted {want:?})");
    }
}

#[test]
fn declared_shapes_bind_unlisted_inputs() {
    let s = Symbol::from_json(
        r#"{"nodes": [{"op": "null", "name": "x", "attrs": {"__shape__": "(2, 2)", "__dtype__": "0"}},
           {"op": "relu", "name": "r", "inputs": [[0, 0, 0]]}], "heads": [[1, 0, 0]]}"#,
    )
    .unwrap();
    let c = convert(&s, &[], &BTreeMap::new()).unwrap();
    assert_eq!(c.inputs, vec!["x".to_string()]);
    assert_eq!(
        c.graph.ty(c.graph.input_id("x").unwrap()).unwrap(),
        &TensorType::new([2, 2], DType::F32)
    );
}
