//! Transcendental functions as inline Cranelift IR, for the JIT's fused kernels.
//!
//! The emitters write `f(x)` straight into the function being built: no call back into Rust
//! per element. Every emitter takes an `F32` or an `F32X4` value and returns the same type;
//! the scalar form runs the vector code on a splatted lane, so a kernel's scalar tail gives
//! bit-identical results to its vector body.
//!
//! | function | method | measured max error (ulp) | asserted bound |
//! |---|---|---|---|
//! | exp | Cody–Waite ln 2 reduction, Cephes polynomial, 2^k applied in two halves | 1.010 (all 2^32 f32s) | 1.5 |
//! | expm1 | same reduction, `2 (2^(k-1) q + 2^(k-1) - 1/2)` | 1.425 | 2 |
//! | log | fdlibm reduction to `[sqrt(2)/2, sqrt(2))`, `s = f/(2+f)` series | 0.785 | 1 |
//! | log1p | log's kernel with fdlibm's rounding correction of `1 + x` | 0.821 | 1.5 |
//! | tanh | odd polynomial below 0.625, `1 - 2/(exp(2|x|)+1)` above | 1.309 | 2 |
//! | sigmoid | `1/(1+e)` or `e/(1+e)`, `e = exp(-|x|)`, one correction step | 0.967 | 1.5 |
//! | softrelu | `max(x,0) + log1p(exp(-|x|))` | 1.571 | 2 |
//! | sin, cos | f64 lanes: 3-part pi/2 reduction, musl kernels | 0.501, 0.503 | 1 |
//! | pow | f64 lanes: `2^(y log2|x|)` with ~2^-37 relative error before rounding | 0.500 | 1 |
//! | erf | f64 lanes `x P(x^2)` below 2, f32 `1 - exp(G(|x|) - x^2)` above | 0.529 | 1 |
//!
//! Errors are `|y - ref| / ulp(ref)` against the f64 reference (std's f64 functions; a
//! positive-term series for erf), measured with FMA on every 97th f32 bit pattern (about 44
//! million arguments per function, all of f32 for everything but sin/cos, which are checked
//! below 2^48) plus edge tables; pow on 2^20 random pairs. The bounds are in [`ACCURACY`] and
//! asserted by `tests/clif_math.rs` (`KILN_EXHAUSTIVE=1` sweeps every f32). Without FMA the
//! errors stay within one more ulp.
//!
//! Edges: exp overflows to inf above 88.72 and goes through the subnormals to +0 below
//! -103.97; log is -inf at ±0, NaN below 0; tanh and sigmoid saturate to exactly ±1 / 0 / 1
//! without overflow; softrelu is x for large x and exp(x) (subnormals included) for very
//! negative x. NaN inputs give NaN (except pow's C99 cases pow(x, 0) = pow(1, y) = 1).
//! sin and cos are accurate for |x| < 2^48 (the f64 reduction's quotient stays exact); from
//! 2^48 on, and for ±inf, they return NaN.
//!
//! The code prefers `minps`/`maxps`-shaped clamps (`bitselect(fcmp lt)`) over IEEE
//! `fmin`/`fmax`, and uses `fma` when [`MathOptions::fma`] says so (the host's ISA has it).

mod f32fns;
mod f64fns;
mod kernel;
mod ops;

pub use kernel::{
    compile_math_kernel, compile_pow_kernel, compile_unary_kernel, PowKernel, UnaryKernel,
};

use cranelift_codegen::ir::{condcodes::FloatCC, types, InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;
use kiln_ir::UnaryOp;
use ops::M;

/// Code-generation choices of the emitters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MathOptions {
    /// Use fused multiply-add (one rounding) for `a*b+c`. Only worth it when the target ISA has
    /// FMA: without it Cranelift lowers a vector `fma` to four libm calls.
    pub fma: bool,
}

impl MathOptions {
    /// The options for the host CPU (FMA when it has it, as `cranelift_native` detects).
    pub fn host() -> Self {
        MathOptions {
            fma: host_has_fma(),
        }
    }
}

impl Default for MathOptions {
    fn default() -> Self {
        MathOptions::host()
    }
}

/// Whether the host CPU has fused multiply-add (the flag `cranelift_native` sets as `has_fma`).
pub fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A function the module can emit: a unary op of the IR, or one that has no op (erf, for GELU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MathFn {
    /// A float unary op of the IR.
    Unary(UnaryOp),
    /// The error function.
    Erf,
}

impl MathFn {
    /// The function's name (the op name for unary ops).
    pub fn name(self) -> &'static str {
        match self {
            MathFn::Unary(f) => f.name(),
            MathFn::Erf => "erf",
        }
    }
}

/// The asserted maximum error of each emitted function, in f32 ulps against the unrounded f64
/// reference (`|y - ref| / ulp(ref)`), for the dense sweep and edge tables of
/// `tests/clif_math.rs` with the host options (FMA on); the measured maxima are in the module
/// docs.
pub const ACCURACY: &[(&str, f64)] = &[
    ("exp", 1.5),
    ("expm1", 2.0),
    ("log", 1.0),
    ("log1p", 1.5),
    ("tanh", 2.0),
    ("sigmoid", 1.5),
    ("softrelu", 2.0),
    ("sin", 1.0),
    ("cos", 1.0),
    ("pow", 1.0),
    ("erf", 1.0),
];

/// Runs `body` on `x` as an `F32X4`: a scalar `F32` is splatted first and lane 0 extracted
/// after. Panics (a code-generator bug, not a user error) for other types.
fn lift(
    b: &mut FunctionBuilder,
    opts: MathOptions,
    x: Value,
    body: impl FnOnce(&mut M, Value) -> Value,
) -> Value {
    let ty = b.func.dfg.value_type(x);
    let mut m = M { b, fma: opts.fma };
    if ty == types::F32X4 {
        body(&mut m, x)
    } else if ty == types::F32 {
        let v = m.b.ins().splat(types::F32X4, x);
        let r = body(&mut m, v);
        m.b.ins().extractlane(r, 0)
    } else {
        panic!("clif_math: expected an f32 or f32x4 value, got {ty}")
    }
}

fn is_f32(b: &FunctionBuilder, x: Value) -> bool {
    let ty = b.func.dfg.value_type(x);
    ty == types::F32 || ty == types::F32X4
}

/// Emits `f(x)` into the function being built, for `x` of type `F32` or `F32X4` (same type
/// out), with the host's [`MathOptions`]. Every float [`UnaryOp`] is covered (the cheap ones
/// too, with the interpreter's semantics); returns `None` only for a value of another type.
pub fn emit_unary(b: &mut FunctionBuilder, f: UnaryOp, x: Value) -> Option<Value> {
    emit_unary_with(b, MathOptions::host(), f, x)
}

/// [`emit_unary`] with explicit options.
pub fn emit_unary_with(
    b: &mut FunctionBuilder,
    opts: MathOptions,
    f: UnaryOp,
    x: Value,
) -> Option<Value> {
    if !is_f32(b, x) {
        return None;
    }
    Some(lift(b, opts, x, |m, x| unary_vec(m, f, x)))
}

/// `f` on an `F32X4`.
fn unary_vec(m: &mut M, f: UnaryOp, x: Value) -> Value {
    use UnaryOp as U;
    match f {
        U::Exp => f32fns::exp(m, x),
        U::Expm1 => f32fns::expm1(m, x),
        U::Log => f32fns::log(m, x),
        U::Log1p => f32fns::log1p(m, x),
        U::Tanh => f32fns::tanh(m, x),
        U::Sigmoid => f32fns::sigmoid(m, x),
        U::Softrelu => f32fns::softrelu(m, x),
        U::Sin => f64fns::sin(m, x),
        U::Cos => f64fns::cos(m, x),
        U::Neg => m.b.ins().fneg(x),
        U::Abs => m.fabs(x),
        U::Sqrt => m.b.ins().sqrt(x),
        U::Rsqrt => {
            let s = m.b.ins().sqrt(x);
            let one = m.cf(types::F32X4, 1.0);
            m.div(one, s)
        }
        U::Square => m.mul(x, x),
        U::Reciprocal => {
            let one = m.cf(types::F32X4, 1.0);
            m.div(one, x)
        }
        U::Floor => m.b.ins().floor(x),
        U::Ceil => m.b.ins().ceil(x),
        U::Round => {
            // Half away from zero: trunc, then one step outwards when the dropped part is at
            // least 1/2. The step carries x's sign so that -0.3 rounds to -0.
            let t = m.b.ins().trunc(x);
            let d = m.sub(x, t);
            let d = m.fabs(d);
            let ge = m.fcmpc(FloatCC::GreaterThanOrEqual, d, 0.5);
            let zero = m.cf(types::F32X4, 0.0);
            let step = m.selc(ge, 1.0, zero);
            let step = m.copysign(step, x);
            m.add(t, step)
        }
        U::Relu => {
            // x where x > 0 or NaN, else +0.
            let keep = m.fcmpc(FloatCC::UnorderedOrGreaterThan, x, 0.0);
            let zero = m.cf(types::F32X4, 0.0);
            m.sel(keep, x, zero)
        }
        U::Sign => {
            let z = m.fcmpc(FloatCC::Equal, x, 0.0);
            let r = m.selc(z, 0.0, x);
            let lt = m.fcmpc(FloatCC::LessThan, x, 0.0);
            let r = m.selc(lt, -1.0, r);
            let gt = m.fcmpc(FloatCC::GreaterThan, x, 0.0);
            m.selc(gt, 1.0, r)
        }
        U::LogicalNot => {
            let z = m.fcmpc(FloatCC::Equal, x, 0.0);
            let zero = m.cf(types::F32X4, 0.0);
            m.selc(z, 1.0, zero)
        }
    }
}

/// Emits `f(x)` for a [`MathFn`] (see [`emit_unary_with`]); `None` for a non-f32 value.
pub fn emit_math_with(
    b: &mut FunctionBuilder,
    opts: MathOptions,
    f: MathFn,
    x: Value,
) -> Option<Value> {
    match f {
        MathFn::Unary(u) => emit_unary_with(b, opts, u, x),
        MathFn::Erf => is_f32(b, x).then(|| lift(b, opts, x, f64fns::erf)),
    }
}

/// pow(x, y) for `F32`/`F32X4` (both of the same type) with numpy/C99 semantics for the special
/// cases: pow(x, ±0) = 1 and pow(1, y) = 1 even for NaN, pow(-1, ±inf) = 1, NaN for a negative
/// finite base with a non-integer exponent, signed zeros and infinities by the odd-integer rule.
///
/// # Panics
/// If `x` is not `F32`/`F32X4` or `y` has another type than `x` (a code-generator bug).
pub fn emit_pow(b: &mut FunctionBuilder, x: Value, y: Value) -> Value {
    emit_pow_with(b, MathOptions::host(), x, y)
}

/// [`emit_pow`] with explicit options.
pub fn emit_pow_with(b: &mut FunctionBuilder, opts: MathOptions, x: Value, y: Value) -> Value {
    let ty = b.func.dfg.value_type(x);
    assert_eq!(
        ty,
        b.func.dfg.value_type(y),
        "clif_math: pow operands of different types"
    );
    if ty == types::F32 {
        let yv = b.ins().splat(types::F32X4, y);
        lift(b, opts, x, |m, x| f64fns::pow(m, x, yv))
    } else {
        lift(b, opts, x, |m, x| f64fns::pow(m, x, y))
    }
}

macro_rules! emitters {
    ($($(#[$doc:meta])* $name:ident => $f:path;)*) => {$(
        $(#[$doc])*
        ///
        /// For `F32` or `F32X4` (same type out), with the host's [`MathOptions`].
        ///
        /// # Panics
        /// If `x` is of another type (a code-generator bug).
        pub fn $name(b: &mut FunctionBuilder, x: Value) -> Value {
            lift(b, MathOptions::host(), x, $f)
        }
    )*};
}

emitters! {
    /// exp(x): inf above ~88.72, subnormal results down to ~-103.97, +0 below.
    emit_exp => f32fns::exp;
    /// log(x): -inf at ±0, NaN below 0, exact handling of subnormal inputs.
    emit_log => f32fns::log;
    /// log1p(x) = log(1 + x), accurate near 0: -inf at -1, NaN below.
    emit_log1p => f32fns::log1p;
    /// expm1(x) = exp(x) - 1, accurate near 0: -1 below ~-17, inf above ~88.72.
    emit_expm1 => f32fns::expm1;
    /// tanh(x): exactly ±1 from |x| ~ 9.01 on.
    emit_tanh => f32fns::tanh;
    /// sigmoid(x) = 1 / (1 + exp(-x)), without overflow for any x.
    emit_sigmoid => f32fns::sigmoid;
    /// softrelu(x) = log(1 + exp(x)) (softplus), without overflow for any x.
    emit_softrelu => f32fns::softrelu;
    /// sin(x): accurate for |x| < 2^48, NaN beyond and for ±inf.
    emit_sin => f64fns::sin;
    /// cos(x): accurate for |x| < 2^48, NaN beyond and for ±inf.
    emit_cos => f64fns::cos;
    /// erf(x) (for GELU).
    emit_erf => f64fns::erf;
}

/// The largest |x| for which sin and cos are computed (they return NaN from here on).
pub const TRIG_MAX: f32 = f64fns::TRIG_MAX as f32;
