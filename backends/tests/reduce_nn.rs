//! Reductions, softmax/log_softmax and pooling fast paths against the interpreter.

mod common;

use common::{check_exact, check_fast, check_same_as_interp, random, tol};
use kiln_ir::{DType, Op, PoolKind, ReduceOp, Tensor};

const FLOATS: [DType; 2] = [DType::F32, DType::F64];

#[test]
fn sum_mean_max_over_the_last_axis_and_all_axes() {
    for dt in FLOATS {
        for shape in [&[7][..], &[3, 5], &[4, 3, 17], &[1000, 70], &[2, 1]] {
            let x = random(shape, dt, 1);
            let rank = shape.len() as isize;
            let axes_variants: [Option<Vec<isize>>; 4] = [
                None,
                Some(vec![-1]),
                Some(vec![rank - 1]),
                Some((0..rank).rev().collect()),
            ];
            for f in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                for axes in axes_variants.iter() {
                    for keepdims in [false, true] {
                        let op = Op::Reduce {
                            f,
                            axes: axes.clone(),
                            keepdims,
                        };
                        if f == ReduceOp::Max {
                            check_exact(&op, &[&x]);
                        } else {
                            check_fast(&op, &[&x], tol(dt));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn max_propagates_nan_and_other_reductions_fall_back() {
    let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 3.0, 0.0, -1.0, 2.0], [2, 3]).unwrap();
    let max = Op::Reduce {
        f: ReduceOp::Max,
        axes: Some(vec![1]),
        keepdims: false,
    };
    check_exact(&max, &[&x]);
    let y = random(&[3, 4, 5], DType::F32, 2);
    for (f, axes) in [
        (ReduceOp::Sum, Some(vec![0])),
        (ReduceOp::Sum, Some(vec![0, 2])),
        (ReduceOp::Sum, Some(vec![])),
        (ReduceOp::Sum, Some(vec![2, 2])),
        (ReduceOp::Sum, Some(vec![3])),
        (ReduceOp::Min, None),
        (ReduceOp::Prod, Some(vec![-1])),
        (ReduceOp::Norm, None),
    ] {
        check_same_as_interp(
            &Op::Reduce {
                f,
                axes,
                keepdims: false,
            },
            &[&y],
        );
    }
    let e = Tensor::from_vec(Vec::<f64>::new(), [2, 0]).unwrap();
    for f in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        check_same_as_interp(
            &Op::Reduce {
                f,
                axes: Some(vec![-1]),
                keepdims: true,
            },
            &[&e],
        );
    }
}

#[test]
fn softmax_and_log_softmax_over_the_last_axis() {
    for dt in FLOATS {
        for shape in [&[10][..], &[64, 10], &[3, 4, 33], &[200, 100]] {
            let x = random(shape, dt, 3);
            for axis in [-1, shape.len() as isize - 1] {
                check_exact(&Op::Softmax { axis }, &[&x]);
                check_exact(&Op::LogSoftmax { axis }, &[&x]);
            }
        }
    }
    // Other axes go to the interpreter.
    let x = random(&[3, 4], DType::F32, 4);
    check_same_as_interp(&Op::Softmax { axis: 0 }, &[&x]);
    check_same_as_interp(&Op::Softmax { axis: 2 }, &[&x]);
    // Infinities and NaN behave as in the interpreter.
    let s = Tensor::from_vec(
        vec![
            f32::NEG_INFINITY,
            0.0,
            1.0,
            f32::NAN,
            1.0,
            2.0,
            f32::INFINITY,
            1.0,
            0.0,
        ],
        [3, 3],
    )
    .unwrap();
    check_exact(&Op::Softmax { axis: -1 }, &[&s]);
    check_exact(&Op::LogSoftmax { axis: -1 }, &[&s]);
}

fn pool(kind: PoolKind, k: &[usize], s: &[usize], p: &[usize], global: bool, cip: bool) -> Op {
    Op::Pooling {
        kind,
        kernel: k.to_vec(),
        stride: s.to_vec(),
        pad: p.to_vec(),
        global,
        count_include_pad: cip,
    }
}

#[test]
fn pooling_max_and_average() {
    for dt in FLOATS {
        let x2 = random(&[2, 3, 9, 8], dt, 5);
        let big = random(&[16, 20, 24, 24], dt, 6);
        let x1 = random(&[2, 3, 11], dt, 7);
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for cip in [true, false] {
                check_exact(&pool(kind, &[2, 2], &[2, 2], &[0, 0], false, cip), &[&x2]);
                check_exact(&pool(kind, &[3, 2], &[2, 1], &[1, 1], false, cip), &[&x2]);
                check_exact(&pool(kind, &[3, 3], &[1, 1], &[2, 1], false, cip), &[&x2]);
                check_exact(&pool(kind, &[], &[], &[], true, cip), &[&x2]);
                check_exact(&pool(kind, &[2, 2], &[2, 2], &[0, 0], false, cip), &[&big]);
                check_exact(&pool(kind, &[3], &[2], &[1], false, cip), &[&x1]);
                check_exact(&pool(kind, &[], &[], &[], true, cip), &[&x1]);
            }
        }
        // Gradients: dy of the pooling output's shape.
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for cip in [true, false] {
                for (x, k, st, p, global) in [
                    (&x2, &[2, 2][..], &[2, 2][..], &[0, 0][..], false),
                    (&x2, &[3, 2], &[2, 1], &[1, 1], false),
                    (&x2, &[3, 3], &[1, 1], &[2, 1], false),
                    (&x2, &[], &[], &[], true),
                    (&big, &[2, 2], &[2, 2], &[0, 0], false),
                    (&big, &[3, 3], &[2, 2], &[1, 1], false),
                    (&x1, &[3], &[2], &[1], false),
                ] {
                    let fwd = pool(kind, k, st, p, global, cip);
                    let y = kiln_ir::interp::eval(&fwd, &[x.view()]).unwrap();
                    let dy = random(y.shape().dims(), dt, 12);
                    let Op::Pooling {
                        kind,
                        kernel,
                        stride,
                        pad,
                        global,
                        count_include_pad,
                    } = fwd
                    else {
                        unreachable!()
                    };
                    let grad = Op::PoolingGrad {
                        kind,
                        kernel,
                        stride,
                        pad,
                        global,
                        count_include_pad,
                    };
                    check_fast(&grad, &[x, &dy], tol(dt));
                }
            }
        }
        let bad_dy = random(&[2, 3, 4, 4], dt, 13);
        check_same_as_interp(
            &Op::PoolingGrad {
                kind: PoolKind::Max,
                kernel: vec![3, 3],
                stride: vec![1, 1],
                pad: vec![0, 0],
                global: false,
                count_include_pad: true,
            },
            &[&x2, &bad_dy],
        );
        // A kernel larger than the input, a pad as large as the kernel: interpreter errors.
        check_same_as_interp(
            &pool(PoolKind::Max, &[10, 2], &[1, 1], &[0, 0], false, true),
            &[&x2],
        );
        check_same_as_interp(
            &pool(PoolKind::Max, &[2, 2], &[1, 1], &[2, 0], false, true),
            &[&x2],
        );
        check_same_as_interp(&pool(PoolKind::Max, &[], &[], &[], false, true), &[&x2]);
    }
}

#[test]
fn fallback_ops_equal_the_interpreter_exactly() {
    let x = random(&[3, 4, 5], DType::F32, 8);
    let y = random(&[3, 4, 5], DType::F32, 9);
    check_same_as_interp(&Op::Transpose { axes: None }, &[&x]);
    check_same_as_interp(&Op::Where, &[&x, &x, &y]);
    check_same_as_interp(
        &Op::LayerNorm {
            axis: -1,
            eps: 1e-5,
        },
        &[
            &x,
            &random(&[5], DType::F32, 10),
            &random(&[5], DType::F32, 11),
        ],
    );
    check_same_as_interp(&Op::Dropout { p: 0.3, seed: 7 }, &[&x]);
    check_same_as_interp(&Op::Cast { dtype: DType::F64 }, &[&x]);
}
