//! VJPs of the elementwise ops: unary, binary (with un-broadcasting), scalar, where, clip, cast.

use super::{expect_inputs, Pair, VjpBuilder, Wanted};
use crate::error::{Error, Result};
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::shape::Shape;

use BinaryOp::{Add, Div, Eq, Ge, Gt, Le, Lt, Mul, Pow, Sub};

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    y: &B::Value,
    g: &B::Value,
    w: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    match op {
        Op::Unary { f } => {
            expect_inputs(op, inputs, 1)?;
            Ok(vec![unary(b, *f, &inputs[0], y, g)?])
        }
        Op::Binary { f } => {
            expect_inputs(op, inputs, 2)?;
            let want = (w.at(0), w.at(1));
            let (ga, gb) = binary(b, *f, &inputs[0], &inputs[1], y, g, want)?;
            Ok(vec![ga, gb])
        }
        Op::Scalar { f, scalar, reverse } => {
            expect_inputs(op, inputs, 1)?;
            Ok(vec![scalar_op(b, *f, *scalar, *reverse, &inputs[0], y, g)?])
        }
        Op::Where => {
            expect_inputs(op, inputs, 3)?;
            let (cond, x, other) = (&inputs[0], &inputs[1], &inputs[2]);
            let zero = b.full(Shape::scalar(), b.dtype(g), 0.0)?;
            let mut out = vec![None];
            for (i, v) in [(1, x), (2, other)] {
                if !w.at(i) {
                    out.push(None);
                    continue;
                }
                let picked = if i == 1 { [g, &zero] } else { [&zero, g] };
                let gv = b.apply(Op::Where, &[cond, picked[0], picked[1]])?;
                let sv = b.shape(v);
                out.push(Some(b.sum_to(&gv, &sv)?));
            }
            Ok(out)
        }
        Op::Clip { min, max } => {
            expect_inputs(op, inputs, 1)?;
            let x = &inputs[0];
            let above = b.scalar(Ge, x, *min)?;
            let below = b.scalar(Le, x, *max)?;
            let inside = b.binary(Mul, &above, &below)?;
            Ok(vec![Some(b.binary(Mul, g, &inside)?)])
        }
        Op::Cast { dtype } => {
            expect_inputs(op, inputs, 1)?;
            let from = b.dtype(&inputs[0]);
            // A cast to an integer type is piecewise constant, and integer inputs are not
            // differentiable; between float types the gradient is cast back.
            if !from.is_float() || !dtype.is_float() {
                return Ok(vec![None]);
            }
            if from == *dtype {
                return Ok(vec![Some(g.clone())]);
            }
            Ok(vec![Some(b.apply(Op::Cast { dtype: from }, &[g])?)])
        }
        _ => Err(Error::invalid(op.name(), "not an elementwise op")),
    }
}

fn unary<B: VjpBuilder>(
    b: &mut B,
    f: UnaryOp,
    x: &B::Value,
    y: &B::Value,
    g: &B::Value,
) -> Result<Option<B::Value>> {
    let gx = match f {
        UnaryOp::Sign | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round | UnaryOp::LogicalNot => {
            return Ok(None)
        }
        UnaryOp::Neg => b.unary(UnaryOp::Neg, g)?,
        UnaryOp::Abs => {
            let s = b.unary(UnaryOp::Sign, x)?;
            b.binary(Mul, g, &s)?
        }
        UnaryOp::Exp => b.binary(Mul, g, y)?,
        UnaryOp::Log => b.binary(Div, g, x)?,
        UnaryOp::Log1p => {
            let x1 = b.scalar(Add, x, 1.0)?;
            b.binary(Div, g, &x1)?
        }
        UnaryOp::Expm1 => {
            let y1 = b.scalar(Add, y, 1.0)?;
            b.binary(Mul, g, &y1)?
        }
        UnaryOp::Sqrt => {
            let t = b.binary(Div, g, y)?;
            b.scalar(Mul, &t, 0.5)?
        }
        UnaryOp::Rsqrt => {
            // d/dx x^(-1/2) = -1/2 x^(-3/2) = -1/2 y^3
            let y2 = b.unary(UnaryOp::Square, y)?;
            let y3 = b.binary(Mul, &y2, y)?;
            let t = b.binary(Mul, g, &y3)?;
            b.scalar(Mul, &t, -0.5)?
        }
        UnaryOp::Square => {
            let t = b.binary(Mul, g, x)?;
            b.scalar(Mul, &t, 2.0)?
        }
        UnaryOp::Reciprocal => {
            let y2 = b.unary(UnaryOp::Square, y)?;
            let t = b.binary(Mul, g, &y2)?;
            b.unary(UnaryOp::Neg, &t)?
        }
        UnaryOp::Sin => {
            let c = b.unary(UnaryOp::Cos, x)?;
            b.binary(Mul, g, &c)?
        }
        UnaryOp::Cos => {
            let s = b.unary(UnaryOp::Sin, x)?;
            let t = b.binary(Mul, g, &s)?;
            b.unary(UnaryOp::Neg, &t)?
        }
        UnaryOp::Tanh => {
            let y2 = b.unary(UnaryOp::Square, y)?;
            let d = b.rscalar(Sub, 1.0, &y2)?;
            b.binary(Mul, g, &d)?
        }
        UnaryOp::Sigmoid => {
            let one_minus = b.rscalar(Sub, 1.0, y)?;
            let d = b.binary(Mul, y, &one_minus)?;
            b.binary(Mul, g, &d)?
        }
        UnaryOp::Relu => {
            // relu(x) > 0 exactly where x > 0 (NaN and -0 included): read the output unless
            // only the input is kept already.
            let from = if !b.is_kept(y) && b.is_kept(x) { x } else { y };
            let m = b.scalar(Gt, from, 0.0)?;
            b.binary(Mul, g, &m)?
        }
        UnaryOp::Softrelu => {
            let s = b.unary(UnaryOp::Sigmoid, x)?;
            b.binary(Mul, g, &s)?
        }
    };
    Ok(Some(gx))
}

fn binary<B: VjpBuilder>(
    b: &mut B,
    f: BinaryOp,
    x: &B::Value,
    z: &B::Value,
    y: &B::Value,
    g: &B::Value,
    (want_x, want_z): (bool, bool),
) -> Result<Pair<B::Value>> {
    let (sx, sz) = (b.shape(x), b.shape(z));
    // The gradients before un-broadcasting: each has the output's shape.
    let (gx, gz) = match f {
        Add => (want_x.then(|| g.clone()), want_z.then(|| g.clone())),
        Sub => {
            let gx = if want_x {
                Some(b.sum_to(g, &sx)?)
            } else {
                None
            };
            let gz = if want_z {
                let t = b.sum_to(g, &sz)?;
                Some(b.unary(UnaryOp::Neg, &t)?)
            } else {
                None
            };
            return Ok((gx, gz));
        }
        Mul => (
            if want_x {
                Some(b.binary(Mul, g, z)?)
            } else {
                None
            },
            if want_z {
                Some(b.binary(Mul, g, x)?)
            } else {
                None
            },
        ),
        Div => {
            // d/dz x/z = -x/z^2 = -(g/z) * y: both sides start from g/z.
            let gx = b.binary(Div, g, z)?;
            let gz = if want_z {
                let t = b.binary(Mul, &gx, y)?;
                Some(b.unary(UnaryOp::Neg, &t)?)
            } else {
                None
            };
            (want_x.then_some(gx), gz)
        }
        Pow => {
            let gx = if want_x {
                let zm1 = b.scalar(Sub, z, 1.0)?;
                let p = b.binary(Pow, x, &zm1)?;
                let d = b.binary(Mul, z, &p)?;
                Some(b.binary(Mul, g, &d)?)
            } else {
                None
            };
            // The exponent's gradient needs a float log.
            let gz = if want_z && b.dtype(x).is_float() {
                // y * ln(x); at x == 0 the limit (for z > 0) is 0, not 0 * -inf.
                let lx = b.unary(UnaryOp::Log, x)?;
                let t = b.binary(Mul, y, &lx)?;
                let t = b.binary(Mul, g, &t)?;
                let at_zero = b.scalar(Eq, x, 0.0)?;
                let zero = b.full(Shape::scalar(), b.dtype(&t), 0.0)?;
                Some(b.apply(Op::Where, &[&at_zero, &zero, &t])?)
            } else {
                None
            };
            (gx, gz)
        }
        BinaryOp::Maximum | BinaryOp::Minimum => {
            let max = f == BinaryOp::Maximum;
            let gx = if want_x {
                let m = b.binary(if max { Ge } else { Le }, x, z)?;
                Some(b.binary(Mul, g, &m)?)
            } else {
                None
            };
            let gz = if want_z {
                let m = b.binary(if max { Lt } else { Gt }, x, z)?;
                Some(b.binary(Mul, g, &m)?)
            } else {
                None
            };
            (gx, gz)
        }
        Eq | BinaryOp::Ne | Gt | Ge | Lt | Le => return Ok((None, None)),
    };
    let gx = match gx {
        Some(v) => Some(b.sum_to(&v, &sx)?),
        None => None,
    };
    let gz = match gz {
        Some(v) => Some(b.sum_to(&v, &sz)?),
        None => None,
    };
    Ok((gx, gz))
}

fn scalar_op<B: VjpBuilder>(
    b: &mut B,
    f: BinaryOp,
    s: f64,
    reverse: bool,
    x: &B::Value,
    y: &B::Value,
    g: &B::Value,
) -> Result<Option<B::Value>> {
    let gx = match f {
        Add => g.clone(),
        Sub if reverse => b.unary(UnaryOp::Neg, g)?,
        Sub => g.clone(),
        Mul => b.scalar(Mul, g, s)?,
        Div if reverse => {
            // d/dx s/x = -s/x^2 = -y/x
            let t = b.binary(Mul, g, y)?;
            let t = b.binary(Div, &t, x)?;
            b.unary(UnaryOp::Neg, &t)?
        }
        Div => b.scalar(Div, g, s)?,
        Pow if reverse => {
            // d/dx s^x = s^x ln(s)
            let t = b.binary(Mul, g, y)?;
            b.scalar(Mul, &t, s.ln())?
        }
        Pow if s == 0.0 => b.zeros_like(x)?,
        Pow => {
            let p = b.scalar(Pow, x, s - 1.0)?;
            let t = b.binary(Mul, g, &p)?;
            b.scalar(Mul, &t, s)?
        }
        BinaryOp::Maximum => {
            let m = b.scalar(Ge, x, s)?;
            b.binary(Mul, g, &m)?
        }
        BinaryOp::Minimum => {
            let m = b.scalar(Le, x, s)?;
            b.binary(Mul, g, &m)?
        }
        Eq | BinaryOp::Ne | Gt | Ge | Lt | Le => return Ok(None),
    };
    Ok(Some(gx))
}
