//! Elementwise MXNet ops: `elemwise_*`/`broadcast_*` arithmetic and comparisons, the scalar
//! families, unary math, `clip`, `where`, `Cast`, `add_n` and the fill ops.

use super::{one, Attrs, ConvertFn, Cx, Val};
use crate::mxnet::symbol::SymNode;
use kiln_ir::{BinaryOp, DType, Error, NodeId, Op, Result, UnaryOp};

pub(super) fn lookup(op: &str) -> Option<ConvertFn> {
    if binary_kind(op).is_some() {
        return Some(binary);
    }
    if logical_kind(op).is_some() {
        return Some(logical);
    }
    if scalar_kind(op).is_some() {
        return Some(scalar);
    }
    if unary_kind(op).is_some() {
        return Some(unary);
    }
    Some(match op {
        "_copy" | "identity" | "BlockGrad" | "stop_gradient" | "_identity_with_attr_like_rhs" => {
            identity
        }
        "softsign" => softsign,
        "log_sigmoid" => log_sigmoid,
        "mish" => mish,
        "erf" => erf_op,
        "fix" | "trunc" => trunc,
        "clip" => clip,
        "where" | "_where" => where_op,
        "Cast" | "cast" | "amp_cast" => cast,
        "add_n" | "ElementWiseSum" => add_n,
        "_zeros" | "_ones" | "_full" | "zeros" | "ones" | "full" => fill,
        "zeros_like" | "ones_like" => fill_like,
        _ => return None,
    })
}

fn binary_kind(op: &str) -> Option<BinaryOp> {
    Some(match op {
        "elemwise_add" | "_plus" | "_Plus" | "_add" | "broadcast_add" | "broadcast_plus" => {
            BinaryOp::Add
        }
        "elemwise_sub" | "_minus" | "_Minus" | "_sub" | "broadcast_sub" | "broadcast_minus" => {
            BinaryOp::Sub
        }
        "elemwise_mul" | "_mul" | "_Mul" | "broadcast_mul" => BinaryOp::Mul,
        "elemwise_div" | "_div" | "_Div" | "broadcast_div" => BinaryOp::Div,
        "_power" | "_Power" | "broadcast_power" => BinaryOp::Pow,
        "_maximum" | "_Maximum" | "broadcast_maximum" => BinaryOp::Maximum,
        "_minimum" | "_Minimum" | "broadcast_minimum" => BinaryOp::Minimum,
        "_equal" | "broadcast_equal" => BinaryOp::Eq,
        "_not_equal" | "broadcast_not_equal" => BinaryOp::Ne,
        "_greater" | "broadcast_greater" => BinaryOp::Gt,
        "_greater_equal" | "broadcast_greater_equal" => BinaryOp::Ge,
        "_lesser" | "broadcast_lesser" => BinaryOp::Lt,
        "_lesser_equal" | "broadcast_lesser_equal" => BinaryOp::Le,
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Logical {
    And,
    Or,
    Xor,
}

fn logical_kind(op: &str) -> Option<Logical> {
    Some(match op {
        "_logical_and" | "broadcast_logical_and" => Logical::And,
        "_logical_or" | "broadcast_logical_or" => Logical::Or,
        "_logical_xor" | "broadcast_logical_xor" => Logical::Xor,
        _ => return None,
    })
}

/// `(f, reverse)`: `_rminus_scalar` is `scalar - x`.
fn scalar_kind(op: &str) -> Option<(BinaryOp, bool)> {
    let name = op.trim_start_matches('_');
    Some(match name {
        "plus_scalar" | "PlusScalar" => (BinaryOp::Add, false),
        "minus_scalar" | "MinusScalar" => (BinaryOp::Sub, false),
        "rminus_scalar" | "RMinusScalar" => (BinaryOp::Sub, true),
        "mul_scalar" | "MulScalar" => (BinaryOp::Mul, false),
        "div_scalar" | "DivScalar" => (BinaryOp::Div, false),
        "rdiv_scalar" | "RDivScalar" => (BinaryOp::Div, true),
        "power_scalar" | "PowerScalar" => (BinaryOp::Pow, false),
        "rpower_scalar" | "RPowerScalar" => (BinaryOp::Pow, true),
        "maximum_scalar" | "MaximumScalar" => (BinaryOp::Maximum, false),
        "minimum_scalar" | "MinimumScalar" => (BinaryOp::Minimum, false),
        "equal_scalar" | "EqualScalar" => (BinaryOp::Eq, false),
        "not_equal_scalar" | "NotEqualScalar" => (BinaryOp::Ne, false),
        "greater_scalar" | "GreaterScalar" => (BinaryOp::Gt, false),
        "greater_equal_scalar" | "GreaterEqualScalar" => (BinaryOp::Ge, false),
        "lesser_scalar" | "LesserScalar" => (BinaryOp::Lt, false),
        "lesser_equal_scalar" | "LesserEqualScalar" => (BinaryOp::Le, false),
        _ => return None,
    })
}

fn unary_kind(op: &str) -> Option<UnaryOp> {
    Some(match op {
        "abs" => UnaryOp::Abs,
        "square" => UnaryOp::Square,
        "sqrt" => UnaryOp::Sqrt,
        "rsqrt" => UnaryOp::Rsqrt,
        "exp" => UnaryOp::Exp,
        "log" => UnaryOp::Log,
        "log1p" => UnaryOp::Log1p,
        "expm1" => UnaryOp::Expm1,
        "relu" => UnaryOp::Relu,
        "sigmoid" => UnaryOp::Sigmoid,
        "tanh" => UnaryOp::Tanh,
        "negative" => UnaryOp::Neg,
        "reciprocal" => UnaryOp::Reciprocal,
        "sign" => UnaryOp::Sign,
        "floor" => UnaryOp::Floor,
        "ceil" => UnaryOp::Ceil,
        "round" => UnaryOp::Round,
        "sin" => UnaryOp::Sin,
        "cos" => UnaryOp::Cos,
        "softrelu" => UnaryOp::Softrelu,
        "logical_not" => UnaryOp::LogicalNot,
        _ => return None,
    })
}

fn binary(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let f = binary_kind(&n.op).ok_or_else(|| Error::Graph(format!("{} is not binary", n.op)))?;
    let (a, b) = operands(cx, n)?;
    one(cx.binary(f, a, b)?)
}

/// Both operands of a binary op; a deferred fill takes the other operand's shape.
fn operands(cx: &mut Cx<'_>, n: &SymNode) -> Result<(NodeId, NodeId)> {
    match (cx.val(n, 0)?, cx.val(n, 1)?) {
        (Val::Node(a), Val::Node(b)) => Ok((a, b)),
        (Val::Node(a), Val::Fill { .. }) => {
            let ty = cx.ty(a)?;
            let b = cx.input_shaped(n, 1, ty.shape.dims(), ty.dtype)?;
            Ok((a, b))
        }
        (Val::Fill { .. }, Val::Node(b)) => {
            let ty = cx.ty(b)?;
            let a = cx.input_shaped(n, 0, ty.shape.dims(), ty.dtype)?;
            Ok((a, b))
        }
        _ => Ok((cx.input(n, 0)?, cx.input(n, 1)?)),
    }
}

fn logical(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let kind =
        logical_kind(&n.op).ok_or_else(|| Error::Graph(format!("{} is not logical", n.op)))?;
    let (a, b) = operands(cx, n)?;
    let a = cx.scalar(BinaryOp::Ne, a, 0.0, false)?;
    let b = cx.scalar(BinaryOp::Ne, b, 0.0, false)?;
    one(match kind {
        Logical::And => cx.binary(BinaryOp::Mul, a, b)?,
        Logical::Or => cx.binary(BinaryOp::Maximum, a, b)?,
        Logical::Xor => cx.binary(BinaryOp::Ne, a, b)?,
    })
}

fn scalar(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let (f, reverse) =
        scalar_kind(&n.op).ok_or_else(|| Error::Graph(format!("{} is not a scalar op", n.op)))?;
    let s = Attrs::new(n)
        .opt_float("scalar")?
        .ok_or_else(|| Attrs::new(n).missing("scalar"))?;
    let x = cx.input(n, 0)?;
    one(cx.scalar(f, x, s, reverse)?)
}

fn unary(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let f = unary_kind(&n.op).ok_or_else(|| Error::Graph(format!("{} is not unary", n.op)))?;
    let x = cx.input(n, 0)?;
    one(cx.unary(f, x)?)
}

fn identity(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    Ok(vec![cx.val(n, 0)?])
}

/// `x / (1 + |x|)`.
pub(super) fn softsign_of(cx: &mut Cx<'_>, x: NodeId) -> Result<NodeId> {
    let a = cx.unary(UnaryOp::Abs, x)?;
    let d = cx.scalar(BinaryOp::Add, a, 1.0, false)?;
    cx.binary(BinaryOp::Div, x, d)
}

fn softsign(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    one(softsign_of(cx, x)?)
}

/// `log(sigmoid(x)) = -softrelu(-x)`.
pub(super) fn log_sigmoid_of(cx: &mut Cx<'_>, x: NodeId) -> Result<NodeId> {
    let m = cx.unary(UnaryOp::Neg, x)?;
    let s = cx.unary(UnaryOp::Softrelu, m)?;
    cx.unary(UnaryOp::Neg, s)
}

fn log_sigmoid(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    one(log_sigmoid_of(cx, x)?)
}

/// `x * tanh(softrelu(x))`.
pub(super) fn mish_of(cx: &mut Cx<'_>, x: NodeId) -> Result<NodeId> {
    let s = cx.unary(UnaryOp::Softrelu, x)?;
    let t = cx.unary(UnaryOp::Tanh, s)?;
    cx.binary(BinaryOp::Mul, x, t)
}

fn mish(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    one(mish_of(cx, x)?)
}

/// `erf(x)` from kiln's ops (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7):
/// `sign(x) * (1 - poly(t) * exp(-x²))` with `t = 1 / (1 + p|x|)`.
pub(super) fn erf_of(cx: &mut Cx<'_>, x: NodeId) -> Result<NodeId> {
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let ax = cx.unary(UnaryOp::Abs, x)?;
    let px = cx.scalar(BinaryOp::Mul, ax, P, false)?;
    let d = cx.scalar(BinaryOp::Add, px, 1.0, false)?;
    let t = cx.unary(UnaryOp::Reciprocal, d)?;
    // Horner: ((((a5 t + a4) t + a3) t + a2) t + a1) t
    let mut poly = cx.scalar(BinaryOp::Mul, t, A[4], false)?;
    for &a in A[..4].iter().rev() {
        let s = cx.scalar(BinaryOp::Add, poly, a, false)?;
        poly = cx.binary(BinaryOp::Mul, s, t)?;
    }
    let sq = cx.unary(UnaryOp::Square, x)?;
    let nsq = cx.unary(UnaryOp::Neg, sq)?;
    let e = cx.unary(UnaryOp::Exp, nsq)?;
    let pe = cx.binary(BinaryOp::Mul, poly, e)?;
    let y = cx.scalar(BinaryOp::Sub, pe, 1.0, true)?;
    let s = cx.unary(UnaryOp::Sign, x)?;
    cx.binary(BinaryOp::Mul, s, y)
}

fn erf_op(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    one(erf_of(cx, x)?)
}

/// Rounds toward zero: `ceil` below 0, `floor` above.
fn trunc(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    let neg = cx.scalar(BinaryOp::Lt, x, 0.0, false)?;
    let c = cx.unary(UnaryOp::Ceil, x)?;
    let f = cx.unary(UnaryOp::Floor, x)?;
    one(cx.op(Op::Where, &[neg, c, f])?)
}

fn clip(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let min = a.opt_float("a_min")?.ok_or_else(|| a.missing("a_min"))?;
    let max = a.opt_float("a_max")?.ok_or_else(|| a.missing("a_max"))?;
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Clip { min, max }, &[x])?)
}

/// MXNet `where`: the condition has x's shape, or is 1-D selecting whole rows of x.
fn where_op(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let c = cx.input(n, 0)?;
    let x = cx.input(n, 1)?;
    let y = cx.input(n, 2)?;
    let (cd, xd) = (cx.dims(c)?, cx.dims(x)?);
    let c = if cd.len() == 1 && xd.len() > 1 && cd[0] == xd[0] {
        let mut dims = vec![1; xd.len()];
        dims[0] = cd[0];
        cx.reshape(c, &dims)?
    } else {
        c
    };
    one(cx.op(Op::Where, &[c, x, y])?)
}

fn cast(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    if a.get("dtype").is_none() {
        return Err(a.missing("dtype"));
    }
    let dtype = a.dtype("dtype", DType::F32)?;
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Cast { dtype }, &[x])?)
}

fn add_n(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    if n.inputs.is_empty() {
        return Err(Error::invalid(n.op.clone(), "needs at least one input"));
    }
    let mut acc = cx.input(n, 0)?;
    for k in 1..n.inputs.len() {
        let x = cx.input(n, k)?;
        acc = cx.binary(BinaryOp::Add, acc, x)?;
    }
    one(acc)
}

/// `_zeros`/`_ones`/`_full`: a constant; unknown (0) dims wait for the op that uses it.
fn fill(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let dims = a.utuple("shape")?.unwrap_or_default();
    let dtype = a.dtype("dtype", DType::F32)?;
    let value = match n.op.trim_start_matches('_') {
        "zeros" => 0.0,
        "ones" => 1.0,
        _ => a.opt_float("value")?.ok_or_else(|| a.missing("value"))?,
    };
    if dims.contains(&0) {
        return Ok(vec![Val::Fill { dims, dtype, value }]);
    }
    let dims = if dims.is_empty() { vec![1] } else { dims };
    one(cx.full(&dims, dtype, value)?)
}

fn fill_like(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    let ty = cx.ty(x)?;
    let value = if n.op == "ones_like" { 1.0 } else { 0.0 };
    one(cx.full(ty.shape.dims(), ty.dtype, value)?)
}
