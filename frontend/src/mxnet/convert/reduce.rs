//! Reductions: sum, mean, max, min, prod, norm (axis, keepdims, exclude) and argmax/argmin.

use super::{one, Attrs, ConvertFn, Cx, Val};
use crate::mxnet::symbol::SymNode;
use kiln_ir::{ArgReduceOp, Error, Op, ReduceOp, Result, UnaryOp};

pub(super) fn lookup(op: &str) -> Option<ConvertFn> {
    if reduce_kind(op).is_some() {
        return Some(reduce);
    }
    Some(match op {
        "norm" => norm,
        "argmax" | "argmin" => arg_reduce,
        _ => return None,
    })
}

fn reduce_kind(op: &str) -> Option<ReduceOp> {
    Some(match op {
        "sum" | "sum_axis" => ReduceOp::Sum,
        "mean" => ReduceOp::Mean,
        "max" | "max_axis" => ReduceOp::Max,
        "min" | "min_axis" => ReduceOp::Min,
        "prod" => ReduceOp::Prod,
        _ => return None,
    })
}

/// The axes MXNet reduces over: `axis` (absent or `()`: all), complemented by `exclude`.
fn reduce_axes(n: &SymNode, rank: usize) -> Result<Option<Vec<isize>>> {
    let a = Attrs::new(n);
    let exclude = a.bool("exclude", false)?;
    let listed = a.tuple("axis")?.filter(|v| !v.is_empty());
    let Some(listed) = listed else {
        return Ok(if exclude { Some(Vec::new()) } else { None });
    };
    let mut norm = Vec::with_capacity(listed.len());
    for &ax in &listed {
        let r = rank as i64;
        let ax2 = if ax < 0 { ax + r } else { ax };
        if !(0..r).contains(&ax2) {
            return Err(Error::shape(
                n.op.clone(),
                format!(
                    "node {:?}: axis {ax} is out of range for rank {rank}",
                    n.name
                ),
            ));
        }
        norm.push(ax2 as isize);
    }
    if exclude {
        Ok(Some(
            (0..rank as isize).filter(|i| !norm.contains(i)).collect(),
        ))
    } else {
        Ok(Some(norm))
    }
}

fn reduce(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let f =
        reduce_kind(&n.op).ok_or_else(|| Error::Graph(format!("{} is not a reduction", n.op)))?;
    let keepdims = Attrs::new(n).bool("keepdims", false)?;
    let x = cx.input(n, 0)?;
    let rank = cx.dims(x)?.len();
    let axes = reduce_axes(n, rank)?;
    one(cx.op(Op::Reduce { f, axes, keepdims }, &[x])?)
}

fn norm(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let ord = a.int("ord", 2)?;
    let keepdims = a.bool("keepdims", false)?;
    let x = cx.input(n, 0)?;
    let rank = cx.dims(x)?.len();
    let axes = reduce_axes(n, rank)?;
    match ord {
        2 => one(cx.op(
            Op::Reduce {
                f: ReduceOp::Norm,
                axes,
                keepdims,
            },
            &[x],
        )?),
        1 => {
            let ab = cx.unary(UnaryOp::Abs, x)?;
            one(cx.op(
                Op::Reduce {
                    f: ReduceOp::Sum,
                    axes,
                    keepdims,
                },
                &[ab],
            )?)
        }
        other => Err(Error::invalid(
            "norm",
            format!("node {:?}: ord={other}; kiln supports 1 and 2", n.name),
        )),
    }
}

fn arg_reduce(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let f = if n.op == "argmax" {
        ArgReduceOp::Argmax
    } else {
        ArgReduceOp::Argmin
    };
    let axis = a.opt_int("axis")?.map(|v| v as isize);
    let keepdims = a.bool("keepdims", false)?;
    let x = cx.input(n, 0)?;
    one(cx.op(Op::ArgReduce { f, axis, keepdims }, &[x])?)
}
