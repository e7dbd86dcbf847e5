//! gluon's `Trainer`: applies an optimizer to a set of parameters.

use super::optimizer::{create, Hyper, Optimizer, OptimizerSpec, State};
use super::parameter::Parameter;
use crate::autograd::{self, GradReq};
use kiln_ir::{Error, Result};
use std::borrow::Borrow;

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
}
