//! Shape/dtype inference for the shape ops: reshaping, permuting, slicing, joining, tiling.
//!
//! Every shape op keeps its input's dtype and works on every dtype. The rules follow numpy
//! (MXNet 1.x for `reshape` codes and `slice_axis`); each error names the op and the shapes.
//! Where `op.rs` leaves a case open:
//! - `reshape`: codes below -1 are errors; a `-1` next to a zero-size dim is ambiguous and an
//!   error (as in numpy);
//! - `squeeze`, `flip`: naming an axis twice is an error (as in numpy);
//! - `flatten` of a scalar is an error;
//! - `slice_axis`: begin and end clamp to the axis after wrapping negatives; `begin > end` is
//!   an error (MXNet), `begin == end` an empty result;
//! - `repeat` of a scalar with an axis is an error (numpy allows `axis=None` only).

use super::common::{axis_of, check_size, distinct_axes, expect_inputs};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let name = op.name();
    match op {
        Op::Concat { axis } => return concat(name, *axis, inputs),
        Op::Stack { axis } => return stack(name, *axis, inputs),
        _ => {}
    }
    expect_inputs(op, inputs, 1)?;
    let x = &inputs[0];
    let dims = x.shape.dims();
    let shape: Shape = match op {
        Op::Reshape { shape } => reshape(name, &x.shape, shape)?,
        Op::Transpose { axes } => {
            let perm = permutation(name, &x.shape, axes.as_deref())?;
            perm.iter().map(|&a| dims[a]).collect::<Vec<_>>().into()
        }
        Op::ExpandDims { axis } => {
            let a = insert_axis(name, *axis, &x.shape)?;
            let mut d = dims.to_vec();
            d.insert(a, 1);
            d.into()
        }
        Op::Squeeze { axes } => squeeze(name, &x.shape, axes.as_deref())?,
        Op::Flatten => match dims {
            [] => {
                return Err(Error::shape(
                    name,
                    "needs an input of rank >= 1, got a scalar []",
                ))
            }
            [n, rest @ ..] => Shape::new(&[*n, rest.iter().product()]),
        },
        Op::BroadcastTo { shape } => {
            if !x.shape.broadcasts_to(shape) {
                return Err(Error::shape(
                    name,
                    format!("cannot broadcast {} to {shape}", x.shape),
                ));
            }
            check_size(name, shape, x.dtype)?;
            shape.clone()
        }
        Op::Slice { begin, end, step } => {
            let resolved = resolve_slice(name, &x.shape, begin, end, step)?;
            let mut d = dims.to_vec();
            for (dim, r) in d.iter_mut().zip(&resolved) {
                *dim = r.count;
            }
            d.into()
        }
        Op::SliceAxis { axis, begin, end } => {
            let (a, b, e) = resolve_slice_axis(name, &x.shape, *axis, *begin, *end)?;
            let mut d = dims.to_vec();
            d[a] = e - b;
            d.into()
        }
        Op::Tile { reps } => {
            let rank = dims.len().max(reps.len());
            let d: Vec<usize> = (0..rank)
                .map(|i| {
                    let dim = pad_front(dims, rank, i);
                    let rep = pad_front(reps, rank, i);
                    dim.checked_mul(rep)
                })
                .collect::<Option<_>>()
                .ok_or_else(|| too_large(name, &x.shape))?;
            let s = Shape::from(d);
            check_size(name, &s, x.dtype)?;
            s
        }
        Op::Repeat { repeats, axis } => {
            let s: Shape = match axis {
                None => {
                    let n = x.shape.numel().checked_mul(*repeats);
                    Shape::new(&[n.ok_or_else(|| too_large(name, &x.shape))?])
                }
                Some(axis) => {
                    let a = axis_of(name, *axis, &x.shape)?;
                    let mut d = dims.to_vec();
                    d[a] = d[a]
                        .checked_mul(*repeats)
                        .ok_or_else(|| too_large(name, &x.shape))?;
                    d.into()
                }
            };
            check_size(name, &s, x.dtype)?;
            s
        }
        Op::Flip { axes } => {
            distinct_axes(name, &x.shape, axes)?;
            x.shape.clone()
        }
        Op::SliceGrad { shape, begin, step } => {
            slice_grad(name, &x.shape, x.dtype, shape, begin, step)?;
            shape.clone()
        }
        _ => return Err(Error::invalid(name, "is not a shape op")),
    };
    Ok(TensorType::new(shape, x.dtype))
}

/// One axis of a resolved numpy slice: the first index taken, the step between taken
/// indices (never 0, negative walks backwards) and how many indices are taken.
///
/// When `count` is 0, `begin` is the clamped start and may lie outside the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceDim {
    /// First index taken.
    pub begin: i64,
    /// Distance between taken indices.
    pub step: i64,
    /// Number of indices taken.
    pub count: usize,
}

/// Resolves numpy basic slicing `x[b0:e0:s0, b1:e1:s1, ..]` of an input of shape `shape` to
/// one [`SliceDim`] per axis (axes past `begin.len()` are taken whole).
///
/// Defaults (`None`) are numpy's: step 1; begin 0 (or the last index for a negative step);
/// end the axis length (or "before index 0" for a negative step). Negative indices count from
/// the end; out-of-range indices clamp. These resolved values are what `SliceGrad` takes.
pub fn resolve_slice(
    name: &str,
    shape: &Shape,
    begin: &[Option<i64>],
    end: &[Option<i64>],
    step: &[Option<i64>],
) -> Result<Vec<SliceDim>> {
    if begin.len() != end.len() || begin.len() != step.len() {
        return Err(Error::invalid(
            name,
            format!(
                "begin, end and step must have one length, got {}, {} and {} (input {shape})",
                begin.len(),
                end.len(),
                step.len()
            ),
        ));
    }
    if begin.len() > shape.rank() {
        return Err(Error::shape(
            name,
            format!(
                "slices {} axes but input {shape} has rank {}",
                begin.len(),
                shape.rank()
            ),
        ));
    }
    let mut out = Vec::with_capacity(shape.rank());
    for (i, &n) in shape.iter().enumerate() {
        if i >= begin.len() {
            out.push(SliceDim {
                begin: 0,
                step: 1,
                count: n,
            });
            continue;
        }
        let s = step[i].unwrap_or(1);
        if s == 0 {
            return Err(Error::invalid(
                name,
                format!("step is 0 on axis {i} (input {shape})"),
            ));
        }
        // i128 keeps `index + n` and `end - begin` exact for any i64 attribute.
        let n = n as i128;
        let wrap = |v: i64| {
            let v = v as i128;
            if v < 0 {
                v + n
            } else {
                v
            }
        };
        let (b, count) = if s > 0 {
            let b = begin[i].map_or(0, wrap).clamp(0, n);
            let e = end[i].map_or(n, wrap).clamp(0, n);
            (
                b,
                ((e - b).max(0) as u128).div_ceil(s.unsigned_abs() as u128),
            )
        } else {
            let b = begin[i].map_or(n - 1, wrap).clamp(-1, n - 1);
            let e = end[i].map_or(-1, wrap).clamp(-1, n - 1);
            (
                b,
                ((b - e).max(0) as u128).div_ceil(s.unsigned_abs() as u128),
            )
        };
        out.push(SliceDim {
            begin: b as i64,
            step: s,
            count: count as usize,
        });
    }
    Ok(out)
}

/// Resolves `slice_axis`: the normalized axis and the clamped `[begin, end)` range on it.
/// Negative indices count from the end; `begin > end` (after clamping) is an error, as in MXNet.
pub fn resolve_slice_axis(
    name: &str,
    shape: &Shape,
    axis: isize,
    begin: i64,
    end: Option<i64>,
) -> Result<(usize, usize, usize)> {
    let a = axis_of(name, axis, shape)?;
    let n = shape[a] as i128;
    let wrap = |v: i64| {
        let v = v as i128;
        (if v < 0 { v + n } else { v }).clamp(0, n)
    };
    let b = wrap(begin);
    let e = end.map_or(n, wrap);
    if b > e {
        let end_text = end.map_or_else(|| "None".to_string(), |e| e.to_string());
        return Err(Error::invalid(
            name,
            format!(
                "begin {begin} (index {b}) is after end {end_text} (index {e}) on axis {axis} \
                 of input {shape}"
            ),
        ));
    }
    Ok((a, b as usize, e as usize))
}

/// The output dims of MXNet reshape codes (`0` copies, `-1` infers).
fn reshape(name: &str, input: &Shape, codes: &[i64]) -> Result<Shape> {
    let target = format!(
        "[{}]",
        codes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut dims = Vec::with_capacity(codes.len());
    let mut inferred: Option<usize> = None;
    for (i, &c) in codes.iter().enumerate() {
        match c {
            0 => match input.get(i) {
                Some(&d) => dims.push(d),
                None => {
                    return Err(Error::shape(
                        name,
                        format!(
                            "code 0 at position {i} but input has rank {} (input {input}, \
                             target {target})",
                            input.rank()
                        ),
                    ))
                }
            },
            -1 => {
                if let Some(j) = inferred {
                    return Err(Error::invalid(
                        name,
                        format!(
                            "more than one -1 in target {target} (positions {j} and {i}); \
                             input {input}"
                        ),
                    ));
                }
                inferred = Some(i);
                dims.push(1);
            }
            c if c > 0 => dims.push(usize::try_from(c).map_err(|_| too_large(name, input))?),
            c => {
                return Err(Error::invalid(
                    name,
                    format!(
                        "invalid code {c} at position {i} of target {target}: sizes must be \
                         positive, 0 (copy the input dim) or -1 (infer); input {input}"
                    ),
                ))
            }
        }
    }
    let numel = input.numel();
    let known = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| too_large(name, input))?;
    match inferred {
        Some(pos) => {
            if numel.checked_rem(known) != Some(0) {
                return Err(Error::shape(
                    name,
                    format!(
                        "cannot reshape {input} ({numel} elements) to {target}: {numel} is not \
                         a multiple of {known}, the product of the other dims"
                    ),
                ));
            }
            dims[pos] = numel / known;
        }
        None => {
            if known != numel {
                return Err(Error::shape(
                    name,
                    format!(
                        "cannot reshape {input} ({numel} elements) to {target} ({known} elements)"
                    ),
                ));
            }
        }
    }
    Ok(dims.into())
}

/// The permutation of `transpose` (`None` reverses the axes), checked to be one.
fn permutation(name: &str, shape: &Shape, axes: Option<&[usize]>) -> Result<Vec<usize>> {
    let rank = shape.rank();
    let Some(axes) = axes else {
        return Ok((0..rank).rev().collect());
    };
    let mut seen = vec![false; rank];
    let valid = axes.len() == rank
        && axes
            .iter()
            .all(|&a| a < rank && !std::mem::replace(&mut seen[a], true));
    if !valid {
        return Err(Error::invalid(
            name,
            format!("axes {axes:?} are not a permutation of 0..{rank} for input {shape}"),
        ));
    }
    Ok(axes.to_vec())
}

/// The dims left by `squeeze`.
fn squeeze(name: &str, shape: &Shape, axes: Option<&[isize]>) -> Result<Shape> {
    let Some(axes) = axes else {
        return Ok(shape
            .iter()
            .copied()
            .filter(|&d| d != 1)
            .collect::<Vec<_>>()
            .into());
    };
    let drop = distinct_axes(name, shape, axes)?;
    for (&axis, &a) in axes.iter().zip(&drop) {
        if shape[a] != 1 {
            return Err(Error::shape(
                name,
                format!(
                    "cannot squeeze axis {axis} of size {} in input {shape}",
                    shape[a]
                ),
            ));
        }
    }
    Ok(shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, &d)| d)
        .collect::<Vec<_>>()
        .into())
}

/// Checks `SliceGrad`'s attributes against `dy` and returns nothing: the output is `shape`.
fn slice_grad(
    name: &str,
    dy: &Shape,
    dtype: DType,
    shape: &Shape,
    begin: &[i64],
    step: &[i64],
) -> Result<()> {
    let rank = shape.rank();
    if begin.len() != rank || step.len() != rank || dy.rank() != rank {
        return Err(Error::shape(
            name,
            format!(
                "begin ({}), step ({}) and dy {dy} must all have the rank of shape {shape}",
                begin.len(),
                step.len()
            ),
        ));
    }
    check_size(name, shape, dtype)?;
    for i in 0..rank {
        let (n, count, b, s) = (shape[i] as i128, dy[i] as i128, begin[i], step[i]);
        if s == 0 {
            return Err(Error::invalid(
                name,
                format!("step is 0 on axis {i} (shape {shape}, dy {dy})"),
            ));
        }
        let last = b as i128 + (count - 1) * s as i128;
        let fits = count == 0 || ((0..n).contains(&(b as i128)) && (0..n).contains(&last));
        if !fits {
            return Err(Error::shape(
                name,
                format!(
                    "{count} elements from {b} with step {s} on axis {i} do not fit in shape \
                     {shape} (dy {dy})"
                ),
            ));
        }
    }
    Ok(())
}

/// `concat`: ≥ 1 inputs of one dtype whose dims match except along `axis`.
fn concat(name: &str, axis: isize, inputs: &[TensorType]) -> Result<TensorType> {
    let first = same_dtype(name, inputs)?;
    let a = axis_of(name, axis, &first.shape)?;
    let mut total = 0usize;
    for (i, t) in inputs.iter().enumerate() {
        let matches = t.shape.rank() == first.shape.rank()
            && t.shape
                .iter()
                .zip(first.shape.iter())
                .enumerate()
                .all(|(k, (x, y))| k == a || x == y);
        if !matches {
            return Err(Error::shape(
                name,
                format!(
                    "input {i} has shape {} but input 0 has {}; all dims except axis {axis} \
                     must match",
                    t.shape, first.shape
                ),
            ));
        }
        total = total
            .checked_add(t.shape[a])
            .ok_or_else(|| too_large(name, &t.shape))?;
    }
    let mut shape = first.shape.clone();
    shape[a] = total;
    check_size(name, &shape, first.dtype)?;
    Ok(TensorType::new(shape, first.dtype))
}

/// `stack`: ≥ 1 inputs of one dtype and one shape, joined along a new axis.
fn stack(name: &str, axis: isize, inputs: &[TensorType]) -> Result<TensorType> {
    let first = same_dtype(name, inputs)?;
    for (i, t) in inputs.iter().enumerate() {
        if t.shape != first.shape {
            return Err(Error::shape(
                name,
                format!(
                    "input {i} has shape {} but input 0 has {}; stacked inputs must have one shape",
                    t.shape, first.shape
                ),
            ));
        }
    }
    let a = insert_axis(name, axis, &first.shape)?;
    let mut dims = first.shape.to_vec();
    dims.insert(a, inputs.len());
    let shape = Shape::from(dims);
    check_size(name, &shape, first.dtype)?;
    Ok(TensorType::new(shape, first.dtype))
}

/// The first input, after checking there is one and that all share its dtype.
fn same_dtype<'a>(name: &str, inputs: &'a [TensorType]) -> Result<&'a TensorType> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid(name, "needs at least 1 input, got 0"))?;
    for (i, t) in inputs.iter().enumerate() {
        if t.dtype != first.dtype {
            return Err(Error::dtype(
                name,
                format!(
                    "input {i} ({}) has dtype {} but input 0 ({}) has {}",
                    t.shape, t.dtype, first.shape, first.dtype
                ),
            ));
        }
    }
    Ok(first)
}

/// Normalizes the position of a new axis (range `-rank-1..=rank`).
fn insert_axis(name: &str, axis: isize, shape: &Shape) -> Result<usize> {
    let r = shape.rank() as isize;
    let a = if axis < 0 { axis + r + 1 } else { axis };
    if (0..=r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::shape(
            name,
            format!(
                "axis {axis} is out of range {}..={r} for a new axis of input {shape}",
                -r - 1
            ),
        ))
    }
}

/// `v[i]` of `v` padded with 1s in front to length `rank`.
fn pad_front(v: &[usize], rank: usize, i: usize) -> usize {
    let off = rank - v.len();
    if i < off {
        1
    } else {
        v[i - off]
    }
}

fn too_large(name: &str, input: &Shape) -> Error {
    Error::shape(
        name,
        format!("the output for input {input} has too many elements"),
    )
}
