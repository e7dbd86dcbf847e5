//! MNIST plumbing shared by the classification examples: the book's
//! `vision.MNIST(transform=/255)` splits as flat `[N, 784]` f32 arrays (or `[N, 1, 28, 28]`
//! images for the CNNs), with `--quick` subsets.

use super::common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, Dataset};
use kiln::prelude::*;

/// Test samples `--quick` scores on (the full split has 10,000).
pub const QUICK_TEST: usize = 2000;

/// How a split's images are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[N, 784]`, for the linear models and MLPs.
    Flat,
    /// `[N, 1, 28, 28]` (NCHW), for the CNNs.
    Image,
}

/// Which data set: the digits or Zalando's clothes (same format, same sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// MNIST digits.
    Mnist,
    /// Fashion-MNIST.
    FashionMnist,
}

/// One split: images in `[0, 1]` f32 laid out as `layout`, labels `[N]` f32 — what the
/// book's transform `data.astype(np.float32)/255` gives, converted once up front rather
/// than per batch. `limit` keeps the first `limit` samples.
pub fn load_split_as(
    opts: &Options,
    source: Source,
    layout: Layout,
    train: bool,
    limit: Option<usize>,
) -> Fallible<ArrayDataset> {
    let arrays = match source {
        Source::Mnist => kiln::gluon::data::vision::MNIST::new(opts.mnist_dir(), train)?
            .arrays()
            .clone(),
        Source::FashionMnist => {
            kiln::gluon::data::vision::FashionMNIST::new(opts.fashion_mnist_dir(), train)?
                .arrays()
                .clone()
        }
    };
    let n = limit.map_or(arrays.len(), |l| l.min(arrays.len()));
    let images = arrays.data().slice_axis0(..n)?;
    let dims: &[i64] = match layout {
        Layout::Flat => &[n as i64, 784],
        Layout::Image => &[n as i64, 1, 28, 28],
    };
    let images = (images.reshape(dims)?.astype(DType::F32)? / 255.0)?;
    let labels = arrays.label().slice_axis0(..n)?.astype(DType::F32)?;
    Ok(ArrayDataset::new(images, labels)?)
}

/// One flat MNIST split.
pub fn load_split(opts: &Options, train: bool, limit: Option<usize>) -> Fallible<ArrayDataset> {
    load_split_as(opts, Source::Mnist, Layout::Flat, train, limit)
}

/// The training and test splits of `source` laid out as `layout`; under `--quick`, the first
/// `quick_train` training and [`QUICK_TEST`] test samples.
pub fn load_as(
    opts: &Options,
    source: Source,
    layout: Layout,
    quick_train: usize,
) -> Fallible<(ArrayDataset, ArrayDataset)> {
    let (train_n, test_n) = if opts.quick {
        (Some(quick_train), Some(QUICK_TEST))
    } else {
        (None, None)
    };
    Ok((
        load_split_as(opts, source, layout, true, train_n)?,
        load_split_as(opts, source, layout, false, test_n)?,
    ))
}

/// The flat MNIST training and test splits (see [`load_as`]).
pub fn load(opts: &Options, quick_train: usize) -> Fallible<(ArrayDataset, ArrayDataset)> {
    load_as(opts, Source::Mnist, Layout::Flat, quick_train)
}
