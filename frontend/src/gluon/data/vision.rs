//! Vision data sets (gluon's `gluon.data.vision`): [`MNIST`] and [`FashionMNIST`].
//!
//! As in gluon, a sample is an image `[28, 28, 1]` u8 (height, width, channel) and an i32
//! label; batches are `[B, 28, 28, 1]` and `[B]`.

use super::dataset::{ArrayDataset, Dataset, Sample, Transform};
use crate::context::Context;
use crate::data::mnist::{default_data_dir, load_mnist};
use crate::ndarray::NDArray;
use kiln_ir::{DType, Result};
use std::path::{Path, PathBuf};

/// The book's `transform=lambda data, label: (data.astype(np.float32)/255,
/// label.astype(np.float32))`: pixels to f32 in `[0, 1]`, labels to f32. Elementwise, so it
/// is applied once per batch.
pub fn to_float_scaled() -> Transform {
    Transform::elementwise(|data, label| {
        let data = (data.astype(DType::F32)? / 255.0)?;
        Ok((data, label.astype(DType::F32)?))
    })
}

/// Loads a split in gluon's layout: images `[N, 28, 28, 1]` u8, labels `[N]` i32.
fn load_split(dir: &Path, train: bool) -> Result<ArrayDataset> {
    let split = load_mnist(dir, train)?;
    let s = split.images.shape();
    let dims = [s[0], s[1], s[2], 1];
    let images = split.images.reshaped(&dims[..])?;
    let labels = split.labels.cast(DType::I32);
    ArrayDataset::new(
        NDArray::from_tensor(images, Context::cpu()),
        NDArray::from_tensor(labels, Context::cpu()),
    )
}

macro_rules! mnist_like {
    ($(#[$doc:meta])* $name:ident, $folder:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            samples: ArrayDataset,
            transform: Option<Transform>,
        }

        impl $name {
            /// Loads the training split (`train = true`, 60,000 samples) or the test split
            /// (10,000) from the IDX files (gzipped or not) in `dir`.
            pub fn new(dir: impl AsRef<Path>, train: bool) -> Result<Self> {
                Ok($name {
                    samples: load_split(dir.as_ref(), train)?,
                    transform: None,
                })
            }

            #[doc = concat!("The copy shipped with kiln: `data/", $folder, "/` at the repository root.")]
            pub fn default_dir() -> PathBuf {
                default_data_dir().join($folder)
            }

            /// Applies `transform` to every sample (gluon's `transform=` argument).
            pub fn with_transform(mut self, transform: Transform) -> Self {
                self.transform = Some(transform);
                self
            }

            /// All images `[N, 28, 28, 1]` u8 and labels `[N]` i32, untransformed.
            pub fn arrays(&self) -> &ArrayDataset {
                &self.samples
            }
        }

        impl Dataset for $name {
            fn len(&self) -> usize {
                self.samples.len()
            }
            fn get(&self, i: usize) -> Result<Sample> {
                let (d, l) = self.samples.get(i)?;
                match &self.transform {
                    Some(t) => t.apply(d, l),
                    None => Ok((d, l)),
                }
            }
            fn get_batch(&self, indices: &[usize]) -> Result<Sample> {
                match &self.transform {
                    Some(t) => t.apply_batch(&self.samples, indices),
                    None => self.samples.get_batch(indices),
                }
            }
        }
    };
}

mnist_like!(
    /// The MNIST handwritten digits (gluon's `gluon.data.vision.MNIST`).
    ///
    /// ```no_run
    /// use kiln_frontend::gluon::data::{vision::MNIST, Dataset};
    /// let train = MNIST::new(MNIST::default_dir(), true)?;
    /// assert_eq!(train.len(), 60_000);
    /// let (image, label) = train.get(0)?; // [28, 28, 1] u8, i32 scalar 5
    /// # let _ = (image, label);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    MNIST,
    "mnist"
);

mnist_like!(
    /// Zalando's Fashion-MNIST clothing images (gluon's `gluon.data.vision.FashionMNIST`):
    /// same files and layout as [`MNIST`], labels 0-9 are t-shirt/top, trouser, pullover,
    /// dress, coat, sandal, shirt, sneaker, bag, ankle boot.
    FashionMNIST,
    "fashion-mnist"
);
