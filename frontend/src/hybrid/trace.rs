//! Tracing: running a forward once with symbolic arrays to record it as a [`Graph`].
//!
//! While [`trace`] runs its closure, every op that reaches [`crate::ndarray::apply_on`] on this
//! thread is appended to the trace's graph instead of being computed, and returns a *symbolic*
//! array: one that knows its node, shape (from `kiln_ir::infer`), dtype and device but holds no
//! elements. A layer's forward therefore runs unchanged in both modes; there is no second
//! implementation to drift from the eager one.
//!
//! What becomes what:
//! - the traced inputs are `NodeKind::Input` nodes named `data` (one input) or `data0`,
//!   `data1`, ... (several);
//! - a parameter's data array (recognized by its storage, so `detach()`ed handles count too)
//!   becomes a `NodeKind::Param` node named by the parameter's full name (`dense0_weight`),
//!   created when first used: weights are bound at every run, never baked in, so updating them
//!   needs no new trace;
//! - any other concrete array an op meets becomes a constant (each once);
//! - a random op gets a placeholder seed equal to its *seed slot* (0, 1, 2, ... in trace
//!   order); the executor draws a real seed per slot at every run, in slot order, exactly as
//!   eager mode draws one per random op, so hybridized and eager results agree;
//! - a whole-array in-place write into a parameter (`assign`, `+=`, `fill`: BatchNorm's running
//!   statistics) becomes a *state update*: an extra graph output written into that parameter
//!   after each run. Later reads of the parameter in the same trace see the new value.
//!
//! Reading values of a symbolic array (`to_vec`, `as_scalar`, `with_view`, in-place writes that
//! are not state updates, ...) is an error that says why and what to do instead. The readers
//! that return a `Result` return it; the infallible ones (`to_vec_f64`, `to_tensor`) abandon
//! the trace, which [`trace`] turns into the same error. A symbolic array kept past its
//! trace has no values either: the fallible readers say so.
//!
//! ```
//! use kiln_frontend::gluon::ParameterDict;
//! use kiln_frontend::hybrid::trace::trace;
//! use kiln_frontend::{Context, DType};
//! use kiln_ir::TensorType;
//! let t = trace(&[TensorType::new([2, 3], DType::F32)], Context::cpu(), &ParameterDict::new(), |xs| {
//!     assert!(xs[0].is_symbolic());
//!     Ok(vec![xs[0].relu()?.sum()?])
//! })?;
//! assert_eq!(t.input_names, vec!["data".to_string()]);
//! assert_eq!(t.graph.len(), 3); // input, relu, sum
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

use crate::context::Context;
use crate::gluon::ParameterDict;
use crate::ndarray::{Data, NDArray};
use kiln_ir::{DType, Error, Graph, NodeId, Op, Result, Shape, TensorType};
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

thread_local! {
    /// The fast check of the eager op path: one thread-local read per op.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static STATE: RefCell<Option<TraceState>> = const { RefCell::new(None) };
}

static NEXT_TRACE: AtomicU64 = AtomicU64::new(1);

/// True while a [`trace`] runs on this thread: ops build a graph instead of computing.
#[inline]
pub fn is_tracing() -> bool {
    ACTIVE.with(Cell::get)
}

/// A traced forward: its graph and what an executor needs to run it (the arguments of
/// `CachedGraph::new`).
#[derive(Clone, Debug)]
pub struct Traced {
    /// The graph. Its outputs are the forward's outputs, then one per state update.
    pub graph: Graph,
    /// The names of the data inputs, in call order.
    pub input_names: Vec<String>,
    /// How many outputs at the front of `graph.outputs()` the forward returned.
    pub num_user_outputs: usize,
    /// `(parameter name, output index)`: after a run, that output is written into that
    /// parameter (BatchNorm running statistics in training mode).
    pub state_updates: Vec<(String, usize)>,
    /// The number of seed placeholders: random ops carry seeds `0..seed_slots`.
    pub seed_slots: usize,
}

/// Runs `forward` on symbolic inputs of types `inputs` (on `ctx`) and records what it does.
///
/// `params` are the parameters the forward may use: their data arrays become parameter
/// nodes. Initialize them first (a parameter still waiting for deferred initialization is not
/// recognized; its layer would try to initialize it inside the trace). The forward must
/// return at least one array.
///
/// Errors: a trace already running on this thread, an op the graph rejects (with shape
/// inference's message, as in eager mode), a value read or unsupported in-place write inside
/// `forward` (saying why), and any error `forward` returns.
pub fn trace<F>(
    inputs: &[TensorType],
    ctx: Context,
    params: &ParameterDict,
    forward: F,
) -> Result<Traced>
where
    F: FnOnce(&[NDArray]) -> Result<Vec<NDArray>>,
{
    if is_tracing() {
        return Err(Error::invalid(
            "hybridize",
            "a trace is already running on this thread; blocks called inside a traced forward \
             are traced inline, not traced again",
        ));
    }
    let id = NEXT_TRACE.fetch_add(1, Ordering::Relaxed);
    let mut state = TraceState::new(id);
    for p in params {
        if !p.is_initialized() {
            continue;
        }
        let data = p.data()?;
        if let Data::Concrete(storage) = &data.inner.data {
            state.params.insert(
                address(storage),
                ParamSlot {
                    name: p.name(),
                    data: data.clone(),
                    node: None,
                },
            );
        }
    }
    let input_names = input_names(inputs.len());
    let mut xs = Vec::with_capacity(inputs.len());
    for (name, ty) in input_names.iter().zip(inputs) {
        let node = state.graph.add_input(name.clone(), ty.clone())?;
        xs.push(NDArray::symbolic(id, node, ty.clone(), ctx));
    }

    STATE.with(|s| *s.borrow_mut() = Some(state));
    ACTIVE.with(|a| a.set(true));
    let guard = Active;
    let result = catch_unwind(AssertUnwindSafe(|| forward(&xs)));
    let state = STATE.with(|s| s.borrow_mut().take());
    drop(guard);
    let outputs = match result {
        Ok(r) => r?,
        Err(payload) => match payload.downcast::<AbandonTrace>() {
            Ok(abandon) => return Err(abandon.0),
            Err(other) => resume_unwind(other),
        },
    };
    let state = state.ok_or_else(|| {
        Error::Graph("hybridize: the trace's state disappeared while tracing".into())
    })?;
    state.finish(input_names, &outputs)
}

/// Clears the tracing flag and state when the trace ends, however it ends.
struct Active;

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(false));
        STATE.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.take();
            }
        });
    }
}

/// `data` for one input, else `data0`, `data1`, ... (gluon's names).
fn input_names(n: usize) -> Vec<String> {
    if n == 1 {
        vec!["data".to_string()]
    } else {
        (0..n).map(|i| format!("data{i}")).collect()
    }
}

/// The unwinding payload of a value read inside a trace through an infallible reader;
/// [`trace`] catches it and returns the error.
struct AbandonTrace(Error);

/// The error for reading (or writing) the elements of a symbolic array in `op`.
pub(crate) fn value_read_error(op: &str, shape: &Shape, dtype: DType) -> Error {
    if is_tracing() {
        Error::invalid(
            op,
            format!(
                "cannot read values while tracing a hybridized block: this array ({dtype} \
                 {shape}) is symbolic, its elements exist only when the compiled graph runs. \
                 Compute with NDArray ops instead (maximum, where, reductions, ...) and branch \
                 only on shapes or Rust-level options; to inspect values, call the block \
                 without hybridize()"
            ),
        )
    } else {
        Error::invalid(
            op,
            format!(
                "this array ({dtype} {shape}) is a symbolic value of a hybridize trace that has \
                 ended: it has no elements. Keep only the arrays a hybridized block returns, \
                 not values made inside its traced forward"
            ),
        )
    }
}

/// Abandons the running trace with the value-read error (an infallible reader met a symbolic
/// array); with no trace running (a symbolic array kept past its trace) panics with it.
pub(crate) fn abort_read(op: &str, shape: &Shape, dtype: DType) -> ! {
    let err = value_read_error(op, shape, dtype);
    if is_tracing() {
        // resume_unwind skips the panic hook: nothing is printed, trace() returns the error.
        resume_unwind(Box::new(AbandonTrace(err)))
    }
    panic!("{err}")
}

/// The error for an indexed in-place write while tracing.
pub(crate) fn indexed_write_error(op: &str, target: &NDArray) -> Error {
    Error::invalid(
        op,
        format!(
            "indexed in-place writes are not supported while tracing a hybridized block \
             (target {} {}): build the new value with ops (where, concat, \
             arithmetic) and use the result instead",
            target.dtype(),
            target.shape()
        ),
    )
}

/// Appends `op` on `inputs` to the running trace; the result is symbolic.
pub(crate) fn apply_traced(op: Op, inputs: &[&NDArray], ctx: Context) -> Result<NDArray> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let state = s.as_mut().ok_or_else(no_state)?;
        let mut ids: SmallVec<[NodeId; 4]> = SmallVec::new();
        for a in inputs {
            ids.push(state.node_of(a, op.name())?);
        }
        let mut op = op;
        if let Some(seed) = seed_of(&mut op) {
            *seed = state.seed_slots;
            state.seed_slots += 1;
        }
        let id = state.graph.add_op(op, &ids)?;
        let ty = state.graph.ty(id)?.clone();
        Ok(NDArray::symbolic(state.id, id, ty, ctx))
    })
}

/// Records `value` as the new value of `target` (an in-place write `op` while tracing): a
/// state update when `target` is a whole parameter, else an error saying what to do.
pub(crate) fn write_traced(op: &str, target: &NDArray, value: &NDArray) -> Result<()> {
    if !is_tracing() {
        return Err(value_read_error(op, target.shape(), target.dtype()));
    }
    let storage = match &target.inner.data {
        Data::Concrete(s) => address(s),
        Data::Symbolic(_) => {
            return Err(Error::invalid(
                op,
                format!(
                    "cannot write in place into a value computed inside a traced forward ({} \
                     {}); compute a new array instead (`y = y.add(&x)?` rather than `y += &x`)",
                    target.dtype(),
                    target.shape()
                ),
            ))
        }
    };
    if value.shape() != target.shape() || value.dtype() != target.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "the new value is {} {}, the target {} {}",
                value.dtype(),
                value.shape(),
                target.dtype(),
                target.shape()
            ),
        ));
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let state = s.as_mut().ok_or_else(no_state)?;
        let whole =
            |slot: &ParamSlot| target.inner.offset == 0 && target.shape() == slot.data.shape();
        match state.params.get(&storage) {
            Some(slot) if whole(slot) => {}
            Some(slot) => {
                return Err(Error::invalid(
                    op,
                    format!(
                        "only whole parameters can be updated in place while tracing; this \
                         writes a view ({}) of parameter {}",
                        target.shape(),
                        slot.name
                    ),
                ))
            }
            None => {
                return Err(Error::invalid(
                    op,
                    format!(
                        "cannot write in place into an array ({} {}) while tracing a \
                         hybridized block: only a block's parameters can be updated (they \
                         become state updates of the graph); compute a new array instead",
                        target.dtype(),
                        target.shape()
                    ),
                ))
            }
        }
        let node = state.node_of(value, op)?;
        let Some(slot) = state.params.get_mut(&storage) else {
            return Err(no_state());
        };
        slot.node = Some(node);
        let name = slot.name.clone();
        match state.updates.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = node,
            None => state.updates.push((name, node)),
        }
        Ok(())
    })
}

fn no_state() -> Error {
    Error::Graph("hybridize: the tracing flag is set but no trace is running".into())
}

/// The seed attribute of a random op.
fn seed_of(op: &mut Op) -> Option<&mut u64> {
    match op {
        Op::Dropout { seed, .. }
        | Op::RandomUniform { seed, .. }
        | Op::RandomNormal { seed, .. }
        | Op::RandomBernoulli { seed, .. }
        | Op::RandomRandint { seed, .. }
        | Op::Multinomial { seed, .. }
        | Op::Shuffle { seed } => Some(seed),
        _ => None,
    }
}

fn address<T>(a: &Arc<T>) -> usize {
    Arc::as_ptr(a) as *const () as usize
}

/// A parameter the forward may use.
struct ParamSlot {
    name: String,
    /// Its data array (kept so the storage address stays unique during the trace).
    data: NDArray,
    /// Its current value in the graph: the parameter node, or the last state update.
    node: Option<NodeId>,
}

/// The graph being built and the bookkeeping of one trace.
struct TraceState {
    id: u64,
    graph: Graph,
    /// Parameters by storage address.
    params: HashMap<usize, ParamSlot>,
    /// Constants by (storage address, offset, shape).
    consts: HashMap<(usize, usize, Shape), NodeId>,
    /// The arrays behind `consts`, kept alive so their addresses are not reused.
    keep: Vec<NDArray>,
    seed_slots: u64,
    /// State updates, in first-write order; the node is the last value written.
    updates: Vec<(String, NodeId)>,
}

impl TraceState {
    fn new(id: u64) -> Self {
        TraceState {
            id,
            graph: Graph::new(),
            params: HashMap::new(),
            consts: HashMap::new(),
            keep: Vec::new(),
            seed_slots: 0,
            updates: Vec::new(),
        }
    }

    /// The node standing for `a` (an input of `op`): its own for a symbolic array of this
    /// trace, a parameter node for a parameter's data, else a constant.
    fn node_of(&mut self, a: &NDArray, op: &str) -> Result<NodeId> {
        let storage = match &a.inner.data {
            Data::Symbolic(sym) if sym.trace == self.id => return Ok(sym.node),
            Data::Symbolic(_) => {
                return Err(Error::invalid(
                    op,
                    format!(
                        "this input ({} {}) is a symbolic value of another hybridize trace; \
                         values made inside one traced forward cannot be used in another",
                        a.dtype(),
                        a.shape()
                    ),
                ))
            }
            Data::Concrete(s) => s,
        };
        let key = address(storage);
        if let Some(slot) = self.params.get_mut(&key) {
            if a.inner.offset != 0 || a.shape() != slot.data.shape() {
                return Err(Error::invalid(
                    op,
                    format!(
                        "this input is a view ({}) of parameter {} made outside the traced \
                         forward; take the view inside the forward (reshape, slice) so the \
                         parameter stays a graph input",
                        a.shape(),
                        slot.name
                    ),
                ));
            }
            if let Some(node) = slot.node {
                return Ok(node);
            }
            let node = self.graph.add_param(slot.name.clone(), slot.data.ty())?;
            slot.node = Some(node);
            return Ok(node);
        }
        let const_key = (key, a.inner.offset, a.shape().clone());
        if let Some(&node) = self.consts.get(&const_key) {
            return Ok(node);
        }
        let node = self.graph.add_const(a.to_tensor())?;
        self.consts.insert(const_key, node);
        self.keep.push(a.clone());
        Ok(node)
    }

    /// The finished trace: outputs are the forward's, then the state updates.
    fn finish(mut self, input_names: Vec<String>, outputs: &[NDArray]) -> Result<Traced> {
        if outputs.is_empty() {
            return Err(Error::invalid(
                "hybridize",
                "the traced forward returned no arrays",
            ));
        }
        let mut nodes = Vec::with_capacity(outputs.len() + self.updates.len());
        for o in outputs {
            nodes.push(self.node_of(o, "hybridize")?);
        }
        let num_user_outputs = nodes.len();
        let mut state_updates = Vec::with_capacity(self.updates.len());
        for (name, node) in std::mem::take(&mut self.updates) {
            state_updates.push((name, nodes.len()));
            nodes.push(node);
        }
        self.graph.set_outputs(nodes)?;
        Ok(Traced {
            graph: self.graph,
            input_names,
            num_user_outputs,
            state_updates,
            seed_slots: self.seed_slots as usize,
        })
    }
}
