//! Reference semantics of the elementwise ops, through the public `interp::eval` and
//! `infer::infer`, on hand-computed cases.

use kiln_ir::{
    infer::infer, interp::eval, BinaryOp, DType, Element, Op, Result, Shape, Tensor, TensorType,
    UnaryOp,
};

fn t<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

fn run(op: &Op, inputs: &[&Tensor]) -> Result<Tensor> {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    eval(op, &views)
}

fn unary(f: UnaryOp, x: &Tensor) -> Tensor {
    run(&Op::Unary { f }, &[x]).unwrap()
}

fn binary(f: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
    run(&Op::Binary { f }, &[a, b]).unwrap()
}

fn scalar(f: BinaryOp, x: &Tensor, s: f64, reverse: bool) -> Tensor {
    run(
        &Op::Scalar {
            f,
            scalar: s,
            reverse,
        },
        &[x],
    )
    .unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

fn err_msg(r: Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => e.to_string(),
    }
}

// ----- unary -------------------------------------------------------------------------------

#[test]
fn float_unary_ops_match_hand_values_in_f32_and_f64() {
    let xs = [-2.0, -0.5, 0.0, 0.5, 2.0];
    let cases: Vec<(UnaryOp, [f64; 5])> = vec![
        (UnaryOp::Neg, [2.0, 0.5, 0.0, -0.5, -2.0]),
        (UnaryOp::Abs, [2.0, 0.5, 0.0, 0.5, 2.0]),
        (UnaryOp::Sign, [-1.0, -1.0, 0.0, 1.0, 1.0]),
        (UnaryOp::Square, [4.0, 0.25, 0.0, 0.25, 4.0]),
        (UnaryOp::Relu, [0.0, 0.0, 0.0, 0.5, 2.0]),
        (UnaryOp::Floor, [-2.0, -1.0, 0.0, 0.0, 2.0]),
        (UnaryOp::Ceil, [-2.0, -0.0, 0.0, 1.0, 2.0]),
        // Half away from zero.
        (UnaryOp::Round, [-2.0, -1.0, 0.0, 1.0, 2.0]),
        (UnaryOp::LogicalNot, [0.0, 0.0, 1.0, 0.0, 0.0]),
        (
            UnaryOp::Exp,
            [
                0.1353352832366127,
                0.6065306597126334,
                1.0,
                1.6487212707001282,
                7.38905609893065,
            ],
        ),
        (
            UnaryOp::Expm1,
            [
                -0.8646647167633873,
                -0.3934693402873666,
                0.0,
                0.6487212707001282,
                6.38905609893065,
            ],
        ),
        (
            UnaryOp::Sin,
            [
                -0.9092974268256817,
                -0.479425538604203,
                0.0,
                0.479425538604203,
                0.9092974268256817,
            ],
        ),
        (
            UnaryOp::Cos,
            [
                -0.4161468365471424,
                0.8775825618903728,
                1.0,
                0.8775825618903728,
                -0.4161468365471424,
            ],
        ),
        (
            UnaryOp::Tanh,
            [
                -0.9640275800758169,
                -0.46211715726000974,
                0.0,
                0.46211715726000974,
                0.9640275800758169,
            ],
        ),
        (
            UnaryOp::Sigmoid,
            [
                0.11920292202211755,
                0.3775406687981454,
                0.5,
                0.6224593312018546,
                0.8807970779778823,
            ],
        ),
        (
            UnaryOp::Softrelu,
            [
                0.12692801104297252,
                0.4740769841801067,
                std::f64::consts::LN_2,
                0.9740769841801067,
                2.1269280110429727,
            ],
        ),
        (UnaryOp::Reciprocal, [-0.5, -2.0, f64::INFINITY, 2.0, 0.5]),
    ];
    for (f, want) in cases {
        let x64 = t(xs.to_vec(), &[5]);
        let got = unary(f, &x64);
        assert_eq!(got.dtype(), DType::F64);
        assert_close(&got.to_f64_vec(), &want, 1e-15);
        let x32 = t(xs.iter().map(|&v| v as f32).collect(), &[5]);
        let got = unary(f, &x32);
        assert_eq!(got.dtype(), DType::F32, "{f:?}");
        assert_close(&got.to_f64_vec(), &want, 1e-7);
    }
}

#[test]
fn logs_and_roots_on_positive_values() {
    let x = t(vec![0.0f64, 1.0, 4.0, 0.25], &[2, 2]);
    let log = unary(UnaryOp::Log, &x);
    assert_eq!(log.shape(), &Shape::from([2, 2]));
    assert_close(
        &log.to_f64_vec(),
        &[
            f64::NEG_INFINITY,
            0.0,
            1.3862943611198906,
            -1.3862943611198906,
        ],
        1e-15,
    );
    assert_close(
        &unary(UnaryOp::Sqrt, &x).to_f64_vec(),
        &[0.0, 1.0, 2.0, 0.5],
        0.0,
    );
    assert_close(
        &unary(UnaryOp::Rsqrt, &x).to_f64_vec(),
        &[f64::INFINITY, 1.0, 0.5, 2.0],
        0.0,
    );
    let small = t(vec![1e-10f64, 0.0, -1.0], &[3]);
    assert_close(
        &unary(UnaryOp::Log1p, &small).to_f64_vec(),
        &[9.9999999995e-11, 0.0, f64::NEG_INFINITY],
        1e-15,
    );
    assert!(unary(UnaryOp::Log, &t(vec![-1.0f32], &[1])).to_f64_vec()[0].is_nan());
}

#[test]
fn special_values_saturate_without_nan() {
    let x = t(vec![-1000.0f32, 1000.0, 100.0], &[3]);
    assert_eq!(
        unary(UnaryOp::Exp, &x).to_f64_vec(),
        vec![0.0, f64::INFINITY, f64::INFINITY]
    );
    assert_eq!(
        unary(UnaryOp::Sigmoid, &x).to_f64_vec(),
        vec![0.0, 1.0, 1.0]
    );
    assert_eq!(
        unary(UnaryOp::Softrelu, &x).to_f64_vec(),
        vec![0.0, 1000.0, 100.0]
    );
    let x = t(vec![-1000.0f64, 1000.0, -30.0], &[3]);
    let s = unary(UnaryOp::Softrelu, &x).to_f64_vec();
    assert_eq!(&s[..2], &[0.0, 1000.0]);
    // softplus(-30) = log1p(e^-30) ≈ e^-30: no cancellation.
    assert_close(&s[2..], &[9.357622968839299e-14], 1e-14);
    let sig = unary(UnaryOp::Sigmoid, &x).to_f64_vec();
    assert_eq!(&sig[..2], &[0.0, 1.0]);
    assert_close(&sig[2..], &[9.357622968840175e-14], 1e-14);
    // NaN propagates through relu, softrelu and sign.
    let nan = t(vec![f64::NAN], &[1]);
    for f in [
        UnaryOp::Relu,
        UnaryOp::Softrelu,
        UnaryOp::Sign,
        UnaryOp::Sigmoid,
    ] {
        assert!(unary(f, &nan).to_f64_vec()[0].is_nan(), "{f:?}");
    }
    assert_eq!(unary(UnaryOp::LogicalNot, &nan).to_f64_vec(), vec![0.0]);
}

#[test]
fn round_is_half_away_from_zero() {
    let x = t(vec![0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999], &[7]);
    assert_eq!(
        unary(UnaryOp::Round, &x).to_f64_vec(),
        vec![1.0, 2.0, 3.0, -1.0, -2.0, -3.0, 2.0]
    );
}

#[test]
fn integer_unary_ops_wrap_like_numpy() {
    let x = t(vec![-3i32, 0, 7, i32::MIN], &[4]);
    assert_eq!(
        unary(UnaryOp::Neg, &x).as_slice::<i32>().unwrap(),
        &[3, 0, -7, i32::MIN]
    );
    assert_eq!(
        unary(UnaryOp::Abs, &x).as_slice::<i32>().unwrap(),
        &[3, 0, 7, i32::MIN]
    );
    assert_eq!(
        unary(UnaryOp::Sign, &x).as_slice::<i32>().unwrap(),
        &[-1, 0, 1, -1]
    );
    assert_eq!(
        unary(UnaryOp::Relu, &x).as_slice::<i32>().unwrap(),
        &[0, 0, 7, 0]
    );
    assert_eq!(
        unary(UnaryOp::Square, &x).as_slice::<i32>().unwrap(),
        &[9, 0, 49, 0]
    );
    assert_eq!(
        unary(UnaryOp::LogicalNot, &x).as_slice::<i32>().unwrap(),
        &[0, 1, 0, 0]
    );
    for f in [UnaryOp::Floor, UnaryOp::Ceil, UnaryOp::Round] {
        assert_eq!(unary(f, &x), x);
    }
    let x = t(vec![3i64, -4, i64::MAX], &[3]);
    assert_eq!(
        unary(UnaryOp::Square, &x).as_slice::<i64>().unwrap(),
        &[9, 16, 1]
    );
    let u = t(vec![0u8, 5, 200], &[3]);
    assert_eq!(
        unary(UnaryOp::Neg, &u).as_slice::<u8>().unwrap(),
        &[0, 251, 56]
    );
    assert_eq!(unary(UnaryOp::Abs, &u), u);
    assert_eq!(
        unary(UnaryOp::Sign, &u).as_slice::<u8>().unwrap(),
        &[0, 1, 1]
    );
    assert_eq!(
        unary(UnaryOp::Square, &u).as_slice::<u8>().unwrap(),
        &[0, 25, 64]
    );
    let b = t(vec![true, false], &[2]);
    assert_eq!(
        unary(UnaryOp::LogicalNot, &b).as_slice::<bool>().unwrap(),
        &[false, true]
    );
}

// ----- binary ------------------------------------------------------------------------------

#[test]
fn float_binary_ops_same_shape() {
    let a = [1.0, -2.0, 3.0, 0.5];
    let b = [2.0, 2.0, -1.0, 0.5];
    let cases: Vec<(BinaryOp, [f64; 4])> = vec![
        (BinaryOp::Add, [3.0, 0.0, 2.0, 1.0]),
        (BinaryOp::Sub, [-1.0, -4.0, 4.0, 0.0]),
        (BinaryOp::Mul, [2.0, -4.0, -3.0, 0.25]),
        (BinaryOp::Div, [0.5, -1.0, -3.0, 1.0]),
        (
            BinaryOp::Pow,
            [1.0, 4.0, 1.0 / 3.0, std::f64::consts::FRAC_1_SQRT_2],
        ),
        (BinaryOp::Maximum, [2.0, 2.0, 3.0, 0.5]),
        (BinaryOp::Minimum, [1.0, -2.0, -1.0, 0.5]),
        (BinaryOp::Eq, [0.0, 0.0, 0.0, 1.0]),
        (BinaryOp::Ne, [1.0, 1.0, 1.0, 0.0]),
        (BinaryOp::Gt, [0.0, 0.0, 1.0, 0.0]),
        (BinaryOp::Ge, [0.0, 0.0, 1.0, 1.0]),
        (BinaryOp::Lt, [1.0, 1.0, 0.0, 0.0]),
        (BinaryOp::Le, [1.0, 1.0, 0.0, 1.0]),
    ];
    for (f, want) in cases {
        let got = binary(f, &t(a.to_vec(), &[2, 2]), &t(b.to_vec(), &[2, 2]));
        assert_eq!(got.ty(), TensorType::new([2, 2], DType::F64));
        assert_close(&got.to_f64_vec(), &want, 1e-15);
        let a32 = t(a.iter().map(|&v| v as f32).collect(), &[2, 2]);
        let b32 = t(b.iter().map(|&v| v as f32).collect(), &[2, 2]);
        let got = binary(f, &a32, &b32);
        assert_eq!(got.dtype(), DType::F32);
        assert_close(&got.to_f64_vec(), &want, 1e-7);
    }
}

#[test]
fn float_division_and_nan_follow_ieee_and_numpy() {
    let a = t(vec![1.0f64, -1.0, 0.0, f64::NAN, 1.0], &[5]);
    let b = t(vec![0.0f64, 0.0, 0.0, 1.0, f64::NAN], &[5]);
    let d = binary(BinaryOp::Div, &a, &b).to_f64_vec();
    assert_eq!(&d[..2], &[f64::INFINITY, f64::NEG_INFINITY]);
    assert!(d[2].is_nan() && d[3].is_nan());
    // maximum/minimum propagate NaN from either side.
    for f in [BinaryOp::Maximum, BinaryOp::Minimum] {
        let m = binary(f, &a, &b).to_f64_vec();
        assert!(m[3].is_nan() && m[4].is_nan(), "{f:?}: {m:?}");
    }
    assert_eq!(
        binary(BinaryOp::Eq, &a, &b).to_f64_vec(),
        vec![0.0, 0.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        binary(BinaryOp::Ne, &a, &b).to_f64_vec(),
        vec![1.0, 1.0, 0.0, 1.0, 1.0]
    );
}

#[test]
fn integer_binary_ops_truncate_and_wrap() {
    let a = t(vec![7i32, -7, 7, -7, 5, i32::MAX, i32::MIN], &[7]);
    let b = t(vec![2i32, 2, -2, -2, 0, 1, -1], &[7]);
    assert_eq!(
        binary(BinaryOp::Div, &a, &b).as_slice::<i32>().unwrap(),
        &[3, -3, -3, 3, 0, i32::MAX, i32::MIN]
    );
    assert_eq!(
        binary(BinaryOp::Add, &a, &b).as_slice::<i32>().unwrap(),
        &[9, -5, 5, -9, 5, i32::MIN, i32::MAX]
    );
    assert_eq!(
        binary(BinaryOp::Mul, &a, &b).as_slice::<i32>().unwrap(),
        &[14, -14, -14, 14, 0, i32::MAX, i32::MIN]
    );
    assert_eq!(
        binary(BinaryOp::Sub, &a, &b).as_slice::<i32>().unwrap(),
        &[5, -9, 9, -5, 5, i32::MAX - 1, i32::MIN + 1]
    );
    assert_eq!(
        binary(BinaryOp::Gt, &a, &b).as_slice::<i32>().unwrap(),
        &[1, 0, 1, 0, 1, 1, 0]
    );
    let a = t(vec![2i64, 3, -2, 2, 1, -1, -1, 0, 0, 2], &[10]);
    let b = t(vec![10i64, 0, 3, -1, -5, -3, -4, 0, -2, 64], &[10]);
    assert_eq!(
        binary(BinaryOp::Pow, &a, &b).as_slice::<i64>().unwrap(),
        &[1024, 1, -8, 0, 1, -1, 1, 1, 0, 0]
    );
    let a = t(vec![250u8, 3, 10, 9], &[4]);
    let b = t(vec![10u8, 5, 0, 2], &[4]);
    assert_eq!(
        binary(BinaryOp::Add, &a, &b).as_slice::<u8>().unwrap(),
        &[4, 8, 10, 11]
    );
    assert_eq!(
        binary(BinaryOp::Sub, &a, &b).as_slice::<u8>().unwrap(),
        &[240, 254, 10, 7]
    );
    assert_eq!(
        binary(BinaryOp::Div, &a, &b).as_slice::<u8>().unwrap(),
        &[25, 0, 0, 4]
    );
    assert_eq!(
        binary(BinaryOp::Pow, &a, &b).as_slice::<u8>().unwrap(),
        &[250u8.wrapping_pow(10), 243, 1, 81]
    );
    assert_eq!(
        binary(BinaryOp::Maximum, &a, &b).as_slice::<u8>().unwrap(),
        &[250, 5, 10, 9]
    );
    assert_eq!(
        binary(BinaryOp::Le, &a, &b).as_slice::<u8>().unwrap(),
        &[0, 1, 0, 0]
    );
}

#[test]
fn bool_takes_equality_and_max_min() {
    let a = t(vec![true, true, false, false], &[4]);
    let b = t(vec![true, false, true, false], &[4]);
    let get = |f| binary(f, &a, &b).as_slice::<bool>().unwrap().to_vec();
    assert_eq!(get(BinaryOp::Eq), vec![true, false, false, true]);
    assert_eq!(get(BinaryOp::Ne), vec![false, true, true, false]);
    assert_eq!(get(BinaryOp::Maximum), vec![true, true, true, false]);
    assert_eq!(get(BinaryOp::Minimum), vec![true, false, false, false]);
    let s = scalar(BinaryOp::Eq, &a, 1.0, false);
    assert_eq!(s.as_slice::<bool>().unwrap(), &[true, true, false, false]);
}

#[test]
fn broadcasting_row_column_scalar_and_rank_expanding() {
    let m = t(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let row = t(vec![10.0f32, 20.0, 30.0], &[3]);
    let col = t(vec![100.0f32, 200.0], &[2, 1]);
    let s = t(vec![0.5f32], &[]);
    assert_eq!(
        binary(BinaryOp::Add, &m, &row).to_f64_vec(),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    assert_eq!(
        binary(BinaryOp::Sub, &col, &m).to_f64_vec(),
        vec![99.0, 98.0, 97.0, 196.0, 195.0, 194.0]
    );
    let ms = binary(BinaryOp::Mul, &s, &m);
    assert_eq!(ms.shape(), &Shape::from([2, 3]));
    assert_eq!(ms.to_f64_vec(), vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    // [2, 1] with [3] -> [2, 3]: both sides broadcast.
    let outer = binary(BinaryOp::Add, &col, &row);
    assert_eq!(outer.shape(), &Shape::from([2, 3]));
    assert_eq!(
        outer.to_f64_vec(),
        vec![110.0, 120.0, 130.0, 210.0, 220.0, 230.0]
    );
    // Rank-expanding: [2, 1, 2] with [3, 1] -> [2, 3, 2].
    let a = t(vec![1i64, 2, 3, 4], &[2, 1, 2]);
    let b = t(vec![10i64, 20, 30], &[3, 1]);
    let c = binary(BinaryOp::Mul, &a, &b);
    assert_eq!(c.shape(), &Shape::from([2, 3, 2]));
    assert_eq!(
        c.as_slice::<i64>().unwrap(),
        &[10, 20, 20, 40, 30, 60, 30, 40, 60, 80, 90, 120]
    );
    // Zero-size dims broadcast against 1.
    let e = binary(
        BinaryOp::Add,
        &t(Vec::<f64>::new(), &[0, 3]),
        &row.cast(DType::F64),
    );
    assert_eq!(e.shape(), &Shape::from([0, 3]));
}

#[test]
fn scalar_ops_convert_the_scalar_and_honour_reverse() {
    let x = t(vec![1.0f64, 2.0, 4.0], &[3]);
    assert_eq!(
        scalar(BinaryOp::Sub, &x, 1.0, false).to_f64_vec(),
        vec![0.0, 1.0, 3.0]
    );
    assert_eq!(
        scalar(BinaryOp::Sub, &x, 1.0, true).to_f64_vec(),
        vec![0.0, -1.0, -3.0]
    );
    assert_eq!(
        scalar(BinaryOp::Div, &x, 8.0, true).to_f64_vec(),
        vec![8.0, 4.0, 2.0]
    );
    assert_eq!(
        scalar(BinaryOp::Pow, &x, 2.0, true).to_f64_vec(),
        vec![2.0, 4.0, 16.0]
    );
    assert_eq!(
        scalar(BinaryOp::Pow, &x, 0.5, false).to_f64_vec(),
        vec![1.0, std::f64::consts::SQRT_2, 2.0]
    );
    assert_eq!(
        scalar(BinaryOp::Gt, &x, 1.5, false).to_f64_vec(),
        vec![0.0, 1.0, 1.0]
    );
    // The scalar becomes an i32 (2.9 -> 2) before the op.
    let xi = t(vec![5i32, -5, 6], &[3]);
    let got = scalar(BinaryOp::Mul, &xi, 2.9, false);
    assert_eq!(got.as_slice::<i32>().unwrap(), &[10, -10, 12]);
    assert_eq!(
        scalar(BinaryOp::Div, &xi, 2.0, false)
            .as_slice::<i32>()
            .unwrap(),
        &[2, -2, 3]
    );
    assert_eq!(
        scalar(BinaryOp::Div, &xi, 0.0, true)
            .as_slice::<i32>()
            .unwrap(),
        &[0, 0, 0]
    );
    assert_eq!(
        scalar(BinaryOp::Maximum, &xi, 0.0, false)
            .as_slice::<i32>()
            .unwrap(),
        &[5, 0, 6]
    );
    // f32: the scalar is rounded to f32 first.
    let x32 = t(vec![0.0f32], &[1]);
    assert_eq!(
        scalar(BinaryOp::Add, &x32, 0.1, false)
            .as_slice::<f32>()
            .unwrap(),
        &[0.1f32]
    );
    let u = t(vec![200u8], &[1]);
    assert_eq!(
        scalar(BinaryOp::Add, &u, 100.0, false)
            .as_slice::<u8>()
            .unwrap(),
        &[44]
    );
}

// ----- where, clip, cast --------------------------------------------------------------------

#[test]
fn where_selects_with_broadcasting_and_any_cond_dtype() {
    let cond = t(vec![1.0f32, 0.0, -0.0, f32::NAN], &[4]);
    let x = t(vec![1i64, 2, 3, 4], &[4]);
    let y = t(vec![-1i64], &[]);
    let w = run(&Op::Where, &[&cond, &x, &y]).unwrap();
    assert_eq!(w.as_slice::<i64>().unwrap(), &[1, -1, -1, 4]);
    // cond [2, 1], x [3], y [2, 3] -> [2, 3].
    let cond = t(vec![true, false], &[2, 1]);
    let x = t(vec![1.0f64, 2.0, 3.0], &[3]);
    let y = t(vec![10.0f64, 20.0, 30.0, 40.0, 50.0, 60.0], &[2, 3]);
    let w = run(&Op::Where, &[&cond, &x, &y]).unwrap();
    assert_eq!(w.ty(), TensorType::new([2, 3], DType::F64));
    assert_eq!(w.to_f64_vec(), vec![1.0, 2.0, 3.0, 40.0, 50.0, 60.0]);
    // cond may broadcast the output up: cond [2, 2], x and y scalars.
    let cond = t(vec![0u8, 3, 1, 0], &[2, 2]);
    let w = run(
        &Op::Where,
        &[&cond, &t(vec![true], &[]), &t(vec![false], &[])],
    )
    .unwrap();
    assert_eq!(w.as_slice::<bool>().unwrap(), &[false, true, true, false]);
}

#[test]
fn clip_bounds_in_every_numeric_dtype() {
    let clip = |x: &Tensor, min, max| run(&Op::Clip { min, max }, &[x]).unwrap();
    let x = t(vec![-2.0f32, 0.5, 3.0, f32::NAN], &[4]);
    let c = clip(&x, 0.0, 1.0).to_f64_vec();
    assert_eq!(&c[..3], &[0.0, 0.5, 1.0]);
    assert!(c[3].is_nan());
    let x = t(vec![-2.0f64, 0.5, 3.0], &[3]);
    assert_eq!(clip(&x, -1.0, -1.0).to_f64_vec(), vec![-1.0, -1.0, -1.0]);
    let x = t(vec![-5i32, 0, 5], &[3]);
    assert_eq!(clip(&x, -1.5, 2.5).as_slice::<i32>().unwrap(), &[-1, 0, 2]);
    let x = t(vec![0u8, 100, 255], &[3]);
    assert_eq!(
        clip(&x, 10.0, 1000.0).as_slice::<u8>().unwrap(),
        &[10, 100, 255]
    );
    let x = t(vec![i64::MIN, 0, i64::MAX], &[3]);
    assert_eq!(clip(&x, -3.0, 3.0).as_slice::<i64>().unwrap(), &[-3, 0, 3]);
}

#[test]
fn cast_converts_between_all_dtypes() {
    let cast = |x: &Tensor, dtype| run(&Op::Cast { dtype }, &[x]).unwrap();
    let x = t(vec![-1.7f64, 0.0, 2.5, 300.0], &[2, 2]);
    let c = cast(&x, DType::I32);
    assert_eq!(c.shape(), &Shape::from([2, 2]));
    assert_eq!(c.as_slice::<i32>().unwrap(), &[-1, 0, 2, 300]);
    assert_eq!(
        cast(&x, DType::U8).as_slice::<u8>().unwrap(),
        &[0, 0, 2, 255]
    );
    assert_eq!(
        cast(&x, DType::Bool).as_slice::<bool>().unwrap(),
        &[true, false, true, true]
    );
    assert_eq!(
        cast(&x, DType::F32).as_slice::<f32>().unwrap(),
        &[-1.7f32, 0.0, 2.5, 300.0]
    );
    let b = t(vec![true, false], &[2]);
    assert_eq!(cast(&b, DType::F64).to_f64_vec(), vec![1.0, 0.0]);
    assert_eq!(cast(&b, DType::I64).as_slice::<i64>().unwrap(), &[1, 0]);
    // A same-dtype cast is exact even beyond 2^53.
    let big = t(vec![(1i64 << 53) + 1], &[1]);
    assert_eq!(cast(&big, DType::I64), big);
    assert_eq!(
        cast(&t(vec![f32::NAN], &[1]), DType::I32)
            .as_slice::<i32>()
            .unwrap(),
        &[0]
    );
}

// ----- inference and bad calls ---------------------------------------------------------------

#[test]
fn infer_gives_the_output_types() {
    let f32_23 = TensorType::new([2, 3], DType::F32);
    assert_eq!(
        infer(
            &Op::Binary { f: BinaryOp::Lt },
            &[f32_23.clone(), TensorType::new([1, 3], DType::F32)]
        )
        .unwrap(),
        f32_23
    );
    assert_eq!(
        infer(
            &Op::Cast { dtype: DType::U8 },
            std::slice::from_ref(&f32_23)
        )
        .unwrap(),
        TensorType::new([2, 3], DType::U8)
    );
    assert_eq!(
        infer(
            &Op::Where,
            &[
                TensorType::new([4, 1, 1], DType::Bool),
                TensorType::new([3], DType::I32),
                TensorType::new([2, 1], DType::I32)
            ]
        )
        .unwrap(),
        TensorType::new([4, 2, 3], DType::I32)
    );
}

#[test]
fn bad_calls_are_errors_naming_op_shapes_and_dtypes() {
    let f2 = t(vec![1.0f32, 2.0], &[2]);
    let f3 = t(vec![1.0f32, 2.0, 3.0], &[3]);
    let f23 = t(vec![0.0f32; 6], &[2, 3]);
    let d2 = t(vec![1.0f64, 2.0], &[2]);
    let i2 = t(vec![1i32, 2], &[2]);
    let b2 = t(vec![true, false], &[2]);
    let bin = |f| Op::Binary { f };
    let un = |f| Op::Unary { f };
    let cases: Vec<(Op, Vec<&Tensor>, &[&str])> = vec![
        (bin(BinaryOp::Add), vec![&f2, &f3], &["add", "[2]", "[3]"]),
        (
            bin(BinaryOp::Add),
            vec![&f23, &f2],
            &["add", "[2, 3]", "[2]"],
        ),
        (bin(BinaryOp::Mul), vec![&f2, &d2], &["mul", "f32", "f64"]),
        (bin(BinaryOp::Add), vec![&b2, &b2], &["add", "bool"]),
        (bin(BinaryOp::Gt), vec![&b2, &b2], &["gt", "bool"]),
        (bin(BinaryOp::Add), vec![&f2], &["add", "2 input", "got 1"]),
        (
            un(UnaryOp::Exp),
            vec![&i2],
            &["exp", "floating-point", "i32 [2]"],
        ),
        (un(UnaryOp::Sigmoid), vec![&b2], &["sigmoid", "bool"]),
        (un(UnaryOp::Neg), vec![&b2], &["neg", "bool"]),
        (un(UnaryOp::Abs), vec![&f2, &f2], &["abs", "1 input"]),
        (
            Op::Scalar {
                f: BinaryOp::Add,
                scalar: 1.0,
                reverse: false,
            },
            vec![&b2],
            &["add_scalar", "bool"],
        ),
        (
            Op::Clip { min: 2.0, max: 1.0 },
            vec![&f2],
            &["clip", "min=2", "max=1"],
        ),
        (
            Op::Clip {
                min: f64::NAN,
                max: 1.0,
            },
            vec![&f2],
            &["clip", "NaN"],
        ),
        (
            Op::Clip { min: 0.0, max: 1.0 },
            vec![&b2],
            &["clip", "bool"],
        ),
        (Op::Where, vec![&b2, &f2, &d2], &["where", "f32", "f64"]),
        (
            Op::Where,
            vec![&b2, &f3, &f3],
            &["where", "[2] (cond)", "[3] (x)", "[3] (y)"],
        ),
        (Op::Where, vec![&b2, &f2], &["where", "3 input"]),
        (Op::Cast { dtype: DType::F64 }, vec![], &["cast", "1 input"]),
    ];
    for (op, inputs, needles) in cases {
        let msg = err_msg(run(&op, &inputs));
        for n in needles {
            assert!(msg.contains(n), "{op:?}: message {msg:?} lacks {n:?}");
        }
    }
}

#[test]
fn oversized_broadcast_is_an_error_not_an_overflow() {
    let a = TensorType::new([1usize << 40, 1], DType::F32);
    let b = TensorType::new([1, 1usize << 40], DType::F32);
    let e = infer(&Op::Binary { f: BinaryOp::Add }, &[a, b]).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn eval_typed_rejects_a_wrong_output_type() {
    let x = t(vec![1.0f32, 2.0], &[2]);
    let wrong = TensorType::new([3], DType::F32);
    let e = kiln_ir::interp::eval_typed(&Op::Unary { f: UnaryOp::Neg }, &[x.view()], &wrong)
        .unwrap_err();
    assert!(e.to_string().contains("f32[3]"), "{e}");
}

#[test]
fn inconsistent_views_are_errors_not_panics() {
    let view = kiln_ir::TensorView {
        shape: Shape::from([3]),
        data: kiln_ir::DataRef::F32(&[1.0]),
    };
    let e = eval(&Op::Unary { f: UnaryOp::Neg }, &[view]).unwrap_err();
    assert!(e.to_string().contains("shape [3] but 1 elements"), "{e}");
}

/// The row-major multi-index of flat position `i` in `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = i % dims[d];
        i /= dims[d];
    }
    idx
}

/// The flat position in `dims` read by output multi-index `idx` under numpy broadcasting.
fn broadcast_source(idx: &[usize], dims: &[usize]) -> usize {
    let lead = idx.len() - dims.len();
    dims.iter().enumerate().fold(0, |flat, (d, &n)| {
        flat * n + if n == 1 { 0 } else { idx[lead + d] }
    })
}

#[test]
fn broadcasting_matches_a_naive_multi_index_mapping() {
    let pairs: [(&[usize], &[usize]); 6] = [
        (&[2, 3, 4], &[4]),
        (&[2, 1, 4], &[3, 1]),
        (&[1], &[5, 1, 2]),
        (&[3, 1, 1, 2], &[1, 4, 3, 1]),
        (&[], &[2, 2]),
        (&[2, 0, 3], &[1, 3]),
    ];
    for (da, db) in pairs {
        let na: usize = da.iter().product();
        let nb: usize = db.iter().product();
        let a = t((0..na).map(|i| i as i64).collect(), da);
        let b = t((0..nb).map(|i| 1000 * i as i64).collect(), db);
        let c = binary(BinaryOp::Add, &a, &b);
        let out = Shape::new(da).broadcast(&Shape::new(db), "t").unwrap();
        assert_eq!(c.shape(), &out);
        for (i, &v) in c.as_slice::<i64>().unwrap().iter().enumerate() {
            let idx = unravel(i, &out);
            let want = broadcast_source(&idx, da) as i64 + 1000 * broadcast_source(&idx, db) as i64;
            assert_eq!(v, want, "{da:?} + {db:?} at {idx:?}");
        }
    }
}
