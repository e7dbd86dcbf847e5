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
use crate::autograd::{self, GradReq};
use crate::context::Context;
use crate::gluon::parameter::{Parameter, ParameterDict};
use crate::ndarray::{read_storage, NDArray};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Error, Graph, Result, Storage, Tensor, TensorType, TensorView};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

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
    /// The forward plan (no saved values).
    forward: Executor,
    /// Per binding of `forward`, in its order.
    bound: Vec<Bound>,
    calls: AtomicUsize,
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
        let forward = Executor::new(&graph, seed_slots, options.backend)?;
        let bound = bindings_of(&forward, &input_names, &graph)?;
        Ok(CachedGraph {
            graph,
            input_names,
            num_user_outputs,
            state_updates,
            seed_slots,
            options: *options,
            forward,
            bound,
            calls: AtomicUsize::new(0),
        })
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
    /// from `params`; returns the user outputs, on the inputs' device.
    ///
    /// Errors (changing nothing) when an input has the wrong shape or dtype, a parameter is
    /// missing from `params`, not initialized or of the wrong type, or a kernel fails.
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
        let (arrays, _) = self.resolve(&self.bound, self.forward.bindings(), inputs, params)?;
        let seeds: Vec<u64> = (0..self.seed_slots)
            .map(|_| crate::random::next_seed())
            .collect();
        let outputs = {
            let locked = Locked::new(&arrays)?;
            self.forward.run(&locked.views(), &seeds)?
        };
        self.finish(outputs, params, ctx)
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

    /// Checks every state update, then writes them all (with recording paused: they are no
    /// part of the differentiated computation).
    fn write_state(&self, outputs: &[Tensor], params: &ParameterDict) -> Result<()> {
        let mut writes = Vec::with_capacity(self.state_updates.len());
        for (name, index) in &self.state_updates {
            let param = lookup(params, name)?;
            let data = param.data()?;
            let value = outputs.get(*index).ok_or_else(|| {
                Error::invalid(
                    "CachedGraph::call",
                    format!("state update of {name:?}: no output {index}"),
                )
            })?;
            if value.ty() != data.ty() {
                return Err(Error::invalid(
                    "CachedGraph::call",
                    format!(
                        "state update of {name:?}: output {index} is {}, the parameter is {}",
                        value.ty(),
                        data.ty()
                    ),
                ));
            }
            writes.push((data, value.clone()));
        }
        autograd::pause(|| {
            for (data, value) in writes {
                data.assign(&NDArray::from_tensor(value, data.context()))?;
            }
            Ok(())
        })
    }

    /// The array bound to each binding of an executor, and the parameters among them (with
    /// their binding positions), checking types.
    fn resolve<'a>(
        &self,
        bound: &[Bound],
        types: impl Iterator<Item = (&'a str, &'a TensorType)>,
        inputs: &[&NDArray],
        params: &ParameterDict,
    ) -> Result<(Vec<NDArray>, Vec<(usize, Parameter)>)> {
        let mut arrays = Vec::with_capacity(bound.len());
        let mut used = Vec::new();
        for (k, (b, (name, want))) in bound.iter().zip(types).enumerate() {
            let array = match b {
                Bound::Input(i) => inputs
                    .get(*i)
                    .map(|a| (*a).clone())
                    .ok_or_else(|| Error::invalid("CachedGraph::call", "too few inputs"))?,
                Bound::Param(p) => {
                    let param = lookup(params, p)?;
                    let data = param.data()?;
                    used.push((k, param.clone()));
                    data
                }
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
        Ok((arrays, used))
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
            let s: &'a RwLock<Storage> = a.inner.data.storage("CachedGraph::call", &a.inner.shape)?;
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

/// Whether parameter gradients are wanted: grad_req not null and a float dtype.
#[allow(dead_code)]
fn wants_grad(p: &Parameter) -> bool {
    p.grad_req() != GradReq::Null && p.dtype().is_float()
}
