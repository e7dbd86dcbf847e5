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

#[test]
fn reductions_over_other_axis_sets_are_bitwise_equal_to_the_interpreter() {
    // Bias gradients (every axis but the channels), leading axes, middle axes, length-1
    // axes among the reduced and kept ones, and NaNs for max.
    let cases: [(&[usize], &[isize]); 9] = [
        (&[64, 20, 24, 24], &[0, 2, 3]),
        (&[5, 13, 7], &[0, 2]),
        (&[64, 512], &[0]),
        (&[3, 4, 5], &[1]),
        (&[2, 3, 4, 5], &[0, 1]),
        (&[2, 3, 4, 5], &[1, 3]),
        (&[1, 6, 1, 9], &[0, 3]),
        (&[4, 1, 3], &[0, 2]),
        (&[6, 19, 1], &[0, 2]),
    ];
    for dt in FLOATS {
        for (i, (shape, axes)) in cases.iter().enumerate() {
            let x = random(shape, dt, 10 + i as u64);
            for f in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                for keepdims in [false, true] {
                    let op = Op::Reduce {
                        f,
                        axes: Some(axes.to_vec()),
                        keepdims,
                    };
                    check_exact(&op, &[&x]);
                }
            }
        }
    }
    let x = Tensor::from_vec(
        vec![
            1.0f32,
            f32::NAN,
            3.0,
            0.0,
            -1.0,
            2.0,
            5.0,
            4.0,
            f32::NAN,
            7.0,
            8.0,
            9.0,
        ],
        [2, 3, 2],
    )
    .unwrap();
    for f in [ReduceOp::Max, ReduceOp::Sum] {
        let op = Op::Reduce {
            f,
            axes: Some(vec![0, 2]),
            keepdims: false,
        };
        check_exact(&op, &[&x]);
    }
}

#[test]
fn max_pooling_over_tiles_and_its_gradient_are_bitwise_equal_to_the_interpreter() {
    let grad_of = |op: &Op| match op.clone() {
        Op::Pooling {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        } => Op::PoolingGrad {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        },
        _ => unreachable!(),
    };
    for dt in FLOATS {
        // Odd sizes leave a last row/column in no window; 3×3 and 2×3 tiles take the
        // general tiled path of the gradient.
        for (shape, k) in [
            (&[2, 3, 9, 8][..], &[2, 2][..]),
            (&[64, 20, 24, 24], &[2, 2]),
            (&[2, 2, 9, 9], &[3, 3]),
            (&[1, 2, 7, 9], &[2, 3]),
        ] {
            let x = random(shape, dt, 21);
            let fwd = pool(PoolKind::Max, k, k, &[0, 0], false, true);
            check_exact(&fwd, &[&x]);
            let y = kiln_ir::interp::eval(&fwd, &[x.view()]).unwrap();
            let dy = random(y.shape().dims(), dt, 22);
            check_exact(&grad_of(&fwd), &[&x, &dy]);
        }
    }
    // Ties (the first maximum wins), NaN first and NaN later in a window, and a -0 gradient.
    let x = Tensor::from_vec(
        vec![
            1.0f32,
            1.0,
            f32::NAN,
            0.0,
            1.0,
            0.5,
            9.0,
            f32::NAN,
            -2.0,
            -2.0,
            -1.0,
            -3.0,
            -2.0,
            -2.0,
            -3.0,
            -1.0,
        ],
        [1, 1, 4, 4],
    )
    .unwrap();
    let dy = Tensor::from_vec(vec![-0.0f32, 2.0, 3.0, -4.0], [1, 1, 2, 2]).unwrap();
    let fwd = pool(PoolKind::Max, &[2, 2], &[2, 2], &[0, 0], false, true);
    check_exact(&fwd, &[&x]);
    check_exact(&grad_of(&fwd), &[&x, &dy]);
}
