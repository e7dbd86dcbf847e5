//! Reference semantics of the elementwise ops.
//!
//! How values are computed (what backends must match):
//! - floats (f32 and f64) are computed in f64 and rounded once to the element type, so f32
//!   results are as accurate as f32 can hold;
//! - integers are computed in i64 with wrapping arithmetic and truncated to the element type,
//!   which is numpy's wrap-around on overflow (`i32::MAX + 1 == i32::MIN`, `-(5u8) == 251`);
//!   bool is 0/1;
//! - NaN propagates through `maximum`, `minimum`, `relu`, `softrelu`, `sign` and `clip`
//!   (numpy's `maximum`/`minimum`); comparisons with NaN are false, except `ne`.

use super::strided::broadcast_offsets;
use crate::error::{Error, Result};
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::shape::Shape;
use crate::tensor::{DataRef, Element, Tensor, TensorType, TensorView};
use crate::with_data;

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let name = op.name();
    match op {
        Op::Unary { f } => {
            let x = &inputs[0];
            with_data!(x.data, T, s => unary::<T>(name, *f, s, &x.shape))
        }
        Op::Binary { f } => {
            let (a, b) = (&inputs[0], &inputs[1]);
            with_data!(a.data, T, s => binary::<T>(name, *f, s, &a.shape, b, &out.shape))
        }
        Op::Scalar { f, scalar, reverse } => {
            let x = &inputs[0];
            with_data!(x.data, T, s => {
                let k = T::binary_kernel(*f);
                let c = T::from_f64(*scalar).to_wide();
                let v: Vec<T> = if *reverse {
                    s.iter().map(|&v| T::narrow(k(c, v.to_wide()))).collect()
                } else {
                    s.iter().map(|&v| T::narrow(k(v.to_wide(), c))).collect()
                };
                Tensor::from_vec(v, x.shape.clone())
            })
        }
        Op::Where => {
            let (c, x, y) = (&inputs[0], &inputs[1], &inputs[2]);
            let cond = nonzero_mask(c.data);
            let ic = broadcast_offsets(&c.shape, &out.shape, name)?;
            let ix = broadcast_offsets(&x.shape, &out.shape, name)?;
            let iy = broadcast_offsets(&y.shape, &out.shape, name)?;
            with_data!(x.data, T, xs => {
                let ys = y.typed::<T>(name)?;
                let v: Vec<T> = ic
                    .zip(ix)
                    .zip(iy)
                    .map(|((i, j), k)| if cond[i] { xs[j] } else { ys[k] })
                    .collect();
                Tensor::from_vec(v, out.shape.clone())
            })
        }
        Op::Clip { min, max } => {
            let x = &inputs[0];
            with_data!(x.data, T, s => {
                let lo = T::from_f64(*min).to_wide();
                let hi = T::from_f64(*max).to_wide();
                let v: Vec<T> = s.iter().map(|&v| T::narrow(T::clip(v.to_wide(), lo, hi))).collect();
                Tensor::from_vec(v, x.shape.clone())
            })
        }
        Op::Cast { dtype } => {
            let x = &inputs[0];
            if x.dtype() == *dtype {
                // A same-type cast copies: going through f64 would round i64 beyond 2^53.
                return Ok(x.to_tensor());
            }
            Tensor::new(x.shape.clone(), x.data.cast(*dtype))
        }
        _ => Err(Error::invalid(name, "is not an elementwise op")),
    }
}

// ----- broadcasting ----------------------------------------------------------------------

/// `f(a[i], b[j])` for every position of `out`, with `a` and `b` broadcast to it. Errors when
/// a slice's length does not match its shape or a shape does not broadcast to `out`.
pub(crate) fn map2<A: Copy, B: Copy, R>(
    a: &[A],
    a_shape: &Shape,
    b: &[B],
    b_shape: &Shape,
    out: &Shape,
    op: &str,
    f: impl Fn(A, B) -> R,
) -> Result<Vec<R>> {
    if a.len() != a_shape.numel() || b.len() != b_shape.numel() {
        return Err(Error::shape(
            op,
            format!(
                "data of {} and {} elements do not match shapes {a_shape} and {b_shape}",
                a.len(),
                b.len()
            ),
        ));
    }
    if a_shape == out && b_shape == out {
        return Ok(a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect());
    }
    let ia = broadcast_offsets(a_shape, out, op)?;
    let ib = broadcast_offsets(b_shape, out, op)?;
    Ok(ia.zip(ib).map(|(i, j)| f(a[i], b[j])).collect())
}

fn nonzero_mask(data: DataRef<'_>) -> Vec<bool> {
    with_data!(data, T, s => s.iter().map(|&v| v != T::default()).collect())
}

// ----- per-type computation ------------------------------------------------------------------

/// How the reference computes on an element type: floats widen to f64, integers and bool
/// to i64 (see the module doc).
pub(crate) trait Compute: Element {
    /// The type computations run in.
    type Wide: Copy + PartialOrd;
    /// Widens exactly.
    fn to_wide(self) -> Self::Wide;
    /// Rounds (floats) or wraps (integers) back; bool is `!= 0`.
    fn narrow(w: Self::Wide) -> Self;
    /// The kernel of a unary op, `None` where the op is not defined on this kind of type.
    fn unary_kernel(f: UnaryOp) -> Option<fn(Self::Wide) -> Self::Wide>;
    /// The kernel of a binary op.
    fn binary_kernel(f: BinaryOp) -> fn(Self::Wide, Self::Wide) -> Self::Wide;
    /// `min(max(x, lo), hi)` (NaN stays NaN).
    fn clip(x: Self::Wide, lo: Self::Wide, hi: Self::Wide) -> Self::Wide;
}

macro_rules! float_compute {
    ($t:ty) => {
        impl Compute for $t {
            type Wide = f64;
            #[inline]
            fn to_wide(self) -> f64 {
                self as f64
            }
            #[inline]
            fn narrow(w: f64) -> Self {
                w as $t
            }
            fn unary_kernel(f: UnaryOp) -> Option<fn(f64) -> f64> {
                Some(float_unary(f))
            }
            fn binary_kernel(f: BinaryOp) -> fn(f64, f64) -> f64 {
                float_binary(f)
            }
            fn clip(x: f64, lo: f64, hi: f64) -> f64 {
                if x.is_nan() {
                    x
                } else {
                    x.max(lo).min(hi)
                }
            }
        }
    };
}

macro_rules! int_compute {
    ($t:ty, $narrow:expr) => {
        impl Compute for $t {
            type Wide = i64;
            #[inline]
            fn to_wide(self) -> i64 {
                self as i64
            }
            #[inline]
            fn narrow(w: i64) -> Self {
                ($narrow)(w)
            }
            fn unary_kernel(f: UnaryOp) -> Option<fn(i64) -> i64> {
                int_unary(f)
            }
            fn binary_kernel(f: BinaryOp) -> fn(i64, i64) -> i64 {
                int_binary(f)
            }
            fn clip(x: i64, lo: i64, hi: i64) -> i64 {
                x.max(lo).min(hi)
            }
        }
    };
}

float_compute!(f32);
float_compute!(f64);
// `as` between integers truncates, which is wrap-around.
int_compute!(i32, |w: i64| w as i32);
int_compute!(i64, |w: i64| w);
int_compute!(u8, |w: i64| w as u8);
int_compute!(bool, |w: i64| w != 0);

/// 1.0 for true, 0.0 for false: comparison results in a float type.
fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The f64 kernel of a unary op.
pub(crate) fn float_unary(f: UnaryOp) -> fn(f64) -> f64 {
    match f {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Sign => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else if x == 0.0 {
                0.0
            } else {
                x // NaN
            }
        },
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Log1p => f64::ln_1p,
        UnaryOp::Expm1 => f64::exp_m1,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
        UnaryOp::Square => |x| x * x,
        UnaryOp::Reciprocal => |x| 1.0 / x,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tanh => f64::tanh,
        // exp of a non-positive argument only: no overflow, no cancellation.
        UnaryOp::Sigmoid => |x| {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                let e = x.exp();
                e / (1.0 + e)
            }
        },
        UnaryOp::Relu => |x| if x > 0.0 || x.is_nan() { x } else { 0.0 },
        // softplus(x) = max(x, 0) + log1p(exp(-|x|)): exact in both tails.
        UnaryOp::Softrelu => |x| {
            if x.is_nan() {
                x
            } else {
                x.max(0.0) + (-x.abs()).exp().ln_1p()
            }
        },
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        // Rust's `round` is half away from zero, as C's.
        UnaryOp::Round => f64::round,
        UnaryOp::LogicalNot => |x| flag(x == 0.0),
    }
}

/// The f64 kernel of a binary op.
pub(crate) fn float_binary(f: BinaryOp) -> fn(f64, f64) -> f64 {
    match f {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Pow => f64::powf,
        BinaryOp::Maximum => |a, b| if a.is_nan() || a >= b { a } else { b },
        BinaryOp::Minimum => |a, b| if a.is_nan() || a <= b { a } else { b },
        BinaryOp::Eq => |a, b| flag(a == b),
        BinaryOp::Ne => |a, b| flag(a != b),
        BinaryOp::Gt => |a, b| flag(a > b),
        BinaryOp::Ge => |a, b| flag(a >= b),
        BinaryOp::Lt => |a, b| flag(a < b),
        BinaryOp::Le => |a, b| flag(a <= b),
    }
}

/// The wrapping i64 kernel of a unary op; `None` for the float-only ops.
pub(crate) fn int_unary(f: UnaryOp) -> Option<fn(i64) -> i64> {
    if f.needs_float() {
        return None;
    }
    Some(match f {
        UnaryOp::Neg => i64::wrapping_neg,
        UnaryOp::Abs => i64::wrapping_abs,
        UnaryOp::Sign => i64::signum,
        UnaryOp::Square => |x| x.wrapping_mul(x),
        UnaryOp::Relu => |x| x.max(0),
        UnaryOp::LogicalNot => |x| (x == 0) as i64,
        // Integers are already whole: floor, ceil and round are the identity.
        _ => |x| x,
    })
}

/// The wrapping i64 kernel of a binary op.
pub(crate) fn int_binary(f: BinaryOp) -> fn(i64, i64) -> i64 {
    match f {
        BinaryOp::Add => i64::wrapping_add,
        BinaryOp::Sub => i64::wrapping_sub,
        BinaryOp::Mul => i64::wrapping_mul,
        // Truncates toward zero; x / 0 is 0 (op.rs), i64::MIN / -1 wraps.
        BinaryOp::Div => |a, b| if b == 0 { 0 } else { a.wrapping_div(b) },
        BinaryOp::Pow => int_pow,
        BinaryOp::Maximum => i64::max,
        BinaryOp::Minimum => i64::min,
        BinaryOp::Eq => |a, b| (a == b) as i64,
        BinaryOp::Ne => |a, b| (a != b) as i64,
        BinaryOp::Gt => |a, b| (a > b) as i64,
        BinaryOp::Ge => |a, b| (a >= b) as i64,
        BinaryOp::Lt => |a, b| (a < b) as i64,
        BinaryOp::Le => |a, b| (a <= b) as i64,
    }
}

/// Integer power with wrap-around. A negative exponent is `1 / base^-e` truncated toward
/// zero: 1 for base 1, ±1 for base -1 (by parity), and 0 otherwise, including base 0 (the
/// "integer division by zero gives 0" rule).
pub(crate) fn int_pow(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 if exp % 2 == 0 => 1,
            -1 => -1,
            _ => 0,
        };
    }
    // Square-and-multiply; wrapping products are exact modulo 2^64, so truncating to a
    // narrower type afterwards gives that type's wrapped power.
    let (mut result, mut b, mut e) = (1i64, base, exp as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    result
}

fn unary<T: Compute>(name: &str, f: UnaryOp, s: &[T], shape: &Shape) -> Result<Tensor> {
    let k = T::unary_kernel(f).ok_or_else(|| {
        Error::dtype(
            name,
            format!("needs a floating-point input, got {} {shape}", T::DTYPE),
        )
    })?;
    let v: Vec<T> = s.iter().map(|&x| T::narrow(k(x.to_wide()))).collect();
    Tensor::from_vec(v, shape.clone())
}

fn binary<T: Compute>(
    name: &str,
    f: BinaryOp,
    a: &[T],
    a_shape: &Shape,
    b: &TensorView<'_>,
    out: &Shape,
) -> Result<Tensor> {
    let k = T::binary_kernel(f);
    let bs = b.typed::<T>(name)?;
    let v = map2(a, a_shape, bs, &b.shape, out, name, |x, y| {
        T::narrow(k(x.to_wide(), y.to_wide()))
    })?;
    Tensor::from_vec(v, out.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_pow_wraps_and_handles_negative_exponents() {
        assert_eq!(int_pow(3, 4), 81);
        assert_eq!(int_pow(2, 64), 0);
        assert_eq!(int_pow(-1, -3), -1);
        assert_eq!(int_pow(-1, -4), 1);
        assert_eq!(int_pow(2, -1), 0);
        assert_eq!(int_pow(0, 0), 1);
    }
}
