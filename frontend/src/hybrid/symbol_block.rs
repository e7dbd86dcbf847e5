//! `SymbolBlock`: a block that runs a loaded graph with no Rust model code (gluon's
//! `SymbolBlock`).

use super::cached::CachedGraph;
use super::executor::{infer_seed_slots, HybridizeOptions};
use super::executor::{op_seed, with_seed};
use super::export;
use super::hybridize::HybridState;
use super::trace;
use crate::autograd::GradReq;
use crate::context::Context;
use crate::gluon::block::{Block, HybridBlock};
use crate::gluon::parameter::{Parameter, ParameterDict};
use crate::gluon::serialize;
use crate::ndarray::{apply_on, NDArray};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Error, Graph, NodeId, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A block whose computation is a graph (typically one exported by a hybridized block and
/// loaded with [`SymbolBlock::imports`]); it needs none of the model's Rust code.
///
/// It runs the graph through a [`CachedGraph`] (hybridized from the start). Its parameters
/// are ordinary [`Parameter`]s named as in the graph: [`Block::collect_params`] returns them,
/// gradients reach them under `autograd::record`, so a [`crate::gluon::Trainer`] can
/// fine-tune an imported model.
///
/// A graph has a fixed behaviour: a graph traced in predict mode (the one to export) never
/// drops units, whatever the autograd mode at the call. Random ops whose seeds are the
/// placeholders `0, 1, ...` (as traced graphs have) draw fresh seeds at every call.
///
/// Inside another block's hybridize trace (a `SymbolBlock` as a layer of a hybridized
/// model), the graph's ops join the outer graph; [`HybridBlock::hybrid_forward`] runs them
/// one by one as NDArray ops (the imperative form of the same computation).
///
/// ```
/// use kiln_frontend::gluon::{Block, Parameter, ParameterDict};
/// use kiln_frontend::hybrid::SymbolBlock;
/// use kiln_frontend::nd;
/// use kiln_ir::{DType, Graph, Op, TensorType, UnaryOp};
/// # fn main() -> kiln_frontend::Result<()> {
/// let mut g = Graph::new();
/// let x = g.add_input("data", TensorType::new([3], DType::F32))?;
/// let y = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[x])?;
/// g.set_outputs(vec![y])?;
/// let net = SymbolBlock::new(g, &["data"], ParameterDict::new())?;
/// let y = net.forward(&nd::array(&[-1.0f32, 0.0, 2.0])?)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![0.0, 0.0, 2.0]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SymbolBlock {
    cached: CachedGraph,
    params: ParameterDict,
    /// Required by [`HybridBlock`]; a `SymbolBlock` is compiled from the start, so its calls
    /// do not go through the hybridize cache.
    hybrid: HybridState,
}

impl SymbolBlock {
    /// A block running `graph` with data inputs `input_names` (in call order) and the
    /// parameters of `params` that the graph uses (bound by full name; others are left out).
    /// Runs on the default backend; see [`SymbolBlock::with_options`].
    ///
    /// Errors when the input names do not match the graph's inputs, or when a parameter of
    /// the graph is missing from `params` or does not have the graph's shape and dtype.
    pub fn new(graph: Graph, input_names: &[&str], params: ParameterDict) -> Result<SymbolBlock> {
        SymbolBlock::with_options(graph, input_names, params, &HybridizeOptions::default())
    }

    /// [`SymbolBlock::new`] with [`HybridizeOptions`] (the backend choice...).
    pub fn with_options(
        graph: Graph,
        input_names: &[&str],
        params: ParameterDict,
        options: &HybridizeOptions,
    ) -> Result<SymbolBlock> {
        let mut used = ParameterDict::new();
        let mut problems = Vec::new();
        for (name, id) in graph.params() {
            let want = graph.ty(id)?;
            match params.get(name) {
                None => problems.push(format!("{name} ({want}) is missing")),
                Some(p) if p.shape() != want.shape || p.dtype() != want.dtype => {
                    problems.push(format!(
                        "{name} is {} {}, the graph uses it as {want}",
                        p.dtype(),
                        p.shape()
                    ))
                }
                Some(p) => used.insert(p.clone())?,
            }
        }
        if !problems.is_empty() {
            return Err(Error::invalid(
                "SymbolBlock",
                format!(
                    "the parameters do not fit the graph: {}",
                    problems.join("; ")
                ),
            ));
        }
        let seed_slots = infer_seed_slots(&graph);
        let n_out = graph.outputs().len();
        let names: Vec<String> = input_names.iter().map(|s| s.to_string()).collect();
        let cached = CachedGraph::new(graph, names, n_out, Vec::new(), seed_slots, options)?;
        Ok(SymbolBlock {
            cached,
            params: used,
            hybrid: HybridState::default(),
        })
    }

    /// Loads a model written by [`export::export`] (or a hybridized block's `export`): the
    /// graph from `graph_path` (`{prefix}-graph.json`), its parameters from `params_path`
    /// (`{prefix}.safetensors`) onto `ctx`. `input_names` are the graph's data inputs in call
    /// order (for a block exported by hybridize: `["data"]`, or `data0, data1, ...`).
    ///
    /// Imported parameters take gradients (grad_req write), except those that are not
    /// floating-point and the running statistics of normalization layers (names ending in
    /// `running_mean`, `running_var`, `moving_mean`, `moving_var`), which gluon never trains.
    ///
    /// Errors, naming the file, when either file is missing, corrupt or truncated, when the
    /// graph is from a newer format version or uses ops or attributes this kiln does not
    /// know, and when the parameter file does not hold exactly the graph's parameters with
    /// its shapes and dtypes (every mismatch is listed).
    pub fn imports(
        graph_path: impl AsRef<Path>,
        input_names: &[&str],
        params_path: impl AsRef<Path>,
        ctx: Context,
    ) -> Result<SymbolBlock> {
        SymbolBlock::imports_with(
            graph_path,
            input_names,
            params_path,
            ctx,
            &HybridizeOptions::default(),
        )
    }

    /// [`SymbolBlock::imports`] with [`HybridizeOptions`].
    pub fn imports_with(
        graph_path: impl AsRef<Path>,
        input_names: &[&str],
        params_path: impl AsRef<Path>,
        ctx: Context,
        options: &HybridizeOptions,
    ) -> Result<SymbolBlock> {
        let graph_path = graph_path.as_ref();
        let params_path = params_path.as_ref();
        let graph = Graph::load_json(graph_path).map_err(|e| match e {
            Error::Format(msg) => Error::Format(format!(
                "SymbolBlock::imports: {}",
                explain_graph_error(&msg)
            )),
            other => other,
        })?;
        let loaded: BTreeMap<String, NDArray> = serialize::load(params_path)?.into_iter().collect();
        let mut problems = Vec::new();
        let mut params = ParameterDict::new();
        for (name, id) in graph.params() {
            let want = graph.ty(id)?;
            let Some(value) = loaded.get(name) else {
                problems.push(format!("missing: {name} ({want})"));
                continue;
            };
            if value.ty() != *want {
                problems.push(format!(
                    "wrong type: {name}: the file has {}, the graph uses {want}",
                    value.ty()
                ));
                continue;
            }
            let p = Parameter::new(name, want.shape.clone())
                .with_dtype(want.dtype)
                .with_grad_req(default_grad_req(name, want.dtype.is_float()));
            p.set_data(&value.as_in_context(ctx))?;
            params.insert(p)?;
        }
        for (name, value) in &loaded {
            if graph.params().iter().all(|(n, _)| n != name) {
                problems.push(format!(
                    "unexpected: {name} ({}) is not a parameter of the graph",
                    value.ty()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::invalid(
                "SymbolBlock::imports",
                format!(
                    "{} does not match the graph {} ({} problem{}):\n  {}",
                    params_path.display(),
                    graph_path.display(),
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" },
                    problems.join("\n  ")
                ),
            ));
        }
        SymbolBlock::with_options(graph, input_names, params, options)
    }

    /// Runs the graph on `inputs` (in input-name order); returns every output of the graph.
    /// Under `autograd::record`, gradients reach the parameters and the inputs that want them.
    pub fn call(&self, inputs: &[&NDArray]) -> Result<Vec<NDArray>> {
        if trace::is_tracing() {
            return self.replay(inputs);
        }
        self.cached.call(inputs, &self.params)
    }

    /// Runs the graph op by op through NDArray ops: eagerly (taped under `autograd::record`)
    /// or, inside a trace, appending the ops to the traced graph. Seed placeholders take
    /// seeds drawn from the global generator, one per slot, as the compiled graph does.
    fn replay(&self, inputs: &[&NDArray]) -> Result<Vec<NDArray>> {
        let graph = self.graph();
        let names = self.input_names();
        if inputs.len() != names.len() {
            return Err(Error::invalid(
                "SymbolBlock",
                format!(
                    "{} inputs given, the graph takes {} ({})",
                    inputs.len(),
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        let ctx = inputs.first().map_or_else(Context::cpu, |a| a.context());
        // A trace assigns its own seed placeholders; eager replay draws real seeds.
        let seeds: Vec<u64> = if trace::is_tracing() {
            vec![0; self.cached.seed_slots()]
        } else {
            (0..self.cached.seed_slots())
                .map(|_| crate::random::next_seed())
                .collect()
        };
        let mut live = vec![
            false;
            graph
                .node_ids()
                .iter()
                .map(|i| i.index() + 1)
                .max()
                .unwrap_or(0)
        ];
        let mut stack: Vec<NodeId> = graph.outputs().to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(graph.inputs_of(id)?);
            }
        }
        let mut values: HashMap<NodeId, NDArray> = HashMap::new();
        for id in graph.topo_order() {
            if !live[id.index()] {
                continue;
            }
            let value = match &graph.node(id)?.kind {
                NodeKind::Input { name } => {
                    let i = names.iter().position(|n| n == name).ok_or_else(|| {
                        Error::Graph(format!("SymbolBlock: input {name:?} is not bound"))
                    })?;
                    let x = inputs[i];
                    let want = graph.ty(id)?;
                    if x.ty() != *want {
                        return Err(Error::shape(
                            "SymbolBlock",
                            format!("input {name:?} is {}, the graph takes {want}", x.ty()),
                        ));
                    }
                    x.clone()
                }
                NodeKind::Param { name } => self
                    .params
                    .get(name)
                    .ok_or_else(|| {
                        Error::Graph(format!("SymbolBlock: parameter {name:?} is not bound"))
                    })?
                    .data()?,
                NodeKind::Const(t) => NDArray::from_tensor(t.clone(), ctx),
                NodeKind::Op(op) => {
                    let args = graph
                        .inputs_of(id)?
                        .iter()
                        .map(|a| {
                            values.get(a).ok_or_else(|| {
                                Error::Graph(format!(
                                    "SymbolBlock: {} uses a value not computed before it",
                                    op.name()
                                ))
                            })
                        })
                        .collect::<Result<Vec<&NDArray>>>()?;
                    let op = match op_seed(op) {
                        Some(s) if (s as usize) < seeds.len() => with_seed(op, seeds[s as usize]),
                        _ => op.clone(),
                    };
                    apply_on(op, &args, ctx)?
                }
            };
            values.insert(id, value);
        }
        graph
            .outputs()
            .iter()
            .map(|o| {
                values
                    .get(o)
                    .cloned()
                    .ok_or_else(|| Error::Graph("SymbolBlock: an output has no value".into()))
            })
            .collect()
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        self.cached.graph()
    }

    /// The data input names, in call order.
    pub fn input_names(&self) -> &[String] {
        self.cached.input_names()
    }

    /// The compiled graph (call counts, backward plans...).
    pub fn cached_graph(&self) -> &CachedGraph {
        &self.cached
    }

    /// `forward` and `hybrid_forward` take one input and return one output.
    fn check_single(&self) -> Result<()> {
        let (n_in, n_out) = (self.input_names().len(), self.cached.num_user_outputs());
        if n_in != 1 || n_out != 1 {
            return Err(Error::invalid(
                "SymbolBlock::forward",
                format!(
                    "forward takes one input and returns one output; this graph takes {n_in} \
                     input(s) and returns {n_out} output(s): use SymbolBlock::call or forward_many"
                ),
            ));
        }
        Ok(())
    }

    /// Exports this block again (see [`export::export`]): `{prefix}-graph.json` and
    /// `{prefix}.safetensors` with the current parameter values.
    pub fn export(&self, prefix: impl AsRef<Path>) -> Result<(PathBuf, PathBuf)> {
        export::export(prefix.as_ref(), self.graph(), &self.params)
    }
}

/// Shortens and explains graph-loading errors a user can act on: serde lists every op kiln
/// has after an unknown one, which buries the name that matters.
fn explain_graph_error(msg: &str) -> String {
    const NEWER: &str = "the file may have been written by a newer kiln";
    if let Some(at) = msg.find("unknown variant `") {
        let rest = &msg[at + "unknown variant `".len()..];
        let name = rest.split('`').next().unwrap_or("");
        let what = if rest.contains("`fully_connected`") {
            "op"
        } else {
            "attribute value"
        };
        return format!("{}unknown {what} `{name}` ({NEWER})", &msg[..at]);
    }
    if msg.contains("unknown field") {
        return format!("{msg} ({NEWER})");
    }
    if msg.contains("EOF while parsing") {
        return format!("{msg} (the file is truncated)");
    }
    msg.to_string()
}

/// Gradients for float parameters, except normalization layers' running statistics.
fn default_grad_req(name: &str, is_float: bool) -> GradReq {
    let statistic = ["running_mean", "running_var", "moving_mean", "moving_var"]
        .iter()
        .any(|s| name.ends_with(s));
    if is_float && !statistic {
        GradReq::Write
    } else {
        GradReq::Null
    }
}

impl Block for SymbolBlock {
    /// Empty: the parameters keep the full names they have in the graph.
    fn prefix(&self) -> String {
        String::new()
    }

    /// Runs a graph of one data input and one output (use [`SymbolBlock::call`] for
    /// others).
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        self.check_single()?;
        let mut out = self.call(&[x])?;
        out.pop()
            .ok_or_else(|| Error::invalid("SymbolBlock::forward", "the graph returned no output"))
    }

    fn params(&self) -> Vec<Parameter> {
        self.params.iter().cloned().collect()
    }
}

impl HybridBlock for SymbolBlock {
    /// The graph run op by op as NDArray ops (one data input, one output): the imperative
    /// form of [`SymbolBlock::call`], used when an enclosing block traces this one.
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        self.check_single()?;
        let mut out = self.replay(&[x])?;
        out.pop().ok_or_else(|| {
            Error::invalid(
                "SymbolBlock::hybrid_forward",
                "the graph returned no output",
            )
        })
    }

    /// The graph run op by op on several inputs, returning every output (inside an
    /// enclosing trace its ops join that graph).
    fn hybrid_forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        self.replay(xs)
    }

    /// [`SymbolBlock::call`]: the compiled graph, or its ops inlined into an enclosing trace.
    fn forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        self.call(xs)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}
