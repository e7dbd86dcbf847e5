//! MNIST and Fashion-MNIST (same files, same layout) from a directory of IDX files.

use super::idx::read_idx;
use kiln_ir::{Error, Result, Tensor};
use std::path::{Path, PathBuf};

/// One split of an MNIST-style data set: images `[N, 28, 28]` u8 and labels `[N]` u8.
#[derive(Clone, Debug)]
pub struct MnistSplit {
    /// Images, `[N, rows, cols]`, u8.
    pub images: Tensor,
    /// Labels, `[N]`, u8.
    pub labels: Tensor,
}

/// Finds `stem` in `dir` under any of the usual spellings: `train-images-idx3-ubyte` or
/// `train-images.idx3-ubyte`, with or without `.gz`.
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    for name in [stem, dotted.as_str()] {
        for ext in [".gz", ""] {
            let p = dir.join(format!("{name}{ext}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::Format(format!(
        "{}: no {stem}[.gz] (or {dotted}[.gz]) found; pass --data DIR pointing to the MNIST files",
        dir.display()
    )))
}

/// Loads the training (`train = true`, 60,000 images) or test split (10,000) from `dir`.
pub fn load_mnist(dir: impl AsRef<Path>, train: bool) -> Result<MnistSplit> {
    let dir = dir.as_ref();
    let prefix = if train { "train" } else { "t10k" };
    let images = read_idx(find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?)?;
    let labels = read_idx(find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?)?;
    if images.shape().rank() != 3 || labels.shape().rank() != 1 {
        return Err(Error::Format(format!(
            "{}: expected images [N, rows, cols] and labels [N], got {} and {}",
            dir.display(),
            images.shape(),
            labels.shape()
        )));
    }
    if images.shape()[0] != labels.shape()[0] {
        return Err(Error::Format(format!(
            "{}: {} images but {} labels",
            dir.display(),
            images.shape()[0],
            labels.shape()[0]
        )));
    }
    Ok(MnistSplit { images, labels })
}

/// The data directory shipped with kiln (`data/` at the repository root).
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("data"))
        .unwrap_or_else(|| PathBuf::from("data"))
}
