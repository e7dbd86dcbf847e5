//! Accuracy of the Cranelift math emitters against f64 references: a dense sweep over f32 bit
//! patterns (every `STRIDE`-th, or all of them with `KILN_EXHAUSTIVE=1`), edge tables (±0, ±inf,
//! NaN, subnormals, overflow and underflow thresholds), and checks that the scalar tail of a
//! kernel gives the same bits as its vector body.

use kiln_backends::clif_math::{
    compile_math_kernel, compile_pow_kernel, compile_unary_kernel, MathFn, MathOptions,
    UnaryKernel, ACCURACY, TRIG_MAX,
};
use kiln_ir::UnaryOp;
use rand::{Rng, SeedableRng};

/// Every STRIDE-th f32 bit pattern in the dense sweep (a prime, so all mantissa bit patterns
/// get visited across exponents).
const STRIDE: u32 = 97 * 7;

fn exhaustive() -> bool {
    std::env::var("KILN_EXHAUSTIVE").is_ok_and(|v| v == "1")
}

/// The sweep's stride: 1 with `KILN_EXHAUSTIVE=1`, `KILN_MATH_STRIDE` if set, else [`STRIDE`].
fn stride() -> u32 {
    if exhaustive() {
        return 1;
    }
    std::env::var("KILN_MATH_STRIDE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(STRIDE)
}

/// |y - r| in units of the f32 ulp at r (r's binade; subnormal spacing below the normals).
/// NaN must match NaN; an infinite y counts as ±2^128 so that overflowing one ulp early costs
/// about one ulp.
fn ulp_err(y: f32, r: f64) -> f64 {
    if r.is_nan() || y.is_nan() {
        return if r.is_nan() && y.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if y.to_bits() == (r as f32).to_bits() {
        return 0.0;
    }
    let big = 2f64.powi(128);
    let clamp = |v: f64| if v.is_infinite() { big.copysign(v) } else { v };
    let (yv, rv) = (clamp(y as f64), clamp(r));
    if yv == rv {
        return 0.0;
    }
    // The binade of |r|: round to f32, step back one if that rounded up.
    let a = rv.abs().min(f32::MAX as f64);
    let mut af = a as f32;
    if af as f64 > a {
        af = f32::from_bits(af.to_bits() - 1);
    }
    let e = ((af.to_bits() >> 23) as i32).max(1);
    let ulp = 2f64.powi(e - 127 - 23);
    (yv - rv).abs() / ulp
}

/// The f64 reference of each function (the interpreter's formulas for sigmoid and softrelu).
fn reference(f: MathFn) -> fn(f64) -> f64 {
    match f {
        MathFn::Erf => erf64,
        MathFn::Unary(u) => match u {
            UnaryOp::Exp => f64::exp,
            UnaryOp::Expm1 => f64::exp_m1,
            UnaryOp::Log => f64::ln,
            UnaryOp::Log1p => f64::ln_1p,
            UnaryOp::Tanh => f64::tanh,
            UnaryOp::Sin => f64::sin,
            UnaryOp::Cos => f64::cos,
            UnaryOp::Sigmoid => |x| {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            },
            UnaryOp::Softrelu => |x| {
                if x.is_nan() {
                    x
                } else {
                    x.max(0.0) + (-x.abs()).exp().ln_1p()
                }
            },
            other => panic!("no reference for {other:?}"),
        },
    }
}

/// erf in f64: 2/sqrt(pi) e^{-x^2} sum 2^n x^{2n+1} / (1*3*...*(2n+1)), a series of positive
/// terms (no cancellation); 1 beyond |x| = 6.
fn erf64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a > 6.0 {
        return 1f64.copysign(x);
    }
    let (mut term, mut sum, mut n) = (a, a, 0.0);
    while term > sum * 1e-18 {
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        sum += term;
    }
    let r = 2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum;
    r.copysign(x)
}

fn bound(name: &str) -> f64 {
    ACCURACY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no accuracy entry for {name}"))
}

/// Runs `k` on `xs` (in chunks) and returns (max ulp error, worst x).
fn check_values(k: &UnaryKernel, r: fn(f64) -> f64, xs: &[f32]) -> (f64, f32) {
    let mut out = vec![0f32; xs.len()];
    k.run(xs, &mut out).unwrap();
    let mut worst = (0.0, f32::NAN);
    for (&x, &y) in xs.iter().zip(&out) {
        let e = ulp_err(y, r(x as f64));
        if e > worst.0 || e.is_nan() {
            worst = (e, x);
        }
    }
    worst
}

/// The dense sweep over every `stride`-th bit pattern whose value `keep` accepts.
fn sweep(
    k: &UnaryKernel,
    r: fn(f64) -> f64,
    stride: u32,
    keep: impl Fn(f32) -> bool,
) -> (f64, f32) {
    let mut worst = (0.0, f32::NAN);
    let mut chunk = Vec::with_capacity(1 << 20);
    let flush = |chunk: &mut Vec<f32>, worst: &mut (f64, f32)| {
        let w = check_values(k, r, chunk);
        if w.0 > worst.0 {
            *worst = w;
        }
        chunk.clear();
    };
    let mut bits: u64 = 0;
    while bits <= u32::MAX as u64 {
        let x = f32::from_bits(bits as u32);
        if keep(x) {
            chunk.push(x);
            if chunk.len() == 1 << 20 {
                flush(&mut chunk, &mut worst);
            }
        }
        bits += stride as u64;
    }
    flush(&mut chunk, &mut worst);
    worst
}

/// Values every function must get right: zeros, infinities, NaN, subnormals, the normal
/// boundary, integers, and the function's own thresholds.
fn edges(extra: &[f32]) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::MAX,
        f32::MIN,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        1e-30,
        -1e-30,
        1e-7,
        -1e-7,
        3.0e-4,
    ];
    v.extend_from_slice(extra);
    // Neighbours of every entry.
    let base = v.clone();
    for x in base {
        if x.is_finite() && x != 0.0 {
            v.push(f32::from_bits(x.to_bits() + 1));
            v.push(f32::from_bits(x.to_bits() - 1));
        }
    }
    v
}

fn edge_extra(f: MathFn) -> Vec<f32> {
    match f {
        MathFn::Unary(UnaryOp::Exp) | MathFn::Unary(UnaryOp::Expm1) => vec![
            88.72283,
            88.72284,
            88.7,
            89.0,
            -87.33654,
            -87.34,
            -103.9,
            -103.972_08,
            -103.98,
            -104.0,
            -150.0,
            0.346_573_6,
            -0.346_573_6,
            17.0,
            -17.0,
            -30.0,
            1e-8,
            -1e-8,
        ],
        MathFn::Unary(UnaryOp::Log) | MathFn::Unary(UnaryOp::Log1p) => vec![
            -1.0,
            -0.999_999_9,
            -0.5,
            0.414_213_56,
            -0.292_893_2,
            0.707_106_77,
            std::f32::consts::SQRT_2,
            1e30,
            1e-8,
            3.0,
        ],
        MathFn::Unary(UnaryOp::Tanh) => vec![0.625, -0.625, 9.0, -9.0, 9.1, 10.0, 20.0, 0.3, 1e-4],
        MathFn::Unary(UnaryOp::Sigmoid) | MathFn::Unary(UnaryOp::Softrelu) => vec![
            -87.0, -88.0, -100.0, -103.0, -104.0, -110.0, 17.0, 20.0, 88.0, 89.0, 100.0, -20.0,
        ],
        MathFn::Unary(UnaryOp::Sin) | MathFn::Unary(UnaryOp::Cos) => vec![
            std::f32::consts::FRAC_PI_4,
            std::f32::consts::FRAC_PI_2,
            std::f32::consts::PI,
            -std::f32::consts::PI,
            1e5,
            -1e5,
            12_345.679,
            1.0e7,
            8_388_608.0,
            1.0e10,
            1.0e14,
            2.0e14,
        ],
        MathFn::Erf => vec![2.0, -2.0, 1.999_999_9, 3.9, 3.92, 3.93, 4.0, -4.0, 5.0, 0.8],
        _ => vec![],
    }
}

/// Edges: ulp error within the bound, the sign of zero results right, and the scalar tail equal
/// to the vector body bit for bit.
fn check_edges(k: &UnaryKernel, f: MathFn, r: fn(f64) -> f64, b: f64) {
    let mut xs = edges(&edge_extra(f));
    if matches!(f, MathFn::Unary(UnaryOp::Sin | UnaryOp::Cos)) {
        // Beyond the reduction's range sin and cos are NaN (checked separately).
        xs.retain(|x| x.abs() < TRIG_MAX);
    }
    for &x in &xs {
        // Five copies: lanes 0..4 take the vector body, lane 4 the scalar tail.
        let inp = [x; 5];
        let mut out = [0f32; 5];
        k.run(&inp, &mut out).unwrap();
        let (y, ys) = (out[0], out[4]);
        assert!(
            y.to_bits() == ys.to_bits() || (y.is_nan() && ys.is_nan()),
            "{}({x:e}): vector {y:e} but scalar tail {ys:e}",
            f.name()
        );
        let rv = r(x as f64);
        let e = ulp_err(y, rv);
        assert!(
            e <= b,
            "{}({x:e}) = {y:e}, reference {rv:e}: {e:.2} ulp > {b}",
            f.name()
        );
        if rv == 0.0 {
            assert_eq!(
                y.is_sign_negative(),
                rv.is_sign_negative(),
                "{}({x:e}) = {y:e}: wrong sign of zero (reference {rv:e})",
                f.name()
            );
        }
    }
}

fn check_fn(f: MathFn, keep: impl Fn(f32) -> bool) {
    let k = compile_math_kernel(f, MathOptions::host()).unwrap();
    let r = reference(f);
    let b = bound(f.name());
    check_edges(&k, f, r, b);
    let stride = stride();
    let (e, x) = sweep(&k, r, stride, keep);
    println!(
        "{}: max {e:.3} ulp at x = {x:e} (stride {stride})",
        f.name()
    );
    assert!(e <= b, "{}: {e:.3} ulp at x = {x:e} > {b}", f.name());
}

fn all(_: f32) -> bool {
    true
}

#[test]
fn exp_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Exp), all);
}

#[test]
fn expm1_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Expm1), all);
}

#[test]
fn log_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Log), all);
}

#[test]
fn log1p_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Log1p), all);
}

#[test]
fn tanh_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Tanh), all);
}

#[test]
fn sigmoid_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Sigmoid), all);
}

#[test]
fn softrelu_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Softrelu), all);
}

#[test]
fn sin_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Sin), |x| x.abs() < TRIG_MAX);
}

#[test]
fn cos_accuracy() {
    check_fn(MathFn::Unary(UnaryOp::Cos), |x| x.abs() < TRIG_MAX);
}

#[test]
fn erf_accuracy() {
    check_fn(MathFn::Erf, all);
}

#[test]
fn sin_cos_beyond_range_are_nan() {
    for f in [UnaryOp::Sin, UnaryOp::Cos] {
        let k = compile_unary_kernel(f).unwrap();
        let xs = [
            TRIG_MAX,
            -TRIG_MAX,
            1e20,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut out = [0f32; 6];
        k.run(&xs, &mut out).unwrap();
        assert!(out.iter().all(|y| y.is_nan()), "{f:?}: {out:?}");
    }
}

fn pow_ref(x: f32, y: f32) -> f64 {
    (x as f64).powf(y as f64)
}

#[test]
fn pow_accuracy_and_special_cases() {
    let k = compile_pow_kernel(MathOptions::host()).unwrap();
    let b = bound("pow");
    let mut rng = rand_pcg::Pcg64::seed_from_u64(6);
    let n = if exhaustive() { 1 << 26 } else { 1 << 20 };
    let mut xs = Vec::with_capacity(n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        // Any positive x with a y that keeps x^y mostly in range; negative x with integer y.
        let x = f32::from_bits(rng.random_range(0..0x7f80_0000u32));
        let l = (x as f64).log2().abs().max(1e-3);
        let mut y = (rng.random_range(-160.0..160.0) / l) as f32;
        let x = if i % 4 == 0 {
            y = y.round();
            -x
        } else {
            x
        };
        xs.push(x);
        ys.push(y);
    }
    let mut out = vec![0f32; n];
    k.run(&xs, &ys, &mut out).unwrap();
    let mut worst = (0.0, 0.0f32, 0.0f32);
    for i in 0..n {
        let e = ulp_err(out[i], pow_ref(xs[i], ys[i]));
        if e > worst.0 {
            worst = (e, xs[i], ys[i]);
        }
    }
    println!(
        "pow: max {:.3} ulp at ({:e}, {:e})",
        worst.0, worst.1, worst.2
    );
    assert!(
        worst.0 <= b,
        "pow: {:.3} ulp at ({:e}, {:e})",
        worst.0,
        worst.1,
        worst.2
    );

    // C99 / numpy special cases: (x, y, expected).
    let inf = f32::INFINITY;
    let nan = f32::NAN;
    let cases: &[(f32, f32, f32)] = &[
        (nan, 0.0, 1.0),
        (nan, -0.0, 1.0),
        (1.0, nan, 1.0),
        (1.0, inf, 1.0),
        (-1.0, inf, 1.0),
        (-1.0, -inf, 1.0),
        (-1.0, nan, nan),
        (nan, 1.0, nan),
        (2.0, nan, nan),
        (-2.0, 0.5, nan),
        (-8.0, 1.0 / 3.0, nan),
        (-2.0, 3.0, -8.0),
        (-2.0, 2.0, 4.0),
        (-2.0, -3.0, -0.125),
        (0.0, 3.0, 0.0),
        (-0.0, 3.0, -0.0),
        (-0.0, 2.0, 0.0),
        (-0.0, 0.5, 0.0),
        (0.0, -3.0, inf),
        (-0.0, -3.0, -inf),
        (-0.0, -2.0, inf),
        (-0.0, -0.5, inf),
        (0.0, -inf, inf),
        (0.0, inf, 0.0),
        (0.5, inf, 0.0),
        (0.5, -inf, inf),
        (2.0, inf, inf),
        (2.0, -inf, 0.0),
        (-0.5, inf, 0.0),
        (-2.0, -inf, 0.0),
        (inf, 2.0, inf),
        (inf, -2.0, 0.0),
        (-inf, 3.0, -inf),
        (-inf, 2.0, inf),
        (-inf, -3.0, -0.0),
        (-inf, -2.0, 0.0),
        (-inf, 0.5, inf),
        (2.0, 128.0, inf),
        (2.0, -149.0, f32::from_bits(1)),
        (2.0, -150.0, 0.0),
        (2.0, -126.5, 2f32.powf(-126.5)),
        (10.0, 39.0, inf),
        (10.0, 38.5, 10f64.powf(38.5) as f32),
        (3.0, 2.0, 9.0),
        (2.0, 0.5, std::f32::consts::SQRT_2),
        (f32::from_bits(1), 0.5, 2f64.powf(-74.5) as f32),
    ];
    let (cx, cy): (Vec<f32>, Vec<f32>) = cases.iter().map(|c| (c.0, c.1)).unzip();
    let mut out = vec![0f32; cases.len()];
    k.run(&cx, &cy, &mut out).unwrap();
    for (i, &(x, y, want)) in cases.iter().enumerate() {
        let got = out[i];
        if want.is_nan() {
            assert!(got.is_nan(), "pow({x:e}, {y:e}) = {got:e}, want NaN");
        } else {
            assert!(
                got.to_bits() == want.to_bits() || ulp_err(got, pow_ref(x, y)) <= b,
                "pow({x:e}, {y:e}) = {got:e}, want {want:e}"
            );
            assert_eq!(
                got.is_sign_negative(),
                want.is_sign_negative(),
                "pow({x:e}, {y:e}) = {got:e}, want {want:e}"
            );
            if want.is_infinite() || want == 0.0 {
                assert_eq!(got, want, "pow({x:e}, {y:e})");
            }
        }
    }
}

/// The ops this module provides besides the polynomial ones follow the interpreter's
/// definitions exactly (rsqrt within 1 ulp: two roundings instead of one).
#[test]
fn cheap_ops_match_the_interpreter() {
    let xs = edges(&[
        0.3,
        -0.3,
        2.5,
        -2.5,
        1.5,
        -1.5,
        0.499_999_97,
        -0.499_999_97,
        8_388_607.5,
        1e10,
        7.0,
        -7.0,
    ]);
    type Case = (UnaryOp, fn(f64) -> f64);
    let cases: &[Case] = &[
        (UnaryOp::Neg, |x| -x),
        (UnaryOp::Abs, f64::abs),
        (UnaryOp::Sqrt, f64::sqrt),
        (UnaryOp::Square, |x| x * x),
        (UnaryOp::Reciprocal, |x| 1.0 / x),
        (UnaryOp::Floor, f64::floor),
        (UnaryOp::Ceil, f64::ceil),
        (UnaryOp::Round, f64::round),
        (
            UnaryOp::Relu,
            |x| if x > 0.0 || x.is_nan() { x } else { 0.0 },
        ),
        (UnaryOp::Sign, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else if x == 0.0 {
                0.0
            } else {
                x
            }
        }),
        (UnaryOp::LogicalNot, |x| if x == 0.0 { 1.0 } else { 0.0 }),
        (UnaryOp::Rsqrt, |x| 1.0 / x.sqrt()),
    ];
    for &(f, r) in cases {
        let k = compile_unary_kernel(f).unwrap();
        let mut out = vec![0f32; xs.len()];
        k.run(&xs, &mut out).unwrap();
        for (&x, &y) in xs.iter().zip(&out) {
            let want = r(x as f64) as f32;
            let ok = if f == UnaryOp::Rsqrt {
                ulp_err(y, r(x as f64)) <= 1.0
            } else {
                y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan())
            };
            assert!(ok, "{f:?}({x:e}) = {y:e}, want {want:e}");
        }
    }
}

/// Without FMA (mul + add, two roundings) the functions stay within one more ulp.
#[test]
fn without_fma_stays_close() {
    let opts = MathOptions { fma: false };
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    for f in [
        UnaryOp::Exp,
        UnaryOp::Expm1,
        UnaryOp::Log,
        UnaryOp::Log1p,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Softrelu,
        UnaryOp::Sin,
        UnaryOp::Cos,
    ] {
        let mf = MathFn::Unary(f);
        let k = compile_math_kernel(mf, opts).unwrap();
        let xs: Vec<f32> = (0..1 << 16)
            .map(|_| rng.random_range(-100.0f32..100.0))
            .collect();
        let (e, x) = check_values(&k, reference(mf), &xs);
        let b = bound(mf.name()) + 1.0;
        assert!(e <= b, "{f:?} without fma: {e:.3} ulp at {x:e} > {b}");
    }
}

#[test]
fn mismatched_lengths_are_errors() {
    let k = compile_unary_kernel(UnaryOp::Exp).unwrap();
    let mut out = [0f32; 3];
    let e = k.run(&[1.0, 2.0], &mut out).unwrap_err();
    assert!(e.to_string().contains("exp"), "{e}");
    let p = compile_pow_kernel(MathOptions::host()).unwrap();
    assert!(p.run(&[1.0], &[1.0, 2.0], &mut [0.0]).is_err());
    // Empty and tail-only inputs run.
    k.run(&[], &mut []).unwrap();
    let mut o = [0f32; 3];
    k.run(&[0.0, 1.0, -1.0], &mut o).unwrap();
    assert_eq!(o[0], 1.0);
    assert!((o[1] - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
}

/// The kernels are straight-line vector code: no calls (per element or otherwise), and on x64
/// the clamps became single `minps`/`maxps` instructions instead of IEEE min/max sequences.
#[test]
fn kernels_make_no_calls_and_clamp_with_minps() {
    let mut fns: Vec<MathFn> = [
        UnaryOp::Exp,
        UnaryOp::Expm1,
        UnaryOp::Log,
        UnaryOp::Log1p,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Softrelu,
        UnaryOp::Sin,
        UnaryOp::Cos,
    ]
    .into_iter()
    .map(MathFn::Unary)
    .collect();
    fns.push(MathFn::Erf);
    for f in fns {
        let k = compile_math_kernel(f, MathOptions::host()).unwrap();
        assert!(!k.clif().is_empty());
        let asm = k.disasm();
        assert!(!asm.is_empty(), "{}: no disassembly", f.name());
        if MathOptions::host().fma {
            let calls = asm.lines().any(|l| l.trim_start().starts_with("call"));
            assert!(!calls, "{}: the kernel calls out:\n{asm}", f.name());
        }
        if cfg!(target_arch = "x86_64") && f == MathFn::Unary(UnaryOp::Exp) {
            assert!(
                asm.contains("minps") && asm.contains("maxps"),
                "exp:\n{asm}"
            );
        }
    }
}
