//! VJPs of the matrix products: dot (all transpose flags, N-d), batch_dot, fully_connected.

use super::{expect_inputs, VjpBuilder};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    g: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    match op {
        Op::Dot {
            transpose_a,
            transpose_b,
        } => {
            expect_inputs(op, inputs, 2)?;
            let (ga, gb) = dot(b, *transpose_a, *transpose_b, &inputs[0], &inputs[1], g)?;
            Ok(vec![Some(ga), Some(gb)])
        }
        Op::BatchDot {
            transpose_a,
            transpose_b,
        } => {
            expect_inputs(op, inputs, 2)?;
            let (ga, gb) = matmul_grads(
                b,
                |ta, tb| Op::BatchDot {
                    transpose_a: ta,
                    transpose_b: tb,
                },
                *transpose_a,
                *transpose_b,
                &inputs[0],
                &inputs[1],
                g,
            )?;
            Ok(vec![Some(ga), Some(gb)])
        }
        Op::FullyConnected { flatten, no_bias } => {
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            fully_connected(b, op, *flatten, *no_bias, inputs, g)
        }
        _ => Err(Error::invalid(op.name(), "not a linear-algebra op")),
    }
}

fn dot_op(transpose_a: bool, transpose_b: bool) -> Op {
    Op::Dot {
        transpose_a,
        transpose_b,
    }
}

/// Gradients of `op(a, b)` for a 2-D product (or a batch of them) with transpose flags,
/// each expressed as one product of the same kind with other flags.
fn matmul_grads<B: VjpBuilder>(
    bld: &mut B,
    mk: impl Fn(bool, bool) -> Op,
    ta: bool,
    tb: bool,
    a: &B::Value,
    b: &B::Value,
    g: &B::Value,
) -> Result<(B::Value, B::Value)> {
    Ok(match (ta, tb) {
        // c = a b: da = g bᵀ, db = aᵀ g
        (false, false) => (
            bld.apply(mk(false, true), &[g, b])?,
            bld.apply(mk(true, false), &[a, g])?,
        ),
        // c = aᵀ b: da = b gᵀ, db = a g
        (true, false) => (
            bld.apply(mk(false, true), &[b, g])?,
            bld.apply(mk(false, false), &[a, g])?,
        ),
        // c = a bᵀ: da = g b, db = gᵀ a
        (false, true) => (
            bld.apply(mk(false, false), &[g, b])?,
            bld.apply(mk(true, false), &[g, a])?,
        ),
        // c = aᵀ bᵀ: da = bᵀ gᵀ, db = gᵀ aᵀ
        (true, true) => (
            bld.apply(mk(true, true), &[b, g])?,
            bld.apply(mk(true, true), &[g, a])?,
        ),
    })
}

/// MXNet dot: `a` (reversed when `ta`) `[..p, k]` times `b` (reversed when `tb`) `[k, ..q]`.
/// The general case flattens both to matrices `[P, k]`, `[k, Q]`.
fn dot<B: VjpBuilder>(
    bld: &mut B,
    ta: bool,
    tb: bool,
    a: &B::Value,
    b: &B::Value,
    g: &B::Value,
) -> Result<(B::Value, B::Value)> {
    let (sa, sb) = (bld.shape(a), bld.shape(b));
    if sa.rank() == 0 || sb.rank() == 0 {
        return Err(Error::shape(
            "dot",
            format!("vjp needs operands of rank >= 1, got {sa} and {sb}"),
        ));
    }
    if sa.rank() == 2 && sb.rank() == 2 {
        return matmul_grads(bld, dot_op, ta, tb, a, b, g);
    }
    let reverse = |bld: &mut B, v: &B::Value, on: bool| -> Result<B::Value> {
        let r = bld.shape(v).rank();
        if on && r > 1 {
            bld.apply(Op::Transpose { axes: None }, &[v])
        } else {
            Ok(v.clone())
        }
    };
    let ea = reverse(bld, a, ta)?;
    let eb = reverse(bld, b, tb)?;
    let (esa, esb) = (bld.shape(&ea), bld.shape(&eb));
    let k = esa[esa.rank() - 1];
    let p: usize = esa[..esa.rank() - 1].iter().product();
    let q: usize = esb[1..].iter().product();
    let a2 = bld.reshape(&ea, &Shape::new(&[p, k]))?;
    let b2 = bld.reshape(&eb, &Shape::new(&[k, q]))?;
    let g2 = bld.reshape(g, &Shape::new(&[p, q]))?;
    let (ga2, gb2) = matmul_grads(bld, dot_op, false, false, &a2, &b2, &g2)?;
    let ga = bld.reshape(&ga2, &esa)?;
    let gb = bld.reshape(&gb2, &esb)?;
    // Reversing the axes is its own inverse.
    Ok((reverse(bld, &ga, ta)?, reverse(bld, &gb, tb)?))
}

fn fully_connected<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    flatten: bool,
    no_bias: bool,
    inputs: &[B::Value],
    g: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    let (x, w) = (&inputs[0], &inputs[1]);
    let (xs, ws) = (b.shape(x), b.shape(w));
    if xs.rank() == 0 || ws.rank() != 2 {
        return Err(Error::shape(
            op.name(),
            format!("vjp needs x of rank >= 1 and a 2-D weight, got x {xs} and weight {ws}"),
        ));
    }
    let (units, in_dim) = (ws[0], ws[1]);
    let rows: usize = if flatten {
        xs[0]
    } else {
        xs[..xs.rank() - 1].iter().product()
    };
    let x2 = b.reshape(x, &Shape::new(&[rows, in_dim]))?;
    let g2 = b.reshape(g, &Shape::new(&[rows, units]))?;
    // y = x wᵀ + b: dx = g w, dw = gᵀ x, db = sum of g over rows.
    let gx2 = b.apply(dot_op(false, false), &[&g2, w])?;
    let gx = b.reshape(&gx2, &xs)?;
    let gw = b.apply(dot_op(true, false), &[&g2, &x2])?;
    let mut out = vec![Some(gx), Some(gw)];
    if !no_bias {
        out.push(Some(b.sum(&g2, &[0], false)?));
    }
    Ok(out)
}
