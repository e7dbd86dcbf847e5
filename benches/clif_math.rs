//! ns per element of the Cranelift math emitters (`kiln::backends::clif_math`), each JIT-compiled
//! into an `out[i] = f(x[i])` loop (f32x4 body, scalar tail), next to a plain Rust loop over
//! the f32 std/libm function. One JSON object per line:
//!
//! `{"bench":"clif_math","fn":"exp","n":65536,"jit_ns":..,"rust_ns":..,"speedup":..}`
//!
//! `cargo bench --bench clif_math [-- NAME...]`. The arrays (64K floats) stay in L2, so the
//! numbers are compute cost, not memory bandwidth. Best of several rounds; compare ratios.

use kiln::backends::clif_math::{
    compile_math_kernel, compile_pow_kernel, MathFn, MathOptions, UnaryKernel,
};
use kiln::ir::UnaryOp;
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

const N: usize = 1 << 16;

/// Best ns per element of `f` over a few rounds.
fn best_ns(mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    f();
    for _ in 0..7 {
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best * 1e9 / N as f64
}

/// N values spread over [lo, hi] (a fixed pseudo-random permutation of a ramp).
fn inputs(lo: f32, hi: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..N)
        .map(|i| lo + (hi - lo) * ((i * 40_503) % N) as f32 / N as f32)
        .collect();
    v.reverse();
    v
}

fn report(name: &str, jit_ns: f64, rust_ns: Option<f64>) {
    println!(
        "{}",
        json!({
            "bench": "clif_math",
            "fn": name,
            "n": N,
            "fma": MathOptions::host().fma,
            "jit_ns": (jit_ns * 1000.0).round() / 1000.0,
            "rust_ns": rust_ns.map(|r| (r * 1000.0).round() / 1000.0),
            "speedup": rust_ns.map(|r| (r / jit_ns * 100.0).round() / 100.0),
        })
    );
}

fn bench_unary(k: &UnaryKernel, lo: f32, hi: f32, rust: Option<fn(f32) -> f32>) {
    let x = inputs(lo, hi);
    let mut out = vec![0f32; N];
    let jit = best_ns(|| {
        k.run(black_box(&x), &mut out).expect("equal lengths");
        black_box(&out);
    });
    let rust_ns = rust.map(|f| {
        best_ns(|| {
            for (o, &v) in out.iter_mut().zip(black_box(&x)) {
                *o = f(v);
            }
            black_box(&out);
        })
    });
    report(k.name(), jit, rust_ns);
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let opts = MathOptions::host();
    type Case = (MathFn, f32, f32, Option<fn(f32) -> f32>);
    let cases: [Case; 10] = [
        (MathFn::Unary(UnaryOp::Exp), -80.0, 80.0, Some(f32::exp)),
        (
            MathFn::Unary(UnaryOp::Expm1),
            -10.0,
            10.0,
            Some(f32::exp_m1),
        ),
        (MathFn::Unary(UnaryOp::Log), 1e-3, 1e3, Some(f32::ln)),
        (MathFn::Unary(UnaryOp::Log1p), -0.9, 100.0, Some(f32::ln_1p)),
        (MathFn::Unary(UnaryOp::Tanh), -5.0, 5.0, Some(f32::tanh)),
        (
            MathFn::Unary(UnaryOp::Sigmoid),
            -20.0,
            20.0,
            Some(|x: f32| 1.0 / (1.0 + (-x).exp())),
        ),
        (
            MathFn::Unary(UnaryOp::Softrelu),
            -20.0,
            20.0,
            Some(|x: f32| x.max(0.0) + (-x.abs()).exp().ln_1p()),
        ),
        (MathFn::Unary(UnaryOp::Sin), -100.0, 100.0, Some(f32::sin)),
        (MathFn::Unary(UnaryOp::Cos), -100.0, 100.0, Some(f32::cos)),
        // std has no erf.
        (MathFn::Erf, -3.0, 3.0, None),
    ];
    for (f, lo, hi, rust) in cases {
        if !wanted(f.name()) {
            continue;
        }
        match compile_math_kernel(f, opts) {
            Ok(k) => bench_unary(&k, lo, hi, rust),
            Err(e) => eprintln!("{}: {e}", f.name()),
        }
    }
    if wanted("pow") {
        match compile_pow_kernel(opts) {
            Ok(k) => {
                let x = inputs(1e-3, 10.0);
                let y = inputs(-5.0, 5.0);
                let mut out = vec![0f32; N];
                let jit = best_ns(|| {
                    k.run(black_box(&x), &y, &mut out).expect("equal lengths");
                    black_box(&out);
                });
                let rust = best_ns(|| {
                    for ((o, &a), &b) in out.iter_mut().zip(black_box(&x)).zip(&y) {
                        *o = a.powf(b);
                    }
                    black_box(&out);
                });
                report("pow", jit, Some(rust));
            }
            Err(e) => eprintln!("pow: {e}"),
        }
    }
}
