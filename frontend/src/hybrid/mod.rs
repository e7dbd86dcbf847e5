//! hybridize: running traced graphs, their gradients, and exported models.
//!
//! - [`executor`]: [`BackendChoice`], [`HybridizeOptions`] and the [`Executor`] that runs a
//!   graph through a backend's kernels;
//! - [`cached`]: [`CachedGraph`], one traced graph bound to parameters, differentiable under
//!   `autograd::record`.

pub mod cached;
pub mod executor;

pub use cached::CachedGraph;
pub use executor::{BackendChoice, Executor, HybridizeOptions, RunStats};
