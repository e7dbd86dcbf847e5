//! gluon's `Trainer`: applies an optimizer to a set of parameters.

use super::optimizer::{create, Hyper, Optimizer, OptimizerSpec, State};
use super::parameter::Parameter;
use super::serialize;
use crate::autograd::{self, GradReq};
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Result};
use serde_json::{json, Value};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::path::Path;

/// The `__metadata__` entry of a trainer-state file that holds its JSON description.
const STATES_KEY: &str = "kiln.trainer_states";
/// The version of that description.
const STATES_FORMAT: u64 = 1;

/// Updates parameters from their gradients with an optimizer (gluon `Trainer`).
///
/// After `backward`, [`Trainer::step`]`(batch_size)` rescales every gradient by
/// `rescale_grad / batch_size` (so a loss summed over the batch gives an averaged gradient)
/// and updates every parameter whose grad_req is not null. Optimizer state is created on a
/// parameter's first update, so parameters whose initialization is deferred to the first
/// forward pass may be given before they have a shape.
///
/// ```
/// use kiln_frontend::gluon::{Parameter, trainer::Trainer};
/// use kiln_frontend::{autograd, nd};
/// # fn main() -> kiln_frontend::Result<()> {
/// let w = Parameter::new("w", [2]);
/// w.set_data(&nd::array(&[1.0f32, 2.0])?)?;
/// let mut trainer = Trainer::new([&w], "sgd", [("learning_rate", 0.5)])?;
/// let loss = autograd::record(|| w.data()?.square()?.sum())?;
/// loss.backward()?; // grad = 2w = [2, 4]
/// trainer.step(2)?; // w -= 0.5 · grad / 2
/// assert_eq!(w.data()?.to_vec::<f32>()?, vec![0.5, 1.0]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Trainer {
    params: Vec<Parameter>,
    optimizer: Box<dyn Optimizer>,
    states: Vec<Option<State>>,
    /// The optimizer's `rescale_grad` at creation; each step uses `scale / batch_size`.
    scale: f64,
}

impl Trainer {
    /// A trainer for `params` (a `&ParameterDict`, a `Vec<Parameter>`, `[&p1, &p2]`...).
    ///
    /// `optimizer` is a name for [`create`] (`"sgd"`, `"adam"`...) with `hyper` its
    /// hyperparameters (`[("learning_rate", 0.1), ("momentum", 0.9)]` or a [`Hyper`]), or a
    /// configured optimizer value, in which case `hyper` must be empty (pass `Hyper::new()`;
    /// [`Trainer::with_optimizer`] is shorter). Errors on an unknown optimizer or
    /// hyperparameter name, or when two parameters share a name.
    pub fn new<P: Borrow<Parameter>>(
        params: impl IntoIterator<Item = P>,
        optimizer: impl Into<OptimizerSpec>,
        hyper: impl Into<Hyper>,
    ) -> Result<Trainer> {
        let hyper = hyper.into();
        let optimizer = match optimizer.into() {
            OptimizerSpec::Name(name) => create(&name, hyper)?,
            OptimizerSpec::Value(opt) => {
                if !hyper.is_empty() {
                    return Err(Error::invalid(
                        "Trainer",
                        format!(
                            "hyperparameters were given with an optimizer value ({}); set them \
                             on the optimizer itself, or pass the optimizer by name",
                            opt.name()
                        ),
                    ));
                }
                opt
            }
        };
        let params: Vec<Parameter> = params.into_iter().map(|p| p.borrow().clone()).collect();
        for (i, p) in params.iter().enumerate() {
            let name = p.name();
            if params[..i].iter().any(|q| q.name() == name) {
                return Err(Error::invalid(
                    "Trainer",
                    format!("parameter {name} is given twice"),
                ));
            }
        }
        let scale = optimizer.core().rescale_grad;
        Ok(Trainer {
            states: vec![None; params.len()],
            params,
            optimizer,
            scale,
        })
    }

    /// A trainer for `params` with a configured optimizer.
    pub fn with_optimizer<P: Borrow<Parameter>>(
        params: impl IntoIterator<Item = P>,
        optimizer: impl Optimizer + 'static,
    ) -> Result<Trainer> {
        let opt: Box<dyn Optimizer> = Box::new(optimizer);
        Trainer::new(params, opt, Hyper::new())
    }

    /// One update of every parameter (grad_req not null) from its current gradient,
    /// rescaled by `rescale_grad / batch_size`. Call it after `backward`, outside `record`.
    ///
    /// Errors when `batch_size` is 0 or a trained parameter is still uninitialized. A
    /// gradient not refreshed by a backward since the last step is used as it is (gluon
    /// only warns about stale gradients).
    pub fn step(&mut self, batch_size: usize) -> Result<()> {
        self.update(batch_size)
    }

    /// The update part of [`Trainer::step`] (gluon's `update`): on one device, where there
    /// is nothing to all-reduce, the two are the same.
    pub fn update(&mut self, batch_size: usize) -> Result<()> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "Trainer::step",
                "batch_size must be at least 1, got 0",
            ));
        }
        self.optimizer.core_mut().rescale_grad = self.scale / batch_size as f64;
        autograd::pause(|| self.update_all())
    }

    fn update_all(&mut self) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            if p.grad_req() == GradReq::Null {
                continue;
            }
            if !p.is_initialized() {
                return Err(Error::invalid(
                    "Trainer::step",
                    format!(
                        "parameter {} is not initialized (its shape is {}): run a forward \
                         pass and backward before stepping",
                        p.name(),
                        p.shape()
                    ),
                ));
            }
            let weight = p.data()?;
            let grad = p.grad()?;
            let fresh = match &self.states[i] {
                Some(s) => s.arrays().iter().any(|a| a.shape() != weight.shape()),
                None => true,
            };
            if fresh {
                self.states[i] = Some(self.optimizer.create_state(i, &weight)?);
            }
            let core = self.optimizer.core_mut();
            core.set_lr_mult(i, p.lr_mult());
            core.set_wd_mult(i, p.wd_mult());
            if let Some(state) = self.states[i].as_mut() {
                self.optimizer.update(i, &weight, &grad, state)?;
            }
        }
        Ok(())
    }

    /// The current learning rate (the scheduler's value when one is set).
    pub fn learning_rate(&self) -> f64 {
        self.optimizer.learning_rate()
    }

    /// Sets the learning rate. Errors when the optimizer has an lr_scheduler, as gluon.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        self.optimizer.set_learning_rate(lr)
    }

    /// The parameters, in the order given.
    pub fn params(&self) -> &[Parameter] {
        &self.params
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The optimizer, mutably (to change its hyperparameters between steps).
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// Each parameter's optimizer state (`None` before its first update), in parameter
    /// order.
    pub fn states(&self) -> &[Option<State>] {
        &self.states
    }

    /// Replaces the optimizer states (for restoring saved training); errors unless there is
    /// one entry per parameter.
    pub fn set_states(&mut self, states: Vec<Option<State>>) -> Result<()> {
        if states.len() != self.params.len() {
            return Err(Error::invalid(
                "Trainer::set_states",
                format!(
                    "{} states given for {} parameters",
                    states.len(),
                    self.params.len()
                ),
            ));
        }
        self.states = states;
        Ok(())
    }

    /// Saves the optimizer's state to `path` (gluon's `save_states`), so that training can
    /// resume from a checkpoint (this file plus the parameters, saved with
    /// [`save_parameters`](super::serialize::save_parameters)) exactly as if it had not
    /// stopped.
    ///
    /// The file is safetensors, written atomically (a crash mid-save leaves the old file):
    /// each parameter's state arrays (momentum; Adam's `m` and `v`; ...) are tensors named
    /// `"{index}/{k}"`, and a JSON description in the header's metadata records the
    /// optimizer's name, its learning rate (and the schedule's base rate), the update
    /// counters (Adam's step counts, the schedule's position) and each parameter's name,
    /// shape and dtype, which [`Trainer::load_states`] checks.
    ///
    /// ```
    /// use kiln_frontend::gluon::{Parameter, trainer::Trainer};
    /// use kiln_frontend::{autograd, nd};
    /// # fn main() -> kiln_frontend::Result<()> {
    /// let w = Parameter::new("w", [2]);
    /// w.set_data(&nd::array(&[1.0f32, 2.0])?)?;
    /// let mut trainer = Trainer::new([&w], "sgd", [("learning_rate", 0.5), ("momentum", 0.9)])?;
    /// autograd::record(|| w.data()?.square()?.sum())?.backward()?;
    /// trainer.step(1)?;
    /// let dir = tempfile::tempdir().map_err(|e| kiln_frontend::Error::invalid("doc", e.to_string()))?;
    /// let path = dir.path().join("trainer.states");
    /// trainer.save_states(&path)?;
    ///
    /// let mut resumed = Trainer::new([&w], "sgd", [("learning_rate", 0.5), ("momentum", 0.9)])?;
    /// resumed.load_states(&path)?;
    /// let mom = resumed.states()[0].as_ref().map(|s| s.arrays()[0].to_vec::<f32>());
    /// assert_eq!(mom.transpose()?, Some(vec![-1.0, -2.0])); // −lr·grad
    /// assert_eq!(resumed.optimizer().core().update_count(0), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn save_states(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let core = self.optimizer.core();
        let mut arrays: Vec<(String, NDArray)> = Vec::new();
        let mut params = Vec::with_capacity(self.params.len());
        for (i, (p, state)) in self.params.iter().zip(&self.states).enumerate() {
            if let Some(st) = state {
                for (k, a) in st.arrays().iter().enumerate() {
                    arrays.push((format!("{i}/{k}"), a.clone()));
                }
            }
            params.push(json!({
                "name": p.name(),
                "shape": p.shape().dims(),
                "dtype": p.dtype().name(),
                "state_arrays": state.as_ref().map(|s| s.arrays().len()),
            }));
        }
        let description = json!({
            "format": STATES_FORMAT,
            "optimizer": self.optimizer.name(),
            "learning_rate": core.learning_rate,
            "scheduler_base_lr": core.lr_scheduler.as_ref().map(|s| s.base_lr()),
            "begin_num_update": core.begin_num_update,
            "num_update": core.raw_num_update(),
            "update_counts": core.update_counts(),
            "params": params,
        });
        let metadata = HashMap::from([(STATES_KEY.to_string(), description.to_string())]);
        serialize::save_map_with_metadata(path, &arrays, metadata)
    }

    /// Loads optimizer state saved by [`Trainer::save_states`] (gluon's `load_states`):
    /// the state arrays, the learning rate (and schedule base rate) and the update counters.
    ///
    /// The file must describe the same optimizer and the same parameters: as many, in the
    /// same order, with the same shapes and dtypes, and the same names up to the prefix they
    /// all share (so a file saved from `sequential0_…` loads into a fresh `sequential1_…`
    /// instance of the model). Otherwise — or when the file is not a trainer-state file, or
    /// is truncated or corrupt — this errors, listing every mismatch, and leaves the trainer
    /// unchanged.
    pub fn load_states(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let op = "Trainer::load_states";
        let fail = |msg: String| Error::invalid(op, format!("{}: {msg}", path.display()));
        let (arrays, metadata) = serialize::load_with_metadata(path)?;
        let text = metadata.get(STATES_KEY).ok_or_else(|| {
            fail(
                "not a trainer-state file (it has no trainer description; a parameter file \
                  loads with load_parameters)"
                    .to_string(),
            )
        })?;
        let d: Value = serde_json::from_str(text)
            .map_err(|e| fail(format!("the trainer description is not valid JSON ({e})")))?;
        let field = |name: &str| {
            d.get(name)
                .ok_or_else(|| fail(format!("the trainer description has no {name:?}")))
        };
        let uint = |v: &Value, what: &str| {
            v.as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .ok_or_else(|| fail(format!("{what} is not a whole number: {v}")))
        };
        let format = uint(field("format")?, "format")?;
        if format as u64 != STATES_FORMAT {
            return Err(fail(format!(
                "format version {format}; this kiln reads version {STATES_FORMAT}"
            )));
        }
        let saved_opt = field("optimizer")?.as_str().unwrap_or("?");
        if saved_opt != self.optimizer.name() {
            return Err(fail(format!(
                "the states are for optimizer {saved_opt:?}, this trainer uses {:?}",
                self.optimizer.name()
            )));
        }
        let saved = field("params")?
            .as_array()
            .ok_or_else(|| fail("\"params\" is not a list".to_string()))?;
        let mut problems = Vec::new();
        if saved.len() != self.params.len() {
            problems.push(format!(
                "the file has states for {} parameters, this trainer has {}",
                saved.len(),
                self.params.len()
            ));
        }
        let saved_names: Vec<String> = saved
            .iter()
            .map(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let names: Vec<String> = self.params.iter().map(|p| p.name()).collect();
        let (saved_cut, cut) = (shared_prefix(&saved_names), shared_prefix(&names));
        let by_name: HashMap<&str, &NDArray> =
            arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let mut states: Vec<Option<State>> = Vec::with_capacity(self.params.len());
        for (i, (p, s)) in self.params.iter().zip(saved).enumerate() {
            let name = &names[i];
            if saved_names[i].get(saved_cut..) != name.get(cut..) {
                problems.push(format!(
                    "parameter {i} is {name} here but {} in the file",
                    saved_names[i]
                ));
            }
            let shape: Option<Vec<usize>> = s.get("shape").and_then(|v| {
                v.as_array()?
                    .iter()
                    .map(|d| d.as_u64().and_then(|u| usize::try_from(u).ok()))
                    .collect()
            });
            let dtype = s
                .get("dtype")
                .and_then(Value::as_str)
                .and_then(DType::parse);
            let (Some(shape), Some(dtype)) = (shape, dtype) else {
                problems.push(format!("parameter {i} ({name}): no valid shape and dtype"));
                continue;
            };
            let here = p.shape();
            let fits = if p.is_initialized() {
                here.dims() == shape.as_slice()
            } else {
                // Deferred: only the dims already known must agree.
                here.rank() == shape.len()
                    && here
                        .dims()
                        .iter()
                        .zip(&shape)
                        .all(|(&a, &b)| a == 0 || a == b)
            };
            if !fits {
                problems.push(format!(
                    "parameter {i} ({name}) has shape {here} but the states are for {shape:?}"
                ));
            }
            if p.dtype() != dtype {
                problems.push(format!(
                    "parameter {i} ({name}) is {} but the states are for {dtype}",
                    p.dtype()
                ));
            }
            let count = match s.get("state_arrays") {
                None | Some(Value::Null) => {
                    states.push(None);
                    continue;
                }
                Some(v) => match uint(v, "state_arrays") {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(e.to_string());
                        continue;
                    }
                },
            };
            let mut list = Vec::with_capacity(count);
            for k in 0..count {
                match by_name.get(format!("{i}/{k}").as_str()) {
                    Some(a) if a.shape().dims() == shape.as_slice() && a.dtype() == dtype => {
                        list.push((*a).clone())
                    }
                    Some(a) => problems.push(format!(
                        "state array {i}/{k} ({name}) is {} {}, expected {dtype} {shape:?}",
                        a.dtype(),
                        a.shape()
                    )),
                    None => problems.push(format!("state array {i}/{k} ({name}) is missing")),
                }
            }
            states.push(Some(State::new(list)));
        }
        if !problems.is_empty() {
            return Err(fail(format!(
                "these states do not fit this trainer: {}",
                problems.join("; ")
            )));
        }
        let lr = field("learning_rate")?
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| fail("learning_rate is not a finite number".to_string()))?;
        let base_lr = d.get("scheduler_base_lr").and_then(Value::as_f64);
        let begin = uint(field("begin_num_update")?, "begin_num_update")?;
        let num_update = uint(field("num_update")?, "num_update")?;
        let counts = field("update_counts")?
            .as_array()
            .ok_or_else(|| fail("update_counts is not a list".to_string()))?
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([i, c]) => Ok((uint(i, "an update index")?, uint(c, "an update count")?)),
                _ => Err(fail(format!(
                    "update_counts holds {pair}, not [index, count]"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        self.states = states;
        let core = self.optimizer.core_mut();
        core.learning_rate = lr;
        if let (Some(s), Some(b)) = (core.lr_scheduler.as_mut(), base_lr) {
            s.set_base_lr(b);
        }
        core.begin_num_update = begin;
        core.restore_update_counts(num_update, counts);
        Ok(())
    }
}

/// The length of the prefix that all `names` share, cut back to just after its last `_`
/// (`sequential0_dense0_weight`, `sequential0_dense1_bias` -> `sequential0_`); for one name,
/// everything up to its last `_`.
fn shared_prefix(names: &[String]) -> usize {
    let Some(first) = names.first() else {
        return 0;
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = first
            .bytes()
            .zip(n.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // `_` is ASCII, so the cut lands on a character boundary of every name.
    first.as_bytes()[..len]
        .iter()
        .rposition(|&b| b == b'_')
        .map_or(0, |i| i + 1)
}
