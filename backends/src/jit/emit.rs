//! Lowering of single elementwise ops on f32 values to Cranelift IR.
//!
//! Every function here works on a value of type `F32` (the scalar tail) or `F32X4` (the vector
//! body) and produces the same result lane by lane, so the two loops of a kernel agree exactly.
//!
//! Semantics follow the reference interpreter (`kiln_ir::interp`, which computes in f64 and
//! rounds once to f32):
//! - `+ - * /`, `sqrt`, comparisons, `abs`, `neg`, `floor`, `ceil`, `round`, `maximum`,
//!   `minimum`, `relu`, `sign`, `clip`, `where` are exact (an f32 operation rounds like the f64
//!   operation rounded once to f32), so they match the interpreter bitwise;
//! - `rsqrt` (`1/sqrt(x)`, two roundings) may differ by 1 ulp;
//! - transcendentals come from [`crate::clif_math`] with the error bounds stated there;
//! - with FMA contraction on (see [`super::JitOptions::fma`]) `a*b + c` rounds once, which
//!   differs from the interpreter's two roundings by at most 1 ulp of the product.
//!
//! NaN handling as the interpreter: `maximum(a, b)` is `a` when `a >= b` or `a` is NaN, else
//! `b` (so NaN from either side propagates, and `maximum(-0, +0) = -0`); `relu(NaN) = NaN`,
//! `relu(-0) = +0`; `sign(NaN) = NaN`, `sign(±0) = +0`; `clip` keeps NaN; comparisons with NaN
//! are false except `ne`; `where` takes `x` where the condition is non-zero (NaN included).

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;
use kiln_ir::{BinaryOp, UnaryOp};

/// A comparison mask: `i8` for scalars, `I32X4` lanes for vectors.
#[derive(Clone, Copy)]
pub(crate) struct Mask(Value);

/// `v` as a constant of type `ty` (splatted for vectors).
pub(crate) fn fconst(b: &mut FunctionBuilder<'_>, ty: Type, v: f32) -> Value {
    let s = b.ins().f32const(v);
    if ty.is_vector() {
        b.ins().splat(ty, s)
    } else {
        s
    }
}

/// `x cc y`.
pub(crate) fn cmp(b: &mut FunctionBuilder<'_>, cc: FloatCC, x: Value, y: Value) -> Mask {
    Mask(b.ins().fcmp(cc, x, y))
}

/// `m1 | m2`.
pub(crate) fn or(b: &mut FunctionBuilder<'_>, m1: Mask, m2: Mask) -> Mask {
    Mask(b.ins().bor(m1.0, m2.0))
}

/// `m1 & m2`.
pub(crate) fn and(b: &mut FunctionBuilder<'_>, m1: Mask, m2: Mask) -> Mask {
    Mask(b.ins().band(m1.0, m2.0))
}

/// `m1 & !m2`.
pub(crate) fn and_not(b: &mut FunctionBuilder<'_>, m1: Mask, m2: Mask) -> Mask {
    Mask(b.ins().band_not(m1.0, m2.0))
}

/// `m ? x : y`, lane by lane.
pub(crate) fn select(b: &mut FunctionBuilder<'_>, m: Mask, x: Value, y: Value) -> Value {
    let ty = b.func.dfg.value_type(x);
    if ty.is_vector() {
        let fm = b.ins().bitcast(ty, MemFlagsData::new(), m.0);
        b.ins().bitselect(fm, x, y)
    } else {
        b.ins().select(m.0, x, y)
    }
}

/// 1.0 where `m` holds, else 0.0.
fn flag(b: &mut FunctionBuilder<'_>, ty: Type, m: Mask) -> Value {
    let one = fconst(b, ty, 1.0);
    let zero = fconst(b, ty, 0.0);
    select(b, m, one, zero)
}

/// The interpreter's `maximum`: `a` when `a >= b` or `a` is NaN, else `b`.
pub(crate) fn maximum(b: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Value {
    let ge = cmp(b, FloatCC::GreaterThanOrEqual, x, y);
    let nan = cmp(b, FloatCC::Unordered, x, x);
    let m = or(b, ge, nan);
    select(b, m, x, y)
}

/// The interpreter's `minimum`: `a` when `a <= b` or `a` is NaN, else `b`.
pub(crate) fn minimum(b: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Value {
    let le = cmp(b, FloatCC::LessThanOrEqual, x, y);
    let nan = cmp(b, FloatCC::Unordered, x, x);
    let m = or(b, le, nan);
    select(b, m, x, y)
}

/// `min(max(x, lo), hi)` keeping NaN.
pub(crate) fn clip(b: &mut FunctionBuilder<'_>, x: Value, lo: f32, hi: f32) -> Value {
    let ty = b.func.dfg.value_type(x);
    let lo = fconst(b, ty, lo);
    let hi = fconst(b, ty, hi);
    let below = cmp(b, FloatCC::LessThan, x, lo);
    let t = select(b, below, lo, x);
    let above = cmp(b, FloatCC::GreaterThan, t, hi);
    select(b, above, hi, t)
}

/// `cond != 0 ? x : y` (a NaN condition counts as non-zero).
pub(crate) fn where_(b: &mut FunctionBuilder<'_>, c: Value, x: Value, y: Value) -> Value {
    let ty = b.func.dfg.value_type(c);
    let zero = fconst(b, ty, 0.0);
    let m = cmp(b, FloatCC::NotEqual, c, zero);
    select(b, m, x, y)
}

/// Round half away from zero (C `round`): `trunc(x)`, moved one away from zero when
/// `|x - trunc(x)| >= 0.5` (so the sign of a zero result is kept).
fn round(b: &mut FunctionBuilder<'_>, x: Value) -> Value {
    let ty = b.func.dfg.value_type(x);
    let t = b.ins().trunc(x);
    let d = b.ins().fsub(x, t);
    let d = b.ins().fabs(d);
    let half = fconst(b, ty, 0.5);
    let away = cmp(b, FloatCC::GreaterThanOrEqual, d, half);
    let zero = fconst(b, ty, 0.0);
    let one = fconst(b, ty, 1.0);
    let minus = fconst(b, ty, -1.0);
    let neg = cmp(b, FloatCC::LessThan, x, zero);
    let step = select(b, neg, minus, one);
    let moved = b.ins().fadd(t, step);
    select(b, away, moved, t)
}

/// A unary op, or `None` when it has no lowering (the kernel then runs op by op).
pub(crate) fn unary(b: &mut FunctionBuilder<'_>, f: UnaryOp, x: Value) -> Option<Value> {
    let ty = b.func.dfg.value_type(x);
    Some(match f {
        UnaryOp::Neg => b.ins().fneg(x),
        UnaryOp::Abs => b.ins().fabs(x),
        UnaryOp::Sign => {
            let zero = fconst(b, ty, 0.0);
            let one = fconst(b, ty, 1.0);
            let minus = fconst(b, ty, -1.0);
            let eq = cmp(b, FloatCC::Equal, x, zero);
            let r = select(b, eq, zero, x); // ±0 -> +0, NaN stays
            let lt = cmp(b, FloatCC::LessThan, x, zero);
            let r = select(b, lt, minus, r);
            let gt = cmp(b, FloatCC::GreaterThan, x, zero);
            select(b, gt, one, r)
        }
        UnaryOp::Sqrt => b.ins().sqrt(x),
        UnaryOp::Rsqrt => {
            let s = b.ins().sqrt(x);
            let one = fconst(b, ty, 1.0);
            b.ins().fdiv(one, s)
        }
        UnaryOp::Square => b.ins().fmul(x, x),
        UnaryOp::Reciprocal => {
            let one = fconst(b, ty, 1.0);
            b.ins().fdiv(one, x)
        }
        UnaryOp::Relu => {
            let zero = fconst(b, ty, 0.0);
            let m = cmp(b, FloatCC::UnorderedOrGreaterThan, x, zero);
            select(b, m, x, zero)
        }
        UnaryOp::Floor => b.ins().floor(x),
        UnaryOp::Ceil => b.ins().ceil(x),
        UnaryOp::Round => round(b, x),
        UnaryOp::LogicalNot => {
            let zero = fconst(b, ty, 0.0);
            let m = cmp(b, FloatCC::Equal, x, zero);
            flag(b, ty, m)
        }
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Log1p
        | UnaryOp::Expm1
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Softrelu => return transcendental(b, f, x),
    })
}

/// The transcendental functions, inline polynomials from [`crate::clif_math`].
fn transcendental(b: &mut FunctionBuilder<'_>, f: UnaryOp, x: Value) -> Option<Value> {
    crate::clif_math::emit_unary(b, f, x)
}

/// `pow(x, y)` for a general exponent, from [`crate::clif_math`] (C99/numpy special cases).
fn pow_general(b: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Option<Value> {
    Some(crate::clif_math::emit_pow(b, x, y))
}

/// A binary op on two values of one type, or `None` without a lowering.
pub(crate) fn binary(
    b: &mut FunctionBuilder<'_>,
    f: BinaryOp,
    x: Value,
    y: Value,
) -> Option<Value> {
    let ty = b.func.dfg.value_type(x);
    let cmp_flag = |b: &mut FunctionBuilder<'_>, cc| {
        let m = cmp(b, cc, x, y);
        flag(b, ty, m)
    };
    Some(match f {
        BinaryOp::Add => b.ins().fadd(x, y),
        BinaryOp::Sub => b.ins().fsub(x, y),
        BinaryOp::Mul => b.ins().fmul(x, y),
        BinaryOp::Div => b.ins().fdiv(x, y),
        BinaryOp::Pow => return pow_general(b, x, y),
        BinaryOp::Maximum => maximum(b, x, y),
        BinaryOp::Minimum => minimum(b, x, y),
        BinaryOp::Eq => cmp_flag(b, FloatCC::Equal),
        BinaryOp::Ne => cmp_flag(b, FloatCC::NotEqual),
        BinaryOp::Gt => cmp_flag(b, FloatCC::GreaterThan),
        BinaryOp::Ge => cmp_flag(b, FloatCC::GreaterThanOrEqual),
        BinaryOp::Lt => cmp_flag(b, FloatCC::LessThan),
        BinaryOp::Le => cmp_flag(b, FloatCC::LessThanOrEqual),
    })
}

/// `x ∘ c` (or `c ∘ x` when `reverse`) for an f32 constant `c`. Powers with the exponents
/// 0, 1, 2, -1 and 0.5 are lowered exactly (as the interpreter's `powf` rounds them).
pub(crate) fn scalar(
    b: &mut FunctionBuilder<'_>,
    f: BinaryOp,
    c: f32,
    reverse: bool,
    x: Value,
) -> Option<Value> {
    let ty = b.func.dfg.value_type(x);
    if f == BinaryOp::Pow && !reverse {
        match c {
            0.0 => return Some(fconst(b, ty, 1.0)),
            1.0 => return Some(x),
            2.0 => return Some(b.ins().fmul(x, x)),
            -1.0 => {
                let one = fconst(b, ty, 1.0);
                return Some(b.ins().fdiv(one, x));
            }
            0.5 => {
                // powf(-0, 0.5) = +0 and powf(-inf, 0.5) = +inf, unlike sqrt.
                let s = b.ins().sqrt(x);
                let zero = fconst(b, ty, 0.0);
                let s = b.ins().fadd(s, zero);
                let ninf = fconst(b, ty, f32::NEG_INFINITY);
                let inf = fconst(b, ty, f32::INFINITY);
                let m = cmp(b, FloatCC::Equal, x, ninf);
                return Some(select(b, m, inf, s));
            }
            _ => {}
        }
    }
    let k = fconst(b, ty, c);
    if reverse {
        binary(b, f, k, x)
    } else {
        binary(b, f, x, k)
    }
}

/// The vector type kernels compute in.
pub(crate) const VEC: Type = types::F32X4;
/// Lanes of [`VEC`].
pub(crate) const LANES: usize = 4;
