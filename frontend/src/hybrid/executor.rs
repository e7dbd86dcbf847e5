//! The graph executor: a graph compiled once into a flat plan, then run many times.
//!
//! [`Executor::new`] walks the graph once: it keeps only the nodes the outputs depend on, puts
//! them in topological order, numbers their values densely, and works out after which step
//! each value is used for the last time. [`Executor::run`] then only follows the plan: each
//! op node runs through the chosen backend's [`Kernels`], and a value is dropped as soon as
//! its last user has run, so a deep chain holds two values at a time, not all of them.
//!
//! Buffers are recycled according to the graph's memory plan ([`kiln_passes::memory`]): each
//! step's value belongs to one of the plan's buffers; when a value is freed its allocation
//! returns to its buffer's pool, and the next step planned into that buffer hands it to the
//! backend through [`Kernels::execute_into`], in this run and the following ones. Outputs
//! leave with the caller and are always allocated afresh. An in-place step
//! writes into its input's *buffer*, which a backend API with borrowed inputs cannot
//! alias, so such a buffer keeps two allocations that alternate. `KILN_PASSES=-plan_memory`
//! (or `none`) or [`Executor::set_buffer_reuse`] turns recycling off.
//!
//! Random ops are pure functions of their `seed` attribute. A traced graph gives each random
//! op a placeholder seed equal to its *seed slot* (0, 1, 2, ... in trace order); the plan
//! remembers which steps carry which slot, and every run receives the real seeds, one per
//! slot, and substitutes them (see [`Executor::run`]).

use kiln_backends::jit::JitBackend;
use kiln_backends::{CpuBackend, Interpreter, Kernels, PreparedKernel};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Error, Graph, NodeId, Op, Result, Storage, Tensor, TensorType, TensorView};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Which engine runs compiled graphs.
///
/// All run the same op semantics (the reference interpreter's); they differ in speed. Code
/// outside this module never assumes a particular backend.
///
/// The default is [`BackendChoice::Cranelift`], unless the environment variable
/// `KILN_BACKEND` names another engine (`interp`, `cpu` or `cranelift`); an explicit choice
/// in [`HybridizeOptions`] always wins over the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// [`kiln_backends::CpuBackend`]: the tuned CPU kernels eager NDArray ops also use, so a
    /// hybridized forward gives bitwise the imperative results.
    Cpu,
    /// [`kiln_backends::Interpreter`]: the reference interpreter (slow, the semantics every
    /// backend must match).
    Interpreter,
    /// [`kiln_backends::jit::JitBackend`]: fused kernels compiled to native code with
    /// Cranelift, every other op on the CPU kernels. Compiled kernels agree with the
    /// interpreter within the tolerance documented in [`kiln_backends::jit`].
    Cranelift,
}

impl Default for BackendChoice {
    fn default() -> Self {
        BackendChoice::from_env().unwrap_or(BackendChoice::Cranelift)
    }
}

static CPU: CpuBackend = CpuBackend;
static INTERP: Interpreter = Interpreter;

impl BackendChoice {
    /// The kernels this choice runs ops on.
    pub fn kernels(self) -> &'static dyn Kernels {
        match self {
            BackendChoice::Cpu => &CPU,
            BackendChoice::Interpreter => &INTERP,
            BackendChoice::Cranelift => JitBackend::global(),
        }
    }

    /// The backend's name (`cpu`, `interp`, `cranelift`).
    pub fn name(self) -> &'static str {
        self.kernels().name()
    }

    /// The choice named by `KILN_BACKEND` (`interp`/`interpreter`, `cpu`, `cranelift`/`jit`),
    /// if it is set to one of those.
    pub fn from_env() -> Option<BackendChoice> {
        match std::env::var("KILN_BACKEND").ok()?.trim() {
            "interp" | "interpreter" => Some(BackendChoice::Interpreter),
            "cpu" => Some(BackendChoice::Cpu),
            "cranelift" | "jit" => Some(BackendChoice::Cranelift),
            _ => None,
        }
    }
}

/// Options of `hybridize_with` (MXNet's `hybridize(static_alloc=..., static_shape=...)`).
///
/// - `backend`: the engine that runs the compiled graphs.
/// - `static_alloc`: plan everything up front. The compiled backward graph (for the
///   parameters that take gradients) is built when the graph is compiled rather than on the
///   first call under `autograd::record`, so training steps all cost the same.
/// - `static_shape`: promise that input shapes do not change between calls. The hybridize
///   cache uses it; a compiled graph is always typed for one set of input shapes, so a
///   [`super::CachedGraph`] rejects other shapes either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HybridizeOptions {
    /// The engine that runs compiled graphs.
    pub backend: BackendChoice,
    /// Build the backward graph when compiling instead of on first use.
    pub static_alloc: bool,
    /// Input shapes do not change between calls.
    pub static_shape: bool,
}

/// Where a step's argument comes from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// Binding `i` (in [`Graph::bindings`] order).
    Binding(usize),
    /// Constant `i` of the plan.
    Const(usize),
    /// The value computed by step `i`.
    Step(usize),
}

/// One op to run.
#[derive(Clone, Debug)]
struct Step {
    op: Op,
    /// The seed slot whose drawn seed replaces the op's placeholder seed.
    seed_slot: Option<usize>,
    args: Vec<Source>,
    ty: TensorType,
    /// Steps whose values are used for the last time by this step (freed right after it).
    frees: Vec<usize>,
    /// The memory plan's buffer for this step's value.
    buffer: usize,
    /// Whether the value is an output (it leaves with the caller: never given a recycled
    /// allocation, which may be larger than it needs).
    is_output: bool,
    /// The memory plan runs this step in place of its argument at this position: when that
    /// value has no reader after this step (and is not also another argument), the backend
    /// writes the result over its allocation.
    in_place: Option<usize>,
    /// A readable label for errors (`%3 (relu)`).
    label: String,
}

/// Statistics of one run (for tests and curious users).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Ops executed.
    pub ops_run: usize,
    /// The most computed values held at once (a step's output counts while its inputs are
    /// still held).
    pub peak_values: usize,
    /// Steps that were offered a recycled allocation from their planned buffer.
    pub buffers_recycled: usize,
    /// Steps run in place: handed their input's allocation to write the result over.
    pub in_place: usize,
}

/// Most allocations one plan buffer keeps between values (two: an in-place step and the
/// value it overwrites are alive together).
const POOL_DEPTH: usize = 2;

/// Recycled allocations, one small stack per plan buffer, kept across runs. A clone starts
/// empty; concurrent runs of one executor each take the whole pool or find it empty.
#[derive(Default)]
struct BufferPool(Mutex<Vec<Vec<Storage>>>);

impl BufferPool {
    fn take(&self) -> Vec<Vec<Storage>> {
        self.0
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    fn put(&self, pool: Vec<Vec<Storage>>) {
        if let Ok(mut p) = self.0.lock() {
            *p = pool;
        }
    }
}

impl Clone for BufferPool {
    fn clone(&self) -> Self {
        BufferPool::default()
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .0
            .lock()
            .map(|p| p.iter().map(Vec::len).sum::<usize>())
            .unwrap_or(0);
        write!(f, "BufferPool({held} allocations)")
    }
}

/// A graph compiled into a plan for one backend (see the module documentation).
#[derive(Clone, Debug)]
pub struct Executor {
    /// Names and types of the bindings, in [`Graph::bindings`] order.
    bindings: Vec<(String, TensorType)>,
    consts: Vec<Tensor>,
    steps: Vec<Step>,
    outputs: Vec<Source>,
    seed_slots: usize,
    backend: BackendChoice,
    /// Buffers in the memory plan.
    buffers: usize,
    /// Whether runs recycle allocations and run steps in place (see the module docs).
    reuse: bool,
    pool: BufferPool,
    /// Per step, the backend's prepared form, made on the step's first run.
    prepared: Vec<OnceLock<Option<Arc<dyn PreparedKernel>>>>,
}

/// The seed attribute of a random op.
pub fn op_seed(op: &Op) -> Option<u64> {
    match op {
        Op::Dropout { seed, .. }
        | Op::RandomUniform { seed, .. }
        | Op::RandomNormal { seed, .. }
        | Op::RandomBernoulli { seed, .. }
        | Op::RandomRandint { seed, .. }
        | Op::Multinomial { seed, .. }
        | Op::Shuffle { seed } => Some(*seed),
        _ => None,
    }
}

/// `op` with its seed attribute replaced (ops without one are returned unchanged).
pub fn with_seed(op: &Op, new_seed: u64) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Dropout { seed, .. }
        | Op::RandomUniform { seed, .. }
        | Op::RandomNormal { seed, .. }
        | Op::RandomBernoulli { seed, .. }
        | Op::RandomRandint { seed, .. }
        | Op::Multinomial { seed, .. }
        | Op::Shuffle { seed } => *seed = new_seed,
        _ => {}
    }
    op
}

/// The number of seed slots a graph's random ops use, when their seeds are exactly the
/// placeholders `0, 1, ..., n-1` (each used at least once); otherwise 0, meaning the seeds
/// are fixed values to keep (a graph written by hand, or one whose seeds were baked in).
pub fn infer_seed_slots(graph: &Graph) -> usize {
    let mut seeds: Vec<u64> = graph
        .node_ids()
        .into_iter()
        .filter_map(|id| graph.op(id).ok().flatten().and_then(op_seed))
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    let placeholders = seeds.iter().enumerate().all(|(i, &s)| s == i as u64);
    if placeholders {
        seeds.len()
    } else {
        0
    }
}

impl Executor {
    /// Compiles `graph` for `backend`. Random ops whose seed is below `seed_slots` take the
    /// seed drawn for that slot at each run; other seeds are kept as they are.
    ///
    /// Errors on a graph without outputs, and on a `KILN_PASSES` that does not parse (it
    /// decides whether buffers are recycled).
    pub fn new(graph: &Graph, seed_slots: usize, backend: BackendChoice) -> Result<Executor> {
        if graph.outputs().is_empty() {
            return Err(Error::Graph(
                "compile: the graph has no outputs (set them with Graph::set_outputs)".into(),
            ));
        }
        let bindings: Vec<(String, TensorType)> = graph
            .bindings()
            .into_iter()
            .map(|(name, id)| Ok((name.to_string(), graph.ty(id)?.clone())))
            .collect::<Result<_>>()?;
        let binding_index: HashMap<NodeId, usize> = graph
            .bindings()
            .into_iter()
            .enumerate()
            .map(|(i, (_, id))| (id, i))
            .collect();

        // The nodes the outputs depend on.
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

        let plan = kiln_passes::memory::plan(graph)?;
        let order = graph.topo_order();
        let mut source: HashMap<NodeId, Source> = HashMap::new();
        let mut consts = Vec::new();
        let mut steps: Vec<Step> = Vec::new();
        for (k, &id) in order.iter().enumerate() {
            if !live[id.index()] {
                continue;
            }
            let node = graph.node(id)?;
            let src = match &node.kind {
                NodeKind::Input { .. } | NodeKind::Param { .. } => {
                    let i = binding_index.get(&id).copied().ok_or_else(|| {
                        Error::Graph(format!("compile: %{k} is bound but not a binding"))
                    })?;
                    Source::Binding(i)
                }
                NodeKind::Const(t) => {
                    consts.push(t.clone());
                    Source::Const(consts.len() - 1)
                }
                NodeKind::Op(op) => {
                    let args = graph
                        .inputs_of(id)?
                        .iter()
                        .map(|a| {
                            source.get(a).copied().ok_or_else(|| {
                                Error::Graph(format!(
                                    "compile: %{k} ({}) uses a value not computed before it",
                                    op.name()
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let seed_slot = op_seed(op)
                        .filter(|&s| s < seed_slots as u64)
                        .map(|s| s as usize);
                    let buffer = plan.buffer_of(id).ok_or_else(|| {
                        Error::Graph(format!(
                            "compile: %{k} ({}) has no buffer in the memory plan",
                            op.name()
                        ))
                    })?;
                    let inputs = graph.inputs_of(id)?;
                    let in_place = plan
                        .in_place_of(id)
                        .and_then(|i| inputs.iter().position(|&a| a == i))
                        .filter(|&pos| matches!(args.get(pos), Some(Source::Step(_))));
                    steps.push(Step {
                        op: op.clone(),
                        in_place,
                        seed_slot,
                        args,
                        ty: node.ty.clone(),
                        frees: Vec::new(),
                        buffer,
                        is_output: graph.outputs().contains(&id),
                        label: format!("%{k} ({})", op.name()),
                    });
                    Source::Step(steps.len() - 1)
                }
            };
            source.insert(id, src);
        }
        let outputs: Vec<Source> = graph
            .outputs()
            .iter()
            .map(|o| {
                source
                    .get(o)
                    .copied()
                    .ok_or_else(|| Error::Graph("compile: an output has no value".into()))
            })
            .collect::<Result<_>>()?;

        // Free each step's value right after its last user, unless it is an output (kept
        // to the end). Every live value that is not an output has a user.
        let mut last_use: Vec<Option<usize>> = vec![None; steps.len()];
        for (s, step) in steps.iter().enumerate() {
            for a in &step.args {
                if let Source::Step(p) = a {
                    last_use[*p] = Some(s);
                }
            }
        }
        for o in &outputs {
            if let Source::Step(p) = o {
                last_use[*p] = None;
            }
        }
        for (p, last) in last_use.iter().enumerate() {
            if let Some(s) = last {
                steps[*s].frees.push(p);
            }
        }
        let prepared = (0..steps.len()).map(|_| OnceLock::new()).collect();
        Ok(Executor {
            prepared,
            bindings,
            consts,
            steps,
            outputs,
            seed_slots,
            backend,
            buffers: plan.buffers.len(),
            reuse: kiln_passes::memory::enabled_by_env()?,
            pool: BufferPool::default(),
        })
    }

    /// Turns recycling of allocations through the memory plan on or off (on unless
    /// `KILN_PASSES` turns `plan_memory` off). Turning it off drops what the pool holds.
    pub fn set_buffer_reuse(&mut self, on: bool) {
        self.reuse = on;
        if !on {
            self.pool = BufferPool::default();
        }
    }

    /// Whether runs recycle allocations.
    pub fn buffer_reuse(&self) -> bool {
        self.reuse
    }

    /// Number of buffers in the memory plan the runs follow.
    pub fn num_buffers(&self) -> usize {
        self.buffers
    }

    /// The bindings (inputs and parameters) in the order [`Executor::run`] takes them.
    pub fn bindings(&self) -> impl Iterator<Item = (&str, &TensorType)> {
        self.bindings.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Number of bindings.
    pub fn num_bindings(&self) -> usize {
        self.bindings.len()
    }

    /// Number of ops a run executes (only those the outputs depend on).
    pub fn num_ops(&self) -> usize {
        self.steps.len()
    }

    /// Number of seed slots a run needs seeds for.
    pub fn seed_slots(&self) -> usize {
        self.seed_slots
    }

    /// The backend the plan runs on.
    pub fn backend(&self) -> BackendChoice {
        self.backend
    }

    /// Runs the plan: `bindings` gives one value per binding, in [`Executor::bindings`]
    /// order, each of the binding's type; `seeds` one seed per seed slot. Returns the outputs
    /// in order.
    pub fn run(&self, bindings: &[TensorView<'_>], seeds: &[u64]) -> Result<Vec<Tensor>> {
        self.run_with_stats(bindings, seeds).map(|(out, _)| out)
    }

    /// [`Executor::run`], also returning [`RunStats`].
    pub fn run_with_stats(
        &self,
        bindings: &[TensorView<'_>],
        seeds: &[u64],
    ) -> Result<(Vec<Tensor>, RunStats)> {
        if bindings.len() != self.bindings.len() {
            let names: Vec<&str> = self.bindings.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Graph(format!(
                "run: {} values given for {} bindings ({})",
                bindings.len(),
                self.bindings.len(),
                names.join(", ")
            )));
        }
        for ((name, want), got) in self.bindings.iter().zip(bindings) {
            let got = got.ty();
            if *want != got {
                return Err(Error::Graph(format!(
                    "run: {name:?} expects {want}, got {got}"
                )));
            }
        }
        if seeds.len() != self.seed_slots {
            return Err(Error::Graph(format!(
                "run: {} seeds given for {} seed slots",
                seeds.len(),
                self.seed_slots
            )));
        }
        let kernels = self.backend.kernels();
        let mut values: Vec<Option<Tensor>> = (0..self.steps.len()).map(|_| None).collect();
        let mut stats = RunStats::default();
        let mut held = 0usize;
        let mut pool = if self.reuse {
            self.pool.take()
        } else {
            Vec::new()
        };
        if self.reuse {
            pool.resize_with(self.buffers, Vec::new);
        }
        let mut extras = multi_output::Extras::default();
        for (s, step) in self.steps.iter().enumerate() {
            let seeded;
            let op = match step.seed_slot {
                Some(slot) => {
                    seeded = with_seed(&step.op, seeds[slot]);
                    &seeded
                }
                None => &step.op,
            };
            // True in place: the argument the plan overwrites, when this step is its last
            // reader and it is no other argument of the step.
            let over =
                step.in_place
                    .filter(|_| self.reuse)
                    .and_then(|pos| match step.args.get(pos) {
                        Some(&Source::Step(p))
                            if step.frees.contains(&p)
                                && values.get(p).is_some_and(Option::is_some)
                                && step
                                    .args
                                    .iter()
                                    .filter(|a| matches!(a, Source::Step(q) if *q == p))
                                    .count()
                                    == 1 =>
                        {
                            Some((pos, p))
                        }
                        _ => None,
                    });
            let out = match over {
                Some((pos, p)) => {
                    let buf = values[p].take().ok_or_else(|| {
                        Error::Graph(format!("run: {} needs a value that is gone", step.label))
                    })?;
                    held -= 1;
                    let others = step
                        .args
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| i != pos)
                        .map(|(_, a)| self.view(*a, bindings, &values, step))
                        .collect::<Result<Vec<_>>>()?;
                    let prep = {
                        let full = kiln_backends::with_target(&others, pos, &buf);
                        self.prepared(s, step, kernels, &full).cloned()
                    };
                    stats.in_place += 1;
                    match prep {
                        Some(k) => k.run_overwriting(&others, pos, buf),
                        None => kernels.execute_overwriting(op, &others, pos, buf),
                    }
                }
                None => {
                    let views = step
                        .args
                        .iter()
                        .map(|a| self.view(*a, bindings, &values, step))
                        .collect::<Result<Vec<_>>>()?;
                    if is_multi_output_step(op) {
                        let later = &self.steps[s + 1..];
                        multi_output::run_step(kernels, op, &views, s, step, later, &mut extras)
                    } else {
                        let prep = self.prepared(s, step, kernels, &views);
                        let recycled = if step.is_output {
                            None
                        } else {
                            pool.get_mut(step.buffer).and_then(Vec::pop).and_then(|st| {
                                let n = st.len();
                                Tensor::new([n], st).ok()
                            })
                        };
                        if recycled.is_some() {
                            stats.buffers_recycled += 1;
                        }
                        match (prep, recycled) {
                            (Some(k), Some(buf)) => k.run_into(&views, buf),
                            (Some(k), None) => k.run(&views),
                            (None, Some(buf)) => kernels.execute_into(op, &views, buf),
                            (None, None) => kernels.execute(op, &views),
                        }
                    }
                }
            }
            .map_err(|e| match e {
                Error::Graph(msg) => Error::Graph(format!("{}: {msg}", step.label)),
                other => other,
            })?;
            if out.ty() != step.ty {
                return Err(Error::Graph(format!(
                    "run: {} should give {}, the {} backend returned {}",
                    step.label,
                    step.ty,
                    kernels.name(),
                    out.ty()
                )));
            }
            stats.ops_run += 1;
            stats.peak_values = stats.peak_values.max(held + 1);
            for &p in &step.frees {
                if let Some(v) = values[p].take() {
                    held -= 1;
                    if let Some(slot) = pool.get_mut(self.steps[p].buffer) {
                        if slot.len() < POOL_DEPTH {
                            slot.push(v.into_parts().1);
                        }
                    }
                }
            }
            values[s] = Some(out);
            held += 1;
        }
        // Hand each output over; a value that is several outputs is copied for all but the last.
        let mut results = Vec::with_capacity(self.outputs.len());
        for (i, o) in self.outputs.iter().enumerate() {
            let later = self.outputs[i + 1..]
                .iter()
                .any(|q| matches!((o, q), (Source::Step(a), Source::Step(b)) if a == b));
            let t = match o {
                Source::Step(p) if !later => values[*p].take(),
                Source::Step(p) => values[*p].clone(),
                Source::Binding(b) => Some(bindings[*b].to_tensor()),
                Source::Const(c) => self.consts.get(*c).cloned(),
            };
            results.push(t.ok_or_else(|| Error::Graph(format!("run: output {i} has no value")))?);
        }
        if self.reuse {
            self.pool.put(pool);
        }
        Ok((results, stats))
    }

    /// Step `s`'s prepared kernel, made by the backend on its first run (`None` when the
    /// backend prepares nothing for it, or the op draws a seed per run).
    fn prepared(
        &self,
        s: usize,
        step: &Step,
        kernels: &dyn Kernels,
        views: &[TensorView<'_>],
    ) -> Option<&Arc<dyn PreparedKernel>> {
        if step.seed_slot.is_some() {
            return None;
        }
        self.prepared
            .get(s)?
            .get_or_init(|| kernels.prepare(&step.op, views))
            .as_ref()
    }

    fn view<'a>(
        &'a self,
        src: Source,
        bindings: &'a [TensorView<'a>],
        values: &'a [Option<Tensor>],
        step: &Step,
    ) -> Result<TensorView<'a>> {
        let missing = || Error::Graph(format!("run: {} needs a value that is gone", step.label));
        match src {
            Source::Binding(b) => bindings.get(b).cloned().ok_or_else(missing),
            Source::Const(c) => self.consts.get(c).map(Tensor::view).ok_or_else(missing),
            Source::Step(p) => values
                .get(p)
                .and_then(Option::as_ref)
                .map(Tensor::view)
                .ok_or_else(missing),
        }
    }
}

/// Whether `op` is a multi-output fused node or one of its `fused_output` nodes.
fn is_multi_output_step(op: &Op) -> bool {
    match op {
        Op::Fused { kernel } => kernel.is_multi_output(),
        Op::FusedOutput { .. } => true,
        _ => false,
    }
}

/// Multi-output fused kernels: the fused step runs [`Kernels::execute_fused`] and keeps its
/// further outputs until the `fused_output` steps (which read the fused step) take them.
mod multi_output {
    use super::{Source, Step};
    use kiln_backends::Kernels;
    use kiln_ir::{Error, Op, Result, Tensor, TensorView};
    use std::collections::HashMap;

    /// Further outputs by fused step, until their `fused_output` steps take them.
    #[derive(Default)]
    pub(super) struct Extras(HashMap<usize, Vec<Option<Tensor>>>);

    /// Runs step `s` (a multi-output fused node or a `fused_output` node); `later` are the
    /// steps after it.
    pub(super) fn run_step(
        kernels: &dyn Kernels,
        op: &Op,
        views: &[TensorView<'_>],
        s: usize,
        step: &Step,
        later: &[Step],
        extras: &mut Extras,
    ) -> Result<Tensor> {
        match op {
            Op::Fused { kernel } => {
                let mut all = kernels.execute_fused(kernel, views)?.into_iter();
                let first = all
                    .next()
                    .ok_or_else(|| Error::Graph("run: a fused kernel returned nothing".into()))?;
                extras.0.insert(s, all.map(Some).collect());
                Ok(first)
            }
            Op::FusedOutput { index, .. } => {
                let slot = match step.args.first() {
                    Some(Source::Step(p)) => extras
                        .0
                        .get_mut(p)
                        .and_then(|v| v.get_mut(index.wrapping_sub(1))),
                    _ => None,
                };
                // The last fused_output step reading this output takes it; an earlier
                // duplicate (graphs normally hold one per output) gets a copy.
                let duplicate = later.iter().any(|t| {
                    matches!(&t.op, Op::FusedOutput { index: i, .. } if i == index)
                        && matches!((t.args.first(), step.args.first()),
                            (Some(Source::Step(a)), Some(Source::Step(b))) if a == b)
                });
                let value = slot.and_then(|v| if duplicate { v.clone() } else { v.take() });
                value.ok_or_else(|| {
                    Error::Graph(format!("run: {} finds no fused output {index}", step.label))
                })
            }
            _ => kernels.execute(op, views),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::graph::testing::{random_feed, random_graph};
    use kiln_ir::{DType, UnaryOp};

    /// `softmax(relu(x·w1ᵀ + b1)·w2ᵀ + b2)`, and its feed.
    fn mlp() -> (Graph, Vec<Tensor>) {
        let mut g = Graph::new();
        let f32s = |d: &[usize]| TensorType::new(d, DType::F32);
        let x = g.add_input("x", f32s(&[8, 12])).unwrap();
        let w1 = g.add_param("w1", f32s(&[16, 12])).unwrap();
        let b1 = g.add_param("b1", f32s(&[16])).unwrap();
        let w2 = g.add_param("w2", f32s(&[4, 16])).unwrap();
        let b2 = g.add_param("b2", f32s(&[4])).unwrap();
        let fc = Op::FullyConnected {
            flatten: true,
            no_bias: false,
        };
        let h = g.add_op(fc.clone(), &[x, w1, b1]).unwrap();
        let h = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[h]).unwrap();
        let h = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[h]).unwrap();
        let o = g.add_op(fc, &[h, w2, b2]).unwrap();
        let y = g.add_op(Op::Softmax { axis: -1 }, &[o]).unwrap();
        g.set_outputs(vec![y]).unwrap();
        let feed = [96usize, 192, 16, 64, 4]
            .iter()
            .zip([[8, 12], [16, 12], [16, 1], [4, 16], [4, 1]])
            .map(|(&n, d)| {
                let v: Vec<f32> = (0..n)
                    .map(|i| ((i * 37 % 23) as f32 - 11.0) / 13.0)
                    .collect();
                let dims: Vec<usize> = if d[1] == 1 { vec![d[0]] } else { d.to_vec() };
                Tensor::from_vec(v, dims).unwrap()
            })
            .collect();
        (g, feed)
    }

    fn runs(exec: &Executor, feed: &[Tensor], n: usize) -> Vec<(Vec<Tensor>, RunStats)> {
        let views: Vec<TensorView<'_>> = feed.iter().map(Tensor::view).collect();
        (0..n)
            .map(|_| exec.run_with_stats(&views, &[]).unwrap())
            .collect()
    }

    #[test]
    fn recycled_buffers_give_bitwise_the_same_results() {
        let (g, feed) = mlp();
        let mut exec = Executor::new(&g, 0, BackendChoice::Cpu).unwrap();
        exec.set_buffer_reuse(false);
        let plain = runs(&exec, &feed, 1);
        assert_eq!(plain[0].1.buffers_recycled, 0);
        exec.set_buffer_reuse(true);
        let reused = runs(&exec, &feed, 4);
        for (out, _) in &reused {
            assert_eq!(out, &plain[0].0);
        }
        // Plan: fc -> buf0, relu and tanh in place in buf0, fc -> buf1, softmax -> buf0.
        assert_eq!(exec.num_buffers(), 2);
        // relu and tanh overwrite their input's allocation; from run 2 on both fc steps are
        // handed the allocation their buffer kept from the run before (softmax is the output).
        let recycled: Vec<usize> = reused.iter().map(|(_, s)| s.buffers_recycled).collect();
        assert_eq!(recycled, vec![0, 2, 2, 2]);
        let in_place: Vec<usize> = reused.iter().map(|(_, s)| s.in_place).collect();
        assert_eq!(in_place, vec![2, 2, 2, 2]);
    }

    fn f32s(d: &[usize]) -> TensorType {
        TensorType::new(d, DType::F32)
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) / 7.0)
            .collect()
    }

    #[test]
    fn in_place_steps_are_bitwise_the_out_of_place_ones() {
        // exp(x) -> relu -> (+ bias[broadcast]) -> (bias2 - .) -> *2 -> tanh: every step after
        // exp overwrites its input; the CPU kernels do unary, binary with the target on
        // either side of a broadcast, and scalar ops in place.
        let mut g = Graph::new();
        let x = g.add_input("x", f32s(&[7, 33])).unwrap();
        let b = g.add_input("b", f32s(&[33])).unwrap();
        let c = g.add_input("c", f32s(&[7, 1])).unwrap();
        let h = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x]).unwrap();
        let h = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[h]).unwrap();
        let add = Op::Binary {
            f: kiln_ir::BinaryOp::Add,
        };
        let sub = Op::Binary {
            f: kiln_ir::BinaryOp::Sub,
        };
        let h = g.add_op(add, &[h, b]).unwrap();
        let h = g.add_op(sub, &[c, h]).unwrap();
        let h = g
            .add_op(
                Op::Scalar {
                    f: kiln_ir::BinaryOp::Mul,
                    scalar: 2.0,
                    reverse: false,
                },
                &[h],
            )
            .unwrap();
        let h = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[h]).unwrap();
        let d = g
            .add_op(
                Op::Dot {
                    transpose_a: false,
                    transpose_b: true,
                },
                &[h, h],
            )
            .unwrap();
        g.set_outputs(vec![d]).unwrap();
        let feed = vec![
            Tensor::from_vec(values(7 * 33, 1), [7, 33]).unwrap(),
            Tensor::from_vec(values(33, 2), [33]).unwrap(),
            Tensor::from_vec(values(7, 3), [7, 1]).unwrap(),
        ];
        let plan = kiln_passes::memory::plan(&g).unwrap();
        assert_eq!(plan.in_place.len(), 5);
        for backend in [BackendChoice::Cpu, BackendChoice::Cranelift] {
            let mut exec = Executor::new(&g, 0, backend).unwrap();
            exec.set_buffer_reuse(false);
            let (want, plain) = runs(&exec, &feed, 1).remove(0);
            assert_eq!(plain.in_place, 0);
            exec.set_buffer_reuse(true);
            for (got, stats) in runs(&exec, &feed, 3) {
                assert_eq!(got, want, "{}", backend.name());
                assert_eq!(stats.in_place, 5, "{}", backend.name());
            }
        }
    }

    #[test]
    fn in_place_never_overwrites_a_value_another_reader_needs() {
        // t = tanh(x) is an output, so relu(t) must not overwrite it; `sq = e * e` reads e
        // twice, so it must not overwrite e either (the plan allows it: e's last use is sq).
        // exp(u) and neg(sq) overwrite their inputs.
        let mut g = Graph::new();
        let x = g.add_input("x", f32s(&[5, 9])).unwrap();
        let t = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[x]).unwrap();
        let u = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[t]).unwrap();
        let e = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[u]).unwrap();
        let mul = Op::Binary {
            f: kiln_ir::BinaryOp::Mul,
        };
        let sq = g.add_op(mul, &[e, e]).unwrap();
        let n = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[sq]).unwrap();
        g.set_outputs(vec![t, n]).unwrap();
        let feed = vec![Tensor::from_vec(values(45, 4), [5, 9]).unwrap()];
        let want_t: Vec<f64> = values(45, 4).iter().map(|&v| v.tanh() as f64).collect();
        for backend in [BackendChoice::Cpu, BackendChoice::Cranelift] {
            let mut exec = Executor::new(&g, 0, backend).unwrap();
            exec.set_buffer_reuse(false);
            let (want, _) = runs(&exec, &feed, 1).remove(0);
            exec.set_buffer_reuse(true);
            for (got, stats) in runs(&exec, &feed, 2) {
                assert_eq!(got, want);
                assert_eq!(stats.in_place, 2, "{}", backend.name());
                let t: Vec<f64> = got[0].to_f64_vec();
                for (a, b) in t.iter().zip(&want_t) {
                    assert!((a - b).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn random_graphs_run_the_same_with_and_without_recycling() {
        for seed in 0..24u64 {
            let g = random_graph(seed, 16);
            let feed = random_feed(&g, seed);
            let values: Vec<Tensor> = g
                .bindings()
                .iter()
                .map(|(name, _)| {
                    feed.iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.clone())
                        .unwrap()
                })
                .collect();
            for backend in [BackendChoice::Cpu, BackendChoice::Interpreter] {
                let mut exec = Executor::new(&g, 0, backend).unwrap();
                exec.set_buffer_reuse(false);
                let want = runs(&exec, &values, 1).remove(0).0;
                exec.set_buffer_reuse(true);
                for (got, _) in runs(&exec, &values, 3) {
                    assert_eq!(got, want, "seed {seed} on {}", backend.name());
                }
            }
        }
    }
}
