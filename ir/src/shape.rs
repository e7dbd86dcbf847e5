//! Shapes, numpy broadcasting and axis normalization.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// The dimensions of a tensor, outermost first. A scalar has no dimensions.
///
/// ```
/// use kiln_ir::Shape;
/// let a = Shape::from([2, 1, 4]);
/// let b = Shape::from([3, 1]);
/// assert_eq!(a.broadcast(&b, "add").unwrap(), Shape::from([2, 3, 4]));
/// assert_eq!(a.numel(), 8);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shape(pub SmallVec<[usize; 4]>);

impl Shape {
    /// The shape of a scalar (rank 0).
    pub fn scalar() -> Self {
        Shape(SmallVec::new())
    }

    /// Builds a shape from a slice of dimensions.
    pub fn new(dims: &[usize]) -> Self {
        Shape(SmallVec::from_slice(dims))
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// The dimensions as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Row-major (C order) strides in elements.
    pub fn strides(&self) -> SmallVec<[usize; 4]> {
        let mut s: SmallVec<[usize; 4]> = SmallVec::from_elem(1, self.rank());
        for i in (0..self.rank().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }

    /// numpy broadcasting of two shapes; `op` names the op in the error.
    pub fn broadcast(&self, other: &Shape, op: &str) -> Result<Shape> {
        let rank = self.rank().max(other.rank());
        let mut out: SmallVec<[usize; 4]> = SmallVec::with_capacity(rank);
        for i in 0..rank {
            let a = dim_from_right(self, rank, i);
            let b = dim_from_right(other, rank, i);
            let d = match (a, b) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => {
                    return Err(Error::shape(
                        op,
                        format!("cannot broadcast shapes {self} and {other}"),
                    ))
                }
            };
            out.push(d);
        }
        Ok(Shape(out))
    }

    /// True when `self` broadcasts to `target` without changing `target`.
    pub fn broadcasts_to(&self, target: &Shape) -> bool {
        if self.rank() > target.rank() {
            return false;
        }
        let off = target.rank() - self.rank();
        self.0
            .iter()
            .enumerate()
            .all(|(i, &d)| d == 1 || d == target.0[i + off])
    }

    /// Normalizes a possibly negative axis against this shape's rank.
    pub fn axis(&self, axis: isize, op: &str) -> Result<usize> {
        normalize_axis(axis, self.rank(), op)
    }
}

fn dim_from_right(s: &Shape, rank: usize, i: usize) -> usize {
    let off = rank - s.rank();
    if i < off {
        1
    } else {
        s.0[i - off]
    }
}

/// Normalizes `axis` (negative counts from the end) for a tensor of `rank` dimensions.
///
/// ```
/// assert_eq!(kiln_ir::shape::normalize_axis(-1, 3, "sum").unwrap(), 2);
/// assert!(kiln_ir::shape::normalize_axis(3, 3, "sum").is_err());
/// ```
pub fn normalize_axis(axis: isize, rank: usize, op: &str) -> Result<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(0) {
        return Err(Error::shape(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

impl Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.0
    }
}

impl DerefMut for Shape {
    fn deref_mut(&mut self) -> &mut [usize] {
        &mut self.0
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::new(d)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(SmallVec::from_vec(d))
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape::new(&d)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        let s = |d: &[usize]| Shape::new(d);
        assert_eq!(s(&[3]).broadcast(&s(&[]), "t").unwrap(), s(&[3]));
        assert_eq!(
            s(&[5, 1, 3]).broadcast(&s(&[4, 1]), "t").unwrap(),
            s(&[5, 4, 3])
        );
        let e = s(&[2, 3]).broadcast(&s(&[4]), "add").unwrap_err();
        assert_eq!(e.to_string(), "add: cannot broadcast shapes [2, 3] and [4]");
        assert!(s(&[1, 3]).broadcasts_to(&s(&[2, 3])));
        assert!(!s(&[2, 3]).broadcasts_to(&s(&[3])));
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(Shape::new(&[2, 3, 4]).strides().as_slice(), &[12, 4, 1]);
        assert!(Shape::scalar().strides().is_empty());
    }
}
