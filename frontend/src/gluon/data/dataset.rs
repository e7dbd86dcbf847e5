//! `Dataset`, `ArrayDataset`, sample transforms, and the row gathering that builds batches.

use crate::ndarray::NDArray;
use kiln_ir::{with_data, DType, Element, Error, Result, Shape, Tensor};
use std::sync::Arc;

/// One sample (or one batch): data and label.
pub type Sample = (NDArray, NDArray);

/// A data set of `(data, label)` samples, indexed from 0 (gluon's `Dataset`).
///
/// Implement [`Dataset::len`] and [`Dataset::get`]; override [`Dataset::get_batch`] when
/// the samples live in one big array (as [`ArrayDataset`] does) to gather a batch in one copy.
pub trait Dataset: Send + Sync {
    /// The number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i`. Errors when `i >= len()`.
    fn get(&self, i: usize) -> Result<Sample>;

    /// The samples `indices`, stacked along a new first axis: data `[B, ...]`, label
    /// `[B, ...]`. The default gets each sample and copies them into one buffer each.
    fn get_batch(&self, indices: &[usize]) -> Result<Sample> {
        let mut data = Vec::with_capacity(indices.len());
        let mut label = Vec::with_capacity(indices.len());
        for &i in indices {
            let (d, l) = self.get(i)?;
            data.push(d);
            label.push(l);
        }
        Ok((stack_samples(&data)?, stack_samples(&label)?))
    }

    /// This data set with `transform` applied to every sample (gluon's `Dataset.transform`).
    fn transform(self, transform: Transform) -> TransformedDataset<Self>
    where
        Self: Sized,
    {
        TransformedDataset {
            inner: self,
            transform,
        }
    }
}

macro_rules! forward_dataset {
    ($($ptr:ident),*) => {$(
        impl<D: Dataset + ?Sized> Dataset for $ptr<D> {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn get(&self, i: usize) -> Result<Sample> {
                (**self).get(i)
            }
            fn get_batch(&self, indices: &[usize]) -> Result<Sample> {
                (**self).get_batch(indices)
            }
        }
    )*};
}
forward_dataset!(Arc, Box);

type TransformFn = dyn Fn(NDArray, NDArray) -> Result<Sample> + Send + Sync;

/// A function from a `(data, label)` sample to a new one (gluon's
/// `transform=lambda data, label: ...`).
///
/// A transform is *per sample* ([`Transform::per_sample`]) or *elementwise*
/// ([`Transform::elementwise`]): an elementwise one gives the same result on a whole batch as
/// on each sample (casts, scaling), so kiln applies it once per batch, which is much faster.
#[derive(Clone)]
pub struct Transform {
    f: Arc<TransformFn>,
    elementwise: bool,
}

impl Transform {
    /// A transform applied to one sample at a time (it may depend on the sample's layout,
    /// e.g. a transpose of its axes).
    pub fn per_sample(
        f: impl Fn(NDArray, NDArray) -> Result<Sample> + Send + Sync + 'static,
    ) -> Self {
        Transform {
            f: Arc::new(f),
            elementwise: false,
        }
    }

    /// A transform that acts on each element independently, so applying it to a stacked
    /// batch equals stacking the transformed samples; kiln applies it per batch.
    pub fn elementwise(
        f: impl Fn(NDArray, NDArray) -> Result<Sample> + Send + Sync + 'static,
    ) -> Self {
        Transform {
            f: Arc::new(f),
            elementwise: true,
        }
    }

    /// True for a transform made by [`Transform::elementwise`].
    pub fn is_elementwise(&self) -> bool {
        self.elementwise
    }

    /// Applies the transform to one sample (or, when elementwise, one batch).
    pub fn apply(&self, data: NDArray, label: NDArray) -> Result<Sample> {
        (self.f)(data, label)
    }

    /// Applies the transform to a batch of `indices` of `dataset`: once on the batch when
    /// elementwise, otherwise on each sample before stacking.
    pub(crate) fn apply_batch<D: Dataset + ?Sized>(
        &self,
        dataset: &D,
        indices: &[usize],
    ) -> Result<Sample> {
        if self.elementwise {
            let (d, l) = dataset.get_batch(indices)?;
            return self.apply(d, l);
        }
        let mut data = Vec::with_capacity(indices.len());
        let mut label = Vec::with_capacity(indices.len());
        for &i in indices {
            let (d, l) = dataset.get(i)?;
            let (d, l) = self.apply(d, l)?;
            data.push(d);
            label.push(l);
        }
        Ok((stack_samples(&data)?, stack_samples(&label)?))
    }
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("elementwise", &self.elementwise)
            .finish_non_exhaustive()
    }
}

/// A data set with a [`Transform`] applied to its samples (made by [`Dataset::transform`]).
pub struct TransformedDataset<D> {
    inner: D,
    transform: Transform,
}

impl<D: Dataset> Dataset for TransformedDataset<D> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, i: usize) -> Result<Sample> {
        let (d, l) = self.inner.get(i)?;
        self.transform.apply(d, l)
    }
    fn get_batch(&self, indices: &[usize]) -> Result<Sample> {
        self.transform.apply_batch(&self.inner, indices)
    }
}

/// A data set over two arrays whose first axis indexes the samples (gluon's `ArrayDataset`):
/// sample `i` is `(data[i], label[i])`.
///
/// ```
/// use kiln_frontend::gluon::data::{ArrayDataset, Dataset};
/// use kiln_frontend::NDArray;
/// let x = NDArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2])?;
/// let y = NDArray::from_slice(&[0i32, 1, 0]);
/// let ds = ArrayDataset::new(x, y)?;
/// let (d, l) = ds.get(1)?;
/// assert_eq!(d.to_vec::<f32>()?, vec![3.0, 4.0]);
/// assert_eq!(l.as_scalar::<i32>()?, 1);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ArrayDataset {
    data: NDArray,
    label: NDArray,
}

impl ArrayDataset {
    /// Pairs `data` and `label`. Errors when either is a scalar or their first dimensions
    /// (the sample counts) differ.
    pub fn new(data: NDArray, label: NDArray) -> Result<Self> {
        let (Some(&n), Some(&m)) = (data.shape().first(), label.shape().first()) else {
            return Err(Error::shape(
                "ArrayDataset",
                format!(
                    "data and label need a first (sample) axis, got shapes {} and {}",
                    data.shape(),
                    label.shape()
                ),
            ));
        };
        if n != m {
            return Err(Error::shape(
                "ArrayDataset",
                format!(
                    "data has {n} samples (shape {}) but label has {m} (shape {})",
                    data.shape(),
                    label.shape()
                ),
            ));
        }
        Ok(ArrayDataset { data, label })
    }

    /// The data array (all samples).
    pub fn data(&self) -> &NDArray {
        &self.data
    }

    /// The label array (all samples).
    pub fn label(&self) -> &NDArray {
        &self.label
    }
}

impl Dataset for ArrayDataset {
    fn len(&self) -> usize {
        self.data.shape()[0]
    }
    fn get(&self, i: usize) -> Result<Sample> {
        if i >= self.len() {
            return Err(Error::shape(
                "ArrayDataset::get",
                format!("index {i} is out of range for {} samples", self.len()),
            ));
        }
        Ok((self.data.at(i)?, self.label.at(i)?))
    }
    fn get_batch(&self, indices: &[usize]) -> Result<Sample> {
        Ok((
            gather_rows(&self.data, indices)?,
            gather_rows(&self.label, indices)?,
        ))
    }
}

/// Rows `indices` of `array`'s first axis copied into one new contiguous array
/// `[indices.len(), ...]` on the same device. Errors on an out-of-range index or a scalar.
pub fn gather_rows(array: &NDArray, indices: &[usize]) -> Result<NDArray> {
    let Some(&n) = array.shape().first() else {
        return Err(Error::shape(
            "gather_rows",
            "cannot take rows of a scalar (shape [])",
        ));
    };
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        return Err(Error::shape(
            "gather_rows",
            format!(
                "row {bad} is out of range for an array of shape {}",
                array.shape()
            ),
        ));
    }
    let row_shape = &array.shape()[1..];
    let row: usize = row_shape.iter().product();
    let mut dims = Vec::with_capacity(row_shape.len() + 1);
    dims.push(indices.len());
    dims.extend_from_slice(row_shape);
    let tensor = array.with_view(|v| {
        with_data!(v.data, T, s => {
            let mut out: Vec<T> = Vec::with_capacity(indices.len() * row);
            for &i in indices {
                out.extend_from_slice(&s[i * row..(i + 1) * row]);
            }
            typed_tensor(out, &dims)
        })
    })??;
    Ok(NDArray::from_tensor(tensor, array.context()))
}

fn typed_tensor<T: Element>(v: Vec<T>, dims: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(v, Shape::new(dims))
}

/// Stacks same-shaped, same-dtype arrays along a new first axis with one copy into a
/// contiguous buffer (the batch of a [`Dataset`] whose samples are separate arrays).
/// Errors on an empty list or on differing shapes or dtypes.
pub fn stack_samples(arrays: &[NDArray]) -> Result<NDArray> {
    let Some(first) = arrays.first() else {
        return Err(Error::shape(
            "stack_samples",
            "cannot stack an empty list of samples",
        ));
    };
    for (k, a) in arrays.iter().enumerate() {
        if a.shape() != first.shape() || a.dtype() != first.dtype() {
            return Err(Error::shape(
                "stack_samples",
                format!(
                    "sample {k} is {} {} but sample 0 is {} {}; samples of a batch must agree",
                    a.dtype(),
                    a.shape(),
                    first.dtype(),
                    first.shape()
                ),
            ));
        }
    }
    let mut dims = Vec::with_capacity(first.ndim() + 1);
    dims.push(arrays.len());
    dims.extend_from_slice(first.shape());
    let tensor = match first.dtype() {
        DType::F32 => stack_typed::<f32>(arrays, &dims),
        DType::F64 => stack_typed::<f64>(arrays, &dims),
        DType::I32 => stack_typed::<i32>(arrays, &dims),
        DType::I64 => stack_typed::<i64>(arrays, &dims),
        DType::U8 => stack_typed::<u8>(arrays, &dims),
        DType::Bool => stack_typed::<bool>(arrays, &dims),
    }?;
    Ok(NDArray::from_tensor(tensor, first.context()))
}

/// Concatenates the elements of `arrays` (all of dtype `T`) into one tensor of `dims`.
fn stack_typed<T: Element>(arrays: &[NDArray], dims: &[usize]) -> Result<Tensor> {
    let mut out: Vec<T> = Vec::with_capacity(dims.iter().product());
    for a in arrays {
        a.with_view(|v| {
            v.typed::<T>("stack_samples")
                .map(|s| out.extend_from_slice(s))
        })??;
    }
    typed_tensor(out, dims)
}
