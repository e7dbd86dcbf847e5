//! Shared helpers: random tensors and comparisons of the CPU backend against the interpreter.

#![allow(dead_code)]

use kiln_backends::{CpuBackend, Kernels};
use kiln_ir::{interp::eval, DType, Op, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// Uniform values in [-1, 1) of `dtype` (f32 or f64), deterministic in `seed`.
pub fn random(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let mut rng = Pcg64::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape).unwrap().cast(dtype)
}

/// The relative tolerance for results that differ from the interpreter only by summation
/// order.
pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        _ => 1e-12,
    }
}

/// Runs `op` on the CPU backend and on the interpreter; asserts that the fast path was taken
/// (not the fallback) and that the results agree within `rel` (relative to the largest
/// magnitude of the expected values, so sums with cancellation are judged fairly).
pub fn check_fast(op: &Op, inputs: &[&Tensor], rel: f64) -> Tensor {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let want = eval(op, &views).unwrap_or_else(|e| panic!("interpreter failed on {op:?}: {e}"));
    let fast = CpuBackend::try_fast(op, &views)
        .unwrap_or_else(|| panic!("no fast path for {op:?} on {:?}", shapes(inputs)));
    let got = CpuBackend.execute(op, &views).unwrap();
    assert_eq!(fast, got, "execute differs from try_fast for {op:?}");
    assert_close(&got, &want, rel, op, inputs);
    got
}

/// Like [`check_fast`] but demands bitwise equality (NaN equal to NaN).
pub fn check_exact(op: &Op, inputs: &[&Tensor]) {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let want = eval(op, &views).unwrap_or_else(|e| panic!("interpreter failed on {op:?}: {e}"));
    let got = CpuBackend::try_fast(op, &views)
        .unwrap_or_else(|| panic!("no fast path for {op:?} on {:?}", shapes(inputs)));
    assert_eq!(got.shape(), want.shape(), "{op:?}");
    assert_eq!(got.dtype(), want.dtype(), "{op:?}");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        assert!(
            same,
            "{op:?} on {:?}: element {i} is {a:e}, interpreter says {b:e}",
            shapes(inputs)
        );
    }
}

/// Asserts that the CPU backend gives exactly the interpreter's result (or error message),
/// whether or not a fast path exists.
pub fn check_same_as_interp(op: &Op, inputs: &[&Tensor]) {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    match (eval(op, &views), CpuBackend.execute(op, &views)) {
        (Ok(w), Ok(g)) => assert!(identical(&g, &w), "{op:?}: got {g:?}, want {w:?}"),
        (Err(w), Err(g)) => assert_eq!(g.to_string(), w.to_string(), "{op:?}"),
        (w, g) => panic!("{op:?}: interpreter gave {w:?}, backend gave {g:?}"),
    }
}

/// Equal shapes, dtypes and bits (NaN equal to NaN of any payload).
pub fn identical(a: &Tensor, b: &Tensor) -> bool {
    a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn shapes(inputs: &[&Tensor]) -> Vec<String> {
    inputs
        .iter()
        .map(|t| format!("{} {}", t.dtype(), t.shape()))
        .collect()
}

fn assert_close(got: &Tensor, want: &Tensor, rel: f64, op: &Op, inputs: &[&Tensor]) {
    assert_eq!(got.shape(), want.shape(), "{op:?}");
    assert_eq!(got.dtype(), want.dtype(), "{op:?}");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a - b).abs() <= rel * scale || (a.is_nan() && b.is_nan());
        assert!(
            ok,
            "{op:?} on {:?}: element {i} is {a}, interpreter says {b} (scale {scale})",
            shapes(inputs)
        );
    }
}
