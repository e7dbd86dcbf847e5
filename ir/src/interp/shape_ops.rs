//! Reference semantics of the shape ops.
//!
//! Most of them are one kernel: a strided copy. Transpose permutes the input strides,
//! broadcast sets them to 0, slice and flip scale them by the step (negative to walk
//! backwards), and tile/repeat read the input through extra stride-0 axes interleaved with
//! the real ones. Reshape-like ops copy the data unchanged. Copies move contiguous runs at a
//! time where the strides allow.

use super::strided::broadcast_strides;
use crate::error::{Error, Result};
use crate::infer::{resolve_slice, resolve_slice_axis};
use crate::op::Op;
use crate::shape::{normalize_axis, Shape};
use crate::tensor::{DataRef, Element, Storage, Tensor, TensorType, TensorView};
use crate::with_data;
use smallvec::SmallVec;

pub(crate) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Tensor> {
    let name = op.name();
    let x = &inputs[0];
    let dims = x.shape.dims();
    let strides = isize_strides(&x.shape);
    let storage = match op {
        Op::Reshape { .. } | Op::ExpandDims { .. } | Op::Squeeze { .. } | Op::Flatten => {
            x.data.to_storage()
        }
        Op::Transpose { axes } => {
            let perm: Vec<usize> = match axes {
                Some(axes) => axes.clone(),
                None => (0..dims.len()).rev().collect(),
            };
            let s: Vec<isize> = perm.iter().map(|&a| strides[a]).collect();
            strided(x.data, &out.shape, &s, 0)
        }
        Op::BroadcastTo { shape } => {
            let s: Vec<isize> = broadcast_strides(&x.shape, shape, name)?
                .iter()
                .map(|&s| s as isize)
                .collect();
            strided(x.data, shape, &s, 0)
        }
        Op::Slice { begin, end, step } => {
            let resolved = resolve_slice(name, &x.shape, begin, end, step)?;
            let mut base = 0isize;
            let mut s = Vec::with_capacity(dims.len());
            let mut counts = Vec::with_capacity(dims.len());
            for ((r, &stride), &n) in resolved.iter().zip(&strides).zip(dims) {
                // A 0-count axis may have its begin outside the axis; nothing is read then.
                if r.count > 0 && n > 0 {
                    base += r.begin as isize * stride;
                }
                s.push(r.step as isize * stride);
                counts.push(r.count);
            }
            strided(x.data, &Shape::from(counts), &s, base)
        }
        Op::SliceAxis { axis, begin, end } => {
            let (a, b, _) = resolve_slice_axis(name, &x.shape, *axis, *begin, *end)?;
            let base = if out.shape[a] > 0 {
                b as isize * strides[a]
            } else {
                0
            };
            strided(x.data, &out.shape, &strides, base)
        }
        Op::Flip { axes } => {
            let mut s = strides.to_vec();
            let mut base = 0isize;
            for &axis in axes {
                let a = normalize_axis(axis, dims.len(), name)?;
                if dims[a] > 0 {
                    base += (dims[a] - 1) as isize * strides[a];
                }
                s[a] = -strides[a];
            }
            strided(x.data, &x.shape, &s, base)
        }
        Op::Tile { reps } => {
            // Output axis i of size reps[i]·d[i] is read as [reps[i], d[i]] with strides [0, s[i]].
            let rank = out.shape.rank();
            let off = rank - dims.len();
            let rep_off = rank - reps.len();
            let mut view_dims = Vec::with_capacity(2 * rank);
            let mut view_strides = Vec::with_capacity(2 * rank);
            for i in 0..rank {
                let rep = if i < rep_off { 1 } else { reps[i - rep_off] };
                let (d, s) = if i < off {
                    (1, 0)
                } else {
                    (dims[i - off], strides[i - off])
                };
                view_dims.extend([rep, d]);
                view_strides.extend([0, s]);
            }
            strided(x.data, &Shape::from(view_dims), &view_strides, 0)
        }
        Op::Repeat { repeats, axis } => {
            // Output axis a of size d·repeats is read as [d, repeats] with strides [s, 0].
            let (view_dims, view_strides): (Vec<usize>, Vec<isize>) = match axis {
                None => (vec![x.shape.numel(), *repeats], vec![1, 0]),
                Some(axis) => {
                    let a = normalize_axis(*axis, dims.len(), name)?;
                    let mut d = dims.to_vec();
                    let mut s = strides.to_vec();
                    d.insert(a + 1, *repeats);
                    s.insert(a + 1, 0);
                    (d, s)
                }
            };
            strided(x.data, &Shape::from(view_dims), &view_strides, 0)
        }
        Op::Concat { axis } => {
            let a = normalize_axis(*axis, dims.len(), name)?;
            join(name, inputs, a, |v| v.shape[a..].iter().product())?
        }
        Op::Stack { axis } => {
            let a = normalize_axis(*axis, dims.len() + 1, name)?;
            join(name, inputs, a, |v| v.shape[a..].iter().product())?
        }
        Op::SliceGrad { shape, begin, step } => {
            let out_strides = isize_strides(shape);
            let mut base = 0isize;
            let mut s = Vec::with_capacity(dims.len());
            for i in 0..dims.len() {
                if dims[i] > 0 {
                    base += begin[i] as isize * out_strides[i];
                }
                s.push(step[i] as isize * out_strides[i]);
            }
            with_data!(x.data, T, dy => {
                let mut dx = vec![T::default(); shape.numel()];
                scatter_strided(&mut dx, &x.shape, &s, base, dy);
                T::into_storage(dx)
            })
        }
        _ => return Err(Error::invalid(name, "is not a shape op")),
    };
    Tensor::new(out.shape.clone(), storage)
}

fn isize_strides(shape: &Shape) -> SmallVec<[isize; 4]> {
    shape.strides().iter().map(|&s| s as isize).collect()
}

/// `concat`/`stack`: for each outer index, each input's next contiguous chunk in turn.
/// `chunk(v)` is the length of one input's chunk; the outer count is the output's dims
/// before the joined axis.
fn join(
    name: &str,
    inputs: &[TensorView<'_>],
    axis: usize,
    chunk: impl Fn(&TensorView<'_>) -> usize,
) -> Result<Storage> {
    let outer: usize = inputs[0].shape[..axis].iter().product();
    let chunks: Vec<usize> = inputs.iter().map(&chunk).collect();
    with_data!(inputs[0].data, T, _first => {
        let parts: Vec<&[T]> = inputs
            .iter()
            .map(|v| v.typed::<T>(name))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for o in 0..outer {
            for (part, &c) in parts.iter().zip(&chunks) {
                out.extend_from_slice(&part[o * c..(o + 1) * c]);
            }
        }
        Ok(T::into_storage(out))
    })
}

/// Copies `src[base + Σ iₖ·stridesₖ]` for every index `i` of `dims`, in row-major order.
fn strided(src: DataRef<'_>, dims: &[usize], strides: &[isize], base: isize) -> Storage {
    with_data!(src, T, s => T::into_storage(gather_strided(s, dims, strides, base)))
}

fn gather_strided<T: Element>(src: &[T], dims: &[usize], strides: &[isize], base: isize) -> Vec<T> {
    let mut out = Vec::with_capacity(dims.iter().product());
    for_each_run(dims, strides, base, |start, len, stride| {
        if stride == 1 {
            out.extend_from_slice(&src[start as usize..start as usize + len]);
        } else {
            out.extend((0..len as isize).map(|k| src[(start + k * stride) as usize]));
        }
    });
    out
}

/// Writes `src` (row-major over `dims`) to `dst[base + Σ iₖ·stridesₖ]`.
fn scatter_strided<T: Element>(
    dst: &mut [T],
    dims: &[usize],
    strides: &[isize],
    base: isize,
    src: &[T],
) {
    let mut pos = 0;
    for_each_run(dims, strides, base, |start, len, stride| {
        if stride == 1 {
            dst[start as usize..start as usize + len].copy_from_slice(&src[pos..pos + len]);
        } else {
            for (k, &v) in src[pos..pos + len].iter().enumerate() {
                dst[(start + k as isize * stride) as usize] = v;
            }
        }
        pos += len;
    });
}

/// Visits the offsets `base + Σ iₖ·stridesₖ` of every index of `dims` in row-major order, one
/// innermost run at a time: `f(start, len, stride)`. Axes that step as one (an outer stride
/// equal to the inner stride times the inner size) are merged first, so a contiguous region
/// becomes a single run.
fn for_each_run(
    dims: &[usize],
    strides: &[isize],
    base: isize,
    mut f: impl FnMut(isize, usize, isize),
) {
    if dims.contains(&0) {
        return;
    }
    let mut d: SmallVec<[usize; 8]> = SmallVec::new();
    let mut s: SmallVec<[isize; 8]> = SmallVec::new();
    for (&n, &st) in dims.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        if let (Some(ld), Some(ls)) = (d.last_mut(), s.last_mut()) {
            if *ls == st * n as isize {
                *ld *= n;
                *ls = st;
                continue;
            }
        }
        d.push(n);
        s.push(st);
    }
    let Some(last) = d.len().checked_sub(1) else {
        f(base, 1, 1);
        return;
    };
    let mut index: SmallVec<[usize; 8]> = SmallVec::from_elem(0, last);
    let mut offset = base;
    loop {
        f(offset, d[last], s[last]);
        // Odometer over the outer axes, innermost first.
        let mut ax = last;
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            index[ax] += 1;
            offset += s[ax];
            if index[ax] < d[ax] {
                break;
            }
            offset -= s[ax] * d[ax] as isize;
            index[ax] = 0;
        }
    }
}
