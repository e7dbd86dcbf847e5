//! The Cranelift backend against the reference interpreter.
//!
//! Tolerances (f32):
//! - exact ops (arithmetic, comparisons, where, clip, relu, maximum/minimum, floor/ceil/round,
//!   sign, abs, neg, sqrt, square, reciprocal) with FMA contraction off: bitwise equal;
//! - with FMA contraction on: relative 1e-6 (plus 1e-6 absolute near cancellation);
//! - rsqrt and the transcendentals: relative 4e-6;
//! - reductions and softmax (f32 vector accumulators vs the interpreter's f64 sums):
//!   relative 1e-5 of the largest magnitude involved.

mod jit_support;

use jit_support::*;
use kiln_backends::jit::{JitBackend, JitOptions};
use kiln_backends::{CpuBackend, Kernels};
use kiln_ir::{BinaryOp, DType, FusedInst, FusedKernel, Op, ReduceOp, Tensor, TensorType, UnaryOp};

const EXACT_UNARY: [UnaryOp; 12] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Sign,
    UnaryOp::Sqrt,
    UnaryOp::Square,
    UnaryOp::Reciprocal,
    UnaryOp::Relu,
    UnaryOp::Floor,
    UnaryOp::Ceil,
    UnaryOp::Round,
    UnaryOp::LogicalNot,
    UnaryOp::Rsqrt,
];

#[test]
fn every_unary_op_matches_the_interpreter() {
    let jit = exact();
    let x = data(&[37], 1, true);
    for f in UnaryOp::ALL {
        let k = kernel(&[&[37]], vec![(Op::Unary { f }, vec![I(0)])]);
        let exact_op = EXACT_UNARY.contains(&f) && f != UnaryOp::Rsqrt;
        let rel = if exact_op { EXACT } else { TRANS };
        check(&jit, &k, &[&x], rel, true);
    }
}

#[test]
fn every_binary_op_under_every_broadcast_pattern() {
    let jit = exact();
    let patterns: [(&[usize], &[usize]); 7] = [
        (&[5, 11], &[5, 11]),
        (&[5, 11], &[11]),
        (&[5, 11], &[5, 1]),
        (&[5, 11], &[]),
        (&[], &[5, 11]),
        (&[5, 1], &[1, 11]),
        (&[2, 3, 7], &[3, 1]),
    ];
    for f in BinaryOp::ALL {
        for (pa, pb) in patterns {
            let k = kernel(&[pa, pb], vec![(Op::Binary { f }, vec![I(0), I(1)])]);
            let (a, b) = (data(pa, 2, true), data(pb, 3, true));
            let rel = if f != BinaryOp::Pow { EXACT } else { TRANS };
            check(&jit, &k, &[&a, &b], rel, true);
        }
    }
}

#[test]
fn scalar_ops_both_ways_and_exact_powers() {
    let jit = exact();
    let x = data(&[23], 4, true);
    for f in BinaryOp::ALL {
        for reverse in [false, true] {
            for scalar in [0.5, -1.0, 2.0, 0.0, 1.0, 3.0] {
                let op = Op::Scalar { f, scalar, reverse };
                let k = kernel(&[&[23]], vec![(op, vec![I(0)])]);
                let exact = f != BinaryOp::Pow || (!reverse && scalar != 3.0);
                let rel = if exact { EXACT } else { TRANS };
                check(&jit, &k, &[&x], rel, true);
            }
        }
    }
}

#[test]
fn where_and_clip_keep_nan_semantics() {
    let jit = exact();
    let (c, x, y) = (
        data(&[4, 9], 5, true),
        data(&[9], 6, true),
        data(&[4, 1], 7, true),
    );
    let k = kernel(
        &[&[4, 9], &[9], &[4, 1]],
        vec![(Op::Where, vec![I(0), I(1), I(2)])],
    );
    check(&jit, &k, &[&c, &x, &y], EXACT, true);
    let k = kernel(
        &[&[4, 9]],
        vec![(
            Op::Clip {
                min: -1.0,
                max: 0.5,
            },
            vec![I(0)],
        )],
    );
    check(&jit, &k, &[&c], EXACT, true);
}

/// `(x*2 + 1) * relu(y) - maximum(x, y) / (|x| + 1)`: exact ops only.
fn chain(sx: &[usize], sy: &[usize]) -> FusedKernel {
    let mul2 = Op::Scalar {
        f: BinaryOp::Mul,
        scalar: 2.0,
        reverse: false,
    };
    let add1 = Op::Scalar {
        f: BinaryOp::Add,
        scalar: 1.0,
        reverse: false,
    };
    kernel(
        &[sx, sy],
        vec![
            (mul2, vec![I(0)]),
            (add1, vec![V(0)]),
            (Op::Unary { f: UnaryOp::Relu }, vec![I(1)]),
            (Op::Binary { f: BinaryOp::Mul }, vec![V(1), V(2)]),
            (
                Op::Binary {
                    f: BinaryOp::Maximum,
                },
                vec![I(0), I(1)],
            ),
            (Op::Unary { f: UnaryOp::Abs }, vec![I(0)]),
            (add1_op(), vec![V(5)]),
            (Op::Binary { f: BinaryOp::Div }, vec![V(4), V(6)]),
            (Op::Binary { f: BinaryOp::Sub }, vec![V(3), V(7)]),
        ],
    )
}

fn add1_op() -> Op {
    Op::Scalar {
        f: BinaryOp::Add,
        scalar: 1.0,
        reverse: false,
    }
}

#[test]
fn odd_sizes_and_broadcast_inputs() {
    let exact = exact();
    let fma = JitBackend::with_options(JitOptions::default());
    for n in [0usize, 1, 3, 5, 4 * 7 + 3, 10007] {
        let k = chain(&[n], &[n]);
        let (x, y) = (data(&[n], 8, true), data(&[n], 9, true));
        check(&exact, &k, &[&x, &y], EXACT, true);
        check(&fma, &k, &[&x, &y], FMA, true);
        // Row and column broadcasts of the second input.
        let k = chain(&[3, n], &[n]);
        let x3 = data(&[3, n], 10, true);
        check(&exact, &k, &[&x3, &y], EXACT, true);
        let k = chain(&[n, 3], &[n, 1]);
        let (xc, yc) = (data(&[n, 3], 11, false), data(&[n, 1], 12, false));
        check(&exact, &k, &[&xc, &yc], EXACT, true);
    }
}

#[test]
fn large_kernels_split_across_threads() {
    let jit = JitBackend::with_options(JitOptions {
        fma: false,
        parallel_min_elems: 1000,
        ..JitOptions::default()
    });
    // One long row (split into blocks), many rows with a row-broadcast bias, and a middle-axis
    // broadcast that needs the outer loop.
    let k = chain(&[100_003], &[100_003]);
    check(
        &jit,
        &k,
        &[&data(&[100_003], 13, false), &data(&[100_003], 14, false)],
        EXACT,
        true,
    );
    let k = chain(&[517, 129], &[129]);
    check(
        &jit,
        &k,
        &[&data(&[517, 129], 15, false), &data(&[129], 16, false)],
        EXACT,
        true,
    );
    let k = chain(&[7, 33, 65], &[7, 1, 65]);
    check(
        &jit,
        &k,
        &[
            &data(&[7, 33, 65], 17, false),
            &data(&[7, 1, 65], 18, false),
        ],
        EXACT,
        true,
    );
}

fn reduce_kernel(
    f: ReduceOp,
    x: &[usize],
    keepdims: bool,
    axes: Option<Vec<isize>>,
) -> FusedKernel {
    let c = *x.last().unwrap_or(&1);
    kernel(
        &[x, &[c]],
        vec![
            (Op::Binary { f: BinaryOp::Mul }, vec![I(0), I(0)]),
            (Op::Binary { f: BinaryOp::Sub }, vec![V(0), I(1)]),
            (Op::Reduce { f, axes, keepdims }, vec![V(1)]),
        ],
    )
}

#[test]
fn reductions_over_the_last_axis_with_prologue_and_epilogue() {
    let jit = exact();
    for f in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
        for c in [1usize, 3, 5, 31, 1001] {
            for keepdims in [false, true] {
                for x in [vec![4, c], vec![2, 3, c]] {
                    let k = reduce_kernel(f, &x, keepdims, Some(vec![-1]));
                    let (a, b) = (data(&x, 19, false), data(&[c], 20, false));
                    check(&jit, &k, &[&a, &b], RED, true);
                }
            }
            let k = reduce_kernel(f, &[c], false, None);
            check(
                &jit,
                &k,
                &[&data(&[c], 21, false), &data(&[c], 22, false)],
                RED,
                true,
            );
        }
    }
    // Sum over an empty axis is 0, mean NaN.
    for f in [ReduceOp::Sum, ReduceOp::Mean] {
        let k = reduce_kernel(f, &[3, 0], false, Some(vec![1]));
        check(
            &jit,
            &k,
            &[&data(&[3, 0], 1, false), &data(&[0], 2, false)],
            EXACT,
            true,
        );
    }
    // NaN propagates through max/min.
    let x = data(&[6, 14], 23, true);
    for f in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum] {
        let k = kernel(
            &[&[6, 14]],
            vec![(
                Op::Reduce {
                    f,
                    axes: Some(vec![1]),
                    keepdims: false,
                },
                vec![I(0)],
            )],
        );
        check(&jit, &k, &[&x], RED, true);
    }
    // Epilogue: mean(x) * 2 + bias[N].
    let k = kernel(
        &[&[6, 14], &[6]],
        vec![
            (
                Op::Reduce {
                    f: ReduceOp::Mean,
                    axes: Some(vec![1]),
                    keepdims: false,
                },
                vec![I(0)],
            ),
            (
                Op::Scalar {
                    f: BinaryOp::Mul,
                    scalar: 2.0,
                    reverse: false,
                },
                vec![V(0)],
            ),
            (Op::Binary { f: BinaryOp::Add }, vec![V(1), I(1)]),
        ],
    );
    check(
        &jit,
        &k,
        &[&data(&[6, 14], 24, false), &data(&[6], 25, false)],
        RED,
        true,
    );
}

#[test]
fn softmax_over_a_leading_axis_runs_op_by_op() {
    let jit = exact();
    let k = kernel(&[&[4, 6]], vec![(Op::Softmax { axis: 0 }, vec![I(0)])]);
    let x = data(&[4, 6], 26, false);
    let before = jit.stats().fallback_runs;
    check(&jit, &k, &[&x], FMA, false);
    assert_eq!(jit.stats().fallback_runs, before + 1);
}

#[test]
fn softmax_and_log_softmax_rows() {
    let jit = exact();
    for c in [1usize, 3, 10, 37] {
        for log in [false, true] {
            let op = if log {
                Op::LogSoftmax { axis: -1 }
            } else {
                Op::Softmax { axis: 1 }
            };
            let k = kernel(
                &[&[5, c], &[c]],
                vec![
                    (Op::Binary { f: BinaryOp::Add }, vec![I(0), I(1)]),
                    (op, vec![V(0)]),
                ],
            );
            let views = [data(&[5, c], 27, false), data(&[c], 28, false)];
            check(&jit, &k, &[&views[0], &views[1]], RED, true);
        }
    }
}

#[test]
fn softmax_cross_entropy_with_scaled_logits_and_odd_labels() {
    let jit = exact();
    for c in [1usize, 4, 10, 37] {
        let n = 9;
        let k = kernel(
            &[&[n, c], &[c], &[n]],
            vec![
                (
                    Op::Scalar {
                        f: BinaryOp::Mul,
                        scalar: 2.0,
                        reverse: false,
                    },
                    vec![I(0)],
                ),
                (Op::Binary { f: BinaryOp::Add }, vec![V(0), I(1)]),
                (Op::SoftmaxCrossEntropy, vec![V(1), I(2)]),
                (
                    Op::Scalar {
                        f: BinaryOp::Mul,
                        scalar: 0.5,
                        reverse: false,
                    },
                    vec![V(2)],
                ),
            ],
        );
        // Labels in range, fractional, negative, too large and NaN.
        let labels: Vec<f32> = [0.0, 1.0, 2.7, -3.0, 99.0, f32::NAN, 3.0, 5.0, 9.5]
            .iter()
            .map(|&v| {
                if v.is_nan() {
                    v
                } else {
                    v.min((c - 1) as f32 + 50.0)
                }
            })
            .collect();
        let lab = Tensor::from_vec(labels, [n]).unwrap();
        check(
            &jit,
            &k,
            &[&data(&[n, c], 40, false), &data(&[c], 41, false), &lab],
            RED,
            true,
        );
    }
}

#[test]
fn epilogue_kernels_run_gemm_then_one_compiled_pass() {
    let jit = JitBackend::with_options(JitOptions::default());
    let k = kernel(
        &[&[6, 10], &[4, 10], &[4], &[6, 4]],
        vec![
            (
                Op::FullyConnected {
                    flatten: true,
                    no_bias: false,
                },
                vec![I(0), I(1), I(2)],
            ),
            (Op::Unary { f: UnaryOp::Relu }, vec![V(0)]),
            (Op::Binary { f: BinaryOp::Add }, vec![V(1), I(3)]),
        ],
    );
    let ins = [
        data(&[6, 10], 29, false),
        data(&[4, 10], 30, false),
        data(&[4], 31, false),
        data(&[6, 4], 32, false),
    ];
    check(&jit, &k, &[&ins[0], &ins[1], &ins[2], &ins[3]], RED, true);
}

#[test]
fn a_new_batch_size_hits_the_cache() {
    let jit = exact();
    for (i, n) in [3usize, 17, 64].into_iter().enumerate() {
        let k = chain(&[n, 13], &[13]);
        let (x, b) = (data(&[n, 13], 33, false), data(&[13], 34, false));
        let got = jit
            .execute(
                &Op::Fused {
                    kernel: Box::new(k.clone()),
                },
                &[x.view(), b.view()],
            )
            .unwrap();
        assert_eq!(got, reference(&k, &[&x, &b]));
        let s = jit.stats();
        assert_eq!(s.kernels_compiled, 1, "batch {n} compiled a new kernel");
        assert_eq!(s.cache_hits, i);
        assert_eq!(s.native_runs, i + 1);
    }
    let r = jit.records();
    assert_eq!(r.len(), 1);
    assert!(r[0].code_bytes > 0);
    assert!(jit.stats().compile_time >= r[0].compile_time);
}

/// A kernel over typed inputs: `shapes[i]` with dtype `dtypes[i]`.
fn typed_kernel(
    ins: &[(&[usize], DType)],
    insts: Vec<(Op, Vec<kiln_ir::FusedArg>)>,
) -> FusedKernel {
    let inputs: Vec<TensorType> = ins
        .iter()
        .map(|(s, d)| TensorType::new(s.to_vec(), *d))
        .collect();
    let mut body: Vec<FusedInst> = Vec::new();
    for (op, args) in insts {
        let tys: Vec<TensorType> = args
            .iter()
            .map(|a| match *a {
                I(i) => inputs[i].clone(),
                V(j) => body[j].ty.clone(),
            })
            .collect();
        let ty = kiln_ir::infer::infer(&op, &tys).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        body.push(FusedInst { op, args, ty });
    }
    let out = body.len() - 1;
    FusedKernel::new(inputs, body, out).unwrap()
}

/// Runs a typed kernel natively and checks it bitwise against the interpreter (casts,
/// integer arithmetic, f64 arithmetic and comparisons are exact).
fn check_typed(jit: &JitBackend, k: &FusedKernel, inputs: &[&Tensor]) {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    assert!(
        jit.compiles(k, &views),
        "does not compile:\n{}",
        k.body_text()
    );
    let want = k
        .eval(&views, &mut |op, ins| kiln_ir::interp::eval(op, ins))
        .unwrap();
    let got = jit
        .execute(
            &Op::Fused {
                kernel: Box::new(k.clone()),
            },
            &views,
        )
        .unwrap();
    assert_eq!(got.ty(), want.ty(), "{}", k.body_text());
    for (i, (a, b)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "element {i}: jit {a:e} vs interp {b:e}\n{}",
            k.body_text()
        );
    }
}

fn cast(dtype: DType) -> Op {
    Op::Cast { dtype }
}

#[test]
fn casts_between_f32_f64_and_i32_compile_in_a_scalar_loop() {
    let jit = exact();
    // Values at the conversions' edges: NaN, ±inf, beyond i32's range, halves, -0.
    let mut v: Vec<f32> = data(&[3, 37], 60, true).as_slice::<f32>().unwrap().to_vec();
    v[1] = 3e9;
    v[2] = -3e9;
    v[4] = 2147483520.0;
    v[5] = -2.5;
    v[6] = 16777217.0;
    let x = Tensor::from_vec(v, [3, 37]).unwrap();
    for via in [DType::F64, DType::I32] {
        // f32 -> via -> f32, and f32 -> via.
        let k = typed_kernel(
            &[(&[3, 37], DType::F32)],
            vec![(cast(via), vec![I(0)]), (cast(DType::F32), vec![V(0)])],
        );
        check_typed(&jit, &k, &[&x]);
        let k = typed_kernel(&[(&[3, 37], DType::F32)], vec![(cast(via), vec![I(0)])]);
        check_typed(&jit, &k, &[&x]);
    }
    // i32 and f64 inputs, odd sizes, a broadcast row.
    for n in [0usize, 1, 3, 5, 19, 1031] {
        let xi: Vec<i32> = (0..n as i32 * 3)
            .map(|i| i.wrapping_mul(2_654_435_761u32 as i32) >> 3)
            .collect();
        let xi = Tensor::from_vec(xi, [3, n]).unwrap();
        let xd: Vec<f64> = (0..n * 3).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
        let xd = Tensor::from_vec(xd, [3, n]).unwrap();
        let row: Vec<f64> = (0..n).map(|i| i as f64 - 2.5).collect();
        let row = Tensor::from_vec(row, [n]).unwrap();
        // (f32) (i32 * 3 - 7) + (f32) f64 * row
        let k = typed_kernel(
            &[
                (&[3, n], DType::I32),
                (&[3, n], DType::F64),
                (&[n], DType::F64),
            ],
            vec![
                (
                    Op::Scalar {
                        f: BinaryOp::Mul,
                        scalar: 3.0,
                        reverse: false,
                    },
                    vec![I(0)],
                ),
                (
                    Op::Scalar {
                        f: BinaryOp::Sub,
                        scalar: 7.0,
                        reverse: false,
                    },
                    vec![V(0)],
                ),
                (cast(DType::F32), vec![V(1)]),
                (Op::Binary { f: BinaryOp::Mul }, vec![I(1), I(2)]),
                (cast(DType::F32), vec![V(3)]),
                (Op::Binary { f: BinaryOp::Add }, vec![V(2), V(4)]),
            ],
        );
        check_typed(&jit, &k, &[&xi, &xd, &row]);
        // Integer ops producing i32: max(x, -x) wraps at i32::MIN, clip, square, comparisons.
        let k = typed_kernel(
            &[(&[3, n], DType::I32)],
            vec![
                (Op::Unary { f: UnaryOp::Neg }, vec![I(0)]),
                (
                    Op::Binary {
                        f: BinaryOp::Maximum,
                    },
                    vec![I(0), V(0)],
                ),
                (
                    Op::Clip {
                        min: -5e8,
                        max: 7e8,
                    },
                    vec![V(1)],
                ),
                (Op::Unary { f: UnaryOp::Square }, vec![V(2)]),
                (Op::Binary { f: BinaryOp::Gt }, vec![V(3), I(0)]),
            ],
        );
        check_typed(&jit, &k, &[&xi]);
    }
}

#[test]
fn comparisons_and_where_with_non_f32_operands() {
    let jit = exact();
    let n = 23;
    let mut xd: Vec<f64> = (0..n).map(|i| (i as f64 - 11.0) * 0.5).collect();
    xd[3] = f64::NAN;
    let xd = Tensor::from_vec(xd, [n]).unwrap();
    let xf = data(&[n], 61, true);
    let xi: Vec<i32> = (0..n as i32).map(|i| (i % 5) - 2).collect();
    let xi = Tensor::from_vec(xi, [n]).unwrap();
    for f in [
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Lt,
        BinaryOp::Le,
    ] {
        // f64 comparison -> where on f32 data.
        let k = typed_kernel(
            &[(&[n], DType::F64), (&[n], DType::F32)],
            vec![
                (
                    Op::Scalar {
                        f,
                        scalar: 0.5,
                        reverse: false,
                    },
                    vec![I(0)],
                ),
                (Op::Unary { f: UnaryOp::Neg }, vec![I(1)]),
                (Op::Where, vec![V(0), I(1), V(1)]),
            ],
        );
        check_typed(&jit, &k, &[&xd, &xf]);
        // i32 comparison against a cast of f32 data, giving i32; where picks i32 values.
        let k = typed_kernel(
            &[(&[n], DType::I32), (&[n], DType::F32)],
            vec![
                (cast(DType::I32), vec![I(1)]),
                (Op::Binary { f }, vec![I(0), V(0)]),
                (Op::Where, vec![V(1), I(0), V(0)]),
            ],
        );
        check_typed(&jit, &k, &[&xi, &xf]);
        // An f32 condition choosing between f64 values.
        let k = typed_kernel(
            &[(&[n], DType::F32), (&[n], DType::F64)],
            vec![
                (Op::Unary { f: UnaryOp::Abs }, vec![I(1)]),
                (Op::Where, vec![I(0), I(1), V(0)]),
            ],
        );
        check_typed(&jit, &k, &[&xf, &xd]);
    }
}

#[test]
fn unsupported_dtypes_and_plain_ops_fall_back() {
    let jit = exact();
    // i64 has no lowering: the kernel runs op by op.
    let inputs = vec![TensorType::new(vec![5], DType::I64)];
    let body = vec![FusedInst {
        op: Op::Unary { f: UnaryOp::Neg },
        args: vec![I(0)],
        ty: TensorType::new(vec![5], DType::I64),
    }];
    let k = FusedKernel::new(inputs, body, 0).unwrap();
    let x = Tensor::from_vec(vec![1i64, -2, 3, i64::MIN, 0], [5]).unwrap();
    let got = jit
        .execute(
            &Op::Fused {
                kernel: Box::new(k.clone()),
            },
            &[x.view()],
        )
        .unwrap();
    assert_eq!(got.as_slice::<i64>().unwrap(), &[-1, 2, -3, i64::MIN, 0]);
    assert_eq!(jit.stats().fallback_runs, 1);
    assert_eq!(jit.stats().kernels_compiled, 0);
    // An i32 op with no integer lowering (division) falls back too, with the
    // interpreter's result (division by zero gives 0).
    let k = typed_kernel(
        &[(&[4], DType::I32), (&[4], DType::I32)],
        vec![(Op::Binary { f: BinaryOp::Div }, vec![I(0), I(1)])],
    );
    let a = Tensor::from_vec(vec![7i32, -7, i32::MIN, 5], [4]).unwrap();
    let b = Tensor::from_vec(vec![2i32, 2, -1, 0], [4]).unwrap();
    let views = [a.view(), b.view()];
    assert!(!jit.compiles(&k, &views));
    let got = jit
        .execute(
            &Op::Fused {
                kernel: Box::new(k.clone()),
            },
            &views,
        )
        .unwrap();
    let want = k
        .eval(&views, &mut |op, ins| kiln_ir::interp::eval(op, ins))
        .unwrap();
    assert_eq!(got, want);
    // A plain op runs on the CPU backend.
    let a = data(&[8], 35, false);
    let op = Op::Unary { f: UnaryOp::Tanh };
    assert_eq!(
        jit.execute(&op, &[a.view()]).unwrap(),
        CpuBackend.execute(&op, &[a.view()]).unwrap()
    );
    assert_eq!(jit.name(), "cranelift");
}

#[test]
fn wrong_inputs_get_the_interpreters_error() {
    let jit = exact();
    let k = chain(&[4], &[4]);
    let x = data(&[5], 36, false);
    let err = jit.execute(
        &Op::Fused {
            kernel: Box::new(k),
        },
        &[x.view(), x.view()],
    );
    assert!(err.is_err());
}

#[test]
fn dump_dir_gets_the_clif_of_each_kernel() {
    let dir = tempdir();
    let jit = JitBackend::with_options(JitOptions {
        dump_dir: Some(dir.clone()),
        ..JitOptions::default()
    });
    let k = chain(&[9], &[9]);
    check(
        &jit,
        &k,
        &[&data(&[9], 37, false), &data(&[9], 38, false)],
        FMA,
        true,
    );
    let text = std::fs::read_to_string(dir.join("kernel-0.clif")).unwrap();
    assert!(
        text.contains("function") && text.contains("f32x4"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-jit-dump-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
