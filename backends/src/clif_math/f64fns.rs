//! The functions computed in f64 lanes: sin, cos, pow and the small-argument part of erf.
//!
//! An `F32X4` argument is widened to two `F64X2` halves (exactly), the function is evaluated
//! with far more precision than f32 needs, and the halves are narrowed back with one rounding.
//! That makes the results nearly correctly rounded at twice the lane cost.

use super::f32fns;
use super::ops::M;
use cranelift_codegen::ir::{condcodes::FloatCC, condcodes::IntCC, types, InstBuilder, Value};

/// 1.5 * 2^52: adding it rounds an f64 in (-2^51, 2^51) to an integer kept in the low bits.
const MAGIC52: f64 = 6_755_399_441_055_744.0;
const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
/// pi/2 = PIO2_1 + PIO2_2 + PIO2_3 to about 160 bits.
const PIO2_1: f64 = std::f64::consts::FRAC_PI_2;
const PIO2_2: f64 = 6.123_233_995_736_766e-17;
const PIO2_3: f64 = -1.497_384_904_859_169_8e-33;
/// musl `__sindf`: |sin(x)/x - s(x)| < 2^-37.5 on [-pi/4, pi/4].
const S1: f64 = -0.16666666641626524;
const S2: f64 = 0.008333329385889463;
const S3: f64 = -0.00019839334836096632;
const S4: f64 = 2.718311493989822e-06;
/// musl `__cosdf`: |cos(x) - c(x)| < 2^-34.1 on [-pi/4, pi/4].
const C0: f64 = -0.499999997251031;
const C1: f64 = 0.04166662332373906;
const C2: f64 = -0.001388676377460993;
const C3: f64 = 2.439044879627741e-05;
/// Beyond this |x| the reduction's quotient is no longer exact in f64; sin and cos return NaN
/// there (see the module docs).
pub(crate) const TRIG_MAX: f64 = 281_474_976_710_656.0; // 2^48

/// sin (`offset` 0) or cos (`offset` 1) of an `F64X2` holding f32 values.
fn sincos_d(m: &mut M, x: Value, offset: i64) -> Value {
    let magic = m.cf(types::F64X2, MAGIC52);
    let t = m.mlac(x, TWO_OVER_PI, magic);
    let q = m.sub(t, magic);
    // r = x - q pi/2 in three steps: the first is exact (|r| < 2 on a 2^-52 grid), the others
    // add the tail of pi/2 with one rounding each.
    let nq = m.b.ins().fneg(q);
    let r = m.mlac(nq, PIO2_1, x);
    let r = m.mlac(nq, PIO2_2, r);
    let r = m.mlac(nq, PIO2_3, r);
    let z = m.mul(r, r);
    let w = m.mul(z, z);
    // sin(r) = (r + s (S1 + z S2)) + s w (S3 + z S4), s = z r
    let s = m.mul(z, r);
    let a = m.mlacc(z, S2, S1);
    let sn = m.mla(s, a, r);
    let b = m.mlacc(z, S4, S3);
    let sw = m.mul(s, w);
    let sn = m.mla(sw, b, sn);
    // cos(r) = ((1 + z C0) + w C1) + (w z)(C2 + z C3)
    let c = m.mlacc(z, C0, 1.0);
    let c = m.mlac(w, C1, c);
    let d = m.mlacc(z, C3, C2);
    let wz = m.mul(w, z);
    let cs = m.mla(wz, d, c);
    // Quadrant n = q + offset (mod 4): odd n takes the cosine, n & 2 flips the sign.
    let ti = m.bits(t);
    let n = m.iaddc(ti, offset);
    let odd = m.bandc(n, 1);
    let odd = m.icmpc(IntCC::NotEqual, odd, 0);
    let v = m.sel(odd, cs, sn);
    let flip = m.bandc(n, 2);
    let flip = m.shl(flip, 62);
    let vi = m.bits(v);
    let vi = m.bxor(vi, flip);
    m.float(vi)
}

fn sincos(m: &mut M, x: Value, offset: i64) -> Value {
    let (lo, hi) = m.widen(x);
    let rl = sincos_d(m, lo, offset);
    let rh = sincos_d(m, hi, offset);
    let y = m.narrow(rl, rh);
    // Out of the reduction's range (and inf, NaN): NaN.
    let a = m.fabs(x);
    let far = m.fcmpc(FloatCC::UnorderedOrGreaterThanOrEqual, a, TRIG_MAX);
    let y = m.selc(far, f64::NAN, y);
    if offset == 0 {
        // sin(±0) = ±0 (the reduction loses the sign of zero).
        let zero = m.fcmpc(FloatCC::Equal, x, 0.0);
        m.sel(zero, x, y)
    } else {
        y
    }
}

/// sin(x) for `F32X4`.
pub(crate) fn sin(m: &mut M, x: Value) -> Value {
    sincos(m, x, 0)
}

/// cos(x) for `F32X4`.
pub(crate) fn cos(m: &mut M, x: Value) -> Value {
    sincos(m, x, 1)
}

/// log2(|x|) for an `F64X2` of finite nonzero values; 2^-40 relative or better.
fn log2_d(m: &mut M, ax: Value) -> Value {
    const SQRT_HALF_BITS: i64 = 0x3fe6_a09e_667f_3bcd;
    const ONE_BITS: i64 = 0x3ff0_0000_0000_0000;
    let ix = m.bits(ax);
    let ix = m.iaddc(ix, ONE_BITS - SQRT_HALF_BITS);
    // k = (ix >> 52) - 1023, turned into an f64 through the 2^52 bit trick.
    let e = m.ushr(ix, 52);
    let e = m.iaddc(e, 0x4330_0000_0000_0000);
    let ef = m.float(e);
    let kf = m.addc(ef, -(4_503_599_627_370_496.0 + 1023.0));
    let mant = m.bandc(ix, 0x000f_ffff_ffff_ffff);
    let mant = m.iaddc(mant, SQRT_HALF_BITS);
    let xm = m.float(mant);
    let f = m.addc(xm, -1.0);
    // ln(1+f) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), s = f/(2+f), |s| < 0.1716.
    let d = m.addc(f, 2.0);
    let s = m.div(f, d);
    let s2 = m.mul(s, s);
    let coeffs: Vec<f64> = (0..8).rev().map(|j| 2.0 / (2 * j + 1) as f64).collect();
    let p = m.horner(s2, &coeffs);
    let ln = m.mul(s, p);
    m.mlac(ln, std::f64::consts::LOG2_E, kf)
}

/// 2^t for an `F64X2` with t in [-160, 160] (or NaN); 2^-37 relative or better.
fn exp2_d(m: &mut M, t: Value) -> Value {
    let magic = m.cf(types::F64X2, MAGIC52);
    let tk = m.add(t, magic);
    let k = m.sub(tk, magic);
    let r = m.sub(t, k);
    let u = m.mulc(r, std::f64::consts::LN_2);
    // e^u by its Taylor series to u^10/10! (|u| <= ln2/2).
    let mut coeffs = [0.0f64; 11];
    let mut fact = 1.0f64;
    for (i, c) in coeffs.iter_mut().rev().enumerate() {
        if i > 0 {
            fact *= i as f64;
        }
        *c = 1.0 / fact;
    }
    let p = m.horner(u, &coeffs);
    let ki = m.bits(tk);
    let e = m.iaddc(ki, 1023);
    let e = m.shl(e, 52);
    let s = m.float(e);
    m.mul(p, s)
}

/// |x|^y for `F64X2` halves, without the sign and NaN rules (see [`pow`]).
fn pow_mag_d(m: &mut M, x: Value, y: Value) -> Value {
    let ax = m.fabs(x);
    let l = log2_d(m, ax);
    let is0 = m.fcmpc(FloatCC::Equal, ax, 0.0);
    let l = m.selc(is0, f64::NEG_INFINITY, l);
    let isinf = m.fcmpc(FloatCC::Equal, ax, f64::INFINITY);
    let l = m.selc(isinf, f64::INFINITY, l);
    let t = m.mul(y, l);
    // |x| == 1: 1 for every y (inf * 0 would be NaN).
    let l0 = m.fcmpc(FloatCC::Equal, l, 0.0);
    let t = m.selc(l0, 0.0, t);
    let t = m.min_c(t, 160.0);
    let t = m.max_c(t, -160.0);
    exp2_d(m, t)
}

/// Lane masks: (y is an integer, y is an odd integer). ±inf count as even integers.
fn int_odd(m: &mut M, y: Value) -> (Value, Value) {
    let ry = m.b.ins().nearest(y);
    let is_int = m.fcmp(FloatCC::Equal, ry, y);
    let h = m.mulc(y, 0.5);
    let rh = m.b.ins().nearest(h);
    let half_int = m.fcmp(FloatCC::Equal, rh, h);
    let not_even = m.bnot(half_int);
    let odd = m.band(is_int, not_even);
    (is_int, odd)
}

/// pow(x, y) for `F32X4` with C99/numpy special cases: pow(x, ±0) = 1 and pow(1, y) = 1 even
/// for NaN; pow(-1, ±inf) = 1; a negative finite base with a non-integer exponent gives NaN;
/// signed zeros and infinities follow the odd-integer rules.
pub(crate) fn pow(m: &mut M, x: Value, y: Value) -> Value {
    let (xl, xh) = m.widen(x);
    let (yl, yh) = m.widen(y);
    let rl = pow_mag_d(m, xl, yl);
    let rh = pow_mag_d(m, xh, yh);
    let r = m.narrow(rl, rh);
    // Sign and NaN rules, in f32.
    let (is_int, odd) = int_odd(m, y);
    let xi = m.bits(x);
    let sign = m.bandc(xi, i32::MIN as i64);
    let zero = m.ci(types::I32X4, 0);
    let flip = m.sel(odd, sign, zero);
    let ri = m.bits(r);
    let ri = m.bxor(ri, flip);
    let r = m.float(ri);
    let neg = m.fcmpc(FloatCC::LessThan, x, 0.0);
    let fin = m.fcmpc(FloatCC::GreaterThan, x, f64::NEG_INFINITY);
    let not_int = m.bnot(is_int);
    let bad = m.band(neg, fin);
    let bad = m.band(bad, not_int);
    let xn = m.fcmp(FloatCC::Unordered, x, x);
    let yn = m.fcmp(FloatCC::Unordered, y, y);
    let bad = m.bor(bad, xn);
    let bad = m.bor(bad, yn);
    let r = m.selc(bad, f64::NAN, r);
    let y0 = m.fcmpc(FloatCC::Equal, y, 0.0);
    let x1 = m.fcmpc(FloatCC::Equal, x, 1.0);
    let one = m.bor(y0, x1);
    m.selc(one, 1.0, r)
}

/// erf(x)/x = P(x^2) on x^2 in [0, 4], a Chebyshev fit (relative error 5.6e-11).
const ERF_SMALL: [f64; 12] = [
    -2.105_308_219_424_451e-10,
    7.235_109_294_086_624e-9,
    -1.255_650_688_170_943e-7,
    1.515_380_117_181_330_8e-6,
    -1.461_724_625_773_56e-5,
    1.200_574_360_526_174_1e-4,
    -8.543_003_607_891_022e-4,
    5.223_611_856_064_019e-3,
    -2.686_602_131_881_862_8e-2,
    1.128_378_850_399_899_1e-1,
    -3.761_263_863_889_492e-1,
    1.128_379_167_058_845_4,
];
/// ln(erfc(a)) + a^2 = G(a - 3) on a in [2, 4], a Chebyshev fit (absolute error 9.6e-9).
const ERFC_BIG: [f64; 8] = [
    -7.385_430_649_264_89e-6,
    4.524_993_925_070_22e-5,
    -2.455_239_251_730_745_3e-4,
    1.351_949_868_430_013_5e-3,
    -7.411_925_393_900_232e-3,
    4.260_605_374_045_773e-2,
    -3.037_536_879_535_443e-1,
    -1.720_363_050_500_510_3,
];

fn erf_small_d(m: &mut M, x: Value) -> Value {
    let z = m.mul(x, x);
    let p = m.horner(z, &ERF_SMALL);
    m.mul(x, p)
}

/// erf(x) for `F32X4`: x P(x^2) in f64 below |x| = 2; 1 - exp(G(|x|) - x^2) in f32 above
/// (erfc is at most 0.0047 there, so its f32 error hardly reaches the result).
pub(crate) fn erf(m: &mut M, x: Value) -> Value {
    let (lo, hi) = m.widen(x);
    let sl = erf_small_d(m, lo);
    let sh = erf_small_d(m, hi);
    let small = m.narrow(sl, sh);
    let a = m.fabs(x);
    // erf rounds to ±1 from |x| ~ 3.92 on; the clamp keeps the fit in range. NaN passes.
    let ac = m.min_c(a, 4.0);
    let t = m.addc(ac, -3.0);
    let g = m.horner(t, &ERFC_BIG);
    let a2 = m.mul(ac, ac);
    let arg = m.sub(g, a2);
    let e = f32fns::exp(m, arg);
    let big = m.rsubc(1.0, e);
    let big = m.copysign(big, x);
    let is_small = m.fcmpc(FloatCC::LessThan, a, 2.0);
    m.sel(is_small, small, big)
}
