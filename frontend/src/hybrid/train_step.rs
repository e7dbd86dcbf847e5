//! `TrainStep`: a whole training step (forward, loss, backward and the optimizer update)
//! compiled into one graph and run as one executor call.
//!
//! Eager training runs a step as many separate pieces: the forward under
//! [`autograd::record`], the loss, `backward()` walking the tape, then
//! [`Trainer::step`](crate::gluon::Trainer::step) issuing a handful of array ops per
//! parameter. Hybridizing the network compiles the forward and backward, but the loss and the
//! optimizer stay eager. For a tiny model (the book's linear regression, 2 inputs, 1 output,
//! batch 4) the fixed cost of each piece is the whole cost of the step.
//!
//! [`TrainStep`] compiles all of it, once per input signature:
//!
//! 1. the network's `hybrid_forward` and the loss are traced together (in training mode) into
//!    one graph whose output is the per-sample loss ([`super::trace`]);
//! 2. `kiln_passes::autodiff` differentiates it with respect to every parameter whose
//!    grad_req is `write`, and the backward graph is joined onto the forward (the head
//!    gradient is ones, as `loss.backward()` uses);
//! 3. the optimizer's update is appended as ordinary IR ops, reading each parameter, its
//!    gradient and its optimizer state (SGD's momentum, Adam's two moments), and producing
//!    their new values as graph outputs;
//! 4. the joined graph goes through the training pass pipeline ([`super::optimize`]) and is
//!    compiled by the chosen backend into one [`Executor`].
//!
//! Each [`TrainStep::step`] then binds the batch, the parameters, the optimizer state and two
//! scalar inputs, the learning rate and the update count, runs the executor once, and
//! writes the new parameter values into the parameters' own storage (the network, `export`,
//! eager code and every handle on a parameter see them; no copy is made when the parameter
//! owns its storage). Because the learning rate and the count are inputs, a learning-rate
//! schedule, [`TrainStep::set_learning_rate`] or Adam's bias correction change nothing
//! compiled. A batch of another shape compiles a second plan (kept: alternating batch sizes
//! compile each once).
//!
//! **What it computes** is exactly what the eager loop computes:
//!
//! ```text
//! let loss = autograd::record(|| loss_fn.loss(&net.forward(&data)?, &label, None))?;
//! loss.backward()?;
//! trainer.step(batch)?;   // batch = data.shape()[0]
//! ```
//!
//! with the update rules of [`SGD`](crate::gluon::optimizer::SGD) (with momentum and weight
//! decay) and [`Adam`](crate::gluon::optimizer::Adam) (with bias correction): gradients
//! rescaled by `rescale_grad / batch`, clipped when `clip_gradient` is set, per-parameter
//! `lr_mult` and `wd_mult`, the learning-rate schedule consulted after the update count
//! grows. The coefficients the optimizers compute in `f64` (`lr·wd`, `1 − lr·wd`, Adam's
//! `lr·sqrt(1 − beta2^t)/(1 − beta1^t)`) are computed in `f64` in the graph too, then
//! rounded to the parameter's dtype, so results agree with the eager loop to rounding.
//! BatchNorm's running statistics are written as in a hybridized call, and dropout draws its
//! seeds from the global generator in the order eager mode does, so the same global seed gives
//! the same masks.
//!
//! Differences from the eager loop: the parameters' gradient buffers are not written (the
//! gradients live and die inside the compiled step); Adam's step count `t` is the largest
//! update count among the trained parameters (the same for all of them unless the set of
//! trained parameters changes midway).
//!
//! ```
//! use kiln_frontend::gluon::init::Normal;
//! use kiln_frontend::gluon::loss::L2Loss;
//! use kiln_frontend::gluon::nn::Dense;
//! use kiln_frontend::gluon::Block;
//! use kiln_frontend::hybrid::{TrainStep, TrainStepOptions};
//! use kiln_frontend::{nd, Context};
//! use std::sync::Arc;
//! # fn main() -> kiln_frontend::Result<()> {
//! // The book's linear regression: y = 2·x0 − 3.4·x1 + 4.2.
//! let net = Dense::new(1).in_units(2);
//! net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
//! let loss = L2Loss::new();
//! let mut step = TrainStep::new(&net, &loss, "sgd", [("learning_rate", 0.05)], &TrainStepOptions::default())?;
//! let x = nd::array(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -1.0]])?;
//! let y = nd::array(&[6.2f32, 0.8, 2.8, 8.6])?;
//! let w0 = net.weight().data()?.to_vec::<f32>()?;
//! let first = step.step(&x, &y)?.mean()?.as_scalar::<f32>()?;
//! for _ in 0..300 {
//!     step.step(&x, &y)?;
//! }
//! let last = step.step(&x, &y)?.mean()?.as_scalar::<f32>()?;
//! assert!(last < first / 100.0);
//! // The parameters themselves were updated: the net sees them.
//! assert_ne!(net.weight().data()?.to_vec::<f32>()?, w0);
//! // One compile; every later step reused it.
//! assert_eq!((step.compiles(), step.steps()), (1, 302));
//! # Ok(())
//! # }
//! ```

use super::cached::Locked;
use super::executor::{BackendChoice, Executor};
use super::optimize::optimize;
use super::trace;
use crate::autograd::{self, GradReq};
use crate::context::Context;
use crate::gluon::block::HybridBlock;
use crate::gluon::loss::Loss;
use crate::gluon::optimizer::{create, Hyper, Optimizer, OptimizerSpec};
use crate::gluon::parameter::{Parameter, ParameterDict};
use crate::ndarray::{write_storage, Data, NDArray};
use kiln_ir::graph::NodeKind;
use kiln_ir::{
    BinaryOp, DType, Error, Graph, NodeId, Op, Result, Tensor, TensorType, TensorView, UnaryOp,
};
use kiln_passes::autodiff::differentiate_outputs;
use kiln_passes::StatsTable;
use std::collections::HashMap;
use std::fmt;

/// The name of the learning-rate input (an `f64` scalar) of a compiled step.
pub const LR_INPUT: &str = "train_step:lr";
/// The name of the update-count input (an `f64` scalar, `t` = 1 on the first step).
pub const COUNT_INPUT: &str = "train_step:t";

/// Options of a [`TrainStep`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainStepOptions {
    /// The engine that runs the compiled step (Cranelift by default, as for hybridize).
    pub backend: BackendChoice,
}

/// The update rules a compiled step can append.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// [`crate::gluon::optimizer::SGD`]; no momentum state when `momentum` is 0.
    Sgd { momentum: f64 },
    /// [`crate::gluon::optimizer::Adam`].
    Adam {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
}

/// The optimizers [`TrainStep`] compiles.
pub const SUPPORTED_OPTIMIZERS: &[&str] = &["sgd", "adam"];

impl Rule {
    /// The rule of `opt`, with its hyperparameters checked as its eager update checks them.
    fn of(opt: &dyn Optimizer) -> Result<Rule> {
        let op = "TrainStep";
        let hyper = opt.hyperparameters();
        let get = |name: &str| {
            hyper
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    Error::invalid(
                        op,
                        format!("the {} optimizer does not report its {name}", opt.name()),
                    )
                })
        };
        opt.core().check(op)?;
        let rule = match opt.name() {
            "sgd" => Rule::Sgd {
                momentum: get("momentum")?,
            },
            "adam" => Rule::Adam {
                beta1: get("beta1")?,
                beta2: get("beta2")?,
                epsilon: get("epsilon")?,
            },
            other => {
                return Err(Error::invalid(
                    op,
                    format!(
                        "the {other} optimizer cannot be compiled into a training step; \
                         supported: {} (train with a Trainer for the others)",
                        SUPPORTED_OPTIMIZERS.join(", ")
                    ),
                ))
            }
        };
        let bad = |name: &str, v: f64, range: &str| {
            Err(Error::invalid(
                op,
                format!("{name} must be {range}, got {v}"),
            ))
        };
        match rule {
            Rule::Sgd { momentum } if !momentum.is_finite() => {
                bad("momentum", momentum, "a finite number")
            }
            Rule::Adam { beta1, .. } if !(0.0..1.0).contains(&beta1) => {
                bad("beta1", beta1, "in [0, 1)")
            }
            Rule::Adam { beta2, .. } if !(0.0..1.0).contains(&beta2) => {
                bad("beta2", beta2, "in [0, 1)")
            }
            Rule::Adam { epsilon, .. } if !(epsilon.is_finite() && epsilon >= 0.0) => {
                bad("epsilon", epsilon, "finite and >= 0")
            }
            _ => Ok(rule),
        }
    }

    /// Number of state arrays per parameter (as the eager optimizer's `create_state`).
    fn state_len(self) -> usize {
        match self {
            Rule::Sgd { momentum } => usize::from(momentum != 0.0),
            Rule::Adam { .. } => 2,
        }
    }
}

/// What a compiled plan was built from: a change recompiles.
#[derive(Clone, Debug, PartialEq)]
struct Fingerprint {
    /// Per parameter: grad_req, lr_mult, wd_mult.
    params: Vec<(GradReq, f64, f64)>,
    rule: Rule,
    wd: f64,
    clip: Option<f64>,
}

/// Where an executor binding's value comes from at a step.
#[derive(Clone, Copy, Debug)]
enum Feed {
    Data,
    Label,
    /// Parameter `i` (index into `TrainStep::params`).
    Param(usize),
    /// State array `j` of trained parameter `i`.
    State(usize, usize),
    Lr,
    Count,
}

/// Where an executor output goes after a step.
#[derive(Clone, Copy, Debug)]
enum Out {
    /// The per-sample loss, returned.
    Loss,
    /// The new value of parameter `i` (a trained weight or a running statistic).
    Param(usize),
    /// The new state array `j` of parameter `i`.
    State(usize, usize),
}

/// One compiled step, for one signature of (data, label).
struct Plan {
    exec: Executor,
    /// The joined forward + backward + update graph, before the passes.
    graph: Graph,
    /// The graph the executor runs.
    optimized: Graph,
    pass_stats: StatsTable,
    feeds: Vec<Feed>,
    outputs: Vec<Out>,
    seed_slots: usize,
    /// The parameters updated, as indices into `TrainStep::params`.
    trained: Vec<usize>,
    /// Every bound parameter's type when compiled.
    param_types: Vec<(usize, TensorType)>,
}

/// A compiled training step; see the [module documentation](self).
pub struct TrainStep<'a> {
    net: &'a dyn HybridBlock,
    loss: &'a dyn Loss,
    optimizer: Box<dyn Optimizer>,
    /// The optimizer's `rescale_grad` at creation; each step uses `scale / batch`.
    scale: f64,
    options: TrainStepOptions,
    /// Every parameter of the network, in `collect_params` order.
    params: Vec<Parameter>,
    dict: ParameterDict,
    /// Optimizer state by parameter index (created zero on first compile, as eager creates
    /// it on the first update).
    states: HashMap<usize, Vec<Tensor>>,
    plans: HashMap<(TensorType, TensorType), Plan>,
    fingerprint: Option<Fingerprint>,
    last: Option<(TensorType, TensorType)>,
    compiles: usize,
    steps: usize,
}

impl fmt::Debug for TrainStep<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrainStep")
            .field("net", &self.net.prefix())
            .field("loss", &self.loss.name())
            .field("optimizer", &self.optimizer.name())
            .field("backend", &self.options.backend.name())
            .field("compiles", &self.compiles)
            .field("steps", &self.steps)
            .finish()
    }
}

impl<'a> TrainStep<'a> {
    /// A compiled training step for `net` with loss `loss`, optimizing every parameter of
    /// `net` whose grad_req is `write` with `optimizer` (a name, `"sgd"` or `"adam"`, with
    /// `hyper` its hyperparameters, as [`crate::gluon::Trainer::new`] takes them; or an
    /// optimizer value, with `hyper` empty).
    ///
    /// Nothing is traced yet: the first [`TrainStep::step`] compiles. Errors on an optimizer
    /// other than SGD and Adam, on hyperparameters the optimizer rejects, and on a network
    /// without parameters.
    pub fn new(
        net: &'a dyn HybridBlock,
        loss: &'a dyn Loss,
        optimizer: impl Into<OptimizerSpec>,
        hyper: impl Into<Hyper>,
        options: &TrainStepOptions,
    ) -> Result<TrainStep<'a>> {
        let hyper = hyper.into();
        let optimizer = match optimizer.into() {
            OptimizerSpec::Name(name) => create(&name, hyper)?,
            OptimizerSpec::Value(opt) => {
                if !hyper.is_empty() {
                    return Err(Error::invalid(
                        "TrainStep",
                        format!(
                            "hyperparameters were given with an optimizer value ({}); set \
                             them on the optimizer itself, or pass the optimizer by name",
                            opt.name()
                        ),
                    ));
                }
                opt
            }
        };
        Rule::of(optimizer.as_ref())?;
        let dict = net.collect_params()?;
        let params: Vec<Parameter> = dict.iter().cloned().collect();
        if params.is_empty() {
            return Err(Error::invalid(
                "TrainStep",
                format!("{}: the network has no parameters to train", net.prefix()),
            ));
        }
        let scale = optimizer.core().rescale_grad;
        Ok(TrainStep {
            net,
            loss,
            optimizer,
            scale,
            options: *options,
            params,
            dict,
            states: HashMap::new(),
            plans: HashMap::new(),
            fingerprint: None,
            last: None,
            compiles: 0,
            steps: 0,
        })
    }

    /// [`TrainStep::new`] with a configured optimizer value
    /// (`SGD::new(0.1).with_momentum(0.9).with_wd(1e-4)`).
    pub fn with_optimizer(
        net: &'a dyn HybridBlock,
        loss: &'a dyn Loss,
        optimizer: impl Optimizer + 'static,
        options: &TrainStepOptions,
    ) -> Result<TrainStep<'a>> {
        let opt: Box<dyn Optimizer> = Box::new(optimizer);
        TrainStep::new(net, loss, opt, Hyper::new(), options)
    }

    /// One training step on a batch: `data` (batch on axis 0) and `label`. Returns the
    /// per-sample loss (what `loss.forward(&net.forward(data), label)` returns).
    ///
    /// The first step with a signature (data and label shapes and dtypes) traces and
    /// compiles it; later steps run the compiled plan once. Parameters whose shapes are
    /// still unknown (deferred initialization) are initialized first by one forward pass in
    /// predict mode.
    ///
    /// Errors (changing nothing) when the batch is empty, the arrays live on different
    /// devices, the network or loss rejects the shapes (their own error), a parameter takes
    /// a gradient that the loss does not reach or has grad_req `add`, no parameter takes a
    /// gradient, or a parameter's shape or dtype changed since the step was compiled.
    pub fn step(&mut self, data: &NDArray, label: &NDArray) -> Result<NDArray> {
        let op = "TrainStep::step";
        let ctx = data.context();
        if label.context() != ctx {
            return Err(Error::invalid(
                op,
                format!(
                    "data and label live on different devices ({ctx} and {})",
                    label.context()
                ),
            ));
        }
        let batch = match data.shape().dims().first() {
            Some(&b) if b > 0 => b,
            _ => {
                return Err(Error::shape(
                    op,
                    format!(
                        "data of shape {} has no batch: a step needs a batch axis (axis 0) \
                         with at least one sample",
                        data.shape()
                    ),
                ))
            }
        };
        self.ensure_initialized(data)?;
        let fingerprint = self.fingerprint()?;
        if self.fingerprint.as_ref() != Some(&fingerprint) {
            // Hyperparameters baked into the graphs changed: compile again.
            self.plans.clear();
            self.fingerprint = Some(fingerprint);
        }
        let key = (data.ty(), label.ty());
        if !self.plans.contains_key(&key) {
            let plan = self.compile(&key.0, &key.1, ctx, batch)?;
            self.compiles += 1;
            self.plans.insert(key.clone(), plan);
        }
        let plan = self
            .plans
            .get(&key)
            .ok_or_else(|| Error::Graph("TrainStep: the compiled plan disappeared".into()))?;
        for (i, ty) in &plan.param_types {
            let got = self.params[*i].data()?.ty();
            if got != *ty {
                return Err(Error::shape(
                    op,
                    format!(
                        "parameter {} is {got}, but the step was compiled for {ty}; a \
                         parameter that changes shape or dtype needs a new TrainStep (its \
                         optimizer state no longer fits it)",
                        self.params[*i].name()
                    ),
                ));
            }
        }

        // The optimizer's bookkeeping, as Trainer::step does it: count, then ask the rate.
        let core = self.optimizer.core_mut();
        core.rescale_grad = self.scale / batch as f64;
        for &i in &plan.trained {
            core.set_lr_mult(i, self.params[i].lr_mult());
            core.set_wd_mult(i, self.params[i].wd_mult());
            core.count_update(i);
        }
        let lr = Tensor::scalar(core.current_learning_rate());
        let count = Tensor::scalar(core.num_update() as f64);

        let mut arrays: Vec<NDArray> = Vec::with_capacity(plan.feeds.len());
        for feed in &plan.feeds {
            match *feed {
                Feed::Data => arrays.push(data.clone()),
                Feed::Label => arrays.push(label.clone()),
                Feed::Param(i) => arrays.push(self.params[i].data()?),
                Feed::State(..) | Feed::Lr | Feed::Count => {}
            }
        }
        let seeds: Vec<u64> = (0..plan.seed_slots)
            .map(|_| crate::random::next_seed())
            .collect();
        let outputs = {
            let locked = Locked::new(&arrays)?;
            let array_views = locked.views();
            let mut next = array_views.into_iter();
            let mut views: Vec<TensorView<'_>> = Vec::with_capacity(plan.feeds.len());
            for feed in &plan.feeds {
                let view = match *feed {
                    Feed::Data | Feed::Label | Feed::Param(_) => next.next(),
                    Feed::State(i, j) => {
                        self.states.get(&i).and_then(|s| s.get(j)).map(Tensor::view)
                    }
                    Feed::Lr => Some(lr.view()),
                    Feed::Count => Some(count.view()),
                };
                views.push(view.ok_or_else(|| {
                    Error::Graph("TrainStep: a binding of the compiled step has no value".into())
                })?);
            }
            plan.exec.run(&views, &seeds)?
        };

        let mut loss = None;
        for (out, value) in plan.outputs.iter().zip(outputs) {
            match *out {
                Out::Loss => loss = Some(value),
                Out::Param(i) => store(&self.params[i], value)?,
                Out::State(i, j) => {
                    if let Some(slot) = self.states.get_mut(&i).and_then(|s| s.get_mut(j)) {
                        *slot = value;
                    }
                }
            }
        }
        self.steps += 1;
        self.last = Some(key);
        let loss =
            loss.ok_or_else(|| Error::Graph("TrainStep: the step returned no loss".into()))?;
        Ok(NDArray::from_tensor(loss, ctx))
    }

    /// Runs one forward pass in predict mode when some parameter is still waiting for its
    /// shape (deferred initialization), as the first eager forward would initialize it.
    fn ensure_initialized(&self, data: &NDArray) -> Result<()> {
        if self.params.iter().all(Parameter::is_initialized) {
            return Ok(());
        }
        autograd::pause(|| autograd::predict_mode(|| self.net.hybrid_forward_many(&[data])))?;
        match self.params.iter().find(|p| !p.is_initialized()) {
            Some(p) => Err(Error::invalid(
                "TrainStep::step",
                format!(
                    "parameter {} is not initialized after a forward pass (its shape is {}): \
                     call initialize() on the network first",
                    p.name(),
                    p.shape()
                ),
            )),
            None => Ok(()),
        }
    }

    /// The settings a compiled plan depends on, read now.
    fn fingerprint(&self) -> Result<Fingerprint> {
        let core = self.optimizer.core();
        Ok(Fingerprint {
            params: self
                .params
                .iter()
                .map(|p| (p.grad_req(), p.lr_mult(), p.wd_mult()))
                .collect(),
            rule: Rule::of(self.optimizer.as_ref())?,
            wd: core.wd,
            clip: core.clip_gradient,
        })
    }

    /// Traces, differentiates, appends the update, optimizes and compiles one signature.
    fn compile(
        &mut self,
        data_ty: &TensorType,
        label_ty: &TensorType,
        ctx: Context,
        batch: usize,
    ) -> Result<Plan> {
        let op = "TrainStep";
        let (net, loss_fn) = (self.net, self.loss);
        let traced = autograd::train_mode(|| {
            trace::trace(
                &[data_ty.clone(), label_ty.clone()],
                ctx,
                &self.dict,
                |xs| {
                    let pred = net.hybrid_forward_many(&[&xs[0]])?;
                    let [pred] = pred.as_slice() else {
                        return Err(Error::invalid(
                            op,
                            format!(
                                "{}: the network returned {} outputs; a training step feeds \
                                 exactly one prediction to the loss",
                                net.prefix(),
                                pred.len()
                            ),
                        ));
                    };
                    Ok(vec![loss_fn.loss(pred, &xs[1], None)?])
                },
            )
        })?;
        let graph = &traced.graph;
        let index_of: HashMap<String, usize> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name(), i))
            .collect();
        let used: Vec<usize> = graph
            .params()
            .iter()
            .map(|(name, _)| {
                index_of.get(*name).copied().ok_or_else(|| {
                    Error::Graph(format!(
                        "TrainStep: the trace binds {name:?}, which is not a parameter of {}",
                        net.prefix()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let state_targets: Vec<usize> = traced
            .state_updates
            .iter()
            .filter_map(|(name, _)| index_of.get(name).copied())
            .collect();
        let mut trained = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            match p.grad_req() {
                GradReq::Null => continue,
                GradReq::Add => {
                    return Err(Error::invalid(
                        op,
                        format!(
                            "parameter {} has grad_req add: a compiled step computes each \
                             gradient afresh and cannot accumulate gradients over several \
                             batches (use grad_req write, or train eagerly)",
                            p.name()
                        ),
                    ))
                }
                GradReq::Write => {}
            }
            if !used.contains(&i) {
                return Err(Error::invalid(
                    op,
                    format!(
                        "parameter {} takes a gradient (grad_req write), but neither the \
                         forward of {} nor the loss uses it, so no gradient reaches it; set \
                         its grad_req to null to keep it fixed",
                        p.name(),
                        net.prefix()
                    ),
                ));
            }
            if !p.dtype().is_float() {
                return Err(Error::dtype(
                    op,
                    format!(
                        "parameter {} is {}: only floating-point parameters can be trained",
                        p.name(),
                        p.dtype()
                    ),
                ));
            }
            if state_targets.contains(&i) {
                return Err(Error::invalid(
                    op,
                    format!(
                        "parameter {} is both trained and overwritten by the forward (a \
                         running statistic); set its grad_req to null",
                        p.name()
                    ),
                ));
            }
            trained.push(i);
        }
        if trained.is_empty() {
            return Err(Error::invalid(
                op,
                format!(
                    "no parameter of {} takes a gradient (every grad_req is null): there is \
                     nothing to train",
                    net.prefix()
                ),
            ));
        }
        let wrt: Vec<String> = trained.iter().map(|&i| self.params[i].name()).collect();
        let wrt_refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let heads: Vec<bool> = (0..graph.outputs().len())
            .map(|j| j < traced.num_user_outputs)
            .collect();
        let d = differentiate_outputs(graph, &wrt_refs, &heads)?;

        // The joined graph: forward, then backward reading the forward's values.
        let mut g = Graph::new();
        let fwd = copy_nodes(&mut g, &d.forward, |g, kind, ty| match kind {
            NodeKind::Input { name } => g.add_input(name.clone(), ty.clone()),
            NodeKind::Param { name } => g.add_param(name.clone(), ty.clone()),
            _ => Err(Error::Graph("TrainStep: not a binding".into())),
        })?;
        let mapped = |id: &NodeId| {
            fwd.get(id)
                .copied()
                .ok_or_else(|| Error::Graph("TrainStep: a forward value was not copied".into()))
        };
        let fwd_outputs: Vec<NodeId> = d
            .forward
            .outputs()
            .iter()
            .map(mapped)
            .collect::<Result<_>>()?;
        let loss_node = fwd_outputs[0];
        let loss_ty = g.ty(loss_node)?.clone();
        let ones = g.add_op(
            Op::Full {
                shape: loss_ty.shape.clone(),
                dtype: loss_ty.dtype,
                value: 1.0,
            },
            &[],
        )?;
        let bwd = copy_nodes(&mut g, &d.backward, |_, kind, _| {
            let name = kind.name().unwrap_or("");
            if let Some(i) = name.strip_prefix("saved:") {
                i.parse::<usize>()
                    .ok()
                    .and_then(|i| fwd_outputs.get(d.num_outputs + i).copied())
                    .ok_or_else(|| {
                        Error::Graph(format!("TrainStep: no forward value for {name:?}"))
                    })
            } else if name.starts_with("head:") {
                Ok(ones)
            } else {
                Err(Error::Graph(format!(
                    "TrainStep: unexpected backward input {name:?}"
                )))
            }
        })?;
        let grads: Vec<NodeId> = d
            .backward
            .outputs()
            .iter()
            .map(|id| {
                bwd.get(id)
                    .copied()
                    .ok_or_else(|| Error::Graph("TrainStep: a gradient was not copied".into()))
            })
            .collect::<Result<_>>()?;

        // The update.
        let rule = Rule::of(self.optimizer.as_ref())?;
        let core = self.optimizer.core();
        let rescale = self.scale / batch as f64;
        let clip = core.clip_gradient;
        let lr = g.add_input(LR_INPUT, TensorType::new([], DType::F64))?;
        let count = match rule {
            Rule::Adam { .. } => Some(g.add_input(COUNT_INPUT, TensorType::new([], DType::F64))?),
            Rule::Sgd { .. } => None,
        };
        let mut feeds_by_name: HashMap<String, Feed> = HashMap::new();
        feeds_by_name.insert(LR_INPUT.into(), Feed::Lr);
        feeds_by_name.insert(COUNT_INPUT.into(), Feed::Count);
        let mut outputs = vec![loss_node];
        let mut out_kinds = vec![Out::Loss];
        for (k, &i) in trained.iter().enumerate() {
            let p = &self.params[i];
            let name = p.name();
            let w = g
                .input_id(&name)
                .ok_or_else(|| Error::Graph(format!("TrainStep: {name:?} is not bound")))?;
            let w_ty = g.ty(w)?.clone();
            let n_state = rule.state_len();
            let state = self
                .states
                .entry(i)
                .or_insert_with(|| vec![Tensor::zeros(w_ty.shape.clone(), w_ty.dtype); n_state]);
            if state.len() != n_state || state.iter().any(|s| s.ty() != w_ty) {
                *state = vec![Tensor::zeros(w_ty.shape.clone(), w_ty.dtype); n_state];
            }
            let mut state_nodes = Vec::with_capacity(n_state);
            for j in 0..n_state {
                let state_name = format!("train_step:state:{name}:{j}");
                state_nodes.push(g.add_input(state_name.clone(), w_ty.clone())?);
                feeds_by_name.insert(state_name, Feed::State(i, j));
            }
            let mut u = Update {
                g: &mut g,
                dtype: w_ty.dtype,
            };
            let lr_p = u.lr_times(lr, p.lr_mult())?;
            let wd = core.wd * p.wd_mult();
            let (new_w, new_state) = match rule {
                Rule::Sgd { momentum } => {
                    let grad = u.rescale_clip(grads[k], rescale, None, clip)?;
                    u.sgd(w, grad, &state_nodes, lr_p, wd, momentum)?
                }
                Rule::Adam {
                    beta1,
                    beta2,
                    epsilon,
                } => {
                    let count = count.ok_or_else(|| {
                        Error::Graph("TrainStep: Adam without a count input".into())
                    })?;
                    let wd_term = if wd != 0.0 { Some((w, wd)) } else { None };
                    let grad = u.rescale_clip(grads[k], rescale, wd_term, clip)?;
                    u.adam(w, grad, &state_nodes, lr_p, count, beta1, beta2, epsilon)?
                }
            };
            outputs.push(new_w);
            out_kinds.push(Out::Param(i));
            for (j, s) in new_state.into_iter().enumerate() {
                outputs.push(s);
                out_kinds.push(Out::State(i, j));
            }
        }
        // Running statistics (BatchNorm's state updates) are written like a hybridized call's.
        for (name, index) in &traced.state_updates {
            let i = index_of.get(name).copied().ok_or_else(|| {
                Error::Graph(format!(
                    "TrainStep: state update of unknown parameter {name:?}"
                ))
            })?;
            let node = fwd_outputs.get(*index).copied().ok_or_else(|| {
                Error::Graph(format!("TrainStep: state update of {name:?} has no output"))
            })?;
            outputs.push(node);
            out_kinds.push(Out::Param(i));
        }
        g.set_outputs(outputs)?;

        let (optimized, pass_stats) = optimize(g.clone())?;
        let exec = Executor::new(&optimized, traced.seed_slots, self.options.backend)?;
        let data_name = &traced.input_names[0];
        let label_name = &traced.input_names[1];
        let feeds = exec
            .bindings()
            .map(|(name, _)| {
                if name == data_name {
                    Ok(Feed::Data)
                } else if name == label_name {
                    Ok(Feed::Label)
                } else if let Some(f) = feeds_by_name.get(name) {
                    Ok(*f)
                } else if let Some(&i) = index_of.get(name) {
                    Ok(Feed::Param(i))
                } else {
                    Err(Error::Graph(format!(
                        "TrainStep: the compiled step binds {name:?}, which is nothing it feeds"
                    )))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let param_types = used
            .iter()
            .map(|&i| Ok((i, self.params[i].data()?.ty())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan {
            exec,
            graph: g,
            optimized,
            pass_stats,
            feeds,
            outputs: out_kinds,
            seed_slots: traced.seed_slots,
            trained,
            param_types,
        })
    }

    /// The current learning rate (the schedule's value when the optimizer has one).
    pub fn learning_rate(&self) -> f64 {
        self.optimizer.learning_rate()
    }

    /// Sets the learning rate for the following steps. It is an input of the compiled step:
    /// nothing is compiled again. Errors when the optimizer has an lr_scheduler, as gluon.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        self.optimizer.set_learning_rate(lr)
    }

    /// The optimizer (its hyperparameters and update counts).
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The optimizer, mutably. A change of the learning rate or schedule takes effect at the
    /// next step without compiling; a change of anything compiled into the step (weight
    /// decay, clipping, momentum, betas) compiles it again at the next step.
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// Number of completed steps.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Number of compilations so far (one per signature, plus one per change of a compiled
    /// hyperparameter).
    pub fn compiles(&self) -> usize {
        self.compiles
    }

    /// The backend that runs the compiled steps.
    pub fn backend(&self) -> BackendChoice {
        self.options.backend
    }

    /// The optimizer state of parameter `name` (SGD: `[momentum]`, or nothing without
    /// momentum; Adam: `[m, v]`), copied as arrays; `None` before its first compiled step
    /// or for a parameter that is not trained.
    pub fn state(&self, name: &str) -> Option<Vec<NDArray>> {
        let i = self.params.iter().position(|p| p.name() == name)?;
        let ctx = self
            .params
            .get(i)
            .and_then(|p| p.data().ok())
            .map_or_else(Context::cpu, |d| d.context());
        self.states.get(&i).map(|s| {
            s.iter()
                .map(|t| NDArray::from_tensor(t.clone(), ctx))
                .collect()
        })
    }

    fn last_plan(&self) -> Option<&Plan> {
        self.plans.get(self.last.as_ref()?)
    }

    /// The joined forward + backward + update graph of the latest step's signature, before
    /// the pass pipeline.
    pub fn graph(&self) -> Option<&Graph> {
        self.last_plan().map(|p| &p.graph)
    }

    /// The graph the latest step ran: [`TrainStep::graph`] after the pass pipeline.
    pub fn optimized_graph(&self) -> Option<&Graph> {
        self.last_plan().map(|p| &p.optimized)
    }

    /// What each pass did to the latest step's graph.
    pub fn pass_stats(&self) -> Option<&StatsTable> {
        self.last_plan().map(|p| &p.pass_stats)
    }

    /// Number of kernels (op nodes) the latest step's plan runs per step.
    pub fn num_ops(&self) -> Option<usize> {
        self.last_plan().map(|p| p.exec.num_ops())
    }
}

/// Copies every node of `src` into `dst` in topological order; `bind` gives the node that
/// stands for each input or parameter of `src`. Returns the map from `src` ids to `dst` ids.
fn copy_nodes(
    dst: &mut Graph,
    src: &Graph,
    mut bind: impl FnMut(&mut Graph, &NodeKind, &TensorType) -> Result<NodeId>,
) -> Result<HashMap<NodeId, NodeId>> {
    let mut map = HashMap::new();
    for id in src.topo_order() {
        let node = src.node(id)?;
        let new = match &node.kind {
            NodeKind::Input { .. } | NodeKind::Param { .. } => bind(dst, &node.kind, &node.ty)?,
            NodeKind::Const(t) => dst.add_const(t.clone())?,
            NodeKind::Op(op) => {
                let inputs = src
                    .inputs_of(id)?
                    .iter()
                    .map(|i| {
                        map.get(i).copied().ok_or_else(|| {
                            Error::Graph(format!(
                                "TrainStep: {} reads a value not copied before it",
                                op.name()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                dst.add_op(op.clone(), &inputs)?
            }
        };
        map.insert(id, new);
    }
    Ok(map)
}

/// Appends one parameter's update to the joined graph. Arrays are in the parameter's
/// `dtype`; learning-rate coefficients are computed from the `f64` inputs in `f64` and
/// rounded once, as the eager optimizers compute them in `f64` and round when they scale.
struct Update<'g> {
    g: &'g mut Graph,
    dtype: DType,
}

impl Update<'_> {
    fn op(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        self.g.add_op(op, inputs)
    }

    /// `x ∘ s` (or `s ∘ x` when `reverse`).
    fn scalar(&mut self, x: NodeId, f: BinaryOp, s: f64, reverse: bool) -> Result<NodeId> {
        self.op(
            Op::Scalar {
                f,
                scalar: s,
                reverse,
            },
            &[x],
        )
    }

    fn bin(&mut self, f: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Binary { f }, &[a, b])
    }

    /// An `f64` scalar coefficient rounded to the parameter's dtype.
    fn round(&mut self, x: NodeId) -> Result<NodeId> {
        if self.dtype == DType::F64 {
            return Ok(x);
        }
        self.op(Op::Cast { dtype: self.dtype }, &[x])
    }

    /// The parameter's learning rate in `f64`: `lr · lr_mult`.
    fn lr_times(&mut self, lr: NodeId, lr_mult: f64) -> Result<NodeId> {
        if lr_mult == 1.0 {
            Ok(lr)
        } else {
            self.scalar(lr, BinaryOp::Mul, lr_mult, false)
        }
    }

    /// `clip(rescale · grad [+ wd · w])`, clipping only when `clip` is set (Adam adds the
    /// weight decay before clipping, SGD after).
    fn rescale_clip(
        &mut self,
        grad: NodeId,
        rescale: f64,
        decay: Option<(NodeId, f64)>,
        clip: Option<f64>,
    ) -> Result<NodeId> {
        let mut g = self.scalar(grad, BinaryOp::Mul, rescale, false)?;
        if let Some((w, wd)) = decay {
            let wd_w = self.scalar(w, BinaryOp::Mul, wd, false)?;
            g = self.bin(BinaryOp::Add, g, wd_w)?;
        }
        match clip {
            Some(c) => self.op(Op::Clip { min: -c, max: c }, &[g]),
            None => Ok(g),
        }
    }

    /// SGD (`sgd_update` / `sgd_mom_update`): returns the new weight and state.
    fn sgd(
        &mut self,
        w: NodeId,
        grad: NodeId,
        state: &[NodeId],
        lr: NodeId,
        wd: f64,
        momentum: f64,
    ) -> Result<(NodeId, Vec<NodeId>)> {
        let lr_d = self.round(lr)?;
        let lr_g = self.bin(BinaryOp::Mul, grad, lr_d)?;
        match state {
            [mom] => {
                // mom ← momentum·mom − (lr·wd)·w − lr·g; w ← w + mom
                let mut new_mom = self.scalar(*mom, BinaryOp::Mul, momentum, false)?;
                if wd != 0.0 {
                    let lr_wd = self.scalar(lr, BinaryOp::Mul, wd, false)?;
                    let lr_wd = self.round(lr_wd)?;
                    let decay = self.bin(BinaryOp::Mul, w, lr_wd)?;
                    new_mom = self.bin(BinaryOp::Sub, new_mom, decay)?;
                }
                let new_mom = self.bin(BinaryOp::Sub, new_mom, lr_g)?;
                let new_w = self.bin(BinaryOp::Add, w, new_mom)?;
                Ok((new_w, vec![new_mom]))
            }
            _ => {
                // w ← (1 − lr·wd)·w − lr·g
                let kept = if wd != 0.0 {
                    let lr_wd = self.scalar(lr, BinaryOp::Mul, wd, false)?;
                    let keep = self.scalar(lr_wd, BinaryOp::Sub, 1.0, true)?;
                    let keep = self.round(keep)?;
                    self.bin(BinaryOp::Mul, w, keep)?
                } else {
                    w
                };
                Ok((self.bin(BinaryOp::Sub, kept, lr_g)?, Vec::new()))
            }
        }
    }

    /// Adam (`adam_update`, bias correction folded into the rate): returns the new weight
    /// and `[m, v]`.
    #[allow(clippy::too_many_arguments)]
    fn adam(
        &mut self,
        w: NodeId,
        grad: NodeId,
        state: &[NodeId],
        lr: NodeId,
        count: NodeId,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    ) -> Result<(NodeId, Vec<NodeId>)> {
        let [m, v] = state else {
            return Err(Error::Graph(format!(
                "TrainStep: Adam needs 2 state arrays, got {}",
                state.len()
            )));
        };
        // lr_t = lr · sqrt(1 − beta2^t) / (1 − beta1^t), in f64.
        let b2t = self.scalar(count, BinaryOp::Pow, beta2, true)?;
        let c2 = self.scalar(b2t, BinaryOp::Sub, 1.0, true)?;
        let c2 = self.op(Op::Unary { f: UnaryOp::Sqrt }, &[c2])?;
        let b1t = self.scalar(count, BinaryOp::Pow, beta1, true)?;
        let c1 = self.scalar(b1t, BinaryOp::Sub, 1.0, true)?;
        let lr_t = self.bin(BinaryOp::Mul, lr, c2)?;
        let lr_t = self.bin(BinaryOp::Div, lr_t, c1)?;
        let lr_t = self.round(lr_t)?;
        // m ← beta1·m + (1 − beta1)·g; v ← beta2·v + (1 − beta2)·g²
        let m_old = self.scalar(*m, BinaryOp::Mul, beta1, false)?;
        let g1 = self.scalar(grad, BinaryOp::Mul, 1.0 - beta1, false)?;
        let new_m = self.bin(BinaryOp::Add, m_old, g1)?;
        let v_old = self.scalar(*v, BinaryOp::Mul, beta2, false)?;
        let g2 = self.op(Op::Unary { f: UnaryOp::Square }, &[grad])?;
        let g2 = self.scalar(g2, BinaryOp::Mul, 1.0 - beta2, false)?;
        let new_v = self.bin(BinaryOp::Add, v_old, g2)?;
        // w ← w − lr_t · m / (sqrt(v) + epsilon)
        let root = self.op(Op::Unary { f: UnaryOp::Sqrt }, &[new_v])?;
        let denom = self.scalar(root, BinaryOp::Add, epsilon, false)?;
        let ratio = self.bin(BinaryOp::Div, new_m, denom)?;
        let step = self.bin(BinaryOp::Mul, ratio, lr_t)?;
        let new_w = self.bin(BinaryOp::Sub, w, step)?;
        Ok((new_w, vec![new_m, new_v]))
    }
}

/// Writes `value` into `param`: by handing it the new storage when the parameter's array
/// owns its whole storage (no copy; every handle shares that storage), else by copying.
fn store(param: &Parameter, value: Tensor) -> Result<()> {
    let data = param.data()?;
    if let Data::Concrete(storage) = &data.inner.data {
        if data.inner.offset == 0 && data.inner.shape == *value.shape() {
            let mut guard = write_storage(storage);
            if guard.len() == value.shape().numel() && guard.dtype() == value.dtype() {
                *guard = value.into_parts().1;
                return Ok(());
            }
        }
    }
    autograd::pause(|| data.assign(&NDArray::from_tensor(value, data.context())))
}
