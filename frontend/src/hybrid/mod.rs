//! hybridize: running traced graphs, their gradients, and exported models.
//!
//! - [`executor`]: [`BackendChoice`], [`HybridizeOptions`] and the [`Executor`] that runs a
//!   graph through a backend's kernels;
//! - [`cached`]: [`CachedGraph`], one traced graph bound to parameters, differentiable under
//!   `autograd::record`.
//! - [`trace`]: running a forward on symbolic arrays to record its graph;
//! - [`hybridize`]: the per-block, per-signature cache behind `HybridBlock::hybridize`.

pub mod cached;
pub mod executor;
pub mod hybridize;
pub mod trace;

pub use cached::CachedGraph;
pub use executor::{BackendChoice, Executor, HybridizeOptions, RunStats};
pub use hybridize::{CacheStats, HybridState, Signature};
pub use trace::is_tracing;
