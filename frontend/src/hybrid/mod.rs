//! hybridize: running traced graphs, their gradients, and exported models.
//!
//! - [`executor`]: [`BackendChoice`], [`HybridizeOptions`] and the [`Executor`] that runs a
//!   graph through a backend's kernels, freeing values after their last use and substituting
//!   seeds;
//! - [`cached`]: [`CachedGraph`], one traced graph bound to parameters by name,
//!   differentiable under `autograd::record` (one tape node per call);
//! - [`symbol_block`]: [`SymbolBlock`], a block running a loaded graph;
//! - [`export`](mod@export): writing a graph and its parameters ([`export()`]), the format
//!   `SymbolBlock::imports` reads;
//! - [`optimize`](mod@optimize): the pass pipeline compiled graphs go through;
//! - [`trace`]: running a forward on symbolic arrays to record its graph;
//! - [`hybridize`]: the per-block, per-signature cache behind `HybridBlock::hybridize`;
//! - [`train_step`]: [`TrainStep`], a whole training step (forward, loss, backward and the
//!   optimizer update) compiled into one graph and run as one executor call.

pub mod cached;
pub mod executor;
pub mod export;
pub mod hybridize;
pub mod optimize;
pub mod symbol_block;
pub mod trace;
pub mod train_step;

pub use cached::CachedGraph;
pub use executor::{BackendChoice, Executor, HybridizeOptions, RunStats};
pub use export::export;
pub use hybridize::{CacheStats, HybridState, Signature};
pub use symbol_block::SymbolBlock;
pub use trace::is_tracing;
pub use train_step::{TrainStep, TrainStepOptions};
