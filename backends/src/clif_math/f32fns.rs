//! The f32x4 functions: exp, expm1, log, log1p, tanh, sigmoid, softrelu.
//!
//! Each takes and returns an `F32X4` value. The argument reductions follow the classic
//! fdlibm/Cephes designs (Cody–Waite split of ln 2, `[sqrt(2)/2, sqrt(2))` mantissa reduction
//! for log), written branch-free with lane selects for the special cases.

use super::ops::M;
use cranelift_codegen::ir::{condcodes::FloatCC, condcodes::IntCC, types, InstBuilder, Value};

const LOG2E: f64 = std::f64::consts::LOG2_E;
/// 1.5 * 2^23: adding it rounds an f32 in (-2^22, 2^22) to an integer kept in the low mantissa bits.
const MAGIC: f64 = 12_582_912.0;
/// ln 2 split so that `k * LN2_HI` is exact for |k| < 2^15 (Cephes).
const LN2_HI: f64 = 0.693_359_375;
const LN2_LO: f64 = -2.121_944_400_546_905_8e-4;
/// Cephes `expf` coefficients: exp(r) = 1 + r + r^2 P(r) on [-ln2/2, ln2/2].
const EXP_P: [f64; 6] = [
    1.987_569_150_0e-4,
    1.398_199_950_7e-3,
    8.333_451_907_3e-3,
    4.166_579_589_4e-2,
    1.666_666_545_9e-1,
    5.000_000_120_1e-1,
];
/// fdlibm `logf` coefficients for log(1+f) = f - f^2/2 + s(f^2/2 + R(s^2)), s = f/(2+f).
const LG1: f64 = 0.6666666269302368; // 0xaaaaaa.0p-24
const LG2: f64 = 0.40000972151756287; // 0xccce13.0p-25
const LG3: f64 = 0.2849878668785095; // 0x91e9ee.0p-25
const LG4: f64 = 0.24279078841209412; // 0xf89e26.0p-26
/// ln 2 split for log: `k * LOG_LN2_HI` is exact for the k of any f32.
const LOG_LN2_HI: f64 = 6.931_381_225_6e-01; // 0x3f317180
const LOG_LN2_LO: f64 = 9.058_000_614_5e-06; // 0x3717f7d1
/// Cephes `tanhf` odd polynomial for |x| < 0.625: tanh x = x + x z P(z), z = x^2.
const TANH_P: [f64; 5] = [
    -5.704_988_727_45e-3,
    2.063_908_879_54e-2,
    -5.373_971_555_31e-2,
    1.333_144_220_36e-1,
    -3.333_328_194_22e-1,
];

/// Cody–Waite reduction `x = k ln2 + r`: returns `(t, r)` where the integer k sits in the low
/// bits of `t` (see [`MAGIC`]).
fn reduce_ln2(m: &mut M, x: Value) -> (Value, Value) {
    let ty = m.ty(x);
    let log2e = m.cf(ty, LOG2E);
    let magic = m.cf(ty, MAGIC);
    let t = m.mla(x, log2e, magic);
    let kf = m.sub(t, magic);
    let r = m.mlac(kf, -LN2_HI, x);
    let r = m.mlac(kf, -LN2_LO, r);
    (t, r)
}

/// The integer k of [`reduce_ln2`] as an `I32X4`.
fn k_of(m: &mut M, t: Value) -> Value {
    let ti = m.bits(t);
    m.iaddc(ti, -((MAGIC as f32).to_bits() as i64))
}

/// 2^k as an f32 for a k in the normal exponent range (-126..=127).
fn pow2i(m: &mut M, k: Value) -> Value {
    let e = m.iaddc(k, 127);
    let e = m.shl(e, 23);
    m.float(e)
}

/// expm1(r) = r + r^2 P(r) for |r| <= ln2/2 (Cephes polynomial).
fn expm1_core(m: &mut M, r: Value) -> Value {
    let p = m.horner(r, &EXP_P);
    let r2 = m.mul(r, r);
    m.mla(r2, p, r)
}

/// exp(x) for `F32X4`. Exact results at the edges: inf above ~88.72, subnormals down to
/// ~-103.97, +0 below, NaN for NaN.
pub(crate) fn exp(m: &mut M, x: Value) -> Value {
    exp_parts(m, x, false).0
}

/// exp(x), and with `want_err` also the rounding error of the result's mantissa scaled like
/// the result (`e + err` is exp(x) to about 2^-26 relative; err is 0 where unused).
fn exp_parts(m: &mut M, x: Value, want_err: bool) -> (Value, Value) {
    // Clamp so that k = round(x / ln2) lies in [-150, 128]; NaN passes through the clamps.
    let x = m.min_c(x, 89.0);
    let x = m.max_c(x, -104.0);
    let (t, r) = reduce_ln2(m, x);
    let q = expm1_core(m, r);
    let y = m.addc(q, 1.0);
    // 2^k as 2^k1 * 2^k2 with both halves normal: y * 2^k1 is exact, the second product rounds
    // once, to a subnormal or to inf where the result is one.
    let k = k_of(m, t);
    let k1 = m.sshr(k, 1);
    let k2 = m.isub(k, k1);
    let s1 = pow2i(m, k1);
    let s2 = pow2i(m, k2);
    let e = m.mul(y, s1);
    let e = m.mul(e, s2);
    if !want_err {
        return (e, e);
    }
    // y = 1 + q rounded; (1 - y) + q is its error exactly (|q| < 1).
    let omy = m.rsubc(1.0, y);
    let yl = m.add(omy, q);
    let el = m.mul(yl, s1);
    let el = m.mul(el, s2);
    (e, el)
}

/// expm1(x) = exp(x) - 1 for `F32X4`, accurate near 0 (no cancellation).
pub(crate) fn expm1(m: &mut M, x0: Value) -> Value {
    // Below -30 the result is -1 in f32; above 89 it is inf.
    let x = m.min_c(x0, 89.0);
    let x = m.max_c(x, -30.0);
    let (t, r) = reduce_ln2(m, x);
    let q = expm1_core(m, r);
    // expm1(x) = 2^k q + (2^k - 1) = 2 (h q + (h - 1/2)) with h = 2^(k-1), which stays a
    // normal float for k in [-44, 128]; doubling is exact and overflows exactly when it must.
    let k = k_of(m, t);
    let km1 = m.iaddc(k, -1);
    let h = pow2i(m, km1);
    let hm = m.addc(h, -0.5);
    let y = m.mla(h, q, hm);
    let y = m.add(y, y);
    // Tiny |x| (including ±0 and subnormals): expm1(x) rounds to x.
    let ax = m.fabs(x0);
    let tiny = m.fcmpc(FloatCC::LessThan, ax, 2f64.powi(-25));
    m.sel(tiny, x0, y)
}

/// log(1+f) - the shared tail of log and log1p:
/// `s (hfsq + R) + (k ln2_lo + c) - hfsq + f + k ln2_hi`.
fn log_tail(m: &mut M, f: Value, kf: Value, c: Option<Value>) -> Value {
    let two = m.cf(types::F32X4, 2.0);
    let d = m.add(two, f);
    let s = m.div(f, d);
    let z = m.mul(s, s);
    let w = m.mul(z, z);
    let t1 = m.mlacc(w, LG4, LG2);
    let t1 = m.mul(w, t1);
    let t2 = m.mlacc(w, LG3, LG1);
    let t2 = m.mul(z, t2);
    let rr = m.add(t2, t1);
    let half = m.cf(types::F32X4, 0.5);
    let hf = m.mul(half, f);
    let hfsq = m.mul(hf, f);
    let lo = m.mulc(kf, LOG_LN2_LO);
    let lo = match c {
        Some(c) => m.add(lo, c),
        None => lo,
    };
    let a = m.add(hfsq, rr);
    let a = m.mla(s, a, lo);
    let a = m.sub(a, hfsq);
    let a = m.add(a, f);
    m.mlac(kf, LOG_LN2_HI, a)
}

/// Splits the bits `ix` of a positive float into k and f with 1+f in [sqrt(2)/2, sqrt(2)):
/// returns `(k as I32X4, f)`.
fn log_reduce(m: &mut M, ix: Value) -> (Value, Value) {
    let ix = m.iaddc(ix, 0x3f80_0000 - 0x3f35_04f3);
    let k = m.sshr(ix, 23);
    let k = m.iaddc(k, -0x7f);
    let mant = m.bandc(ix, 0x007f_ffff);
    let mant = m.iaddc(mant, 0x3f35_04f3);
    let xm = m.float(mant);
    let f = m.addc(xm, -1.0);
    (k, f)
}

/// log(x) for `F32X4`: -inf at ±0, NaN below 0 and for NaN, inf at inf; subnormals exact.
pub(crate) fn log(m: &mut M, x: Value) -> Value {
    // Subnormals (and 0, negatives: fixed below) are scaled by 2^25 first.
    let sub = m.fcmpc(FloatCC::LessThan, x, f32::MIN_POSITIVE as f64);
    let xs = m.mulc(x, 33_554_432.0);
    let xs = m.sel(sub, xs, x);
    let zero = m.ci(types::I32X4, 0);
    let m25 = m.ci(types::I32X4, -25);
    let kadj = m.sel(sub, m25, zero);
    let ix = m.bits(xs);
    let (k, f) = log_reduce(m, ix);
    let k = m.iadd(k, kadj);
    let kf = m.b.ins().fcvt_from_sint(types::F32X4, k);
    let y = log_tail(m, f, kf, None);
    special_log(m, x, 0.0, y)
}

/// The special cases of log and log1p, whose pole is at `pole` (0 or -1).
fn special_log(m: &mut M, x: Value, pole: f64, y: Value) -> Value {
    let at_pole = m.fcmpc(FloatCC::Equal, x, pole);
    let y = m.selc(at_pole, f64::NEG_INFINITY, y);
    let at_inf = m.fcmpc(FloatCC::Equal, x, f64::INFINITY);
    let y = m.selc(at_inf, f64::INFINITY, y);
    let below = m.fcmpc(FloatCC::UnorderedOrLessThan, x, pole);
    m.selc(below, f64::NAN, y)
}

/// log1p(x) = log(1 + x) for `F32X4`, accurate near 0.
pub(crate) fn log1p(m: &mut M, x: Value) -> Value {
    let u = m.addc(x, 1.0);
    let iu = m.bits(u);
    let (k, fr) = log_reduce(m, iu);
    // The rounding error of 1 + x, divided by u: c = (k >= 2 ? 1 - (u - x) : x - (u - 1)) / u.
    let ux = m.sub(u, x);
    let c_big = m.rsubc(1.0, ux);
    let u1 = m.addc(u, -1.0);
    let c_small = m.sub(x, u1);
    let ge2 = m.icmpc(IntCC::SignedGreaterThanOrEqual, k, 2);
    let c = m.sel(ge2, c_big, c_small);
    let c = m.div(c, u);
    // Where 1 + x needs no reduction (k == 0) f is x itself and there is no correction; for
    // k >= 25 the correction is below the result's precision.
    let k0 = m.icmpc(IntCC::Equal, k, 0);
    let k25 = m.icmpc(IntCC::SignedGreaterThanOrEqual, k, 25);
    let no_c = m.bor(k0, k25);
    let c = m.selc(no_c, 0.0, c);
    let f = m.sel(k0, x, fr);
    let kf = m.b.ins().fcvt_from_sint(types::F32X4, k);
    let y = log_tail(m, f, kf, Some(c));
    // |x| < 2^-24: log1p(x) rounds to x (keeps -0 and subnormals).
    let ax = m.fabs(x);
    let tiny = m.fcmpc(FloatCC::LessThan, ax, 2f64.powi(-24));
    let y = m.sel(tiny, x, y);
    special_log(m, x, -1.0, y)
}

/// tanh(x) for `F32X4`: an odd polynomial below 0.625, 1 - 2/(exp(2|x|) + 1) above.
pub(crate) fn tanh(m: &mut M, x: Value) -> Value {
    // Both branches on |x|; the sign goes on last (so tanh(-0) = -0).
    let a = m.fabs(x);
    let z = m.mul(a, a);
    let p = m.horner(z, &TANH_P);
    let az = m.mul(a, z);
    let small = m.mla(az, p, a);
    // tanh(10) rounds to 1 in f32; the clamp keeps exp finite. NaN passes through.
    let ac = m.min_c(a, 10.0);
    let a2 = m.add(ac, ac);
    let e = exp(m, a2);
    let e1 = m.addc(e, 1.0);
    let two = m.cf(types::F32X4, 2.0);
    let q = m.div(two, e1);
    let big = m.rsubc(1.0, q);
    let is_small = m.fcmpc(FloatCC::LessThan, a, 0.625);
    let y = m.sel(is_small, small, big);
    m.copysign(y, x)
}

/// sigmoid(x) = 1 / (1 + exp(-x)) for `F32X4`, from exp(-|x|) so nothing overflows.
pub(crate) fn sigmoid(m: &mut M, x: Value) -> Value {
    let a = m.fabs(x);
    let na = m.b.ins().fneg(a);
    // e + el = exp(-|x|) to about 2^-26.
    let (e, el) = exp_parts(m, na, true);
    let d = m.addc(e, 1.0);
    // The numerator is e for x < 0 (e / (1 + e)) and 1 otherwise (1 / (1 + e)).
    let neg = m.fcmpc(FloatCC::LessThan, x, 0.0);
    let one = m.cf(types::F32X4, 1.0);
    let num = m.sel(neg, e, one);
    let q = m.div(num, d);
    // One correction step: with N = num + nl and D = d + dl the exact operands,
    // N/D ~ q + (rho + nl - q dl) / d, where rho = num - q d is exact (an fma), dl = (1 - d) + e
    // + el (Fast2Sum, e <= 1) and 1/d is q (x >= 0) or about 1 - q (x < 0).
    let nq = m.b.ins().fneg(q);
    let rho = m.mla(nq, d, num);
    let omd = m.rsubc(1.0, d);
    let dl = m.add(omd, e);
    let dl = m.add(dl, el);
    let zero = m.cf(types::F32X4, 0.0);
    let nl = m.sel(neg, el, zero);
    let c = m.add(rho, nl);
    let c = m.mla(nq, dl, c);
    let omq = m.rsubc(1.0, q);
    let inv = m.sel(neg, omq, q);
    m.mla(c, inv, q)
}

/// softrelu(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) for `F32X4`.
pub(crate) fn softrelu(m: &mut M, x: Value) -> Value {
    let a = m.fabs(x);
    let na = m.b.ins().fneg(a);
    let e = exp(m, na);
    let l = log1p(m, e);
    let p = m.max_c(x, 0.0);
    m.add(p, l)
}
