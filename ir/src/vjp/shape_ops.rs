//! VJPs of the shape ops: reshape back, inverse permutations, slices scattered back, tiles
//! and repeats summed back, and the inverse of a shuffle.

use super::{expect_inputs, VjpBuilder, Wanted};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{Op, ReduceOp};
use crate::shape::{normalize_axis, Shape};

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    g: &B::Value,
    w: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    if let Op::Concat { axis } = op {
        return concat(b, op, *axis, inputs, g, w);
    }
    if let Op::Stack { axis } = op {
        return stack(b, op, *axis, inputs, g, w);
    }
    expect_inputs(op, inputs, 1)?;
    let x = &inputs[0];
    let xs = b.shape(x);
    let gx = match op {
        Op::Reshape { .. } | Op::ExpandDims { .. } | Op::Squeeze { .. } | Op::Flatten => {
            b.reshape(g, &xs)?
        }
        Op::Transpose { axes: None } => b.apply(Op::Transpose { axes: None }, &[g])?,
        Op::Transpose { axes: Some(perm) } => {
            let mut inv = vec![usize::MAX; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                match inv.get_mut(p) {
                    Some(slot) if *slot == usize::MAX => *slot = i,
                    _ => {
                        return Err(Error::invalid(
                            op.name(),
                            format!("axes {perm:?} are not a permutation"),
                        ))
                    }
                }
            }
            b.transpose(g, &inv)?
        }
        Op::BroadcastTo { .. } => b.sum_to(g, &xs)?,
        Op::Flip { axes } => b.apply(Op::Flip { axes: axes.clone() }, &[g])?,
        Op::Slice { begin, end, step } => {
            let (begin, step) = resolve_slice(op, &xs, begin, end, step)?;
            b.apply(
                Op::SliceGrad {
                    shape: xs.clone(),
                    begin,
                    step,
                },
                &[g],
            )?
        }
        Op::SliceAxis { axis, begin, end } => {
            let (ax, start, stop) =
                crate::infer::resolve_slice_axis(op.name(), &xs, *axis, *begin, *end)?;
            let mut begins = vec![0i64; xs.rank()];
            if stop > start {
                begins[ax] = start as i64;
            }
            b.apply(
                Op::SliceGrad {
                    shape: xs.clone(),
                    begin: begins,
                    step: vec![1; xs.rank()],
                },
                &[g],
            )?
        }
        Op::Tile { reps } => tile(b, reps, &xs, g)?,
        Op::Repeat { repeats, axis } => repeat(b, op, *repeats, *axis, &xs, g)?,
        Op::SliceGrad { shape, begin, step } => slice_grad(b, op, shape, begin, step, x, g)?,
        Op::Shuffle { seed } => unshuffle(b, *seed, &xs, g)?,
        _ => return Err(Error::invalid(op.name(), "not a shape op")),
    };
    Ok(vec![Some(gx)])
}

/// The resolved begin and step on each axis, as `SliceGrad` takes them (the slice rule is
/// shape inference's, so forward and backward cannot disagree). Empty axes get begin 0.
fn resolve_slice(
    op: &Op,
    xs: &Shape,
    begin: &[Option<i64>],
    end: &[Option<i64>],
    step: &[Option<i64>],
) -> Result<(Vec<i64>, Vec<i64>)> {
    let dims = crate::infer::resolve_slice(op.name(), xs, begin, end, step)?;
    let begins = dims
        .iter()
        .map(|d| if d.count == 0 { 0 } else { d.begin })
        .collect();
    let steps = dims.iter().map(|d| d.step).collect();
    Ok((begins, steps))
}

fn concat<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    axis: isize,
    inputs: &[B::Value],
    g: &B::Value,
    w: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid(op.name(), "vjp needs at least one input"))?;
    let ax = normalize_axis(axis, b.shape(first).rank(), op.name())?;
    let mut offset = 0i64;
    let mut out = Vec::with_capacity(inputs.len());
    for (i, x) in inputs.iter().enumerate() {
        let len = b.shape(x).get(ax).copied().unwrap_or(0) as i64;
        if !w.at(i) {
            out.push(None);
            offset += len;
            continue;
        }
        let part = b.apply(
            Op::SliceAxis {
                axis: ax as isize,
                begin: offset,
                end: Some(offset + len),
            },
            &[g],
        )?;
        out.push(Some(part));
        offset += len;
    }
    Ok(out)
}

fn stack<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    axis: isize,
    inputs: &[B::Value],
    g: &B::Value,
    w: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid(op.name(), "vjp needs at least one input"))?;
    let xs = b.shape(first);
    let ax = normalize_axis(axis, xs.rank() + 1, op.name())?;
    let mut out = Vec::with_capacity(inputs.len());
    for i in 0..inputs.len() as i64 {
        if !w.at(i as usize) {
            out.push(None);
            continue;
        }
        let part = b.apply(
            Op::SliceAxis {
                axis: ax as isize,
                begin: i,
                end: Some(i + 1),
            },
            &[g],
        )?;
        out.push(Some(b.reshape(&part, &xs)?));
    }
    Ok(out)
}

/// Tile: view the output as `[r0, d0, r1, d1, ...]` and sum over the repetition axes.
fn tile<B: VjpBuilder>(b: &mut B, reps: &[usize], xs: &Shape, g: &B::Value) -> Result<B::Value> {
    let rank = xs.rank().max(reps.len());
    let pad = |v: &[usize]| -> Vec<usize> {
        let mut p = vec![1; rank - v.len()];
        p.extend_from_slice(v);
        p
    };
    let (dims, reps) = (pad(xs), pad(reps));
    let split: Vec<usize> = reps.iter().zip(&dims).flat_map(|(&r, &d)| [r, d]).collect();
    let g2 = b.reshape(g, &Shape::from(split))?;
    let rep_axes: Vec<usize> = (0..rank).map(|i| 2 * i).collect();
    let summed = b.sum(&g2, &rep_axes, false)?;
    b.reshape(&summed, xs)
}

/// Repeat: view the output as `[.., d, repeats, ..]` and sum over the repeats.
fn repeat<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    repeats: usize,
    axis: Option<isize>,
    xs: &Shape,
    g: &B::Value,
) -> Result<B::Value> {
    let (split, ax) = match axis {
        None => (vec![xs.numel(), repeats], 1),
        Some(a) => {
            let ax = xs.axis(a, op.name())?;
            let mut split = xs.to_vec();
            split.insert(ax + 1, repeats);
            (split, ax + 1)
        }
    };
    let g2 = b.reshape(g, &Shape::from(split))?;
    let summed = b.sum(&g2, &[ax], false)?;
    b.reshape(&summed, xs)
}

/// SliceGrad is linear in `dy`; its adjoint is the strided slice it scatters into.
fn slice_grad<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    shape: &Shape,
    begin: &[i64],
    step: &[i64],
    dy: &B::Value,
    g: &B::Value,
) -> Result<B::Value> {
    let counts = b.shape(dy);
    if begin.len() != shape.rank() || step.len() != shape.rank() || counts.rank() != shape.rank() {
        return Err(Error::shape(
            op.name(),
            format!(
                "vjp: begin {begin:?} and step {step:?} do not fit shape {shape} and dy {counts}"
            ),
        ));
    }
    let mut ends = Vec::with_capacity(shape.rank());
    for i in 0..shape.rank() {
        let end = begin[i] + counts[i] as i64 * step[i];
        // A negative end would count from the back; past the front is "to the start".
        ends.push(if end < 0 { None } else { Some(end) });
    }
    b.apply(
        Op::Slice {
            begin: begin.iter().map(|&v| Some(v)).collect(),
            end: ends,
            step: step.iter().map(|&v| Some(v)).collect(),
        },
        &[g],
    )
}

/// Shuffle permutes the first axis: `y[i] = x[p[i]]`. The permutation is recovered by
/// shuffling (same seed, same shape) a tensor whose row `i` holds `i`, and the gradient is
/// scattered back with `TakeGrad` (`dx[p[i]] += dy[i]`, each row hit once).
fn unshuffle<B: VjpBuilder>(b: &mut B, seed: u64, xs: &Shape, g: &B::Value) -> Result<B::Value> {
    if xs.rank() == 0 {
        return Err(Error::shape(
            "shuffle",
            "vjp needs an input of rank >= 1, got []",
        ));
    }
    let n = xs[0];
    let rows = b.apply(
        Op::Arange {
            start: 0.0,
            stop: n as f64,
            step: 1.0,
            dtype: DType::I64,
        },
        &[],
    )?;
    let mut col = vec![1usize; xs.rank()];
    col[0] = n;
    let rows = b.reshape(&rows, &Shape::from(col))?;
    let rows = b.broadcast_to(&rows, xs)?;
    let shuffled = b.apply(Op::Shuffle { seed }, &[&rows])?;
    let rest: Vec<usize> = (1..xs.rank()).collect();
    let perm = b.reduce(ReduceOp::Max, &shuffled, &rest, false)?;
    b.apply(
        Op::TakeGrad {
            axis: 0,
            shape: xs.clone(),
        },
        &[&perm, g],
    )
}
