//! Helpers shared by the JIT test files: kernels built from op lists, data with special
//! values, and the comparison against the interpreter with a stated tolerance.
#![allow(dead_code)]

use kiln_backends::jit::{JitBackend, JitOptions};
use kiln_backends::Kernels;
use kiln_ir::{
    infer::infer, interp, DType, FusedArg, FusedInst, FusedKernel, Op, Tensor, TensorType,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

pub use FusedArg::{Input as I, Value as V};

pub fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(shape.to_vec(), DType::F32)
}

/// A kernel over inputs of `shapes` (f32) with body `insts` (types inferred); returns the
/// last instruction.
pub fn kernel(shapes: &[&[usize]], insts: Vec<(Op, Vec<FusedArg>)>) -> FusedKernel {
    let inputs: Vec<TensorType> = shapes.iter().map(|s| f32t(s)).collect();
    let mut body: Vec<FusedInst> = Vec::new();
    for (op, args) in insts {
        let tys: Vec<TensorType> = args
            .iter()
            .map(|a| match *a {
                I(i) => inputs[i].clone(),
                V(j) => body[j].ty.clone(),
            })
            .collect();
        let ty = infer(&op, &tys).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        body.push(FusedInst { op, args, ty });
    }
    let out = body.len() - 1;
    FusedKernel::new(inputs, body, out).unwrap()
}

/// Values with the special cases mixed in: NaN, ±inf, ±0, halves.
pub fn data(shape: &[usize], seed: u64, specials: bool) -> Tensor {
    let mut rng = Pcg64::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let sp = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        2.5,
        -2.5,
        0.5,
        -0.5,
        1.0,
    ];
    let v: Vec<f32> = (0..n)
        .map(|i| {
            if specials && i % 7 == 3 {
                sp[(i / 7) % sp.len()]
            } else {
                rng.random_range(-3.0f32..3.0)
            }
        })
        .collect();
    Tensor::from_vec(v, shape.to_vec()).unwrap()
}

pub fn exact() -> JitBackend {
    JitBackend::with_options(JitOptions {
        fma: false,
        ..JitOptions::default()
    })
}

pub fn reference(k: &FusedKernel, inputs: &[&Tensor]) -> Tensor {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    k.eval(&views, &mut |op, ins| interp::eval(op, ins))
        .unwrap()
}

/// Tolerances: `Tol(0, 0)` is bitwise equality; otherwise `|got - want| <= rel·|want| +
/// abs·scale`, where `scale` is the largest finite |want| of the kernel's output.
#[derive(Clone, Copy)]
pub struct Tol(pub f64, pub f64);

pub const EXACT: Tol = Tol(0.0, 0.0);
/// Transcendentals (clif_math's ≤ 2 ulp, plus the interpreter's own rounding).
pub const TRANS: Tol = Tol(4e-6, 0.0);
/// FMA contraction: one rounding less, so cancellation shows against the output's scale.
pub const FMA: Tol = Tol(1e-6, 1e-6);
/// Reductions and softmax: f32 accumulators in another order than the f64 reference.
pub const RED: Tol = Tol(1e-5, 1e-5);

/// Runs `k` on `jit` and the interpreter; asserts native execution (when `native`) and
/// agreement within `tol`.
pub fn check(
    jit: &JitBackend,
    k: &FusedKernel,
    inputs: &[&Tensor],
    tol: Tol,
    native: bool,
) -> Tensor {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let want = reference(k, inputs);
    if native {
        assert!(
            jit.compiles(k, &views),
            "does not compile:\n{}",
            k.body_text()
        );
    }
    let got = jit
        .execute(
            &Op::Fused {
                kernel: Box::new(k.clone()),
            },
            &views,
        )
        .unwrap();
    assert_eq!(got.shape(), want.shape(), "{}", k.body_text());
    let (g, w) = (
        got.as_slice::<f32>().unwrap(),
        want.as_slice::<f32>().unwrap(),
    );
    let scale = w
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |m, v| m.max(v.abs())) as f64;
    for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
        let ok = if tol.0 == 0.0 && tol.1 == 0.0 {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        } else if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else {
            ((a - b).abs() as f64) <= tol.0 * (b.abs() as f64) + tol.1 * scale
        };
        assert!(
            ok,
            "element {i}: jit {a:e} vs interp {b:e} (tolerance {}, {})\n{}",
            tol.0,
            tol.1,
            k.body_text()
        );
    }
    got
}
