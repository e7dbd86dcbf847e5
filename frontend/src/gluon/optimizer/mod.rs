//! Optimizers (`mxnet.optimizer`): the update rules a [`Trainer`](crate::gluon::trainer::Trainer)
//! applies to each parameter, and learning-rate schedules ([`lr_scheduler`]).
//!
//! Every optimizer shares MXNet's common hyperparameters, held in an [`OptimizerCore`]:
//! `learning_rate`, `wd` (weight decay), `rescale_grad`, `clip_gradient` (off when `None`),
//! an optional `lr_scheduler`, and per-parameter `lr_mult`/`wd_mult`. Each optimizer's doc
//! gives its update formula and where weight decay and clipping enter it, which follows the
//! corresponding MXNet operator (`sgd_mom_update`, `adam_update`, ...).
//!
//! Updates are NDArray ops written into the weight's storage, so the parameter (and every
//! handle on it) sees the new value.
//!
//! ```
//! use kiln_frontend::gluon::optimizer::{Optimizer, SGD};
//! use kiln_frontend::NDArray;
//! let w = NDArray::from_slice(&[1.0f64, 2.0]);
//! let g = NDArray::from_slice(&[0.5f64, -1.0]);
//! let mut sgd = SGD::new(0.1).with_momentum(0.9);
//! let mut state = sgd.create_state(0, &w)?;
//! sgd.update(0, &w, &g, &mut state)?;
//! // mom = 0.9·0 − 0.1·g; w += mom
//! assert_eq!(w.to_vec::<f64>()?, vec![0.95, 2.1]);
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

mod adadelta;
mod adagrad;
mod adam;
pub mod lr_scheduler;
mod nag;
mod rmsprop;
mod sgd;

pub use adadelta::AdaDelta;
pub use adagrad::Adagrad;
pub use adam::Adam;
pub use lr_scheduler::{
    CosineScheduler, FactorScheduler, LrScheduler, MultiFactorScheduler, PolyScheduler,
};
pub use nag::NAG;
pub use rmsprop::RMSProp;
pub use sgd::SGD;

use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};
use std::collections::HashMap;
use std::fmt::Debug;

/// The names [`create`] accepts.
pub const OPTIMIZER_NAMES: &[&str] = &["sgd", "nag", "adagrad", "rmsprop", "adadelta", "adam"];

/// The hyperparameters every optimizer accepts by name.
pub const COMMON_HYPERPARAMETERS: &[&str] = &[
    "learning_rate",
    "wd",
    "rescale_grad",
    "clip_gradient",
    "begin_num_update",
];

/// An optimizer's per-parameter state (momentum, running averages...): zero or more arrays of
/// the weight's shape, in an order each optimizer documents.
#[derive(Clone, Debug, Default)]
pub struct State {
    arrays: Vec<NDArray>,
}

impl State {
    /// A state made of `arrays`.
    pub fn new(arrays: Vec<NDArray>) -> Self {
        State { arrays }
    }

    /// The state arrays (empty for stateless updates such as plain SGD).
    pub fn arrays(&self) -> &[NDArray] {
        &self.arrays
    }

    /// True when the state holds no array.
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// `n` zero arrays of `weight`'s shape, dtype and device.
    pub(crate) fn zeros_like(weight: &NDArray, n: usize) -> Result<Self> {
        let arrays = (0..n)
            .map(|_| crate::nd::zeros_like(weight))
            .collect::<Result<Vec<_>>>()?;
        Ok(State { arrays })
    }
}

/// The hyperparameters and update counters shared by every optimizer (the fields of MXNet's
/// `Optimizer` base class).
#[derive(Debug)]
pub struct OptimizerCore {
    /// The base learning rate (ignored while an `lr_scheduler` is set).
    pub learning_rate: f64,
    /// Weight decay: the update sees `grad + wd·weight` (where exactly is per optimizer).
    pub wd: f64,
    /// Factor applied to every gradient first (the `Trainer` sets it to `1/batch_size`).
    pub rescale_grad: f64,
    /// Clips the rescaled gradient to `[-c, c]`; `None` disables clipping.
    pub clip_gradient: Option<f64>,
    /// Learning-rate schedule, called with the number of updates so far.
    pub lr_scheduler: Option<Box<dyn LrScheduler>>,
    /// The update count each parameter starts from (MXNet `begin_num_update`).
    pub begin_num_update: usize,
    lr_mult: HashMap<usize, f64>,
    wd_mult: HashMap<usize, f64>,
    index_update_count: HashMap<usize, usize>,
    num_update: usize,
}

impl OptimizerCore {
    /// Defaults (MXNet's): no weight decay, `rescale_grad` 1, no clipping, no schedule.
    pub fn new(learning_rate: f64) -> Self {
        OptimizerCore {
            learning_rate,
            wd: 0.0,
            rescale_grad: 1.0,
            clip_gradient: None,
            lr_scheduler: None,
            begin_num_update: 0,
            lr_mult: HashMap::new(),
            wd_mult: HashMap::new(),
            index_update_count: HashMap::new(),
            num_update: 0,
        }
    }

    /// The largest update count over all parameters (what the scheduler is called with).
    pub fn num_update(&self) -> usize {
        self.num_update.max(self.begin_num_update)
    }

    /// How many updates parameter `index` has had.
    pub fn update_count(&self, index: usize) -> usize {
        self.index_update_count
            .get(&index)
            .copied()
            .unwrap_or(self.begin_num_update)
    }

    /// Every parameter's update count so far, by index (ascending): what a checkpoint must
    /// keep so that resumed training counts (and schedules) as uninterrupted training would.
    pub fn update_counts(&self) -> Vec<(usize, usize)> {
        let mut counts: Vec<(usize, usize)> = self
            .index_update_count
            .iter()
            .map(|(&i, &c)| (i, c))
            .collect();
        counts.sort_unstable();
        counts
    }

    /// Restores the counters saved from [`OptimizerCore::num_update`] (its raw value, see
    /// [`OptimizerCore::raw_num_update`]) and [`OptimizerCore::update_counts`], replacing the
    /// current ones.
    pub fn restore_update_counts(
        &mut self,
        num_update: usize,
        counts: impl IntoIterator<Item = (usize, usize)>,
    ) {
        self.index_update_count = counts.into_iter().collect();
        self.num_update = num_update;
    }

    /// The largest update count reached so far, without `begin_num_update` folded in.
    pub fn raw_num_update(&self) -> usize {
        self.num_update
    }

    /// Counts one more update of parameter `index` and returns its new count `t` (1 on the
    /// first update; MXNet `_update_count`).
    pub fn count_update(&mut self, index: usize) -> usize {
        let t = self.update_count(index) + 1;
        self.index_update_count.insert(index, t);
        self.num_update = self.num_update.max(t);
        t
    }

    /// The current learning rate: the scheduler's value at [`OptimizerCore::num_update`],
    /// or `learning_rate` when there is no scheduler.
    pub fn current_learning_rate(&self) -> f64 {
        match &self.lr_scheduler {
            Some(s) => s.lr(self.num_update()),
            None => self.learning_rate,
        }
    }

    /// The learning rate for parameter `index`: the current rate times its `lr_mult`.
    pub fn lr(&self, index: usize) -> f64 {
        self.current_learning_rate() * self.lr_mult.get(&index).copied().unwrap_or(1.0)
    }

    /// The weight decay for parameter `index`: `wd` times its `wd_mult`.
    pub fn wd(&self, index: usize) -> f64 {
        self.wd * self.wd_mult.get(&index).copied().unwrap_or(1.0)
    }

    /// Sets parameter `index`'s learning-rate multiplier.
    pub fn set_lr_mult(&mut self, index: usize, mult: f64) {
        self.lr_mult.insert(index, mult);
    }

    /// Sets parameter `index`'s weight-decay multiplier.
    pub fn set_wd_mult(&mut self, index: usize, mult: f64) {
        self.wd_mult.insert(index, mult);
    }

    /// `rescale_grad·grad`, clipped to `[-clip_gradient, clip_gradient]` when clipping is on.
    pub fn rescale_and_clip(&self, grad: &NDArray) -> Result<NDArray> {
        self.clip(&grad.mul_scalar(self.rescale_grad)?)
    }

    /// `g` clipped to `[-clip_gradient, clip_gradient]` when clipping is on.
    pub fn clip(&self, g: &NDArray) -> Result<NDArray> {
        match self.clip_gradient {
            Some(c) => g.clip(-c, c),
            None => Ok(g.clone()),
        }
    }

    /// Errors on hyperparameters no update can use (non-finite rates, negative clipping).
    pub fn check(&self, op: &str) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(Error::invalid(
                op,
                format!("{what} must be a finite number, got {v}"),
            ))
        };
        if !self.learning_rate.is_finite() {
            return bad("learning_rate", self.learning_rate);
        }
        if !self.wd.is_finite() {
            return bad("wd", self.wd);
        }
        if !self.rescale_grad.is_finite() {
            return bad("rescale_grad", self.rescale_grad);
        }
        if let Some(c) = self.clip_gradient {
            if !(c.is_finite() && c >= 0.0) {
                return Err(Error::invalid(
                    op,
                    format!("clip_gradient must be a finite number >= 0 (or None), got {c}"),
                ));
            }
        }
        Ok(())
    }
}

/// An update rule (MXNet's `Optimizer`): makes a parameter's state, then updates the weight
/// in place from its gradient.
///
/// `index` identifies the parameter (the `Trainer` uses its position): per-parameter
/// multipliers and update counts are kept by index.
pub trait Optimizer: Debug + Send {
    /// The registry name (`"sgd"`).
    fn name(&self) -> &'static str;

    /// The shared hyperparameters.
    fn core(&self) -> &OptimizerCore;

    /// The shared hyperparameters, mutably.
    fn core_mut(&mut self) -> &mut OptimizerCore;

    /// The state parameter `index` starts with (zeros of `weight`'s shape, or nothing).
    fn create_state(&self, index: usize, weight: &NDArray) -> Result<State>;

    /// Updates `weight` in place from `grad` (same shape and dtype), updating `state`.
    fn update(
        &mut self,
        index: usize,
        weight: &NDArray,
        grad: &NDArray,
        state: &mut State,
    ) -> Result<()>;

    /// This optimizer's own hyperparameters by name (`momentum`; Adam's `beta1`, `beta2`,
    /// `epsilon`), the names [`create`] takes; the shared ones are in [`Optimizer::core`].
    /// What a compiled training step (`hybrid::TrainStep`) reads to build the same update;
    /// empty for optimizers that do not list theirs.
    fn hyperparameters(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// The current learning rate (the scheduler's value when one is set).
    fn learning_rate(&self) -> f64 {
        self.core().current_learning_rate()
    }

    /// Sets the learning rate. Errors when a scheduler is set (it owns the rate), as MXNet.
    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if self.core().lr_scheduler.is_some() {
            return Err(Error::invalid(
                "set_learning_rate",
                format!(
                    "{}: an lr_scheduler is set, and it determines the learning rate; \
                     set_learning_rate only works without one",
                    self.name()
                ),
            ));
        }
        if !lr.is_finite() {
            return Err(Error::invalid(
                "set_learning_rate",
                format!("the learning rate must be finite, got {lr}"),
            ));
        }
        self.core_mut().learning_rate = lr;
        Ok(())
    }

    /// This optimizer with `learning_rate`.
    fn with_learning_rate(mut self, lr: f64) -> Self
    where
        Self: Sized,
    {
        self.core_mut().learning_rate = lr;
        if let Some(s) = self.core_mut().lr_scheduler.as_mut() {
            s.set_base_lr(lr);
        }
        self
    }

    /// This optimizer with weight decay `wd`.
    fn with_wd(mut self, wd: f64) -> Self
    where
        Self: Sized,
    {
        self.core_mut().wd = wd;
        self
    }

    /// This optimizer with `rescale_grad`.
    fn with_rescale_grad(mut self, rescale_grad: f64) -> Self
    where
        Self: Sized,
    {
        self.core_mut().rescale_grad = rescale_grad;
        self
    }

    /// This optimizer clipping rescaled gradients to `[-clip, clip]`.
    fn with_clip_gradient(mut self, clip: f64) -> Self
    where
        Self: Sized,
    {
        self.core_mut().clip_gradient = Some(clip);
        self
    }

    /// This optimizer following `scheduler`, whose base rate becomes this optimizer's
    /// `learning_rate` (as MXNet does).
    fn with_lr_scheduler(mut self, scheduler: impl LrScheduler + 'static) -> Self
    where
        Self: Sized,
    {
        let mut s: Box<dyn LrScheduler> = Box::new(scheduler);
        s.set_base_lr(self.core().learning_rate);
        self.core_mut().lr_scheduler = Some(s);
        self
    }
}

/// Checks that `grad` matches `weight` and that `state` has `n` arrays of its shape and dtype.
pub(crate) fn check_update(
    op: &str,
    weight: &NDArray,
    grad: &NDArray,
    state: &State,
    n: usize,
) -> Result<()> {
    if grad.shape() != weight.shape() || grad.dtype() != weight.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "gradient is {} {} but the weight is {} {}",
                grad.dtype(),
                grad.shape(),
                weight.dtype(),
                weight.shape()
            ),
        ));
    }
    if state.arrays.len() != n {
        return Err(Error::invalid(
            op,
            format!(
                "the state holds {} arrays, this update needs {n} (create it with create_state \
                 after setting the hyperparameters)",
                state.arrays.len()
            ),
        ));
    }
    if let Some(s) = state
        .arrays
        .iter()
        .find(|s| s.shape() != weight.shape() || s.dtype() != weight.dtype())
    {
        return Err(Error::shape(
            op,
            format!(
                "a state array is {} {} but the weight is {} {}",
                s.dtype(),
                s.shape(),
                weight.dtype(),
                weight.shape()
            ),
        ));
    }
    Ok(())
}

/// Errors unless `ok`, naming the hyperparameter, its value and the range it must lie in.
/// The checks and bookkeeping that open a (Nesterov) momentum update: validates the call and
/// the momentum, counts the update, and returns the parameter's `lr`, `wd` and the rescaled,
/// clipped gradient.
pub(crate) fn begin_momentum_update(
    core: &mut OptimizerCore,
    op: &str,
    momentum: f64,
    index: usize,
    weight: &NDArray,
    grad: &NDArray,
    state: &State,
) -> Result<(f64, f64, NDArray)> {
    check_update(op, weight, grad, state, usize::from(momentum != 0.0))?;
    core.check(op)?;
    require(
        op,
        "momentum",
        momentum,
        momentum.is_finite(),
        "a finite number",
    )?;
    core.count_update(index);
    let (lr, wd) = (core.lr(index), core.wd(index));
    Ok((lr, wd, core.rescale_and_clip(grad)?))
}

pub(crate) fn require(op: &str, name: &str, value: f64, ok: bool, range: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} must be {range}, got {value}"),
        ))
    }
}

/// The state's arrays as a fixed-size array (errors when the count differs).
pub(crate) fn state_arrays<'a, const N: usize>(
    op: &str,
    state: &'a State,
) -> Result<&'a [NDArray; N]> {
    state.arrays.as_slice().try_into().map_err(|_| {
        Error::invalid(
            op,
            format!(
                "the state holds {} arrays, this update needs {N}",
                state.arrays.len()
            ),
        )
    })
}

/// A hyperparameter value: a number, or a flag given as a `bool`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HyperValue(pub f64);

impl From<f64> for HyperValue {
    fn from(v: f64) -> Self {
        HyperValue(v)
    }
}

impl From<f32> for HyperValue {
    fn from(v: f32) -> Self {
        HyperValue(v as f64)
    }
}

impl From<i32> for HyperValue {
    fn from(v: i32) -> Self {
        HyperValue(v as f64)
    }
}

impl From<bool> for HyperValue {
    fn from(v: bool) -> Self {
        HyperValue(if v { 1.0 } else { 0.0 })
    }
}

/// Hyperparameters by name, for optimizers created by name (gluon's `optimizer_params`
/// dict): `learning_rate`, `wd`, `rescale_grad`, `clip_gradient`, `begin_num_update`, and
/// each optimizer's own (`momentum`, `beta1`, ...). Unknown names are an error at creation.
///
/// ```
/// use kiln_frontend::gluon::optimizer::{create, FactorScheduler, Hyper};
/// let h = Hyper::new().set("learning_rate", 0.1).set("momentum", 0.9);
/// let sgd = create("sgd", h)?;
/// assert_eq!(sgd.learning_rate(), 0.1);
/// // An array of pairs converts too: Trainer::new(&params, "sgd", [("learning_rate", 0.1)]).
/// let adam = create("adam", [("learning_rate", 0.01), ("beta1", 0.8)])?;
/// assert_eq!(adam.name(), "adam");
/// assert!(create("sgd", [("beta1", 0.8)]).is_err()); // sgd has no beta1
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Hyper {
    values: Vec<(String, f64)>,
    lr_scheduler: Option<Box<dyn LrScheduler>>,
}

impl Hyper {
    /// No hyperparameters (every optimizer's defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// These hyperparameters with `name` set to `value` (a later value for a name wins).
    pub fn set(mut self, name: &str, value: impl Into<HyperValue>) -> Self {
        self.values.retain(|(n, _)| n != name);
        self.values.push((name.to_string(), value.into().0));
        self
    }

    /// These hyperparameters with a learning-rate schedule.
    pub fn lr_scheduler(mut self, scheduler: impl LrScheduler + 'static) -> Self {
        self.lr_scheduler = Some(Box::new(scheduler));
        self
    }

    /// The value given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.lr_scheduler.is_none()
    }
}

impl<S: AsRef<str>, V: Into<HyperValue>, const N: usize> From<[(S, V); N]> for Hyper {
    fn from(pairs: [(S, V); N]) -> Self {
        pairs
            .into_iter()
            .fold(Hyper::new(), |h, (k, v)| h.set(k.as_ref(), v))
    }
}

impl<S: AsRef<str>, V: Into<HyperValue>> From<Vec<(S, V)>> for Hyper {
    fn from(pairs: Vec<(S, V)>) -> Self {
        pairs
            .into_iter()
            .fold(Hyper::new(), |h, (k, v)| h.set(k.as_ref(), v))
    }
}

/// Creates an optimizer by (case-insensitive) name, one of [`OPTIMIZER_NAMES`], with
/// `hyper` overriding its defaults (MXNet `optimizer.create`). Errors on an unknown name or a
/// hyperparameter the optimizer does not take, listing the valid ones.
pub fn create(name: &str, hyper: impl Into<Hyper>) -> Result<Box<dyn Optimizer>> {
    let hyper = hyper.into();
    let lower = name.to_ascii_lowercase();
    let (mut opt, own): (Box<dyn Optimizer>, &[&str]) = match lower.as_str() {
        "sgd" => (
            Box::new(SGD::new(0.01).with_momentum(hyper.get("momentum").unwrap_or(0.0))),
            &["momentum"],
        ),
        "nag" => (
            Box::new(NAG::new(0.01).with_momentum(hyper.get("momentum").unwrap_or(0.0))),
            &["momentum"],
        ),
        "adagrad" => {
            let mut o = Adagrad::new(0.01);
            if let Some(e) = hyper.get("eps") {
                o.eps = e;
            }
            (Box::new(o), &["eps"])
        }
        "rmsprop" => {
            let mut o = RMSProp::new(0.001);
            if let Some(v) = hyper.get("gamma1") {
                o.gamma1 = v;
            }
            if let Some(v) = hyper.get("gamma2") {
                o.gamma2 = v;
            }
            if let Some(v) = hyper.get("epsilon") {
                o.epsilon = v;
            }
            if let Some(v) = hyper.get("centered") {
                o.centered = v != 0.0;
            }
            if let Some(v) = hyper.get("clip_weights") {
                o.clip_weights = Some(v);
            }
            (
                Box::new(o),
                &["gamma1", "gamma2", "epsilon", "centered", "clip_weights"],
            )
        }
        "adadelta" => {
            let mut o = AdaDelta::new();
            if let Some(v) = hyper.get("rho") {
                o.rho = v;
            }
            if let Some(v) = hyper.get("epsilon") {
                o.epsilon = v;
            }
            (Box::new(o), &["rho", "epsilon"])
        }
        "adam" => {
            let mut o = Adam::new(0.001);
            if let Some(v) = hyper.get("beta1") {
                o.beta1 = v;
            }
            if let Some(v) = hyper.get("beta2") {
                o.beta2 = v;
            }
            if let Some(v) = hyper.get("epsilon") {
                o.epsilon = v;
            }
            (Box::new(o), &["beta1", "beta2", "epsilon"])
        }
        _ => {
            return Err(Error::invalid(
                "optimizer::create",
                format!(
                    "unknown optimizer {name:?}; valid names: {}",
                    OPTIMIZER_NAMES.join(", ")
                ),
            ))
        }
    };
    if let Some((bad, _)) = hyper
        .values
        .iter()
        .find(|(n, _)| !COMMON_HYPERPARAMETERS.contains(&n.as_str()) && !own.contains(&n.as_str()))
    {
        let mut valid: Vec<&str> = COMMON_HYPERPARAMETERS.to_vec();
        valid.extend_from_slice(own);
        return Err(Error::invalid(
            "optimizer::create",
            format!(
                "{lower} has no hyperparameter {bad:?}; valid: {} (and an lr_scheduler)",
                valid.join(", ")
            ),
        ));
    }
    let core = opt.core_mut();
    if let Some(v) = hyper.get("learning_rate") {
        core.learning_rate = v;
    }
    if let Some(v) = hyper.get("wd") {
        core.wd = v;
    }
    if let Some(v) = hyper.get("rescale_grad") {
        core.rescale_grad = v;
    }
    if let Some(v) = hyper.get("clip_gradient") {
        // MXNet treats a negative clip_gradient as "no clipping".
        core.clip_gradient = (v >= 0.0).then_some(v);
    }
    if let Some(v) = hyper.get("begin_num_update") {
        if !(v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64) {
            return Err(Error::invalid(
                "optimizer::create",
                format!("begin_num_update must be a whole number >= 0, got {v}"),
            ));
        }
        core.begin_num_update = v as usize;
    }
    if let Some(mut s) = hyper.lr_scheduler {
        s.set_base_lr(core.learning_rate);
        core.lr_scheduler = Some(s);
    }
    core.check("optimizer::create")?;
    Ok(opt)
}

/// An optimizer given to a `Trainer`: by name (with hyperparameters) or as a value.
#[derive(Debug)]
pub enum OptimizerSpec {
    /// A registry name for [`create`].
    Name(String),
    /// A configured optimizer.
    Value(Box<dyn Optimizer>),
}

impl From<&str> for OptimizerSpec {
    fn from(name: &str) -> Self {
        OptimizerSpec::Name(name.to_string())
    }
}

impl From<String> for OptimizerSpec {
    fn from(name: String) -> Self {
        OptimizerSpec::Name(name)
    }
}

impl From<Box<dyn Optimizer>> for OptimizerSpec {
    fn from(opt: Box<dyn Optimizer>) -> Self {
        OptimizerSpec::Value(opt)
    }
}

macro_rules! spec_from {
    ($($t:ty),*) => {$(
        impl From<$t> for OptimizerSpec {
            fn from(opt: $t) -> Self {
                OptimizerSpec::Value(Box::new(opt))
            }
        }
    )*};
}

spec_from!(SGD, NAG, Adagrad, RMSProp, AdaDelta, Adam);
