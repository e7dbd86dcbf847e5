//! `hybridize()`: the per-block cache of traced, compiled graphs and the call path that uses it.
//!
//! A [`HybridBlock`] keeps a [`HybridState`]. Until `hybridize()` its forward runs eagerly.
//! Afterwards each call looks up its [`Signature`] (input shapes and dtypes, training or
//! predict mode, device): on a miss the block's `hybrid_forward` is traced once
//! ([`super::trace`]) into a [`CachedGraph`]; on a hit the cached graph runs and the Rust
//! forward does not run at all. Parameters are bound by name at every call, so a `Trainer`
//! step (or `set_data`) needs no new trace.
//!
//! Nesting: a hybridized block called while another block is being traced runs its
//! `hybrid_forward` inline (its ops join the outer graph); a hybridized block inside an
//! imperative parent runs its own cached graph, which is one node on the autograd tape.
//!
//! Deferred initialization: parameters whose shapes are learnt from the first input cannot be
//! bound before they exist. A first call that finds such parameters runs the forward eagerly
//! (which initializes them exactly as imperative mode does, and returns that result), then
//! traces the graph for later calls.

use super::trace::{self, Traced};
use super::{CachedGraph, HybridizeOptions};
use crate::autograd;
use crate::context::Context;
use crate::gluon::block::HybridBlock;
use crate::gluon::ParameterDict;
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Graph, Result, Shape, TensorType};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a cached graph is specialized for: a call with another signature traces again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Each input's shape.
    pub shapes: Vec<Shape>,
    /// Each input's dtype.
    pub dtypes: Vec<DType>,
    /// Training mode ([`autograd::is_training`]): dropout and batch norm trace differently.
    pub training: bool,
    /// The inputs' device.
    pub ctx: Context,
}

impl Signature {
    /// The signature of a call on `inputs` in the current mode.
    pub fn of(inputs: &[&NDArray]) -> Signature {
        Signature {
            shapes: inputs.iter().map(|x| x.shape().clone()).collect(),
            dtypes: inputs.iter().map(|x| x.dtype()).collect(),
            training: autograd::is_training(),
            ctx: inputs.first().map_or(Context::cpu(), |x| x.context()),
        }
    }

    fn types(&self) -> Vec<TensorType> {
        self.shapes
            .iter()
            .zip(&self.dtypes)
            .map(|(s, d)| TensorType::new(s.clone(), *d))
            .collect()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = self.types().iter().map(|t| t.to_string()).collect();
        write!(
            f,
            "({}) {} @{}",
            types.join(", "),
            if self.training { "train" } else { "predict" },
            self.ctx
        )
    }
}

/// Observable counters of a block's hybridize cache (for tests and curious users).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compiled graphs held (one per signature seen).
    pub entries: usize,
    /// Calls answered by a cached graph without tracing.
    pub hits: u64,
    /// Traces run (cache misses).
    pub traces: u64,
}

/// One compiled signature.
struct Entry {
    graph: CachedGraph,
    /// The parameters the graph binds, collected when it was traced.
    params: ParameterDict,
}

#[derive(Default)]
struct Cache {
    options: HybridizeOptions,
    entries: HashMap<Signature, Arc<Entry>>,
    hits: u64,
    traces: u64,
    /// The signature of the latest call (what `export` writes).
    last: Option<Signature>,
    /// The entry compiled for `last`, when there is one: a call with the latest signature
    /// finds it without hashing.
    last_entry: Option<Arc<Entry>>,
}

/// A block's hybridize switch and cache. Every [`HybridBlock`] holds one (a field initialized
/// with `HybridState::default()`) and returns it from [`HybridBlock::hybrid_state`].
#[derive(Default)]
pub struct HybridState {
    active: AtomicBool,
    cache: Mutex<Cache>,
}

impl fmt::Debug for HybridState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        f.debug_struct("HybridState")
            .field("active", &self.is_active())
            .field("entries", &s.entries)
            .field("hits", &s.hits)
            .field("traces", &s.traces)
            .finish()
    }
}

impl HybridState {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True after `hybridize()`: calls go through the cache.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Switches hybridization on with `options`. Changing the options drops the graphs
    /// compiled with the old ones (the counters are kept).
    pub fn activate(&self, options: HybridizeOptions) {
        let mut c = self.lock();
        if c.options != options {
            c.entries.clear();
            c.last_entry = None;
            c.options = options;
        }
        self.active.store(true, Ordering::Relaxed);
    }

    /// Switches hybridization off and drops the compiled graphs: calls run eagerly again.
    pub fn deactivate(&self) {
        self.active.store(false, Ordering::Relaxed);
        let mut c = self.lock();
        c.entries.clear();
        c.last = None;
        c.last_entry = None;
    }

    /// The options given to the latest `hybridize_with`.
    pub fn options(&self) -> HybridizeOptions {
        self.lock().options
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        let c = self.lock();
        CacheStats {
            entries: c.entries.len(),
            hits: c.hits,
            traces: c.traces,
        }
    }

    /// The signatures compiled so far (in no particular order).
    pub fn signatures(&self) -> Vec<Signature> {
        self.lock().entries.keys().cloned().collect()
    }

    /// The traced graph of the latest call's signature, if that call compiled one.
    pub fn last_graph(&self) -> Option<Graph> {
        let c = self.lock();
        let sig = c.last.as_ref()?;
        c.entries.get(sig).map(|e| e.graph.graph().clone())
    }
}

/// Runs `block` on `x` as its [`HybridBlock`] settings say: inline while another block is
/// being traced, eagerly when not hybridized, else through the cache. Every hybridizable
/// layer's `Block::forward` is this call.
pub fn call<B: HybridBlock + ?Sized>(block: &B, x: &NDArray) -> Result<NDArray> {
    if trace::is_tracing() || !block.hybrid_state().is_active() || EAGER.with(Cell::get) {
        return block.hybrid_forward(x);
    }
    let mut out = call_cached(block, &[x])?;
    if out.len() != 1 {
        return Err(Error::invalid(
            "hybridize",
            format!(
                "{}: the block returned {} outputs; call it with forward_many to get them all",
                block.prefix(),
                out.len()
            ),
        ));
    }
    Ok(out.remove(0))
}

/// [`call`] for several inputs and outputs: what [`HybridBlock::forward_many`] runs. The
/// signature covers every input, so each combination of shapes traces once.
pub fn call_many<B: HybridBlock + ?Sized>(block: &B, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
    if xs.is_empty() {
        return Err(Error::invalid(
            "forward_many",
            format!(
                "{}: a block is called with at least one input",
                block.prefix()
            ),
        ));
    }
    if trace::is_tracing() || !block.hybrid_state().is_active() || EAGER.with(Cell::get) {
        return block.hybrid_forward_many(xs);
    }
    call_cached(block, xs)
}

thread_local! {
    /// Set while a hybridized block runs its forward eagerly (a first call finishing deferred
    /// initialization): its hybridized children then run eagerly too instead of compiling
    /// graphs of their own.
    static EAGER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with [`EAGER`] set, restoring it afterwards (also on unwinding).
fn eagerly<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            EAGER.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EAGER.with(|e| e.replace(true)));
    f()
}

fn call_cached<B: HybridBlock + ?Sized>(block: &B, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
    let state = block.hybrid_state();
    let sig = Signature::of(xs);
    if let Some(other) = xs.iter().find(|x| x.context() != sig.ctx) {
        return Err(Error::invalid(
            "hybridize",
            format!(
                "{}: the inputs live on different devices ({} and {})",
                block.prefix(),
                sig.ctx,
                other.context()
            ),
        ));
    }
    let found = {
        let mut c = state.lock();
        let same = c.last.as_ref() == Some(&sig);
        let found = match &c.last_entry {
            Some(e) if same => Some(Arc::clone(e)),
            _ => {
                let found = c.entries.get(&sig).cloned();
                c.last_entry.clone_from(&found);
                if !same {
                    c.last = Some(sig.clone());
                }
                found
            }
        };
        if found.is_some() {
            c.hits += 1;
        }
        found
    };
    let entry = match found {
        Some(e) => e,
        None => {
            let params = block.collect_params()?;
            if params.iter().any(|p| !p.is_initialized()) {
                // Deferred initialization: this call runs eagerly (initializing the
                // parameters as imperative mode would); the graph is traced for later calls.
                let y = eagerly(|| block.hybrid_forward_many(xs))?;
                compile(block, &sig, params)?;
                return Ok(y);
            }
            compile(block, &sig, params)?
        }
    };
    entry.graph.call(xs, &entry.params)
}

/// Traces `block` for `sig`, compiles the graph and caches it.
fn compile<B: HybridBlock + ?Sized>(
    block: &B,
    sig: &Signature,
    params: ParameterDict,
) -> Result<Arc<Entry>> {
    let state = block.hybrid_state();
    let options = state.options();
    let traced = trace_block(block, sig, &params)?;
    let graph = CachedGraph::new(
        traced.graph,
        traced.input_names,
        traced.num_user_outputs,
        traced.state_updates,
        traced.seed_slots,
        &options,
    )?;
    let entry = Arc::new(Entry { graph, params });
    let mut c = state.lock();
    c.traces += 1;
    c.entries.insert(sig.clone(), entry.clone());
    if c.last.as_ref() == Some(sig) {
        c.last_entry = Some(entry.clone());
    }
    Ok(entry)
}

/// Traces `block.hybrid_forward` for inputs of `sig`'s types, in `sig`'s mode.
fn trace_block<B: HybridBlock + ?Sized>(
    block: &B,
    sig: &Signature,
    params: &ParameterDict,
) -> Result<Traced> {
    let run = || {
        trace::trace(&sig.types(), sig.ctx, params, |xs| {
            let refs: Vec<&NDArray> = xs.iter().collect();
            block.hybrid_forward_many(&refs)
        })
    };
    if sig.training {
        autograd::train_mode(run)
    } else {
        autograd::predict_mode(run)
    }
    .map_err(|e| in_block(block, e))
}

/// Adds which block failed to trace to an error.
fn in_block<B: HybridBlock + ?Sized>(block: &B, e: Error) -> Error {
    match e {
        Error::Invalid { op, msg } => Error::Invalid {
            op,
            msg: format!("{msg} (while tracing {})", block.prefix()),
        },
        other => other,
    }
}
/// Writes `{prefix}-graph.json` and `{prefix}.safetensors` for `block`: the predict-mode graph
/// of the latest call's input types and the parameters it binds (see [`super::export`]).
///
/// Errors unless the block is hybridized and has been called (the input types come from the
/// latest call), or when writing fails.
pub fn export_block<B: HybridBlock + ?Sized>(
    block: &B,
    prefix: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let state = block.hybrid_state();
    let last = state.lock().last.clone();
    let (Some(sig), true) = (last, state.is_active()) else {
        return Err(Error::invalid(
            "export",
            format!(
                "{}: call hybridize() and then the block once before export(), so that the \
                 input shapes are known",
                block.prefix()
            ),
        ));
    };
    let sig = Signature {
        training: false,
        ..sig
    };
    let params = block.collect_params()?;
    let traced = trace_block(block, &sig, &params)?;
    let mut bound = ParameterDict::new();
    for (name, _) in traced.graph.params() {
        if let Some(p) = params.get(name) {
            bound.insert(p.clone())?;
        }
    }
    super::export(prefix, &traced.graph, &bound)
}
