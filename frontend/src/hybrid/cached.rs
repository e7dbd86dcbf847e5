//! `CachedGraph`: one traced graph, compiled, bound to parameters by name and run (gluon's
//! `CachedOp`).
//!
//! A call binds the data inputs (by position) and the parameters (by full name, from a
//! [`ParameterDict`]), draws one seed per seed slot from the global generator, runs the
//! compiled plan and writes the state updates (BatchNorm running statistics) into their
//! parameters. Under [`autograd::record`] it also records one node on the eager tape whose
//! backward runs the graph's backward (built once per set of gradients wanted, by
//! `kiln_passes::autodiff`, and cached), so gradients reach the parameters' buffers exactly as
//! in imperative mode.

use super::executor::{BackendChoice, Executor, HybridizeOptions};
use super::optimize::optimize;
use crate::autograd;
use crate::context::Context;
use crate::gluon::parameter::{Parameter, ParameterDict};
use crate::ndarray::{read_storage, NDArray};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Error, Graph, Result, Storage, Tensor, TensorType, TensorView};
use kiln_passes::autodiff::{differentiate, Differentiated};
use kiln_passes::StatsTable;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// Where a binding of the graph gets its value at a call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bound {
    /// The call's data input `i`.
    Input(usize),
    /// The parameter of this full name.
    Param(String),
}

/// One traced graph ready to run (gluon's `CachedOp`); see the module documentation.
///
/// ```
/// use kiln_frontend::gluon::{Parameter, ParameterDict};
/// use kiln_frontend::hybrid::{CachedGraph, HybridizeOptions};
/// use kiln_frontend::{nd, NDArray};
/// use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType};
/// # fn main() -> kiln_frontend::Result<()> {
/// // y = x * w
/// let mut g = Graph::new();
/// let x = g.add_input("data", TensorType::new([2], DType::F32))?;
/// let w = g.add_param("scale0_w", TensorType::new([2], DType::F32))?;
/// let y = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[x, w])?;
/// g.set_outputs(vec![y])?;
/// let cached = CachedGraph::new(g, vec!["data".into()], 1, vec![], 0, &HybridizeOptions::default())?;
///
/// let p = Parameter::new("scale0_w", [2]);
/// p.set_data(&nd::array(&[10.0f32, 100.0])?)?;
/// let mut params = ParameterDict::new();
/// params.insert(p)?;
/// let out = cached.call(&[&nd::array(&[1.0f32, 2.0])?], &params)?;
/// assert_eq!(out[0].to_vec::<f32>()?, vec![10.0, 200.0]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CachedGraph {
    graph: Graph,
    input_names: Vec<String>,
    num_user_outputs: usize,
    state_updates: Vec<(String, usize)>,
    seed_slots: usize,
    options: HybridizeOptions,
    /// The graph the forward plan runs: `graph` after the pass pipeline.
    optimized: Graph,
    /// What the pass pipeline did to `graph`.
    pass_stats: StatsTable,
    /// The forward plan (no saved values).
    forward: Executor,
    /// Per binding of `forward`, in its order.
    bound: Vec<Bound>,
    /// Training plans, one per set of bindings differentiated (by name, in binding order).
    grad_plans: Mutex<HashMap<Vec<String>, Arc<GradPlan>>>,
    calls: AtomicUsize,
}

/// Where a value fed to the backward graph comes from.
#[derive(Clone, Copy, Debug)]
enum Feed {
    /// Saved value `i` (forward output `num_outputs + i`).
    Saved(usize),
    /// The head gradient of output `j`.
    Head(usize),
}

/// Where saved value `i` of the backward comes from.
#[derive(Clone, Copy, Debug)]
enum SavedFrom {
    /// The forward executor's output `num_outputs + j` (a computed value).
    Output(usize),
    /// Binding `k` of the forward itself (an input or a weight): the backward reads the
    /// caller's array, as eager autograd does, instead of a copy.
    Binding(usize),
}

/// A saved value kept by a recorded call.
enum SavedValue {
    /// Computed by the forward.
    Computed(Tensor),
    /// A bound array (its index among the shared arrays).
    Shared(usize),
}

/// The compiled forward/backward pair for one set of bindings to differentiate.
#[derive(Debug)]
struct GradPlan {
    /// The forward that also returns the saved values it computes.
    forward: Executor,
    forward_bound: Vec<Bound>,
    /// Number of graph outputs at the front of the forward's outputs.
    num_outputs: usize,
    backward: Executor,
    /// Per binding of `backward`, in its order.
    backward_feed: Vec<Feed>,
    /// Per saved value: where it comes from.
    saved_from: Vec<SavedFrom>,
    /// Per `wrt` entry (= per backward output): its binding position in `forward`.
    wrt_positions: Vec<usize>,
}

impl CachedGraph {
    /// Compiles `graph` for running.
    ///
    /// - Data inputs are the graph's `NodeKind::Input` nodes, named in `input_names` in the
    ///   order [`CachedGraph::call`] takes them; every input of the graph must be named once.
    /// - Parameters are `NodeKind::Param` nodes named by the parameter's full name
    ///   (`dense0_weight`), bound from the `ParameterDict` given to each call.
    /// - `graph.outputs()[..num_user_outputs]` are returned to the caller.
    /// - Each `(param_name, output_index)` of `state_updates` names an output whose value is
    ///   written into that parameter after each call (BatchNorm's running statistics).
    /// - `seed_slots`: random ops whose seed is a placeholder `0..seed_slots` take a seed
    ///   drawn from [`crate::random::next_seed`] at every call, one per slot, in slot order.
    ///
    /// Errors when the names do not match the graph, an output index is out of range, or the
    /// graph has no outputs.
    pub fn new(
        graph: Graph,
        input_names: Vec<String>,
        num_user_outputs: usize,
        state_updates: Vec<(String, usize)>,
        seed_slots: usize,
        options: &HybridizeOptions,
    ) -> Result<CachedGraph> {
        let n_out = graph.outputs().len();
        if num_user_outputs > n_out {
            return Err(Error::invalid(
                "CachedGraph",
                format!("{num_user_outputs} user outputs asked for, the graph has {n_out}"),
            ));
        }
        for (name, index) in &state_updates {
            if *index >= n_out {
                return Err(Error::invalid(
                    "CachedGraph",
                    format!("state update of {name:?} reads output {index}, the graph has {n_out}"),
                ));
            }
        }
        let graph_inputs: Vec<String> = graph
            .inputs()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        for (i, name) in input_names.iter().enumerate() {
            if input_names[..i].contains(name) {
                return Err(Error::invalid(
                    "CachedGraph",
                    format!("input {name:?} is named twice in input_names"),
                ));
            }
            if !graph_inputs.contains(name) {
                let what = match graph.input_id(name).map(|id| graph.node(id)) {
                    Some(Ok(node)) if matches!(node.kind, NodeKind::Param { .. }) => {
                        "is a parameter of the graph, not a data input"
                    }
                    _ => "is not an input of the graph",
                };
                return Err(Error::invalid(
                    "CachedGraph",
                    format!(
                        "{name:?} {what} (its data inputs: {})",
                        graph_inputs.join(", ")
                    ),
                ));
            }
        }
        if let Some(missing) = graph_inputs.iter().find(|n| !input_names.contains(n)) {
            return Err(Error::invalid(
                "CachedGraph",
                format!(
                    "the graph's input {missing:?} is missing from input_names ({})",
                    input_names.join(", ")
                ),
            ));
        }
        let (optimized, pass_stats) = optimize(graph.clone())?;
        let forward = Executor::new(&optimized, seed_slots, options.backend)?;
        let bound = bindings_of(&forward, &input_names, &graph)?;
        Ok(CachedGraph {
            graph,
            input_names,
            num_user_outputs,
            state_updates,
            seed_slots,
            options: *options,
            optimized,
            pass_stats,
            forward,
            bound,
            grad_plans: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
        })
    }

    /// The forward graph as the backend runs it: the traced graph after the pass pipeline
    /// (see [`super::optimize`]).
    pub fn optimized_graph(&self) -> &Graph {
        &self.optimized
    }

    /// What each pass did to the forward graph (nodes, kernels, bytes before and after).
    pub fn pass_stats(&self) -> &StatsTable {
        &self.pass_stats
    }

    /// The graph as given to [`CachedGraph::new`].
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The data input names, in call order.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    /// Number of outputs [`CachedGraph::call`] returns.
    pub fn num_user_outputs(&self) -> usize {
        self.num_user_outputs
    }

    /// The `(parameter name, output index)` state updates.
    pub fn state_updates(&self) -> &[(String, usize)] {
        &self.state_updates
    }

    /// Number of seed slots (seeds drawn per call).
    pub fn seed_slots(&self) -> usize {
        self.seed_slots
    }

    /// The options it was compiled with.
    pub fn options(&self) -> &HybridizeOptions {
        &self.options
    }

    /// The backend that runs it.
    pub fn backend(&self) -> BackendChoice {
        self.options.backend
    }

    /// Number of completed calls.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Runs the graph on `inputs` (in `input_names` order) with the parameters bound by name
    /// from `params`; returns the user outputs, on the inputs' device. Draws one seed per
    /// seed slot, then writes the state updates into their parameters.
    ///
    /// Under [`autograd::record`], when some float input requires a gradient (it has one
    /// attached, or recorded history) or some float parameter's grad_req is not null, the call
    /// is one node on the tape: the forward also keeps the values the backward graph needs,
    /// and `backward()` runs that graph (built by `kiln_passes::autodiff` for this set of
    /// bindings on first use, then cached; see [`CachedGraph::backward_plans`]) and delivers
    /// the gradients by each array's grad_req, as imperative mode does. Gradients carry no
    /// history: second-order gradients are not supported.
    ///
    /// Errors (changing nothing) when an input has the wrong shape or dtype, a parameter is
    /// missing from `params`, not initialized or of the wrong type, a state update's parameter
    /// does not fit its output, or a kernel fails.
    pub fn call(&self, inputs: &[&NDArray], params: &ParameterDict) -> Result<Vec<NDArray>> {
        if inputs.len() != self.input_names.len() {
            return Err(Error::invalid(
                "CachedGraph::call",
                format!(
                    "{} inputs given, the graph takes {} ({})",
                    inputs.len(),
                    self.input_names.len(),
                    self.input_names.join(", ")
                ),
            ));
        }
        let ctx = inputs.first().map_or_else(Context::cpu, |a| a.context());
        if let Some(other) = inputs.iter().find(|a| a.context() != ctx) {
            return Err(Error::invalid(
                "CachedGraph::call",
                format!(
                    "inputs live on different devices ({ctx} and {})",
                    other.context()
                ),
            ));
        }
        self.check_state(params)?;
        let recording = autograd::is_recording();
        let wrt = if recording || self.options.static_alloc {
            self.wanted_gradients(inputs, params)?
        } else {
            Vec::new()
        };
        if wrt.is_empty() {
            let user = self.call_plain(inputs, params, ctx)?;
            if recording {
                // Nothing here wants a gradient: the outputs carry no history (the call marks
                // them so that a backward through them explains why).
                let refs: Vec<&NDArray> = user.iter().collect();
                autograd::record_function(TAPE_NAME, &[], &refs, |_| Ok(Vec::new()));
            }
            return Ok(user);
        }
        let plan = self.grad_plan(&wrt)?;
        if !recording {
            // static_alloc: the plan is built; this call itself needs no gradients.
            return self.call_plain(inputs, params, ctx);
        }
        self.call_recorded(&plan, inputs, params, ctx)
    }

    /// A call without gradients: the plain forward plan.
    fn call_plain(
        &self,
        inputs: &[&NDArray],
        params: &ParameterDict,
        ctx: Context,
    ) -> Result<Vec<NDArray>> {
        let arrays = self.resolve(&self.bound, self.forward.bindings(), inputs, params)?;
        let seeds = draw_seeds(self.seed_slots);
        let outputs = {
            let locked = Locked::new(&arrays)?;
            self.forward.run(&locked.views(), &seeds)?
        };
        self.finish(outputs, params, ctx)
    }

    /// A call under `autograd::record`: runs the forward that saves values for the backward
    /// and records one tape node whose backward runs the compiled backward graph.
    fn call_recorded(
        &self,
        plan: &Arc<GradPlan>,
        inputs: &[&NDArray],
        params: &ParameterDict,
        ctx: Context,
    ) -> Result<Vec<NDArray>> {
        let arrays = self.resolve(&plan.forward_bound, plan.forward.bindings(), inputs, params)?;
        let seeds = draw_seeds(self.seed_slots);
        let mut outputs = {
            let locked = Locked::new(&arrays)?;
            plan.forward.run(&locked.views(), &seeds)?
        };
        let mut computed: Vec<Option<Tensor>> = outputs
            .split_off(plan.num_outputs.min(outputs.len()))
            .into_iter()
            .map(Some)
            .collect();
        let mut shared = Vec::new();
        let saved = plan
            .saved_from
            .iter()
            .map(|from| match *from {
                SavedFrom::Output(j) => computed
                    .get_mut(j)
                    .and_then(Option::take)
                    .map(SavedValue::Computed),
                SavedFrom::Binding(k) => arrays.get(k).map(|a| {
                    shared.push(a.detach());
                    SavedValue::Shared(shared.len() - 1)
                }),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Graph("CachedGraph: a saved value is missing".into()))?;
        let extra_heads: Vec<TensorType> = outputs
            .iter()
            .skip(self.num_user_outputs)
            .map(Tensor::ty)
            .collect();
        let user = self.finish(outputs, params, ctx)?;
        let wrt_arrays: Vec<NDArray> = plan
            .wrt_positions
            .iter()
            .map(|&k| {
                arrays.get(k).cloned().ok_or_else(|| {
                    Error::Graph("CachedGraph: a differentiated binding has no array".into())
                })
            })
            .collect::<Result<_>>()?;
        let wrt_refs: Vec<&NDArray> = wrt_arrays.iter().collect();
        let user_refs: Vec<&NDArray> = user.iter().collect();
        let backward = Backward {
            plan: Arc::clone(plan),
            saved,
            shared,
            extra_heads,
            seeds,
            ctx,
        };
        autograd::record_function(TAPE_NAME, &wrt_refs, &user_refs, move |grads| {
            backward.run(grads)
        });
        Ok(user)
    }

    /// The bindings to differentiate at this call, by name in binding order: float data
    /// inputs that require a gradient (an attached gradient or recorded history) and float
    /// parameters whose grad_req is not null.
    fn wanted_gradients(&self, inputs: &[&NDArray], params: &ParameterDict) -> Result<Vec<String>> {
        let mut wrt = Vec::new();
        for ((name, ty), b) in self.forward.bindings().zip(&self.bound) {
            if !ty.dtype.is_float() {
                continue;
            }
            let wanted = match b {
                Bound::Input(i) => inputs.get(*i).is_some_and(|a| autograd::requires_grad(a)),
                Bound::Param(p) => autograd::requires_grad(&lookup(params, p)?.data()?),
            };
            if wanted {
                wrt.push(name.to_string());
            }
        }
        Ok(wrt)
    }

    /// The training plan for `wrt`, built on first use and cached.
    fn grad_plan(&self, wrt: &[String]) -> Result<Arc<GradPlan>> {
        let mut plans = self.grad_plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = plans.get(wrt) {
            return Ok(Arc::clone(plan));
        }
        let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let d = differentiate(&self.graph, &names)?;
        let state_targets: Vec<&str> = self.state_updates.iter().map(|(n, _)| n.as_str()).collect();
        let plan = Arc::new(GradPlan::new(
            d,
            &self.input_names,
            &state_targets,
            self.seed_slots,
            self.options.backend,
        )?);
        plans.insert(wrt.to_vec(), Arc::clone(&plan));
        Ok(plan)
    }

    /// Number of compiled backward graphs (one per set of bindings differentiated so far).
    pub fn backward_plans(&self) -> usize {
        self.grad_plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The compiled forward and backward graphs used when differentiating with respect to
    /// `wrt` (binding names), computed afresh (for inspection: printing the backward graph, counting saved values).
    pub fn differentiated(&self, wrt: &[&str]) -> Result<Differentiated> {
        differentiate(&self.graph, wrt)
    }

    /// Checks, before anything runs, that every state update names an initialized parameter
    /// of `params` whose type is its output's.
    fn check_state(&self, params: &ParameterDict) -> Result<()> {
        for (name, index) in &self.state_updates {
            let param = lookup(params, name)?;
            let data = param.data()?;
            let want = self
                .graph
                .outputs()
                .get(*index)
                .map(|&id| self.graph.ty(id))
                .transpose()?
                .ok_or_else(|| {
                    Error::invalid(
                        "CachedGraph::call",
                        format!("state update of {name:?}: no output {index}"),
                    )
                })?;
            if *want != data.ty() {
                return Err(Error::invalid(
                    "CachedGraph::call",
                    format!(
                        "state update of {name:?}: output {index} is {want}, the parameter is {}",
                        data.ty()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes the state updates and wraps the user outputs.
    fn finish(
        &self,
        outputs: Vec<Tensor>,
        params: &ParameterDict,
        ctx: Context,
    ) -> Result<Vec<NDArray>> {
        self.write_state(&outputs, params)?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(outputs
            .into_iter()
            .take(self.num_user_outputs)
            .map(|t| NDArray::from_tensor(t, ctx))
            .collect())
    }

    /// Writes every state update (checked by `check_state` before the run), with recording
    /// paused: they are no part of the differentiated computation.
    fn write_state(&self, outputs: &[Tensor], params: &ParameterDict) -> Result<()> {
        let mut writes = Vec::with_capacity(self.state_updates.len());
        for (name, index) in &self.state_updates {
            let data = lookup(params, name)?.data()?;
            let value = outputs.get(*index).ok_or_else(|| {
                Error::invalid(
                    "CachedGraph::call",
                    format!("state update of {name:?}: no output {index}"),
                )
            })?;
            writes.push((data, value.clone()));
        }
        autograd::pause(|| {
            for (data, value) in writes {
                data.assign(&NDArray::from_tensor(value, data.context()))?;
            }
            Ok(())
        })
    }

    /// The array bound to each binding of an executor, checking types.
    fn resolve<'a>(
        &self,
        bound: &[Bound],
        types: impl Iterator<Item = (&'a str, &'a TensorType)>,
        inputs: &[&NDArray],
        params: &ParameterDict,
    ) -> Result<Vec<NDArray>> {
        let mut arrays = Vec::with_capacity(bound.len());
        for (b, (name, want)) in bound.iter().zip(types) {
            let array = match b {
                Bound::Input(i) => inputs
                    .get(*i)
                    .map(|a| (*a).clone())
                    .ok_or_else(|| Error::invalid("CachedGraph::call", "too few inputs"))?,
                Bound::Param(p) => lookup(params, p)?.data()?,
            };
            let got = array.ty();
            if got != *want {
                let what = match b {
                    Bound::Input(_) => "input",
                    Bound::Param(_) => "parameter",
                };
                return Err(Error::shape(
                    "CachedGraph::call",
                    format!(
                        "{what} {name:?} is {got}, the graph was traced for {want}; inputs of \
                         another shape or dtype need another trace"
                    ),
                ));
            }
            arrays.push(array);
        }
        Ok(arrays)
    }
}

/// The parameter `name` of `params`, or an error naming what is there.
fn lookup<'a>(params: &'a ParameterDict, name: &str) -> Result<&'a Parameter> {
    params.get(name).ok_or_else(|| {
        Error::invalid(
            "CachedGraph::call",
            format!(
                "the graph needs parameter {name:?}, which is not in the given parameters ({})",
                params.names().join(", ")
            ),
        )
    })
}

/// Where each binding of `exec` comes from: a data input (by its position in `input_names`)
/// or a parameter.
fn bindings_of(exec: &Executor, input_names: &[String], graph: &Graph) -> Result<Vec<Bound>> {
    exec.bindings()
        .map(|(name, _)| {
            if let Some(i) = input_names.iter().position(|n| n == name) {
                return Ok(Bound::Input(i));
            }
            match graph.input_id(name).map(|id| graph.node(id)) {
                Some(Ok(node)) if matches!(node.kind, NodeKind::Param { .. }) => {
                    Ok(Bound::Param(name.to_string()))
                }
                _ => Err(Error::Graph(format!(
                    "CachedGraph: binding {name:?} is neither a named input nor a parameter"
                ))),
            }
        })
        .collect()
}

/// Read locks on the storages of a list of arrays, each storage locked once (two arrays may
/// be views of one storage; locking it twice could wait on a queued writer).
pub(crate) struct Locked<'a> {
    arrays: &'a [NDArray],
    locks: Vec<(&'a RwLock<Storage>, RwLockReadGuard<'a, Storage>)>,
    slot: Vec<usize>,
}

impl<'a> Locked<'a> {
    pub(crate) fn new(arrays: &'a [NDArray]) -> Result<Locked<'a>> {
        let mut locks: Vec<(&'a RwLock<Storage>, RwLockReadGuard<'a, Storage>)> = Vec::new();
        let mut slot = Vec::with_capacity(arrays.len());
        for a in arrays {
            let s: &'a RwLock<Storage> =
                a.inner.data.storage("CachedGraph::call", &a.inner.shape)?;
            match locks.iter().position(|(l, _)| std::ptr::eq(*l, s)) {
                Some(i) => slot.push(i),
                None => {
                    slot.push(locks.len());
                    locks.push((s, read_storage(s)));
                }
            }
        }
        Ok(Locked {
            arrays,
            locks,
            slot,
        })
    }

    /// One view per array, in order.
    pub(crate) fn views(&self) -> Vec<TensorView<'_>> {
        self.arrays
            .iter()
            .zip(&self.slot)
            .map(|(a, &i)| {
                let n = a.inner.shape.numel();
                let off = a.inner.offset;
                TensorView {
                    shape: a.inner.shape.clone(),
                    data: self.locks[i].1.slice(off..off + n),
                }
            })
            .collect()
    }
}

/// The name of the tape node a call records.
const TAPE_NAME: &str = "hybridized_graph";

/// One seed per seed slot, from the global generator, in slot order (as eager mode draws one
/// per random op, in forward order).
fn draw_seeds(n: usize) -> Vec<u64> {
    (0..n).map(|_| crate::random::next_seed()).collect()
}

impl GradPlan {
    /// Compiles `d`. Saved values that are bindings are read from the caller's arrays at
    /// backward time rather than copied by the forward, except parameters the call itself
    /// overwrites (`state_targets`), which are copied.
    fn new(
        d: Differentiated,
        input_names: &[String],
        state_targets: &[&str],
        seed_slots: usize,
        backend: BackendChoice,
    ) -> Result<GradPlan> {
        let all_outputs = d.forward.outputs();
        let mut outputs = all_outputs[..d.num_outputs.min(all_outputs.len())].to_vec();
        let mut saved_bindings = Vec::new();
        let mut kinds = Vec::new();
        for &id in all_outputs.iter().skip(d.num_outputs) {
            let shareable = d
                .forward
                .node(id)?
                .kind
                .name()
                .filter(|name| !state_targets.contains(name));
            match shareable {
                Some(name) => {
                    saved_bindings.push(name.to_string());
                    kinds.push(None);
                }
                None => {
                    kinds.push(Some(outputs.len() - d.num_outputs));
                    outputs.push(id);
                }
            }
        }
        let mut forward_graph = d.forward.clone();
        forward_graph.set_outputs(outputs)?;
        let forward = Executor::new(&optimize(forward_graph)?.0, seed_slots, backend)?;
        let forward_bound = bindings_of(&forward, input_names, &d.forward)?;
        let mut names = saved_bindings.iter();
        let saved_from = kinds
            .into_iter()
            .map(|kind| match kind {
                Some(j) => Ok(SavedFrom::Output(j)),
                None => {
                    let name = names.next().ok_or_else(|| {
                        Error::Graph("CachedGraph: saved bindings miscounted".into())
                    })?;
                    forward
                        .bindings()
                        .position(|(n, _)| n == name)
                        .map(SavedFrom::Binding)
                        .ok_or_else(|| {
                            Error::Graph(format!(
                                "CachedGraph: saved binding {name:?} is not bound by the forward"
                            ))
                        })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let backward = Executor::new(&optimize(d.backward)?.0, seed_slots, backend)?;
        let backward_feed = backward
            .bindings()
            .map(|(name, _)| {
                let parsed = if let Some(i) = name.strip_prefix("saved:") {
                    i.parse().ok().map(Feed::Saved)
                } else if let Some(j) = name.strip_prefix("head:") {
                    j.parse().ok().map(Feed::Head)
                } else {
                    None
                };
                parsed.ok_or_else(|| {
                    Error::Graph(format!(
                        "CachedGraph: the backward graph has an unexpected input {name:?}"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wrt_positions = d
            .wrt
            .iter()
            .map(|w| {
                forward.bindings().position(|(n, _)| n == w).ok_or_else(|| {
                    Error::Graph(format!(
                        "CachedGraph: {w:?} is differentiated but not bound by the forward graph"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GradPlan {
            forward,
            forward_bound,
            num_outputs: d.num_outputs,
            backward,
            backward_feed,
            saved_from,
            wrt_positions,
        })
    }
}

/// What the tape node of one recorded call keeps for its backward.
struct Backward {
    plan: Arc<GradPlan>,
    /// The saved values.
    saved: Vec<SavedValue>,
    /// The bound arrays some saved values are (detached handles sharing their storage).
    shared: Vec<NDArray>,
    /// Types of the graph outputs after the user outputs (state updates): their head
    /// gradients are zeros.
    extra_heads: Vec<TensorType>,
    /// The seeds the forward used; random ops in the backward (dropout's mask) reuse them.
    seeds: Vec<u64>,
    ctx: Context,
}

impl Backward {
    /// Runs the backward graph on the head gradients of the user outputs; returns one
    /// gradient per differentiated binding.
    fn run(&self, grads: &[NDArray]) -> Result<Vec<Option<NDArray>>> {
        if autograd::is_recording() {
            return Err(Error::Autograd(
                "a hybridized graph's backward ran while recording: second-order gradients \
                 (differentiating a gradient) are not supported through hybridized blocks; \
                 call the block without hybridize() for that"
                    .into(),
            ));
        }
        let zeros: Vec<Tensor> = self
            .extra_heads
            .iter()
            .map(|t| Tensor::zeros(t.shape.clone(), t.dtype))
            .collect();
        let n_heads = grads.len();
        let mut arrays: Vec<NDArray> = grads.to_vec();
        arrays.extend(self.shared.iter().cloned());
        let locked = Locked::new(&arrays)?;
        let views = locked.views();
        let feed = self
            .plan
            .backward_feed
            .iter()
            .map(|f| match *f {
                Feed::Saved(i) => match self.saved.get(i)? {
                    SavedValue::Computed(t) => Some(t.view()),
                    SavedValue::Shared(k) => views.get(n_heads + k).cloned(),
                },
                Feed::Head(j) if j < n_heads => views.get(j).cloned(),
                Feed::Head(j) => zeros.get(j - n_heads).map(Tensor::view),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Error::Autograd(format!(
                    "hybridized graph backward: {n_heads} head gradients and {} saved values do \
                     not fit its backward graph",
                    self.saved.len()
                ))
            })?;
        let out = self.plan.backward.run(&feed, &self.seeds)?;
        Ok(out
            .into_iter()
            .map(|t| Some(NDArray::from_tensor(t, self.ctx)))
            .collect())
    }
}
