//! `dot`, `batch_dot` and `fully_connected` through gemm, against the interpreter.

mod common;

use common::{check_fast, check_same_as_interp, random, tol};
use kiln_ir::{DType, Op, Tensor};

const FLOATS: [DType; 2] = [DType::F32, DType::F64];

fn dot(ta: bool, tb: bool) -> Op {
    Op::Dot {
        transpose_a: ta,
        transpose_b: tb,
    }
}

#[test]
fn dot_2d_with_every_transpose_flag() {
    for dt in FLOATS {
        // The last two are split across threads by output rows and by output columns.
        for (m, k, n) in [
            (1, 1, 1),
            (7, 13, 5),
            (33, 17, 65),
            (3, 0, 4),
            (600, 150, 100),
            (40, 300, 800),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a_shape = if ta { [k, m] } else { [m, k] };
                let b_shape = if tb { [n, k] } else { [k, n] };
                let a = random(&a_shape, dt, 1);
                let b = random(&b_shape, dt, 2);
                let out = check_fast(&dot(ta, tb), &[&a, &b], tol(dt));
                assert_eq!(out.shape().dims(), [m, n]);
            }
        }
    }
}

#[test]
fn dot_vectors_and_higher_ranks() {
    for dt in FLOATS {
        let v = random(&[9], dt, 3);
        let w = random(&[9], dt, 4);
        let inner = check_fast(&dot(false, false), &[&v, &w], tol(dt));
        assert_eq!(inner.shape().rank(), 0);
        let m = random(&[9, 4], dt, 5);
        check_fast(&dot(false, false), &[&v, &m], tol(dt));
        check_fast(&dot(true, false), &[&v, &m], tol(dt));
        let m2 = random(&[4, 9], dt, 6);
        check_fast(&dot(false, false), &[&m2, &v], tol(dt));
        check_fast(&dot(false, true), &[&v, &m2], tol(dt));
        // [2, 3, 5] · [5, 4, 2] -> [2, 3, 4, 2]
        let a = random(&[2, 3, 5], dt, 7);
        let b = random(&[5, 4, 2], dt, 8);
        let out = check_fast(&dot(false, false), &[&a, &b], tol(dt));
        assert_eq!(out.shape().dims(), [2, 3, 4, 2]);
        // Transposed rank-3 operands reverse all their axes.
        let at = random(&[5, 3, 2], dt, 9);
        let out = check_fast(&dot(true, false), &[&at, &b], tol(dt));
        assert_eq!(out.shape().dims(), [2, 3, 4, 2]);
        let bt = random(&[2, 4, 5], dt, 10);
        check_fast(&dot(false, true), &[&a, &bt], tol(dt));
        check_fast(&dot(true, true), &[&at, &bt], tol(dt));
    }
}

#[test]
fn batch_dot_with_flags_and_batch_ranks() {
    for dt in FLOATS {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (batch, n, k, m) in [
                (vec![3], 4, 5, 6),
                (vec![2, 3], 7, 1, 3),
                (vec![40], 9, 11, 10),
                (vec![4], 130, 110, 90), // split across threads by batch
            ] {
                let mut a_shape = batch.clone();
                a_shape.extend(if ta { [k, n] } else { [n, k] });
                let mut b_shape = batch.clone();
                b_shape.extend(if tb { [m, k] } else { [k, m] });
                let a = random(&a_shape, dt, 11);
                let b = random(&b_shape, dt, 12);
                let op = Op::BatchDot {
                    transpose_a: ta,
                    transpose_b: tb,
                };
                let out = check_fast(&op, &[&a, &b], tol(dt));
                let mut want = batch.clone();
                want.extend([n, m]);
                assert_eq!(out.shape().dims(), want.as_slice());
            }
        }
    }
}

#[test]
fn fully_connected_flatten_bias_and_ranks() {
    for dt in FLOATS {
        let w = random(&[6, 12], dt, 13);
        let b = random(&[6], dt, 14);
        let x4 = random(&[5, 3, 2, 2], dt, 15);
        let fc = |flatten, no_bias| Op::FullyConnected { flatten, no_bias };
        let out = check_fast(&fc(true, false), &[&x4, &w, &b], tol(dt));
        assert_eq!(out.shape().dims(), [5, 6]);
        check_fast(&fc(true, true), &[&x4, &w], tol(dt));
        let x3 = random(&[2, 3, 12], dt, 16);
        let out = check_fast(&fc(false, false), &[&x3, &w, &b], tol(dt));
        assert_eq!(out.shape().dims(), [2, 3, 6]);
        // A 1-D input with flatten is [N] seen as [N, 1].
        let w1 = random(&[4, 1], dt, 17);
        let x1 = random(&[7], dt, 18);
        let out = check_fast(&fc(true, true), &[&x1, &w1], tol(dt));
        assert_eq!(out.shape().dims(), [7, 4]);
        // An MLP-sized layer (threaded gemm).
        let x = random(&[64, 784], dt, 19);
        let w = random(&[256, 784], dt, 20);
        let b = random(&[256], dt, 21);
        check_fast(&fc(true, false), &[&x, &w, &b], tol(dt));
    }
}

#[test]
fn bad_linalg_calls_give_the_interpreters_errors() {
    let a = random(&[3, 4], DType::F32, 1);
    let b = random(&[5, 2], DType::F32, 2);
    check_same_as_interp(&dot(false, false), &[&a, &b]);
    let b64 = random(&[4, 2], DType::F64, 3);
    check_same_as_interp(&dot(false, false), &[&a, &b64]);
    let s = Tensor::scalar(1.0f32);
    check_same_as_interp(&dot(false, false), &[&s, &a]);
    let i = Tensor::from_vec(vec![1i32, 2, 3, 4], [2, 2]).unwrap();
    check_same_as_interp(&dot(false, false), &[&i, &i]);
    let x = random(&[2, 3, 4], DType::F32, 4);
    let y = random(&[3, 4, 2], DType::F32, 5);
    let bd = Op::BatchDot {
        transpose_a: false,
        transpose_b: false,
    };
    check_same_as_interp(&bd, &[&x, &y]);
    let w = random(&[6, 5], DType::F32, 6);
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: true,
    };
    check_same_as_interp(&fc, &[&x, &w]);
    let fc_b = Op::FullyConnected {
        flatten: false,
        no_bias: false,
    };
    let w4 = random(&[6, 4], DType::F32, 7);
    let bad_bias = random(&[5], DType::F32, 8);
    check_same_as_interp(&fc_b, &[&x, &w4, &bad_bias]);
    check_same_as_interp(&fc_b, &[&x, &w4]);
}
