//! Index walking shared by the interpreter families: strided offsets (transposed, broadcast
//! and reduced reads are all a row-major walk with some strides) and the `[outer, len, inner]`
//! view of a shape around one axis.

use crate::error::{Error, Result};
use crate::shape::Shape;
use smallvec::SmallVec;

/// Walks the row-major positions of a shape and yields, for each, `Σ index[d] * strides[d]`.
///
/// With a tensor's own strides this is `0, 1, 2, ...`; with [`broadcast_strides`] it maps
/// each output position of a broadcast to the input element it reads; with 0 strides on some
/// axes it maps each input position to the output slot of a reduction. O(1) amortized per
/// step.
#[derive(Clone, Debug)]
pub(crate) struct StridedOffsets {
    dims: SmallVec<[usize; 4]>,
    strides: SmallVec<[usize; 4]>,
    index: SmallVec<[usize; 4]>,
    offset: usize,
    remaining: usize,
}

impl StridedOffsets {
    /// Offsets over `dims` with one stride per dim.
    pub(crate) fn new(dims: &[usize], strides: &[usize]) -> Self {
        debug_assert_eq!(dims.len(), strides.len());
        StridedOffsets {
            dims: SmallVec::from_slice(dims),
            strides: SmallVec::from_slice(strides),
            index: SmallVec::from_elem(0, dims.len()),
            offset: 0,
            remaining: dims.iter().product(),
        }
    }
}

impl Iterator for StridedOffsets {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offset;
        // Odometer step: bump the last axis, carrying into outer axes.
        for d in (0..self.dims.len()).rev() {
            self.index[d] += 1;
            self.offset += self.strides[d];
            if self.index[d] < self.dims[d] {
                break;
            }
            self.offset -= self.strides[d] * self.dims[d];
            self.index[d] = 0;
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedOffsets {}

/// The strides of a row-major tensor of shape `from` read as if broadcast to `to`: one entry
/// per axis of `to`, 0 along axes that `from` lacks or has as size 1. Errors (naming `op`)
/// when `from` does not broadcast to `to`.
pub(crate) fn broadcast_strides(
    from: &Shape,
    to: &Shape,
    op: &str,
) -> Result<SmallVec<[usize; 4]>> {
    if !from.broadcasts_to(to) {
        return Err(Error::shape(
            op,
            format!("cannot broadcast shape {from} to {to}"),
        ));
    }
    let own = from.strides();
    let lead = to.rank() - from.rank();
    Ok((0..to.rank())
        .map(|d| {
            if d < lead || from[d - lead] == 1 {
                0
            } else {
                own[d - lead]
            }
        })
        .collect())
}

/// For every row-major position of `to`, the offset of the element of a broadcast `from`
/// tensor that it reads.
pub(crate) fn broadcast_offsets(from: &Shape, to: &Shape, op: &str) -> Result<StridedOffsets> {
    let strides = broadcast_strides(from, to, op)?;
    Ok(StridedOffsets::new(to, &strides))
}

/// A row-major shape seen as `[outer, len, inner]` around one axis: element `(o, i, j)` is at
/// `(o * len + i) * inner + j`, so one index along the axis selects a contiguous row of
/// `inner` elements in each outer block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AxisSplit {
    /// Product of the dims before the axis.
    pub(crate) outer: usize,
    /// The axis' size.
    pub(crate) len: usize,
    /// Product of the dims after the axis.
    pub(crate) inner: usize,
}

impl AxisSplit {
    /// The split of `dims` around `axis` (which must be in range).
    pub(crate) fn new(dims: &[usize], axis: usize) -> Self {
        AxisSplit {
            outer: dims[..axis].iter().product(),
            len: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }

    /// The flat indices of the lane `(o, ·, j)` along the axis.
    pub(crate) fn lane(&self, o: usize, j: usize) -> impl Iterator<Item = usize> + '_ {
        let base = o * self.len * self.inner + j;
        (0..self.len).map(move |i| base + i * self.inner)
    }

    /// Every lane's `(o, j)`.
    pub(crate) fn lanes(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.outer).flat_map(move |o| (0..self.inner).map(move |j| (o, j)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_offsets_walk_row_major() {
        let v: Vec<usize> = StridedOffsets::new(&[2, 3], &[3, 1]).collect();
        assert_eq!(v, vec![0, 1, 2, 3, 4, 5]);
        // Transposed read of a [3, 2] tensor.
        let v: Vec<usize> = StridedOffsets::new(&[2, 3], &[1, 2]).collect();
        assert_eq!(v, vec![0, 2, 4, 1, 3, 5]);
        assert_eq!(StridedOffsets::new(&[], &[]).collect::<Vec<_>>(), vec![0]);
        assert_eq!(StridedOffsets::new(&[2, 0], &[0, 1]).count(), 0);
    }

    #[test]
    fn broadcast_strides_zero_the_broadcast_axes() {
        let s = broadcast_strides(&Shape::from([3, 1]), &Shape::from([2, 3, 4]), "t").unwrap();
        assert_eq!(s.as_slice(), &[0, 1, 0]);
        let v: Vec<usize> = broadcast_offsets(&Shape::from([3]), &Shape::from([2, 3]), "t")
            .unwrap()
            .collect();
        assert_eq!(v, vec![0, 1, 2, 0, 1, 2]);
        assert!(broadcast_strides(&Shape::from([2]), &Shape::from([3]), "t").is_err());
    }

    #[test]
    fn axis_split_lanes_cover_the_shape() {
        let s = AxisSplit::new(&[2, 3, 2], 1);
        assert_eq!((s.outer, s.len, s.inner), (2, 3, 2));
        assert_eq!(s.lane(1, 1).collect::<Vec<_>>(), vec![7, 9, 11]);
        assert_eq!(s.lanes().count(), 4);
    }
}
