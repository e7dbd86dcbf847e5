//! Compiled reductions over any axis set, argmax/argmin, and batch-norm statistics, against
//! the interpreter.
//!
//! Tolerances: sums, means, norms and products accumulate in f32 (vector accumulators, see
//! the JIT's summation order) against the interpreter's f64, so they agree within relative
//! 1e-5 of the value plus 1e-5 of the output's largest magnitude (`RED`); max, min, argmax
//! and argmin are exact (`EXACT`), NaN, infinities and ties included.

mod jit_support;

use jit_support::*;
use kiln_backends::jit::{JitBackend, JitOptions};
use kiln_backends::Kernels;
use kiln_ir::{interp, ArgReduceOp, BinaryOp, FusedKernel, Op, ReduceOp, Tensor, UnaryOp};

fn reduce(f: ReduceOp, axes: Option<Vec<isize>>, keepdims: bool) -> Op {
    Op::Reduce { f, axes, keepdims }
}

fn scalar(f: BinaryOp, c: f64) -> Op {
    Op::Scalar {
        f,
        scalar: c,
        reverse: false,
    }
}

/// `reduce(x * s + b)` with `b` broadcast along the last axis; `s` keeps products finite.
fn prologue_kernel(f: ReduceOp, x: &[usize], axes: Option<Vec<isize>>, keep: bool) -> FusedKernel {
    let c = *x.last().unwrap_or(&1);
    let s = if f == ReduceOp::Prod { 0.02 } else { 1.0 };
    kernel(
        &[x, &[c]],
        vec![
            (scalar(BinaryOp::Mul, s), vec![I(0)]),
            (Op::Binary { f: BinaryOp::Add }, vec![V(0), I(1)]),
            (reduce(f, axes, keep), vec![V(1)]),
        ],
    )
}

/// The broadcast addend for `f`: near 1 for products (with the 0.02 scale of the prologue
/// every factor is in (0.92, 1.08), so long products stay finite), else the usual range.
fn addend(f: ReduceOp, c: usize, seed: u64) -> Tensor {
    let d = data(&[c], seed, false);
    if f == ReduceOp::Prod {
        let v: Vec<f32> = d
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|x| 1.0 + 0.0066 * x)
            .collect();
        Tensor::from_vec(v, [c]).unwrap()
    } else {
        d
    }
}

const ALL: [ReduceOp; 6] = [
    ReduceOp::Sum,
    ReduceOp::Mean,
    ReduceOp::Max,
    ReduceOp::Min,
    ReduceOp::Prod,
    ReduceOp::Norm,
];

fn tol(f: ReduceOp) -> Tol {
    match f {
        ReduceOp::Max | ReduceOp::Min => EXACT,
        _ => RED,
    }
}

/// Every reduction kind over every axis pattern of a 4-D input (inner, outer, middle,
/// several, all), odd sizes included, each with a broadcast prologue and compiled natively.
#[test]
fn every_reduction_kind_over_every_axis_pattern() {
    let jit = exact();
    let patterns: Vec<Option<Vec<isize>>> = vec![
        Some(vec![3]),
        Some(vec![0]),
        Some(vec![1]),
        Some(vec![2]),
        Some(vec![0, 2, 3]),
        Some(vec![2, 3]),
        Some(vec![0, 1]),
        Some(vec![1, 3]),
        Some(vec![0, 2]),
        Some(vec![1, 2]),
        Some(vec![-1, -3]),
        Some(vec![]),
        None,
    ];
    let shapes: [&[usize]; 4] = [&[2, 3, 5, 7], &[3, 1, 4, 19], &[1, 5, 3, 1], &[2, 2, 3, 4]];
    for f in ALL {
        for (si, x) in shapes.iter().enumerate() {
            for (pi, axes) in patterns.iter().enumerate() {
                for keep in [false, true] {
                    let k = prologue_kernel(f, x, axes.clone(), keep);
                    let c = x[3];
                    let seed = (si * 100 + pi) as u64;
                    let a = data(x, seed, false);
                    let b = addend(f, c, seed + 1);
                    check(&jit, &k, &[&a, &b], tol(f), true);
                }
            }
        }
    }
}

/// 2-D and 3-D patterns with odd and prime extents on the contiguous axis (vector body,
/// unrolled blocks and scalar tails) and on the strided one.
#[test]
fn odd_sizes_on_both_sides_of_the_reduction() {
    let jit = exact();
    for f in ALL {
        for n in [1usize, 3, 5, 15, 19, 35, 1009] {
            for m in [1usize, 2, 7] {
                for (x, axes) in [
                    (vec![m, n], Some(vec![1])),
                    (vec![m, n], Some(vec![0])),
                    (vec![n, m], Some(vec![0])),
                    (vec![m, n, 3], Some(vec![1])),
                    (vec![3, m, n], Some(vec![0, 2])),
                    (vec![m, n], None),
                ] {
                    let k = prologue_kernel(f, &x, axes, false);
                    let a = data(&x, n as u64 * 7 + m as u64, false);
                    let b = addend(f, x[x.len() - 1], 3);
                    check(&jit, &k, &[&a, &b], tol(f), true);
                }
            }
        }
    }
}

#[test]
fn empty_reductions_give_the_identity() {
    let jit = exact();
    for (f, want) in [
        (ReduceOp::Sum, Some(0.0f32)),
        (ReduceOp::Prod, Some(1.0)),
        (ReduceOp::Norm, Some(0.0)),
        (ReduceOp::Mean, None),
    ] {
        for axes in [Some(vec![1]), Some(vec![0, 1])] {
            let k = kernel(
                &[&[3, 0]],
                vec![(reduce(f, axes.clone(), false), vec![I(0)])],
            );
            let x = Tensor::from_vec(Vec::<f32>::new(), [3, 0]).unwrap();
            let got = check(&jit, &k, &[&x], EXACT, true);
            for &v in got.as_slice::<f32>().unwrap() {
                match want {
                    Some(w) => assert_eq!(v.to_bits(), w.to_bits(), "{f:?} {axes:?}"),
                    None => assert!(v.is_nan(), "mean of nothing is NaN"),
                }
            }
        }
        // Reducing the non-empty axis of an empty array: an empty result.
        let k = kernel(
            &[&[3, 0]],
            vec![(reduce(f, Some(vec![0]), false), vec![I(0)])],
        );
        let x = Tensor::from_vec(Vec::<f32>::new(), [3, 0]).unwrap();
        let got = check(&jit, &k, &[&x], EXACT, true);
        assert_eq!(got.shape().dims(), &[0]);
    }
}

#[test]
fn nan_and_infinities_propagate_through_max_min_and_sum() {
    let jit = exact();
    let x = data(&[6, 9, 14], 23, true);
    for f in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum] {
        for axes in [vec![0], vec![1], vec![2], vec![0, 2]] {
            let k = kernel(
                &[&[6, 9, 14]],
                vec![(reduce(f, Some(axes), false), vec![I(0)])],
            );
            check(&jit, &k, &[&x], tol(f), true);
        }
    }
}

fn arg(f: ArgReduceOp, axis: Option<isize>, keepdims: bool) -> Op {
    Op::ArgReduce { f, axis, keepdims }
}

/// Integers from a small range, so rows have ties; NaN and infinities where asked.
fn tied(shape: &[usize], seed: u64, specials: bool) -> Tensor {
    let d = data(shape, seed, specials);
    let v: Vec<f32> = d
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .map(|x| if x.is_finite() { x.round() } else { *x })
        .collect();
    Tensor::from_vec(v, shape.to_vec()).unwrap()
}

#[test]
fn argmax_and_argmin_over_each_axis_with_ties_and_nan() {
    let jit = exact();
    for f in [ArgReduceOp::Argmax, ArgReduceOp::Argmin] {
        for x in [
            vec![3usize, 5, 7],
            vec![2, 19, 1],
            vec![4, 1, 33],
            vec![1, 1, 1],
        ] {
            for axis in [Some(0), Some(1), Some(2), Some(-1), None] {
                for keep in [false, true] {
                    for specials in [false, true] {
                        let k = kernel(&[&x], vec![(arg(f, axis, keep), vec![I(0)])]);
                        let a = tied(&x, x.iter().sum::<usize>() as u64, specials);
                        check(&jit, &k, &[&a], EXACT, true);
                    }
                }
            }
        }
        // Long rows (vector lanes, ties across lanes) and all -inf / all NaN rows.
        let n = 1031;
        let mut v: Vec<f32> = tied(&[4, n], 5, false).as_slice::<f32>().unwrap().to_vec();
        v[n..2 * n].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        v[2 * n..3 * n].iter_mut().for_each(|x| *x = f32::INFINITY);
        v[3 * n + 700] = f32::NAN;
        v[3 * n + 900] = f32::NAN;
        let a = Tensor::from_vec(v, [4, n]).unwrap();
        let at = interp::eval(&Op::Transpose { axes: None }, &[a.view()]).unwrap();
        for axis in [1, -1] {
            let k = kernel(&[&[4, n]], vec![(arg(f, Some(axis), false), vec![I(0)])]);
            check(&jit, &k, &[&a], EXACT, true);
        }
        let k = kernel(&[&[n, 4]], vec![(arg(f, Some(0), false), vec![I(0)])]);
        check(&jit, &k, &[&at], EXACT, true);
    }
}

#[test]
fn argmax_with_a_prologue_and_an_epilogue_compiles_as_one_kernel() {
    let jit = exact();
    // argmax(x * w + b, axis 1) + 1, with w broadcast over rows.
    let k = kernel(
        &[&[6, 13], &[13], &[6, 1]],
        vec![
            (Op::Binary { f: BinaryOp::Mul }, vec![I(0), I(1)]),
            (Op::Binary { f: BinaryOp::Add }, vec![V(0), I(2)]),
            (arg(ArgReduceOp::Argmax, Some(1), false), vec![V(1)]),
            (scalar(BinaryOp::Add, 1.0), vec![V(2)]),
        ],
    );
    let (x, w, b) = (
        tied(&[6, 13], 1, false),
        data(&[13], 2, false),
        data(&[6, 1], 3, false),
    );
    check(&jit, &k, &[&x, &w, &b], EXACT, true);
    // Over axis 0 (the strided one).
    let k = kernel(
        &[&[6, 13], &[13]],
        vec![
            (Op::Binary { f: BinaryOp::Sub }, vec![I(0), I(1)]),
            (arg(ArgReduceOp::Argmin, Some(0), true), vec![V(0)]),
        ],
    );
    check(&jit, &k, &[&x, &w], EXACT, true);
}

/// Batch-norm training statistics over `(0, 2, 3)` of NCHW, as the chapter model's graphs
/// hold them: the bare mean (it has several users), the variance of the centred square
/// with the running-average update as its epilogue, and the backward's
/// `sum(dy * x_hat)`-style reduction — each one compiled kernel.
#[test]
fn batch_norm_statistics_are_single_compiled_kernels() {
    let jit = exact();
    for (n, c, h, w) in [
        (4usize, 20usize, 24usize, 24usize),
        (3, 5, 7, 7),
        (2, 3, 1, 1),
        (1, 8, 5, 3),
    ] {
        let x = data(&[n, c, h, w], 40, false);
        let before = jit.stats().native_runs;
        // mean over (0,2,3), keepdims: a bare op through `execute`.
        let mean_op = reduce(ReduceOp::Mean, Some(vec![0, 2, 3]), true);
        let got = jit.execute(&mean_op, &[x.view()]).unwrap();
        let want = interp::eval(&mean_op, &[x.view()]).unwrap();
        assert_eq!(
            jit.stats().native_runs,
            before + 1,
            "the bare mean compiled"
        );
        assert_close(&got, &want, RED);
        // var = mean((x - mean)^2) over (0,2,3), then 0.9 * running + 0.1 * var.
        let k = kernel(
            &[&[n, c, h, w], &[1, c, 1, 1], &[c]],
            vec![
                (Op::Binary { f: BinaryOp::Sub }, vec![I(0), I(1)]),
                (Op::Unary { f: UnaryOp::Square }, vec![V(0)]),
                (
                    reduce(ReduceOp::Mean, Some(vec![0, 2, 3]), false),
                    vec![V(1)],
                ),
                (scalar(BinaryOp::Mul, 0.1), vec![V(2)]),
                (scalar(BinaryOp::Mul, 0.9), vec![I(2)]),
                (Op::Binary { f: BinaryOp::Add }, vec![V(3), V(4)]),
            ],
        );
        let running = data(&[c], 41, false);
        check(&jit, &k, &[&x, &got, &running], RED, true);
        // Backward: sum(dy * (x - mean)) over (0,2,3), keepdims.
        let k = kernel(
            &[&[n, c, h, w], &[n, c, h, w], &[1, c, 1, 1]],
            vec![
                (Op::Binary { f: BinaryOp::Sub }, vec![I(1), I(2)]),
                (Op::Binary { f: BinaryOp::Mul }, vec![I(0), V(0)]),
                (reduce(ReduceOp::Sum, Some(vec![0, 2, 3]), true), vec![V(1)]),
            ],
        );
        let dy = data(&[n, c, h, w], 42, false);
        check(&jit, &k, &[&dy, &x, &got], RED, true);
    }
}

fn assert_close(got: &Tensor, want: &Tensor, tol: Tol) {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (
        got.as_slice::<f32>().unwrap(),
        want.as_slice::<f32>().unwrap(),
    );
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
        let err = (a as f64 - b as f64).abs();
        assert!(
            err <= tol.0 * (b.abs() as f64) + tol.1 * scale,
            "element {i}: {a:e} vs {b:e}"
        );
    }
}

/// A large reduction split across threads gives bitwise the single-threaded result, for
/// every pattern (each output is folded in one fixed order).
#[test]
fn threaded_reductions_are_deterministic() {
    let serial = JitBackend::with_options(JitOptions {
        fma: false,
        parallel_min_elems: usize::MAX,
        ..JitOptions::default()
    });
    let parallel = JitBackend::with_options(JitOptions {
        fma: false,
        parallel_min_elems: 1,
        ..JitOptions::default()
    });
    let x = data(&[3, 37, 1031], 50, false);
    for f in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
        for axes in [
            Some(vec![2]),
            Some(vec![0]),
            Some(vec![1]),
            Some(vec![0, 2]),
            None,
        ] {
            // As a one-op fused kernel (a bare op keeping the last axis may run on the CPU).
            let op = Op::Fused {
                kernel: Box::new(kernel(
                    &[&[3, 37, 1031]],
                    vec![(reduce(f, axes.clone(), false), vec![I(0)])],
                )),
            };
            let a = serial.execute(&op, &[x.view()]).unwrap();
            let b = parallel.execute(&op, &[x.view()]).unwrap();
            assert_eq!(a, b, "{f:?} {axes:?}");
            let plain = reduce(f, axes.clone(), false);
            let want = interp::eval(&plain, &[x.view()]).unwrap();
            assert_close(&a, &want, tol(f));
        }
    }
    for axis in [0, 1, 2] {
        let op = arg(ArgReduceOp::Argmax, Some(axis), false);
        let a = serial.execute(&op, &[x.view()]).unwrap();
        let b = parallel.execute(&op, &[x.view()]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, interp::eval(&op, &[x.view()]).unwrap());
    }
    assert_eq!(serial.stats().fallback_runs, 0);
    assert_eq!(parallel.stats().fallback_runs, 0);
}

#[test]
fn a_new_batch_size_reuses_the_compiled_reduction() {
    let jit = exact();
    let mk = |n: usize| {
        kernel(
            &[&[n, 6, 5, 5]],
            vec![
                (Op::Unary { f: UnaryOp::Square }, vec![I(0)]),
                (
                    reduce(ReduceOp::Sum, Some(vec![0, 2, 3]), false),
                    vec![V(0)],
                ),
            ],
        )
    };
    check(&jit, &mk(4), &[&data(&[4, 6, 5, 5], 1, false)], RED, true);
    let compiled = jit.stats().kernels_compiled;
    check(&jit, &mk(7), &[&data(&[7, 6, 5, 5], 2, false)], RED, true);
    assert_eq!(jit.stats().kernels_compiled, compiled);
    let rec = jit.records();
    assert!(rec
        .iter()
        .any(|r| r.variant == "reduce" && r.compile_time.as_nanos() > 0));
}

/// A kernel the JIT does not lower (an argmax over several strided groups of a broadcast
/// prologue) still runs, op by op, with the interpreter's result.
#[test]
fn unlowered_flattened_argmax_falls_back() {
    let jit = exact();
    let k = kernel(
        &[&[4, 5], &[5]],
        vec![
            (Op::Binary { f: BinaryOp::Add }, vec![I(0), I(1)]),
            (arg(ArgReduceOp::Argmax, None, false), vec![V(0)]),
        ],
    );
    let before = jit.stats().fallback_runs;
    check(
        &jit,
        &k,
        &[&data(&[4, 5], 1, false), &data(&[5], 2, false)],
        EXACT,
        false,
    );
    assert_eq!(jit.stats().fallback_runs, before + 1);
}

/// Timing of compiled reductions against the CPU backend (not a test: run with
/// `cargo test --release -p kiln-backends --test jit_reduce -- --ignored --nocapture`).
/// Prints one JSON line per case: ns per input element and GB/s of input read.
#[test]
#[ignore]
fn reduction_speed_against_the_cpu_backend() {
    use kiln_backends::CpuBackend;
    use std::time::Instant;
    let jit = JitBackend::new();
    let time = |f: &mut dyn FnMut()| -> f64 {
        f();
        let mut best = f64::INFINITY;
        for _ in 0..7 {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    };
    let cases: Vec<(&str, Vec<usize>, Op)> = vec![
        (
            "bn_mean_0_2_3",
            vec![64, 64, 32, 32],
            reduce(ReduceOp::Mean, Some(vec![0, 2, 3]), true),
        ),
        (
            "bn_mean_0_2_3_small",
            vec![4, 20, 24, 24],
            reduce(ReduceOp::Mean, Some(vec![0, 2, 3]), true),
        ),
        (
            "row_sum",
            vec![4096, 1024],
            reduce(ReduceOp::Sum, Some(vec![1]), false),
        ),
        (
            "col_sum",
            vec![4096, 1024],
            reduce(ReduceOp::Sum, Some(vec![0]), false),
        ),
        (
            "middle_max",
            vec![64, 256, 256],
            reduce(ReduceOp::Max, Some(vec![1]), false),
        ),
        (
            "full_sum",
            vec![1 << 22],
            reduce(ReduceOp::Sum, None, false),
        ),
        (
            "row_argmax",
            vec![4096, 1000],
            arg(ArgReduceOp::Argmax, Some(1), false),
        ),
        (
            "col_argmax",
            vec![1000, 4096],
            arg(ArgReduceOp::Argmax, Some(0), false),
        ),
    ];
    for (name, shape, op) in cases {
        let x = data(&shape, 1, false);
        let n = x.shape().numel() as f64;
        let t_jit = time(&mut || {
            std::hint::black_box(jit.execute(&op, &[x.view()]).unwrap());
        });
        let t_cpu = time(&mut || {
            std::hint::black_box(CpuBackend.execute(&op, &[x.view()]).unwrap());
        });
        // The variance kernel of the same input: mean((x - m)^2) over the same axes.
        println!(
            "{{\"case\":\"{name}\",\"shape\":{shape:?},\"jit_ns_per_elem\":{:.3},\"jit_gb_s\":{:.2},\
             \"cpu_ns_per_elem\":{:.3},\"cpu_gb_s\":{:.2},\"speedup\":{:.2}}}",
            t_jit * 1e9 / n,
            n * 4.0 / t_jit / 1e9,
            t_cpu * 1e9 / n,
            n * 4.0 / t_cpu / 1e9,
            t_cpu / t_jit
        );
    }
    let x = data(&[1 << 22], 2, false);
    let t_copy = time(&mut || {
        std::hint::black_box(x.as_slice::<f32>().unwrap().to_vec());
    });
    println!(
        "{{\"case\":\"copy\",\"n\":{},\"gb_s\":{:.2}}}",
        1 << 22,
        (1u64 << 22) as f64 * 8.0 / t_copy / 1e9
    );
    // BN variance as one fused kernel, against the CPU backend's three ops.
    let (n, c, h, w) = (64, 64, 32, 32);
    let x = data(&[n, c, h, w], 3, false);
    let m = CpuBackend
        .execute(
            &reduce(ReduceOp::Mean, Some(vec![0, 2, 3]), true),
            &[x.view()],
        )
        .unwrap();
    let k = kernel(
        &[&[n, c, h, w], &[1, c, 1, 1]],
        vec![
            (Op::Binary { f: BinaryOp::Sub }, vec![I(0), I(1)]),
            (Op::Unary { f: UnaryOp::Square }, vec![V(0)]),
            (
                reduce(ReduceOp::Mean, Some(vec![0, 2, 3]), false),
                vec![V(1)],
            ),
        ],
    );
    let fused = Op::Fused {
        kernel: Box::new(k.clone()),
    };
    let t_jit = time(&mut || {
        std::hint::black_box(jit.execute(&fused, &[x.view(), m.view()]).unwrap());
    });
    let t_cpu = time(&mut || {
        std::hint::black_box(CpuBackend.execute(&fused, &[x.view(), m.view()]).unwrap());
    });
    let e = (n * c * h * w) as f64;
    println!(
        "{{\"case\":\"bn_var_fused\",\"jit_ns_per_elem\":{:.3},\"jit_gb_s\":{:.2},\
         \"cpu_op_by_op_ns_per_elem\":{:.3},\"speedup\":{:.2}}}",
        t_jit * 1e9 / e,
        e * 4.0 / t_jit / 1e9,
        t_cpu * 1e9 / e,
        t_cpu / t_jit
    );
    assert_eq!(jit.stats().fallback_runs, 0);
}
