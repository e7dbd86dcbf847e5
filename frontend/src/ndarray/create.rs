//! Building arrays from Rust data, and reading them back out.

use super::{apply, NDArray};
use crate::context::Context;
use kiln_ir::{DType, Element, Error, Op, Result, Shape, Tensor};
use std::sync::{Arc, RwLock};

/// Rust data with a rectangular nested shape: scalars, arrays `[T; N]`, `Vec`s and slices of
/// them, to any depth. [`NDArray::from_nested`] and [`crate::nd::array`] take it.
///
/// ```
/// use kiln_frontend::NDArray;
/// let a = NDArray::from_nested(&[[1.0f32, 2.0], [3.0, 4.0]])?;
/// assert_eq!(a.shape().dims(), &[2, 2]);
/// let ragged = vec![vec![1i64, 2], vec![3]];
/// assert!(NDArray::from_nested(&ragged).is_err());
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
pub trait NestedArray {
    /// The element type at the bottom.
    type Elem: Element;
    /// The shape of this value (outermost first); for ragged data, the first element's.
    fn nested_shape(&self) -> Vec<usize>;
    /// Appends the elements in row-major order, checking every sub-array has `shape`.
    fn flatten_into(&self, shape: &[usize], out: &mut Vec<Self::Elem>) -> Result<()>;
}

macro_rules! nested_scalar {
    ($($t:ty),*) => {$(
        impl NestedArray for $t {
            type Elem = $t;
            fn nested_shape(&self) -> Vec<usize> {
                Vec::new()
            }
            fn flatten_into(&self, _shape: &[usize], out: &mut Vec<$t>) -> Result<()> {
                out.push(*self);
                Ok(())
            }
        }
    )*};
}
nested_scalar!(f32, f64, i32, i64, u8, bool);

/// Shape and flattening shared by every sequence type.
fn nested_seq_shape<U: NestedArray>(items: &[U]) -> Vec<usize> {
    let mut s = vec![items.len()];
    if let Some(first) = items.first() {
        s.extend(first.nested_shape());
    }
    s
}

fn nested_seq_flatten<U: NestedArray>(
    items: &[U],
    shape: &[usize],
    out: &mut Vec<U::Elem>,
) -> Result<()> {
    match shape.split_first() {
        Some((&n, rest)) if n == items.len() => {
            items.iter().try_for_each(|x| x.flatten_into(rest, out))
        }
        _ => Err(Error::shape(
            "array",
            format!(
                "ragged nested data: expected a sub-array of shape {}, found {} elements",
                Shape::new(shape),
                items.len()
            ),
        )),
    }
}

impl<U: NestedArray, const N: usize> NestedArray for [U; N] {
    type Elem = U::Elem;
    fn nested_shape(&self) -> Vec<usize> {
        nested_seq_shape(self)
    }
    fn flatten_into(&self, shape: &[usize], out: &mut Vec<U::Elem>) -> Result<()> {
        nested_seq_flatten(self, shape, out)
    }
}

impl<U: NestedArray> NestedArray for [U] {
    type Elem = U::Elem;
    fn nested_shape(&self) -> Vec<usize> {
        nested_seq_shape(self)
    }
    fn flatten_into(&self, shape: &[usize], out: &mut Vec<U::Elem>) -> Result<()> {
        nested_seq_flatten(self, shape, out)
    }
}

impl<U: NestedArray> NestedArray for Vec<U> {
    type Elem = U::Elem;
    fn nested_shape(&self) -> Vec<usize> {
        nested_seq_shape(self)
    }
    fn flatten_into(&self, shape: &[usize], out: &mut Vec<U::Elem>) -> Result<()> {
        nested_seq_flatten(self, shape, out)
    }
}

impl<U: NestedArray + ?Sized> NestedArray for &U {
    type Elem = U::Elem;
    fn nested_shape(&self) -> Vec<usize> {
        (**self).nested_shape()
    }
    fn flatten_into(&self, shape: &[usize], out: &mut Vec<U::Elem>) -> Result<()> {
        (**self).flatten_into(shape, out)
    }
}

impl NDArray {
    /// An array of `shape` holding `data` in row-major order, on the CPU. The dtype is `T`'s.
    ///
    /// Errors when `data.len()` is not the number of elements of `shape`.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: impl Into<Shape>) -> Result<NDArray> {
        let shape = shape.into();
        let needed = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if needed != Some(data.len()) {
            let needed = needed.map_or_else(|| "more than usize::MAX".into(), |n| n.to_string());
            return Err(Error::shape(
                "from_vec",
                format!("shape {shape} needs {needed} elements, got {}", data.len()),
            ));
        }
        Ok(NDArray::from_tensor(
            Tensor::from_vec(data, shape)?,
            Context::cpu(),
        ))
    }

    /// A 1-D array copied from a slice, on the CPU.
    pub fn from_slice<T: Element>(data: &[T]) -> NDArray {
        let storage = T::into_storage(data.to_vec());
        NDArray::from_parts(
            Arc::new(RwLock::new(storage)),
            0,
            Shape::new(&[data.len()]),
            Context::cpu(),
        )
    }

    /// A rank-0 array holding `v`, on the CPU.
    pub fn scalar<T: Element>(v: T) -> NDArray {
        NDArray::from_tensor(Tensor::scalar(v), Context::cpu())
    }

    /// An array from nested Rust arrays, slices or `Vec`s, keeping the element type
    /// (`[[1.0f32, 2.0], [3.0, 4.0]]` gives a 2x2 f32 array). Errors on ragged data.
    ///
    /// [`crate::nd::array`] is the MXNet-style constructor that converts to f32.
    pub fn from_nested<A: NestedArray + ?Sized>(data: &A) -> Result<NDArray> {
        let shape = data.nested_shape();
        let mut flat = Vec::with_capacity(shape.iter().product());
        data.flatten_into(&shape, &mut flat)?;
        NDArray::from_vec(flat, shape)
    }

    /// The elements in row-major order. Errors unless the array's dtype is `T`'s, and on a
    /// symbolic array (inside a hybridize trace values cannot be read).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.try_with_view("to_vec", |v| v.typed::<T>("to_vec").map(|s| s.to_vec()))?
    }

    /// The elements in row-major order, converted to f64 (bool as 0/1).
    ///
    /// On a symbolic array this abandons the hybridize trace with an error (see
    /// [`NDArray::with_view`]); [`NDArray::to_vec`] returns that error instead.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.with_view_in("to_vec_f64", |v| v.data.to_f64_vec())
    }

    /// The one element of a single-element array (any shape with one element). Errors
    /// when the array has more or fewer elements, its dtype is not `T`'s, or it is symbolic
    /// (inside a hybridize trace).
    pub fn as_scalar<T: Element>(&self) -> Result<T> {
        self.check_single("as_scalar")?;
        self.try_with_view("as_scalar", |v| v.typed::<T>("as_scalar").map(|s| s[0]))?
    }

    /// The one element of a single-element array as f64 (MXNet's `asscalar()`), whatever
    /// its dtype. Errors as [`NDArray::as_scalar`] does.
    pub fn as_scalar_f64(&self) -> Result<f64> {
        self.check_single("as_scalar_f64")?;
        self.try_with_view("as_scalar_f64", |v| v.data.get_f64(0))
    }

    fn check_single(&self, op: &str) -> Result<()> {
        if self.size() != 1 {
            return Err(Error::shape(
                op,
                format!(
                    "needs an array with exactly one element, got shape {} ({} elements)",
                    self.shape(),
                    self.size()
                ),
            ));
        }
        Ok(())
    }

    /// A host copy of the elements (MXNet's `asnumpy()`). Abandons a hybridize trace on a
    /// symbolic array, as [`NDArray::with_view`] does.
    pub fn to_tensor(&self) -> Tensor {
        self.with_view_in("to_tensor", |v| v.to_tensor())
    }

    /// A deep copy with its own storage (recorded by autograd as an identity op).
    pub fn copy(&self) -> Result<NDArray> {
        apply(
            Op::Cast {
                dtype: self.dtype(),
            },
            &[self],
        )
    }

    /// Copies this array's values into `other` (same shape; converted to `other`'s dtype).
    pub fn copyto(&self, other: &NDArray) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(Error::shape(
                "copyto",
                format!(
                    "source shape {} differs from destination shape {}",
                    self.shape(),
                    other.shape()
                ),
            ));
        }
        other.assign(self)
    }

    /// This array on `ctx`: the same handle when it already lives there, otherwise a copy.
    pub fn as_in_context(&self, ctx: Context) -> NDArray {
        if ctx == self.context() {
            return self.clone();
        }
        NDArray::from_tensor(self.to_tensor(), ctx)
    }

    /// A copy converted to `dtype` (MXNet `astype`).
    pub fn astype(&self, dtype: DType) -> Result<NDArray> {
        self.cast(dtype)
    }

    /// Converts to `dtype`.
    pub fn cast(&self, dtype: DType) -> Result<NDArray> {
        apply(Op::Cast { dtype }, &[self])
    }
}
