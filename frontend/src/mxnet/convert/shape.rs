//! Shape, indexing and product ops: Reshape (all special codes and `reverse`), Flatten,
//! transpose, SwapAxis, expand_dims, squeeze, slice, slice_axis, Concat, stack, SliceChannel,
//! tile, repeat, reverse, broadcast_to/axis/like, take, pick, one_hot, dot, batch_dot,
//! shape_array, size_array, _arange.

use super::{one, Attrs, ConvertFn, Cx, Val};
use crate::mxnet::symbol::SymNode;
use kiln_ir::{DType, Error, Op, Result, Shape, Tensor};

pub(super) fn lookup(op: &str) -> Option<ConvertFn> {
    Some(match op {
        "Reshape" | "reshape" => reshape,
        "Flatten" | "flatten" => flatten,
        "transpose" => transpose,
        "SwapAxis" | "swapaxes" => swap_axis,
        "expand_dims" => expand_dims,
        "squeeze" => squeeze,
        "slice" | "crop" => slice,
        "slice_axis" => slice_axis,
        "Concat" | "concat" | "_rnn_param_concat" => concat,
        "stack" => stack,
        "SliceChannel" | "split" => slice_channel,
        "tile" => tile,
        "repeat" => repeat,
        "reverse" | "flip" => reverse,
        "broadcast_to" => broadcast_to,
        "broadcast_axis" | "broadcast_axes" => broadcast_axis,
        "broadcast_like" => broadcast_like,
        "take" => take,
        "pick" => pick,
        "one_hot" => one_hot,
        "dot" => dot,
        "batch_dot" => batch_dot,
        "shape_array" => shape_array,
        "size_array" => size_array,
        "_arange" | "arange" => arange,
        _ => return None,
    })
}

fn bad(n: &SymNode, msg: impl std::fmt::Display) -> Error {
    Error::shape(n.op.clone(), format!("node {:?}: {msg}", n.name))
}

/// MXNet's `Reshape` shape rule: `0` copies a dim, `-1` infers one, `-2` copies the rest, `-3`
/// merges two dims, `-4` splits one into the next two codes; `reverse` applies it from the
/// right.
pub fn reshape_dims(
    src: &[usize],
    target: &[i64],
    reverse: bool,
) -> std::result::Result<Vec<usize>, String> {
    let mut src = src.to_vec();
    let mut target = target.to_vec();
    if reverse {
        src.reverse();
        target.reverse();
    }
    let total: usize = src.iter().product();
    let mut dst: Vec<usize> = Vec::with_capacity(target.len());
    let mut si = 0usize;
    let mut inferred: Option<usize> = None;
    let take_src = |si: &mut usize| -> std::result::Result<usize, String> {
        let d = *src
            .get(*si)
            .ok_or_else(|| format!("the codes {target:?} use more dims than the input has"))?;
        *si += 1;
        Ok(d)
    };
    let mut i = 0;
    while i < target.len() {
        match target[i] {
            0 => dst.push(take_src(&mut si)?),
            -1 => {
                if inferred.is_some() {
                    return Err("more than one -1".into());
                }
                inferred = Some(dst.len());
                dst.push(1);
                si += 1;
            }
            -2 => {
                dst.extend_from_slice(src.get(si..).unwrap_or(&[]));
                si = src.len();
            }
            -3 => {
                let a = take_src(&mut si)?;
                let b = take_src(&mut si)?;
                dst.push(a * b);
            }
            -4 => {
                let d0 = take_src(&mut si)?;
                let (Some(&a), Some(&b)) = (target.get(i + 1), target.get(i + 2)) else {
                    return Err("-4 must be followed by two codes".into());
                };
                let (a, b) = match (a, b) {
                    (-1, b) if b > 0 => (d0 / b as usize, b as usize),
                    (a, -1) if a > 0 => (a as usize, d0 / a as usize),
                    (a, b) if a > 0 && b > 0 => (a as usize, b as usize),
                    _ => return Err(format!("-4 is followed by {a}, {b}")),
                };
                if a * b != d0 {
                    return Err(format!("-4 splits {d0} into {a} x {b}"));
                }
                dst.push(a);
                dst.push(b);
                i += 2;
            }
            d if d > 0 => {
                dst.push(d as usize);
                si += 1;
            }
            d => return Err(format!("unknown code {d}")),
        }
        i += 1;
    }
    if let Some(k) = inferred {
        let rest: usize = dst
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != k)
            .map(|(_, &d)| d)
            .product();
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(format!(
                "cannot infer the -1 dim: {total} elements into {dst:?}"
            ));
        }
        dst[k] = total / rest;
    }
    if reverse {
        dst.reverse();
    }
    let got: usize = dst.iter().product();
    if got != total {
        return Err(format!(
            "{src:?} has {total} elements, the new shape {dst:?} has {got}"
        ));
    }
    Ok(dst)
}

fn reshape(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let x = cx.input(n, 0)?;
    let src = cx.dims(x)?;
    let dims = match a.tuple("shape")?.filter(|s| !s.is_empty()) {
        Some(codes) => reshape_dims(&src, &codes, a.bool("reverse", false)?)
            .map_err(|m| bad(n, format!("input {src:?}, shape {codes:?}: {m}")))?,
        None => {
            // The deprecated form: target_shape with one 0 inferred, keep_highest.
            let target = a.tuple("target_shape")?.ok_or_else(|| a.missing("shape"))?;
            let mut codes: Vec<i64> = target
                .iter()
                .map(|&d| if d == 0 { -1 } else { d })
                .collect();
            if a.bool("keep_highest", false)? {
                codes.insert(0, src.first().copied().unwrap_or(1) as i64);
            }
            let total: usize = src.iter().product();
            let known: i64 = codes.iter().filter(|&&d| d > 0).product();
            let dims: Vec<usize> = codes
                .iter()
                .map(|&d| {
                    if d > 0 {
                        d as usize
                    } else if known > 0 {
                        total / known as usize
                    } else {
                        0
                    }
                })
                .collect();
            if dims.iter().product::<usize>() != total {
                return Err(bad(
                    n,
                    format!("target_shape {target:?} does not fit {src:?}"),
                ));
            }
            dims
        }
    };
    one(cx.reshape(x, &dims)?)
}

fn flatten(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Flatten, &[x])?)
}

fn transpose(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let axes = Attrs::new(n).tuple("axes")?.filter(|v| !v.is_empty());
    let x = cx.input(n, 0)?;
    let rank = cx.dims(x)?.len() as i64;
    let axes = match axes {
        None => None,
        Some(v) => Some(
            v.iter()
                .map(|&a| {
                    let a2 = if a < 0 { a + rank } else { a };
                    usize::try_from(a2).map_err(|_| bad(n, format!("axis {a} for rank {rank}")))
                })
                .collect::<Result<Vec<usize>>>()?,
        ),
    };
    one(cx.op(Op::Transpose { axes }, &[x])?)
}

fn swap_axis(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x)?.shape;
    let d1 = shape.axis(a.int("dim1", 0)? as isize, "SwapAxis")?;
    let d2 = shape.axis(a.int("dim2", 0)? as isize, "SwapAxis")?;
    let mut perm: Vec<usize> = (0..shape.rank()).collect();
    perm.swap(d1, d2);
    one(cx.op(Op::Transpose { axes: Some(perm) }, &[x])?)
}

fn expand_dims(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let axis = a.opt_int("axis")?.ok_or_else(|| a.missing("axis"))? as isize;
    let x = cx.input(n, 0)?;
    one(cx.op(Op::ExpandDims { axis }, &[x])?)
}

fn squeeze(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let axes = Attrs::new(n)
        .tuple("axis")?
        .filter(|v| !v.is_empty())
        .map(|v| v.into_iter().map(|a| a as isize).collect());
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Squeeze { axes }, &[x])?)
}

fn slice(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let begin = a.opt_tuple("begin")?.ok_or_else(|| a.missing("begin"))?;
    let end = a.opt_tuple("end")?.ok_or_else(|| a.missing("end"))?;
    let mut step = a.opt_tuple("step")?.unwrap_or_default();
    if begin.len() != end.len() || (!step.is_empty() && step.len() != begin.len()) {
        return Err(bad(
            n,
            format!("begin {begin:?}, end {end:?} and step {step:?} differ in length"),
        ));
    }
    if step.is_empty() {
        step = vec![None; begin.len()];
    }
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Slice { begin, end, step }, &[x])?)
}

fn slice_axis(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let axis = a.opt_int("axis")?.ok_or_else(|| a.missing("axis"))? as isize;
    let begin = a.opt_int("begin")?.unwrap_or(0);
    let end = a.opt_int("end")?;
    let x = cx.input(n, 0)?;
    one(cx.op(Op::SliceAxis { axis, begin, end }, &[x])?)
}

fn all_inputs(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<kiln_ir::NodeId>> {
    (0..n.inputs.len()).map(|k| cx.input(n, k)).collect()
}

fn concat(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let axis = Attrs::new(n).int("dim", 1)? as isize;
    let xs = all_inputs(cx, n)?;
    if xs.len() == 1 {
        return one(xs[0]);
    }
    one(cx.op(Op::Concat { axis }, &xs)?)
}

fn stack(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let axis = Attrs::new(n).int("axis", 0)? as isize;
    let xs = all_inputs(cx, n)?;
    one(cx.op(Op::Stack { axis }, &xs)?)
}

/// `SliceChannel`/`split`: `num_outputs` equal parts along `axis`, one kiln node each.
fn slice_channel(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let parts = a.req_usize("num_outputs")?;
    let squeeze = a.bool("squeeze_axis", false)?;
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x)?.shape;
    let axis = shape.axis(a.int("axis", 1)? as isize, "SliceChannel")?;
    let len = shape.dims()[axis];
    if parts == 0 || !len.is_multiple_of(parts) {
        return Err(bad(
            n,
            format!("cannot split {len} (axis {axis} of {shape}) into {parts} equal parts"),
        ));
    }
    let step = len / parts;
    let mut outs = Vec::with_capacity(parts);
    for i in 0..parts {
        let s = cx.slice_axis(x, axis as isize, i * step, (i + 1) * step)?;
        let s = if squeeze {
            if step != 1 {
                return Err(bad(n, "squeeze_axis needs parts of size 1"));
            }
            cx.op(
                Op::Squeeze {
                    axes: Some(vec![axis as isize]),
                },
                &[s],
            )?
        } else {
            s
        };
        outs.push(Val::Node(s));
    }
    Ok(outs)
}

fn tile(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let reps = a.utuple("reps")?.ok_or_else(|| a.missing("reps"))?;
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Tile { reps }, &[x])?)
}

fn repeat(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let repeats = a.req_usize("repeats")?;
    let axis = a.opt_int("axis")?.map(|v| v as isize);
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Repeat { repeats, axis }, &[x])?)
}

fn reverse(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let axes: Vec<isize> = a
        .tuple("axis")?
        .ok_or_else(|| a.missing("axis"))?
        .into_iter()
        .map(|v| v as isize)
        .collect();
    let x = cx.input(n, 0)?;
    one(cx.op(Op::Flip { axes }, &[x])?)
}

fn broadcast_to(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let target = a.utuple("shape")?.ok_or_else(|| a.missing("shape"))?;
    let x = cx.input(n, 0)?;
    let src = cx.dims(x)?;
    if target.len() < src.len() {
        return Err(bad(n, format!("cannot broadcast {src:?} to {target:?}")));
    }
    let off = target.len() - src.len();
    // 0 keeps the input's dim.
    let dims: Vec<usize> = target
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 0 && i >= off { src[i - off] } else { d })
        .collect();
    one(cx.op(
        Op::BroadcastTo {
            shape: Shape::new(&dims),
        },
        &[x],
    )?)
}

fn broadcast_axis(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let axes = a.tuple("axis")?.unwrap_or_default();
    let sizes = a.utuple("size")?.unwrap_or_default();
    if axes.len() != sizes.len() {
        return Err(bad(
            n,
            format!("axis {axes:?} and size {sizes:?} differ in length"),
        ));
    }
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x)?.shape;
    let mut dims = shape.dims().to_vec();
    for (&ax, &size) in axes.iter().zip(&sizes) {
        let i = shape.axis(ax as isize, "broadcast_axis")?;
        if dims[i] != 1 {
            return Err(bad(n, format!("axis {ax} of {shape} is not 1")));
        }
        dims[i] = size;
    }
    one(cx.op(
        Op::BroadcastTo {
            shape: Shape::new(&dims),
        },
        &[x],
    )?)
}

fn broadcast_like(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let x = cx.input(n, 0)?;
    let like = cx.input(n, 1)?;
    let mut dims = cx.dims(x)?;
    let ld = cx.dims(like)?;
    match (a.tuple("lhs_axes")?, a.tuple("rhs_axes")?) {
        (Some(la), Some(ra)) if !la.is_empty() => {
            if la.len() != ra.len() {
                return Err(bad(n, "lhs_axes and rhs_axes differ in length"));
            }
            let xs = cx.ty(x)?.shape;
            let ls = Shape::new(&ld);
            for (&l, &r) in la.iter().zip(&ra) {
                let li = xs.axis(l as isize, "broadcast_like")?;
                let ri = ls.axis(r as isize, "broadcast_like")?;
                dims[li] = ld[ri];
            }
        }
        _ => dims = ld,
    }
    one(cx.op(
        Op::BroadcastTo {
            shape: Shape::new(&dims),
        },
        &[x],
    )?)
}

fn index_mode(n: &SymNode) -> Result<()> {
    match Attrs::new(n).str_or("mode", "clip") {
        "clip" | "raise" => Ok(()),
        other => Err(Error::invalid(
            n.op.clone(),
            format!("node {:?}: mode={other} is not supported (clip is)", n.name),
        )),
    }
}

fn take(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    index_mode(n)?;
    let axis = Attrs::new(n).int("axis", 0)? as isize;
    let data = cx.input(n, 0)?;
    let idx = cx.input(n, 1)?;
    one(cx.op(Op::Take { axis }, &[data, idx])?)
}

fn pick(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    index_mode(n)?;
    let a = Attrs::new(n);
    let keepdims = a.bool("keepdims", false)?;
    let data = cx.input(n, 0)?;
    let idx = cx.input(n, 1)?;
    let axis = if a.is_none("axis") {
        None
    } else {
        Some(a.int("axis", -1)?)
    };
    let Some(axis) = axis else {
        // axis=None: pick from the flattened data.
        let total: usize = cx.dims(data)?.iter().product();
        let flat = cx.reshape(data, &[total])?;
        let ni: usize = cx.dims(idx)?.iter().product();
        let fi = cx.reshape(idx, &[ni])?;
        return one(cx.op(Op::Take { axis: 0 }, &[flat, fi])?);
    };
    // MXNet allows the index to keep the picked axis as size 1.
    let dd = cx.dims(data)?;
    let idd = cx.dims(idx)?;
    let ax = cx.ty(data)?.shape.axis(axis as isize, "pick")?;
    let idx = if idd.len() == dd.len() && idd.get(ax) == Some(&1) {
        let mut d = idd.clone();
        d.remove(ax);
        cx.reshape(idx, &d)?
    } else {
        idx
    };
    one(cx.op(
        Op::Pick {
            axis: axis as isize,
            keepdims,
        },
        &[data, idx],
    )?)
}

fn one_hot(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let depth = a.req_usize("depth")?;
    let on_value = a.float("on_value", 1.0)?;
    let off_value = a.float("off_value", 0.0)?;
    let dtype = a.dtype("dtype", DType::F32)?;
    let x = cx.input(n, 0)?;
    one(cx.op(
        Op::OneHot {
            depth,
            on_value,
            off_value,
            dtype,
        },
        &[x],
    )?)
}

fn dot(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let transpose_a = a.bool("transpose_a", false)?;
    let transpose_b = a.bool("transpose_b", false)?;
    let x = cx.input(n, 0)?;
    let y = cx.input(n, 1)?;
    one(cx.op(
        Op::Dot {
            transpose_a,
            transpose_b,
        },
        &[x, y],
    )?)
}

fn batch_dot(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let transpose_a = a.bool("transpose_a", false)?;
    let transpose_b = a.bool("transpose_b", false)?;
    let x = cx.input(n, 0)?;
    let y = cx.input(n, 1)?;
    one(cx.op(
        Op::BatchDot {
            transpose_a,
            transpose_b,
        },
        &[x, y],
    )?)
}

fn shape_array(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    let dims: Vec<i64> = cx.dims(x)?.iter().map(|&d| d as i64).collect();
    let len = dims.len();
    one(cx.g.add_const(Tensor::from_vec(dims, [len])?)?)
}

fn size_array(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    let size = cx.dims(x)?.iter().product::<usize>() as i64;
    one(cx.g.add_const(Tensor::from_vec(vec![size], [1])?)?)
}

fn arange(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    if a.bool("infer_range", false)? {
        return Err(Error::invalid(
            "_arange",
            format!("node {:?}: infer_range=True is not supported", n.name),
        ));
    }
    let first = a.float("start", 0.0)?;
    let (start, stop) = match a.opt_float("stop")? {
        Some(stop) => (first, stop),
        None => (0.0, first),
    };
    let step = a.float("step", 1.0)?;
    let repeats = a.usize("repeat", 1)?;
    let dtype = a.dtype("dtype", DType::F32)?;
    let r = cx.op(
        Op::Arange {
            start,
            stop,
            step,
            dtype,
        },
        &[],
    )?;
    if repeats > 1 {
        return one(cx.op(
            Op::Repeat {
                repeats,
                axis: Some(0),
            },
            &[r],
        )?);
    }
    one(r)
}

#[cfg(test)]
mod tests {
    use super::reshape_dims;

    #[test]
    fn reshape_codes_follow_mxnet() {
        // The examples of MXNet's Reshape documentation.
        type Case<'a> = (&'a [usize], &'a [i64], bool, &'a [usize]);
        let cases: &[Case<'_>] = &[
            (&[2, 3, 4], &[4, 0, 2], false, &[4, 3, 2]),
            (&[2, 3, 4], &[2, 0, 0], false, &[2, 3, 4]),
            (&[2, 3, 4], &[6, 1, -1], false, &[6, 1, 4]),
            (&[2, 3, 4], &[3, -1, 8], false, &[3, 1, 8]),
            (&[2, 3, 4], &[-1], false, &[24]),
            (&[2, 3, 4], &[-2], false, &[2, 3, 4]),
            (&[2, 3, 4], &[2, -2], false, &[2, 3, 4]),
            (&[2, 3, 4], &[-2, 1, 1], false, &[2, 3, 4, 1, 1]),
            (&[2, 3, 4], &[-3, 4], false, &[6, 4]),
            (&[2, 3, 4, 5], &[-3, -3], false, &[6, 20]),
            (&[2, 3, 4], &[0, -3], false, &[2, 12]),
            (&[2, 3, 4], &[-3, -2], false, &[6, 4]),
            (&[2, 3, 4], &[-4, 1, 2, -2], false, &[1, 2, 3, 4]),
            (&[2, 3, 4], &[2, -4, -1, 3, -2], false, &[2, 1, 3, 4]),
            (&[10, 5, 4], &[-1, 0], false, &[40, 5]),
            (&[10, 5, 4], &[-1, 0], true, &[50, 4]),
        ];
        for (src, codes, rev, want) in cases {
            assert_eq!(
                reshape_dims(src, codes, *rev).unwrap(),
                want.to_vec(),
                "{src:?} {codes:?} reverse={rev}"
            );
        }
        for (src, codes) in [
            (&[2usize, 3][..], &[-1i64, -1][..]),
            (&[2, 3], &[5]),
            (&[2, 3], &[-4, 4, -1]),
            (&[2], &[0, 0]),
            (&[2, 3], &[-7]),
        ] {
            assert!(
                reshape_dims(src, codes, false).is_err(),
                "{src:?} {codes:?}"
            );
        }
    }
}
