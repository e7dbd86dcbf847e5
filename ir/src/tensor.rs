//! Concrete host tensors: what the interpreter and the CPU kernels read and write.
//!
//! A [`Tensor`] owns contiguous row-major data; a [`TensorView`] borrows it (the frontend hands
//! views of its shared storage to kernels without copying).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;
use serde::{Deserialize, Serialize};

/// Owned, typed, contiguous element storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dtype", content = "data", rename_all = "lowercase")]
pub enum Storage {
    /// 32-bit float elements.
    F32(Vec<f32>),
    /// 64-bit float elements.
    F64(Vec<f64>),
    /// 32-bit signed integer elements.
    I32(Vec<i32>),
    /// 64-bit signed integer elements.
    I64(Vec<i64>),
    /// 8-bit unsigned integer elements.
    U8(Vec<u8>),
    /// boolean elements.
    Bool(Vec<bool>),
}

/// Borrowed, typed, contiguous element data.
#[derive(Clone, Copy, Debug)]
pub enum DataRef<'a> {
    /// 32-bit float elements.
    F32(&'a [f32]),
    /// 64-bit float elements.
    F64(&'a [f64]),
    /// 32-bit signed integer elements.
    I32(&'a [i32]),
    /// 64-bit signed integer elements.
    I64(&'a [i64]),
    /// 8-bit unsigned integer elements.
    U8(&'a [u8]),
    /// boolean elements.
    Bool(&'a [bool]),
}

/// An element type that a tensor can hold.
pub trait Element: Copy + Default + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Converts to f64 (bool is 0/1).
    fn to_f64(self) -> f64;
    /// Converts from f64 (`as` semantics: truncation and saturation for integers; bool is `!= 0`).
    fn from_f64(v: f64) -> Self;
    /// The typed slice, if `data` holds this type.
    fn slice(data: DataRef<'_>) -> Option<&[Self]>;
    /// Wraps a vector as storage.
    fn into_storage(v: Vec<Self>) -> Storage;
    /// The typed vector, if `s` holds this type.
    fn vec_mut(s: &mut Storage) -> Option<&mut Vec<Self>>;
}

macro_rules! element {
    ($t:ty, $variant:ident, $to:expr, $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            #[inline]
            fn to_f64(self) -> f64 {
                ($to)(self)
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                ($from)(v)
            }
            fn slice(data: DataRef<'_>) -> Option<&[Self]> {
                match data {
                    DataRef::$variant(s) => Some(s),
                    _ => None,
                }
            }
            fn into_storage(v: Vec<Self>) -> Storage {
                Storage::$variant(v)
            }
            fn vec_mut(s: &mut Storage) -> Option<&mut Vec<Self>> {
                match s {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

element!(f32, F32, |x: f32| x as f64, |v: f64| v as f32);
element!(f64, F64, |x: f64| x, |v: f64| v);
element!(i32, I32, |x: i32| x as f64, |v: f64| v as i32);
element!(i64, I64, |x: i64| x as f64, |v: f64| v as i64);
element!(u8, U8, |x: u8| x as f64, |v: f64| v as u8);
element!(bool, Bool, |x: bool| if x { 1.0 } else { 0.0 }, |v: f64| v
    != 0.0);

/// Calls `$body` with `$s` bound to the typed slice of a [`DataRef`] and `$T` to its element
/// type. Use it to write a kernel once for every dtype.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $T:ident, $s:ident => $body:expr) => {
        match $data {
            $crate::tensor::DataRef::F32($s) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::tensor::DataRef::F64($s) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            $crate::tensor::DataRef::I32($s) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::tensor::DataRef::I64($s) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::tensor::DataRef::U8($s) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::tensor::DataRef::Bool($s) => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
        }
    };
}

impl Storage {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            Storage::I32(_) => DType::I32,
            Storage::I64(_) => DType::I64,
            Storage::U8(_) => DType::U8,
            Storage::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::I32(v) => v.len(),
            Storage::I64(v) => v.len(),
            Storage::U8(v) => v.len(),
            Storage::Bool(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` zeros of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Storage {
        match dtype {
            DType::F32 => Storage::F32(vec![0.0; n]),
            DType::F64 => Storage::F64(vec![0.0; n]),
            DType::I32 => Storage::I32(vec![0; n]),
            DType::I64 => Storage::I64(vec![0; n]),
            DType::U8 => Storage::U8(vec![0; n]),
            DType::Bool => Storage::Bool(vec![false; n]),
        }
    }

    /// Borrows a sub-range of elements.
    pub fn slice(&self, range: std::ops::Range<usize>) -> DataRef<'_> {
        match self {
            Storage::F32(v) => DataRef::F32(&v[range]),
            Storage::F64(v) => DataRef::F64(&v[range]),
            Storage::I32(v) => DataRef::I32(&v[range]),
            Storage::I64(v) => DataRef::I64(&v[range]),
            Storage::U8(v) => DataRef::U8(&v[range]),
            Storage::Bool(v) => DataRef::Bool(&v[range]),
        }
    }

    /// Borrows all elements.
    pub fn as_ref(&self) -> DataRef<'_> {
        self.slice(0..self.len())
    }

    /// Converts element-wise to `dtype` (`as` semantics, as [`Element::from_f64`]).
    pub fn cast(&self, dtype: DType) -> Storage {
        self.as_ref().cast(dtype)
    }
}

impl<'a> DataRef<'a> {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            DataRef::F32(_) => DType::F32,
            DataRef::F64(_) => DType::F64,
            DataRef::I32(_) => DType::I32,
            DataRef::I64(_) => DType::I64,
            DataRef::U8(_) => DType::U8,
            DataRef::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_data!(*self, T, s => s.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies into owned storage.
    pub fn to_storage(&self) -> Storage {
        with_data!(*self, T, s => T::into_storage(s.to_vec()))
    }

    /// Element `i` as f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        with_data!(*self, T, s => s[i].to_f64())
    }

    /// All elements as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_data!(*self, T, s => s.iter().map(|x| x.to_f64()).collect())
    }

    /// Converts element-wise to `dtype`.
    pub fn cast(&self, dtype: DType) -> Storage {
        fn conv<S: Element, D: Element>(s: &[S]) -> Vec<D> {
            s.iter().map(|&x| D::from_f64(x.to_f64())).collect()
        }
        with_data!(*self, S, s => match dtype {
            DType::F32 => Storage::F32(conv::<S, f32>(s)),
            DType::F64 => Storage::F64(conv::<S, f64>(s)),
            DType::I32 => Storage::I32(conv::<S, i32>(s)),
            DType::I64 => Storage::I64(conv::<S, i64>(s)),
            DType::U8 => Storage::U8(conv::<S, u8>(s)),
            DType::Bool => Storage::Bool(conv::<S, bool>(s)),
        })
    }

    /// The typed slice; an error naming `op` if the dtype differs.
    pub fn typed<T: Element>(&self, op: &str) -> Result<&'a [T]> {
        T::slice(*self).ok_or_else(|| {
            Error::dtype(
                op,
                format!("expected {} data, got {}", T::DTYPE, self.dtype()),
            )
        })
    }
}

/// A shape together with a dtype: what shape inference computes for every value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    /// The dimensions.
    pub shape: Shape,
    /// The element type.
    pub dtype: DType,
}

impl TensorType {
    /// Builds a tensor type.
    pub fn new(shape: impl Into<Shape>, dtype: DType) -> Self {
        TensorType {
            shape: shape.into(),
            dtype,
        }
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// An owned, contiguous, row-major tensor.
///
/// ```
/// use kiln_ir::{Tensor, Shape};
/// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]).unwrap();
/// assert_eq!(t.shape(), &Shape::from([2, 2]));
/// assert_eq!(t.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    shape: Shape,
    data: Storage,
}

impl Tensor {
    /// Builds a tensor; errors if the data length does not match the shape.
    pub fn new(shape: impl Into<Shape>, data: Storage) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(Error::shape(
                "tensor",
                format!(
                    "shape {shape} needs {} elements, got {}",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// Builds a tensor from a typed vector.
    pub fn from_vec<T: Element>(v: Vec<T>, shape: impl Into<Shape>) -> Result<Self> {
        Tensor::new(shape, T::into_storage(v))
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(v: T) -> Self {
        Tensor {
            shape: Shape::scalar(),
            data: T::into_storage(vec![v]),
        }
    }

    /// Zeros of the given type.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType) -> Self {
        let shape = shape.into();
        let n = shape.numel();
        Tensor {
            shape,
            data: Storage::zeros(dtype, n),
        }
    }

    /// A tensor filled with `value` (converted to `dtype`).
    pub fn full(shape: impl Into<Shape>, dtype: DType, value: f64) -> Self {
        let shape = shape.into();
        let n = shape.numel();
        let data = match dtype {
            DType::F32 => Storage::F32(vec![value as f32; n]),
            DType::F64 => Storage::F64(vec![value; n]),
            DType::I32 => Storage::I32(vec![value as i32; n]),
            DType::I64 => Storage::I64(vec![value as i64; n]),
            DType::U8 => Storage::U8(vec![value as u8; n]),
            DType::Bool => Storage::Bool(vec![value != 0.0; n]),
        };
        Tensor { shape, data }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Shape and dtype together.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.shape.clone(), self.dtype())
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.data
    }

    /// The storage, mutably.
    pub fn storage_mut(&mut self) -> &mut Storage {
        &mut self.data
    }

    /// Consumes the tensor, giving its shape and storage.
    pub fn into_parts(self) -> (Shape, Storage) {
        (self.shape, self.data)
    }

    /// A borrowed view.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: self.shape.clone(),
            data: self.data.as_ref(),
        }
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(self, shape: impl Into<Shape>) -> Result<Self> {
        Tensor::new(shape, self.data)
    }

    /// Appends the elements to `out` in row-major order, each in little-endian byte order
    /// (`u8` as is, `bool` as one byte, 0 or 1): the data section of `.npy` files and of
    /// MXNet's `.params` arrays.
    ///
    /// ```
    /// let t = kiln_ir::Tensor::from_vec(vec![1i32, -2], [2]).unwrap();
    /// let mut out = Vec::new();
    /// t.write_le_bytes(&mut out);
    /// assert_eq!(out, [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
    /// ```
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.data.len() * self.dtype().size_of());
        match &self.data {
            Storage::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Storage::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Storage::I32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Storage::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Storage::U8(v) => out.extend_from_slice(v),
            Storage::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        }
    }

    /// The typed elements; an error if the dtype differs.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.data.as_ref().typed::<T>("tensor")
    }

    /// All elements as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.data.as_ref().to_f64_vec()
    }

    /// Converts to another dtype.
    pub fn cast(&self, dtype: DType) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.cast(dtype),
        }
    }
}

/// A borrowed tensor: shape plus contiguous typed data.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    /// The dimensions.
    pub shape: Shape,
    /// The elements, row-major; `shape.numel()` of them.
    pub data: DataRef<'a>,
}

impl<'a> TensorView<'a> {
    /// Builds a view; errors if the lengths disagree.
    pub fn new(shape: Shape, data: DataRef<'a>) -> Result<Self> {
        if shape.numel() != data.len() {
            return Err(Error::shape(
                "view",
                format!(
                    "shape {shape} needs {} elements, got {}",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(TensorView { shape, data })
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Shape and dtype together.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.shape.clone(), self.dtype())
    }

    /// Copies into an owned tensor.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.to_storage(),
        }
    }

    /// The typed elements; an error naming `op` if the dtype differs.
    pub fn typed<T: Element>(&self, op: &str) -> Result<&'a [T]> {
        self.data.typed::<T>(op)
    }
}
