//! Indexing: [`SliceArg`] and the [`s!`](crate::s) macro, indexed reads, leading-axis views
//! and iteration over the first axis.

use super::{apply, NDArray};
use kiln_ir::infer::{resolve_slice, SliceDim};
use kiln_ir::{Error, Op, Result, Shape};
use std::ops::{Bound, RangeBounds};

/// What to take along one axis: a position (the axis is dropped) or a strided range.
///
/// Built by [`s!`](crate::s): `s![1..3, .., 0, ..;-1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceArg {
    /// One position; negative counts from the end. Must be in range.
    Index(i64),
    /// numpy `start:end:step`: `None` takes the default for the step's direction,
    /// negatives count from the end, out-of-range bounds are clamped. `step` is not 0.
    Range {
        /// First position (`None`: the start, or the end for a negative step).
        start: Option<i64>,
        /// One past the last position (`None`: through the end, or the start).
        end: Option<i64>,
        /// Distance between taken positions; negative walks backwards.
        step: i64,
    },
}

impl SliceArg {
    /// The whole axis.
    pub const ALL: SliceArg = SliceArg::Range {
        start: None,
        end: None,
        step: 1,
    };

    /// The same range taken every `step` elements. An [`SliceArg::Index`] ignores the step
    /// (as `ndarray`'s `s!` does).
    pub fn with_step(self, step: i64) -> SliceArg {
        match self {
            SliceArg::Range { start, end, .. } => SliceArg::Range { start, end, step },
            index => index,
        }
    }
}

/// Values that name what to take along an axis: integers (a position) and Rust ranges.
pub trait IntoSliceArg {
    /// The slice argument.
    fn into_slice_arg(self) -> SliceArg;
}

impl IntoSliceArg for SliceArg {
    fn into_slice_arg(self) -> SliceArg {
        self
    }
}

impl IntoSliceArg for std::ops::RangeFull {
    fn into_slice_arg(self) -> SliceArg {
        SliceArg::ALL
    }
}

macro_rules! slice_arg_ints {
    ($($t:ty),*) => {$(
        impl IntoSliceArg for $t {
            fn into_slice_arg(self) -> SliceArg {
                SliceArg::Index(self as i64)
            }
        }
        impl IntoSliceArg for std::ops::Range<$t> {
            fn into_slice_arg(self) -> SliceArg {
                SliceArg::Range { start: Some(self.start as i64), end: Some(self.end as i64), step: 1 }
            }
        }
        impl IntoSliceArg for std::ops::RangeFrom<$t> {
            fn into_slice_arg(self) -> SliceArg {
                SliceArg::Range { start: Some(self.start as i64), end: None, step: 1 }
            }
        }
        impl IntoSliceArg for std::ops::RangeTo<$t> {
            fn into_slice_arg(self) -> SliceArg {
                SliceArg::Range { start: None, end: Some(self.end as i64), step: 1 }
            }
        }
        impl IntoSliceArg for std::ops::RangeInclusive<$t> {
            fn into_slice_arg(self) -> SliceArg {
                let (start, end) = (*self.start() as i64, *self.end() as i64);
                // `..=-1` means through the last element.
                let end = if end == -1 { None } else { Some(end.saturating_add(1)) };
                SliceArg::Range { start: Some(start), end, step: 1 }
            }
        }
        impl IntoSliceArg for std::ops::RangeToInclusive<$t> {
            fn into_slice_arg(self) -> SliceArg {
                let end = self.end as i64;
                let end = if end == -1 { None } else { Some(end.saturating_add(1)) };
                SliceArg::Range { start: None, end, step: 1 }
            }
        }
    )*};
}
slice_arg_ints!(i32, i64, isize, usize);

/// Builds a `Vec<SliceArg>` for [`NDArray::index`], [`NDArray::set`] and
/// [`NDArray::set_array`], numpy-style, one entry per leading axis (missing axes are taken
/// whole): an integer picks one position and drops the axis, a range (`1..3`, `2..`, `..`,
/// `..=4`) takes a block, `range;step` takes every `step`-th element (negative: backwards).
///
/// ```
/// use kiln_frontend::{s, NDArray};
/// let a = NDArray::from_vec((0..12).map(|v| v as f32).collect(), [3, 4])?;
/// assert_eq!(a.index(&s![1])?.to_vec::<f32>()?, vec![4.0, 5.0, 6.0, 7.0]);
/// assert_eq!(a.index(&s![.., 1..;2])?.to_vec::<f32>()?, vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
/// assert_eq!(a.index(&s![-1, ..;-1])?.to_vec::<f32>()?, vec![11.0, 10.0, 9.0, 8.0]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[macro_export]
macro_rules! s {
    (@step) => { 1 };
    (@step $step:expr) => { $step };
    ($($r:expr $(; $step:expr)?),* $(,)?) => {{
        let args: ::std::vec::Vec<$crate::ndarray::SliceArg> = ::std::vec![$(
            $crate::ndarray::SliceArg::with_step(
                $crate::ndarray::IntoSliceArg::into_slice_arg($r),
                $crate::s!(@step $($step)?),
            )
        ),*];
        args
    }};
}

/// A slice resolved against a shape: the `Slice` op's attributes, one resolved range per
/// axis, and which axes an integer index dropped.
#[derive(Clone, Debug)]
pub(crate) struct SlicePlan {
    begin: Vec<Option<i64>>,
    end: Vec<Option<i64>>,
    step: Vec<Option<i64>>,
    pub(crate) dims: Vec<SliceDim>,
    pub(crate) dropped: Vec<bool>,
}

impl SlicePlan {
    /// Resolves `args` against `shape` (numpy rules); `op` names the caller in errors.
    pub(crate) fn new(op: &str, shape: &Shape, args: &[SliceArg]) -> Result<SlicePlan> {
        if args.len() > shape.rank() {
            return Err(Error::shape(
                op,
                format!(
                    "too many indices ({}) for an array of shape {shape}",
                    args.len()
                ),
            ));
        }
        let n = args.len();
        let (mut begin, mut end, mut step) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut dropped = vec![false; shape.rank()];
        for (axis, arg) in args.iter().enumerate() {
            match *arg {
                SliceArg::Index(i) => {
                    let d = shape[axis] as i64;
                    let p = if i < 0 { i + d } else { i };
                    if !(0..d).contains(&p) {
                        return Err(Error::shape(
                            op,
                            format!(
                                "index {i} is out of range for axis {axis} of size {d} (shape {shape})"
                            ),
                        ));
                    }
                    begin.push(Some(p));
                    end.push(Some(p + 1));
                    step.push(None);
                    dropped[axis] = true;
                }
                SliceArg::Range {
                    start,
                    end: stop,
                    step: by,
                } => {
                    begin.push(start);
                    end.push(stop);
                    step.push(Some(by));
                }
            }
        }
        let dims = resolve_slice(op, shape, &begin, &end, &step)?;
        Ok(SlicePlan {
            begin,
            end,
            step,
            dims,
            dropped,
        })
    }

    /// The shape of the result: the selected block without the axes an index dropped.
    pub(crate) fn result_shape(&self) -> Shape {
        self.dims
            .iter()
            .zip(&self.dropped)
            .filter(|(_, &d)| !d)
            .map(|(a, _)| a.count)
            .collect::<Vec<_>>()
            .into()
    }

    /// Calls `f` with the flat position (relative to the array's first element, for an
    /// array of `shape`) of every selected element, in row-major order of the block.
    pub(crate) fn for_each_offset(&self, shape: &Shape, mut f: impl FnMut(usize)) {
        if self.dims.iter().any(|a| a.count == 0) {
            return;
        }
        let strides = shape.strides();
        let rank = self.dims.len();
        let pos = |axis: usize, k: usize| -> usize {
            let a = self.dims[axis];
            (a.begin + k as i64 * a.step) as usize * strides[axis]
        };
        let mut counter = vec![0usize; rank];
        // partial[a]: the offset contributed by axes before `a`.
        let mut partial: Vec<usize> = vec![0; rank + 1];
        for axis in 0..rank {
            partial[axis + 1] = partial[axis] + pos(axis, 0);
        }
        loop {
            f(partial[rank]);
            // Advance the odometer from the innermost axis.
            let mut axis = rank;
            loop {
                if axis == 0 {
                    return;
                }
                axis -= 1;
                counter[axis] += 1;
                if counter[axis] < self.dims[axis].count {
                    break;
                }
                counter[axis] = 0;
            }
            for a in axis..rank {
                partial[a + 1] = partial[a] + pos(a, counter[a]);
            }
        }
    }
}

impl NDArray {
    /// numpy-style indexed read (`x[1:3, ::2, 0]`): see [`s!`](crate::s). Integer positions
    /// drop their axis. A view when the selection is one contiguous block (such as a range
    /// of the leading axis); a copy otherwise.
    ///
    /// Errors on more indices than axes, an integer position out of range, or a zero step.
    pub fn index(&self, args: &[SliceArg]) -> Result<NDArray> {
        let plan = SlicePlan::new("index", self.shape(), args)?;
        let result_shape = plan.result_shape();
        let any_dropped = plan.dropped.iter().any(|&d| d);
        let block = apply(
            Op::Slice {
                begin: plan.begin,
                end: plan.end,
                step: plan.step,
            },
            &[self],
        )?;
        if any_dropped {
            let dims: Vec<i64> = result_shape.iter().map(|&d| d as i64).collect();
            block.reshape(&dims)
        } else {
            Ok(block)
        }
    }

    /// Row `i` of the leading axis, as a view (MXNet `x[i]`). Errors for a scalar or an `i`
    /// out of range.
    pub fn at(&self, i: usize) -> Result<NDArray> {
        let dims = self.shape().dims();
        match dims.first() {
            Some(&n) if i < n => {
                let row = self.slice_axis(0, i as i64, Some(i as i64 + 1))?;
                let rest: Vec<i64> = dims[1..].iter().map(|&d| d as i64).collect();
                row.reshape(&rest)
            }
            _ => Err(Error::shape(
                "at",
                format!(
                    "index {i} is out of range for axis 0 of an array of shape {}",
                    self.shape()
                ),
            )),
        }
    }

    /// Rows `range` of the leading axis, as a view (MXNet `x[1:3]`). Errors for a scalar or
    /// a range outside `0..=len` or decreasing.
    pub fn slice_axis0(&self, range: impl RangeBounds<usize>) -> Result<NDArray> {
        let n = self.shape().first().copied().unwrap_or(0);
        let start = match range.start_bound() {
            Bound::Included(&s) => Some(s),
            Bound::Excluded(&s) => s.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => Some(n),
        };
        match (start, end) {
            (Some(s), Some(e)) if self.ndim() > 0 && s <= e && e <= n => {
                self.slice_axis(0, s as i64, Some(e as i64))
            }
            _ => {
                let show =
                    |b: Option<usize>| b.map_or_else(|| "overflow".into(), |v| v.to_string());
                Err(Error::shape(
                    "slice_axis0",
                    format!(
                        "rows {}..{} are out of bounds for axis 0 of an array of shape {}",
                        show(start),
                        show(end),
                        self.shape()
                    ),
                ))
            }
        }
    }

    /// Iterates over the leading axis, yielding each row as a view ([`NDArray::at`]). A
    /// scalar yields nothing.
    pub fn iter(&self) -> Iter {
        Iter {
            array: self.clone(),
            next: 0,
            len: if self.ndim() == 0 { 0 } else { self.shape()[0] },
        }
    }
}

/// Iterator over the rows of an array's leading axis (from [`NDArray::iter`]).
#[derive(Debug)]
pub struct Iter {
    array: NDArray,
    next: usize,
    len: usize,
}

impl Iterator for Iter {
    type Item = NDArray;
    fn next(&mut self) -> Option<NDArray> {
        if self.next >= self.len {
            return None;
        }
        let row = self.array.at(self.next).ok();
        self.next += 1;
        row
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.len - self.next.min(self.len);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter {}

impl IntoIterator for &NDArray {
    type Item = NDArray;
    type IntoIter = Iter;
    fn into_iter(self) -> Iter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_walk_the_block_in_row_major_order() {
        let shape = Shape::from([3, 4]);
        let plan = SlicePlan::new(
            "t",
            &shape,
            &[SliceArg::ALL.with_step(2), SliceArg::ALL.with_step(-3)],
        )
        .unwrap();
        let mut v = Vec::new();
        plan.for_each_offset(&shape, |o| v.push(o));
        assert_eq!(v, vec![3, 0, 11, 8]);
        assert_eq!(plan.result_shape(), Shape::from([2, 2]));
    }
}
