//! Reference semantics of `dot`, `batch_dot` and `fully_connected`, through `interp::eval`.

use kiln_ir::{interp::eval, DType, Op, Shape, Tensor};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn run(op: &Op, inputs: &[&Tensor]) -> kiln_ir::Result<Tensor> {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    eval(op, &views)
}

fn dot(ta: bool, tb: bool) -> Op {
    Op::Dot {
        transpose_a: ta,
        transpose_b: tb,
    }
}

fn batch_dot(ta: bool, tb: bool) -> Op {
    Op::BatchDot {
        transpose_a: ta,
        transpose_b: tb,
    }
}

fn arange(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

#[test]
fn dot_of_vectors_is_the_inner_product() {
    let y = run(
        &dot(false, false),
        &[&t(&[1.0, 2.0, 3.0], &[3]), &t(&[4.0, 5.0, 6.0], &[3])],
    )
    .unwrap();
    assert_eq!(y.shape(), &Shape::scalar());
    assert_eq!(y.to_f64_vec(), vec![32.0]);
}

#[test]
fn dot_of_matrices_with_each_transpose_flag() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let a_t = t(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], &[3, 2]);
    let b = t(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    let b_t = t(&[7.0, 9.0, 11.0, 8.0, 10.0, 12.0], &[2, 3]);
    let expected = vec![58.0, 64.0, 139.0, 154.0];
    for (ta, tb, lhs, rhs) in [
        (false, false, &a, &b),
        (true, false, &a_t, &b),
        (false, true, &a, &b_t),
        (true, true, &a_t, &b_t),
    ] {
        let y = run(&dot(ta, tb), &[lhs, rhs]).unwrap();
        assert_eq!(y.shape(), &Shape::from([2, 2]), "ta={ta} tb={tb}");
        assert_eq!(y.to_f64_vec(), expected, "ta={ta} tb={tb}");
    }
}

#[test]
fn dot_of_vector_and_matrix() {
    let v = t(&[1.0, 2.0], &[2]);
    let m = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let y = run(&dot(false, false), &[&v, &m]).unwrap();
    assert_eq!(y.shape(), &Shape::from([3]));
    assert_eq!(y.to_f64_vec(), vec![9.0, 12.0, 15.0]);
    let m2 = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let y = run(&dot(false, false), &[&m2, &v]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![5.0, 11.0]);
}

#[test]
fn dot_of_n_d_arrays_contracts_last_with_first() {
    // [2, 2, 3] · [3, 2]: each row (a0, a1, a2) maps to (a0 + a2, a1 + a2).
    let a = t(&arange(12), &[2, 2, 3]);
    let b = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
    let y = run(&dot(false, false), &[&a, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2, 2]));
    assert_eq!(
        y.to_f64_vec(),
        vec![2.0, 3.0, 8.0, 9.0, 14.0, 15.0, 20.0, 21.0]
    );
    // [2, 3] · [3, 2, 2]: output [2, 2, 2].
    let a = t(&[1.0, 0.0, 0.0, 0.0, 1.0, 1.0], &[2, 3]);
    let b = t(&arange(12), &[3, 2, 2]);
    let y = run(&dot(false, false), &[&a, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2, 2]));
    assert_eq!(
        y.to_f64_vec(),
        vec![0.0, 1.0, 2.0, 3.0, 12.0, 14.0, 16.0, 18.0]
    );
}

#[test]
fn dot_transpose_of_n_d_reverses_all_axes() {
    // a [3, 2, 2] = arange, transposed: a'[i, j, k] = a[k, j, i] = 4k + 2j + i.
    // a' · [1, 10, 100] -> [i, j] = 111 (2j + i) + 840.
    let a = t(&arange(12), &[3, 2, 2]);
    let v = t(&[1.0, 10.0, 100.0], &[3]);
    let y = run(&dot(true, false), &[&a, &v]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2]));
    assert_eq!(y.to_f64_vec(), vec![840.0, 1062.0, 951.0, 1173.0]);
    // b [2, 2, 3] = arange, transposed: b'[k, p, q] = b[q, p, k] = 6q + 3p + k.
    // [1, 10, 100] · b' -> [p, q] = 111 (6q + 3p) + 210.
    let b = t(&arange(12), &[2, 2, 3]);
    let y = run(&dot(false, true), &[&v, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2]));
    assert_eq!(y.to_f64_vec(), vec![210.0, 876.0, 543.0, 1209.0]);
}

#[test]
fn dot_keeps_f32() {
    let a = Tensor::from_vec(vec![1.5f32, 2.0], [1, 2]).unwrap();
    let b = Tensor::from_vec(vec![2.0f32, 4.0], [2, 1]).unwrap();
    let y = run(&dot(false, false), &[&a, &b]).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    assert_eq!(y.as_slice::<f32>().unwrap(), &[11.0]);
}

#[test]
fn dot_with_empty_contraction_is_zero() {
    let a = t(&[], &[2, 0]);
    let b = t(&[], &[0, 3]);
    let y = run(&dot(false, false), &[&a, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 3]));
    assert_eq!(y.to_f64_vec(), vec![0.0; 6]);
}

#[test]
fn batch_dot_multiplies_per_batch_with_flags() {
    let a = t(
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        &[2, 2, 3],
    );
    let b = t(
        &[
            7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0,
        ],
        &[2, 3, 2],
    );
    let expected = vec![58.0, 64.0, 139.0, 154.0, 1.0, 2.0, 3.0, 4.0];
    // Per-batch transposes of a and b.
    let a_t = t(
        &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        &[2, 3, 2],
    );
    let b_t = t(
        &[
            7.0, 9.0, 11.0, 8.0, 10.0, 12.0, 1.0, 3.0, 5.0, 2.0, 4.0, 6.0,
        ],
        &[2, 2, 3],
    );
    for (ta, tb, lhs, rhs) in [
        (false, false, &a, &b),
        (true, false, &a_t, &b),
        (false, true, &a, &b_t),
        (true, true, &a_t, &b_t),
    ] {
        let y = run(&batch_dot(ta, tb), &[lhs, rhs]).unwrap();
        assert_eq!(y.shape(), &Shape::from([2, 2, 2]), "ta={ta} tb={tb}");
        assert_eq!(y.to_f64_vec(), expected, "ta={ta} tb={tb}");
    }
}

#[test]
fn batch_dot_accepts_several_batch_dims() {
    let a = t(&arange(12), &[2, 1, 2, 3]);
    let b = t(&[1.0; 6], &[2, 1, 3, 1]);
    let y = run(&batch_dot(false, false), &[&a, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 1, 2, 1]));
    assert_eq!(y.to_f64_vec(), vec![3.0, 12.0, 21.0, 30.0]);
}

fn fc(flatten: bool, no_bias: bool) -> Op {
    Op::FullyConnected { flatten, no_bias }
}

#[test]
fn fully_connected_with_and_without_bias() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let w = t(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[2, 3]);
    let b = t(&[10.0, 20.0], &[2]);
    let y = run(&fc(true, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2]));
    assert_eq!(y.to_f64_vec(), vec![14.0, 22.0, 20.0, 25.0]);
    let y = run(&fc(true, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![4.0, 2.0, 10.0, 5.0]);
}

#[test]
fn fully_connected_flatten_and_not() {
    let w = t(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[2, 3]);
    let b = t(&[10.0, 20.0], &[2]);
    // flatten: [2, 1, 3] is seen as [2, 3].
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 1, 3]);
    let y = run(&fc(true, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2]));
    assert_eq!(y.to_f64_vec(), vec![14.0, 22.0, 20.0, 25.0]);
    // no flatten: the last axis is contracted and the leading ones kept.
    let y = run(&fc(false, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 1, 2]));
    assert_eq!(y.to_f64_vec(), vec![14.0, 22.0, 20.0, 25.0]);
    // flatten of [1, 2, 3] against a weight of 6 inputs.
    let x = t(&arange(6), &[1, 2, 3]);
    let w6 = t(&[1.0; 6], &[1, 6]);
    let y = run(&fc(true, true), &[&x, &w6]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1]));
    assert_eq!(y.to_f64_vec(), vec![15.0]);
}

#[test]
fn fully_connected_flattens_a_vector_to_one_feature() {
    // [3] with flatten is [3, 1]: three samples of one feature each.
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let w = t(&[2.0, -1.0], &[2, 1]);
    let y = run(&fc(true, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([3, 2]));
    assert_eq!(y.to_f64_vec(), vec![2.0, -1.0, 4.0, -2.0, 6.0, -3.0]);
}

/// Calls that must fail, and fragments the message must contain (op name and shapes).
#[test]
fn bad_calls_name_the_op_and_shapes() {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32);
    let zd = |s: &[usize], d: DType| Tensor::zeros(s, d);
    let cases: Vec<(Op, Vec<Tensor>, Vec<&str>)> = vec![
        (
            dot(false, false),
            vec![z(&[2, 3]), z(&[4, 5])],
            vec!["dot: cannot contract [2, 3] with [4, 5] (3 != 4)"],
        ),
        (
            dot(true, false),
            vec![z(&[2, 3]), z(&[3, 5])],
            vec![
                "dot: cannot contract [3, 2] with [3, 5] (2 != 3)",
                "transpose_a=true",
            ],
        ),
        (
            dot(false, false),
            vec![z(&[]), z(&[3])],
            vec!["dot", "rank >= 1", "[]", "[3]"],
        ),
        (
            dot(false, false),
            vec![zd(&[2], DType::I32), zd(&[2], DType::I32)],
            vec!["dot", "i32"],
        ),
        (
            dot(false, false),
            vec![z(&[2]), zd(&[2], DType::F64)],
            vec!["dot", "f32", "f64"],
        ),
        (
            dot(false, false),
            vec![z(&[2])],
            vec!["dot", "expects 2 input(s), got 1"],
        ),
        (
            batch_dot(false, false),
            vec![z(&[2, 3]), z(&[3, 2])],
            vec!["batch_dot", "[2, 3]", "[3, 2]", "rank >= 3"],
        ),
        (
            batch_dot(false, false),
            vec![z(&[2, 2, 3]), z(&[3, 3, 2])],
            vec!["batch_dot", "batch dims", "[2, 2, 3]", "[3, 3, 2]"],
        ),
        (
            batch_dot(false, true),
            vec![z(&[2, 2, 3]), z(&[2, 3, 2])],
            vec!["batch_dot: cannot contract [2, 2, 3] with [2, 3, 2] (3 != 2"],
        ),
        (
            fc(true, true),
            vec![z(&[2, 3]), z(&[4, 5])],
            vec!["fully_connected: weight [4, 5] expects 5 input features, input [2, 3] has 3"],
        ),
        (
            fc(true, false),
            vec![z(&[2, 3]), z(&[4, 3]), z(&[3])],
            vec!["fully_connected", "bias must be [4]", "[4, 3]", "got [3]"],
        ),
        (
            fc(true, false),
            vec![z(&[2, 3]), z(&[4, 3])],
            vec!["fully_connected", "expects 3 input(s), got 2"],
        ),
        (
            fc(false, true),
            vec![z(&[2, 3]), z(&[4, 3, 1])],
            vec!["fully_connected", "[4, 3, 1]"],
        ),
    ];
    for (op, inputs, fragments) in cases {
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let msg = match run(&op, &refs) {
            Ok(y) => panic!("{op:?} on {inputs:?} should fail, gave {y:?}"),
            Err(e) => e.to_string(),
        };
        for f in fragments {
            assert!(msg.contains(f), "message {msg:?} lacks {f:?}");
        }
    }
}

#[test]
fn eval_typed_rejects_a_wrong_output_type() {
    let a = t(&[1.0, 2.0], &[2]);
    let wrong = kiln_ir::TensorType::new([5], DType::F64);
    let e = kiln_ir::interp::eval_typed(&dot(false, false), &[a.view(), a.view()], &wrong)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("dot:"), "{e}");
}
