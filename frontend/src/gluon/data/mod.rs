//! gluon.data: data sets, transforms and the mini-batch [`DataLoader`] (MXNet's
//! `mxnet.gluon.data`).
//!
//! ```no_run
//! use kiln_frontend::gluon::data::{vision, DataLoader};
//! // The book's `transform=lambda data, label: (data.astype(np.float32)/255, label.astype(np.float32))`:
//! let train = vision::MNIST::new(vision::MNIST::default_dir(), true)?
//!     .with_transform(vision::to_float_scaled());
//! let loader = DataLoader::new(train, 64).shuffle(true).num_workers(2);
//! for batch in &loader {
//!     let (data, label) = batch?; // [64, 28, 28, 1] f32 in [0, 1], [64] f32
//! #   let _ = (data, label);
//! }
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

mod dataset;
mod loader;
pub mod vision;

pub use dataset::{
    gather_rows, stack_samples, ArrayDataset, Dataset, Sample, Transform, TransformedDataset,
};
pub use loader::{BatchIter, DataLoader, LastBatch};
