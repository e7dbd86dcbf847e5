//! MNIST plumbing shared by the chapter-2/3 classification examples: the book's
//! `vision.MNIST(transform=/255)` splits as flat `[N, 784]` f32 arrays, the batches a
//! `DataLoader` gives, accuracy over a split, and the per-epoch progress line.

use super::common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader, Dataset};
use kiln::gluon::metric::{Accuracy, EvalMetric};
use kiln::prelude::*;
use std::io::Write;

/// Test samples `--quick` scores on (the full split has 10,000).
pub const QUICK_TEST: usize = 2000;

/// One MNIST split: images flattened to `[N, 784]` f32 in `[0, 1]`, labels `[N]` f32 —
/// what the book's transform `data.astype(np.float32)/255` gives, converted once up front
/// rather than per batch. `limit` keeps the first `limit` samples.
pub fn load_split(opts: &Options, train: bool, limit: Option<usize>) -> Fallible<ArrayDataset> {
    let mnist = kiln::gluon::data::vision::MNIST::new(opts.mnist_dir(), train)?;
    let all = mnist.arrays();
    let n = limit.map_or(all.len(), |l| l.min(all.len()));
    let images = all.data().slice_axis0(..n)?;
    let images = (images.reshape(&[n as i64, 784])?.astype(DType::F32)? / 255.0)?;
    let labels = all.label().slice_axis0(..n)?.astype(DType::F32)?;
    Ok(ArrayDataset::new(images, labels)?)
}

/// The training and test splits; under `--quick`, the first `quick_train` training and
/// [`QUICK_TEST`] test samples.
pub fn load(opts: &Options, quick_train: usize) -> Fallible<(ArrayDataset, ArrayDataset)> {
    let (train_n, test_n) = if opts.quick {
        (Some(quick_train), Some(QUICK_TEST))
    } else {
        (None, None)
    };
    Ok((
        load_split(opts, true, train_n)?,
        load_split(opts, false, test_n)?,
    ))
}

/// The fraction of `data`'s samples whose arg-max output under `net` is the label (the
/// book's `evaluate_accuracy`), scored in batches of 1,000.
pub fn evaluate_accuracy(
    data: &ArrayDataset,
    net: &dyn Fn(&NDArray) -> Result<NDArray>,
) -> Fallible<f64> {
    let mut acc = Accuracy::new();
    for batch in DataLoader::new(data.clone(), 1000).iter() {
        let (x, y) = batch?;
        let out = net(&x)?;
        acc.update(&[&y], &[&out])?;
    }
    Ok(acc.get().1)
}

/// What one epoch of training measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The mean per-sample training loss over the epoch.
    pub loss: f64,
    /// Accuracy on the training batches as they were trained on.
    pub train_acc: f64,
    /// Accuracy on the test split after the epoch.
    pub test_acc: f64,
    /// Training samples per second (training only, not scoring).
    pub samples_per_sec: f64,
}

/// Prints the book's progress line for `s`.
pub fn print_epoch(out: &mut dyn Write, s: &EpochStats) -> Fallible<()> {
    writeln!(
        out,
        "Epoch {}. Loss: {:.6}, Train_acc {:.4}, Test_acc {:.4} ({:.0} samples/s)",
        s.epoch, s.loss, s.train_acc, s.test_acc, s.samples_per_sec
    )?;
    Ok(())
}

/// Prints the closing line: epochs, final test accuracy and wall time.
pub fn print_summary(
    out: &mut dyn Write,
    history: &[EpochStats],
    wall: std::time::Duration,
) -> Fallible<()> {
    if let Some(last) = history.last() {
        let rate = history.iter().map(|s| s.samples_per_sec).sum::<f64>() / history.len() as f64;
        writeln!(
            out,
            "Trained {} epoch(s) in {:.1} s: test accuracy {:.4}, {:.0} samples/s on average",
            history.len(),
            wall.as_secs_f64(),
            last.test_acc,
            rate
        )?;
    }
    Ok(())
}

/// The mean of the first and of the last tenth of `losses` (at least one value each), to
/// show that training lowered the loss.
pub fn first_last_tenth(losses: &[f64]) -> (f64, f64) {
    let k = (losses.len() / 10).max(1).min(losses.len());
    if k == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (mean(&losses[..k]), mean(&losses[losses.len() - k..]))
}
