//! VJPs of the matrix products: dot (all transpose flags, N-d), batch_dot, fully_connected.

use super::{expect_inputs, Pair, VjpBuilder, Wanted};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    g: &B::Value,
    w: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    match op {
        Op::Dot {
            transpose_a,
            transpose_b,
        } => {
            expect_inputs(op, inputs, 2)?;
            let want = (w.at(0), w.at(1));
            let (ga, gb) = dot(
                b,
                *transpose_a,
                *transpose_b,
                &inputs[0],
                &inputs[1],
                g,
                want,
            )?;
            Ok(vec![ga, gb])
        }
        Op::BatchDot {
            transpose_a,
            transpose_b,
        } => {
            expect_inputs(op, inputs, 2)?;
            let batch_dot = |transpose_a, transpose_b| Op::BatchDot {
                transpose_a,
                transpose_b,
            };
            let (ta, tb) = (*transpose_a, *transpose_b);
            let want = (w.at(0), w.at(1));
            let (ga, gb) = matmul_grads(b, batch_dot, ta, tb, &inputs[0], &inputs[1], g, want)?;
            Ok(vec![ga, gb])
        }
        Op::FullyConnected { flatten, no_bias } => {
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            fully_connected(b, op, *flatten, *no_bias, inputs, g, w)
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
#[allow(clippy::too_many_arguments)]
fn matmul_grads<B: VjpBuilder>(
    bld: &mut B,
    mk: impl Fn(bool, bool) -> Op,
    ta: bool,
    tb: bool,
    a: &B::Value,
    b: &B::Value,
    g: &B::Value,
    (want_a, want_b): (bool, bool),
) -> Result<Pair<B::Value>> {
    // Each gradient as (flags, left, right).
    let (da, db) = match (ta, tb) {
        // c = a b: da = g bᵀ, db = aᵀ g
        (false, false) => (((false, true), g, b), ((true, false), a, g)),
        // c = aᵀ b: da = b gᵀ, db = a g
        (true, false) => (((false, true), b, g), ((false, false), a, g)),
        // c = a bᵀ: da = g b, db = gᵀ a
        (false, true) => (((false, false), g, b), ((true, false), g, a)),
        // c = aᵀ bᵀ: da = bᵀ gᵀ, db = gᵀ aᵀ
        (true, true) => (((true, true), b, g), ((true, true), g, a)),
    };
    let mut one = |want: bool, ((fa, fb), l, r): ((bool, bool), &B::Value, &B::Value)| {
        if want {
            bld.apply(mk(fa, fb), &[l, r]).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok((one(want_a, da)?, one(want_b, db)?))
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
    want: (bool, bool),
) -> Result<Pair<B::Value>> {
    let (sa, sb) = (bld.shape(a), bld.shape(b));
    if sa.rank() == 0 || sb.rank() == 0 {
        return Err(Error::shape(
            "dot",
            format!("vjp needs operands of rank >= 1, got {sa} and {sb}"),
        ));
    }
    if sa.rank() == 2 && sb.rank() == 2 {
        return matmul_grads(bld, dot_op, ta, tb, a, b, g, want);
    }
    // Reversing the axes is its own inverse.
    let reverse = |bld: &mut B, v: &B::Value, on: bool| -> Result<B::Value> {
        if on && bld.shape(v).rank() > 1 {
            bld.apply(Op::Transpose { axes: None }, &[v])
        } else {
            Ok(v.clone())
        }
    };
    let reversed_shape = |s: &Shape, on: bool| -> Shape {
        let mut d = s.to_vec();
        if on {
            d.reverse();
        }
        Shape::from(d)
    };
    let (esa, esb) = (reversed_shape(&sa, ta), reversed_shape(&sb, tb));
    let k = esa[esa.rank() - 1];
    let p: usize = esa[..esa.rank() - 1].iter().product();
    let q: usize = esb[1..].iter().product();
    let g2 = bld.reshape(g, &Shape::new(&[p, q]))?;
    // da needs b and db needs a: only the operands of a wanted gradient are materialized.
    let ga = if want.0 {
        let eb = reverse(bld, b, tb)?;
        let b2 = bld.reshape(&eb, &Shape::new(&[k, q]))?;
        let ga2 = bld.apply(dot_op(false, true), &[&g2, &b2])?;
        let ga = bld.reshape(&ga2, &esa)?;
        Some(reverse(bld, &ga, ta)?)
    } else {
        None
    };
    let gb = if want.1 {
        let ea = reverse(bld, a, ta)?;
        let a2 = bld.reshape(&ea, &Shape::new(&[p, k]))?;
        let gb2 = bld.apply(dot_op(true, false), &[&a2, &g2])?;
        let gb = bld.reshape(&gb2, &esb)?;
        Some(reverse(bld, &gb, tb)?)
    } else {
        None
    };
    Ok((ga, gb))
}

fn fully_connected<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    flatten: bool,
    no_bias: bool,
    inputs: &[B::Value],
    g: &B::Value,
    w: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    let (x, wt) = (&inputs[0], &inputs[1]);
    let (xs, ws) = (b.shape(x), b.shape(wt));
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
    let g2 = b.reshape(g, &Shape::new(&[rows, units]))?;
    // y = x wᵀ + b: dx = g w, dw = gᵀ x, db = sum of g over rows.
    let gx = if w.at(0) {
        let gx2 = b.apply(dot_op(false, false), &[&g2, wt])?;
        Some(b.reshape(&gx2, &xs)?)
    } else {
        None
    };
    let gw = if w.at(1) {
        let x2 = b.reshape(x, &Shape::new(&[rows, in_dim]))?;
        Some(b.apply(dot_op(true, false), &[&g2, &x2])?)
    } else {
        None
    };
    let mut out = vec![gx, gw];
    if !no_bias {
        out.push(if w.at(2) {
            Some(b.sum(&g2, &[0], false)?)
        } else {
            None
        });
    }
    Ok(out)
}
