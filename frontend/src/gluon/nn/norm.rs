//! Normalization layers (`gluon.nn.BatchNorm`, `gluon.nn.LayerNorm`).
//!
//! Prefixes come from [`unique_prefix`] (`batchnorm0_`, `layernorm0_`); parameters are
//! `{prefix}gamma`, `{prefix}beta` and, for BatchNorm, `{prefix}running_mean` and
//! `{prefix}running_var` (grad_req null). The default initializers' name dispatch starts
//! gamma and the running variance at one, beta and the running mean at zero. Without
//! `.in_channels(..)` the channel count is learnt on the first forward pass.

use crate::autograd::{self, GradReq};
use crate::gluon::block::{Block, HybridBlock};
use crate::gluon::name::unique_prefix;
use crate::gluon::parameter::Parameter;
use crate::hybrid::hybridize::{self, HybridState};
use crate::nd::BatchNormOpts;
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Result};
use std::fmt;

/// The input's axis `axis` (negative counts from the end), or an error naming the layer.
fn resolve_axis(op: &str, prefix: &str, x: &NDArray, axis: isize) -> Result<usize> {
    let rank = x.ndim() as isize;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank {
        return Err(Error::shape(
            op,
            format!(
                "{prefix}: axis {axis} is out of range for an input of shape {}",
                x.shape()
            ),
        ));
    }
    Ok(a as usize)
}

/// `gamma`, `beta` of `[channels]`; gamma frozen (grad_req null) without `scale`, beta
/// without `center`.
fn affine_params(
    prefix: &str,
    channels: usize,
    dtype: DType,
    center: bool,
    scale: bool,
) -> (Parameter, Parameter) {
    let req = |on: bool| if on { GradReq::Write } else { GradReq::Null };
    let gamma = Parameter::new(format!("{prefix}gamma"), [channels])
        .with_dtype(dtype)
        .with_grad_req(req(scale));
    let beta = Parameter::new(format!("{prefix}beta"), [channels])
        .with_dtype(dtype)
        .with_grad_req(req(center));
    (gamma, beta)
}

/// Checks `x` against parameters declared `[channels]` (0 = deferred) and finishes their
/// deferred initialization.
fn fit_channels(
    op: &str,
    prefix: &str,
    x: &NDArray,
    axis: usize,
    dtype: DType,
    params: &[&Parameter],
) -> Result<()> {
    if x.dtype() != dtype {
        return Err(Error::dtype(
            op,
            format!(
                "{prefix}: input dtype {} but the parameters are {dtype}",
                x.dtype()
            ),
        ));
    }
    let c = x.shape().dims()[axis];
    for p in params {
        let declared = p.shape().dims().first().copied().unwrap_or(0);
        if declared != 0 && declared != c {
            return Err(Error::shape(
                op,
                format!(
                    "{prefix}: input of shape {} has {c} channels on axis {axis} but {} has \
                     shape {}",
                    x.shape(),
                    p.name(),
                    p.shape()
                ),
            ));
        }
    }
    for p in params {
        if p.shape().contains(&0) {
            p.finish_deferred_init([c])?;
        }
    }
    Ok(())
}

/// Batch normalization (`gluon.nn.BatchNorm`): per channel of `axis`,
/// `y = (x − mean) / sqrt(var + epsilon) · gamma + beta`.
///
/// While training ([`autograd::is_training`], e.g. inside `autograd::record`) mean and var
/// are the batch's, over every axis but `axis`, with the **biased** variance
/// (`Σ(x − mean)² / n`), and the layer then updates its running statistics in place, with
/// recording paused, as MXNet's CPU `BatchNorm` operator does (`src/operator/nn/batch_norm.cc`,
/// `BatchNormBackwardImpl`, "update running averages"):
///
/// `running_mean = momentum · running_mean + (1 − momentum) · mean`
/// `running_var  = momentum · running_var  + (1 − momentum) · var`  (the same biased var)
///
/// (MXNet applies this update during its backward pass; here it happens on the training
/// forward pass, so it also happens without a `backward` call.) In predict mode the running
/// statistics are used and nothing is updated; with [`BatchNorm::use_global_stats`] that
/// holds in training too.
///
/// ```
/// use kiln_frontend::gluon::{init, nn::norm::BatchNorm, Block};
/// use kiln_frontend::{autograd, nd, Context};
/// use std::sync::Arc;
/// let bn = BatchNorm::new();
/// bn.initialize(Arc::new(init::Zero), Context::cpu())?; // gamma/var still start at one
/// let x = nd::array(&[1.0f32, 3.0])?.reshape(&[2, 1])?;
/// let y = autograd::train_mode(|| bn.forward(&x))?;
/// assert!((y.to_vec::<f32>()?[0] + 1.0).abs() < 1e-4);
/// // running_mean = 0.9·0 + 0.1·2, running_var = 0.9·1 + 0.1·1
/// assert!((bn.running_mean().data()?.to_vec::<f32>()?[0] - 0.2).abs() < 1e-6);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct BatchNorm {
    prefix: String,
    axis: isize,
    momentum: f64,
    epsilon: f64,
    center: bool,
    scale: bool,
    use_global_stats: bool,
    in_channels: usize,
    dtype: DType,
    gamma: Parameter,
    beta: Parameter,
    running_mean: Parameter,
    running_var: Parameter,
    hybrid: HybridState,
}

impl BatchNorm {
    /// Axis 1, momentum 0.9, epsilon 1e-5, learnt gamma and beta, f32, deferred channels.
    pub fn new() -> Self {
        let prefix = unique_prefix("batchnorm");
        let (gamma, beta) = affine_params(&prefix, 0, DType::F32, true, true);
        let mut b = BatchNorm {
            prefix,
            axis: 1,
            momentum: 0.9,
            epsilon: 1e-5,
            center: true,
            scale: true,
            use_global_stats: false,
            in_channels: 0,
            dtype: DType::F32,
            gamma: gamma.clone(),
            beta: beta.clone(),
            running_mean: gamma,
            running_var: beta,
            hybrid: HybridState::default(),
        };
        b.rebuild_params();
        b
    }

    fn rebuild_params(&mut self) {
        let (gamma, beta) = affine_params(
            &self.prefix,
            self.in_channels,
            self.dtype,
            self.center,
            self.scale,
        );
        self.gamma = gamma;
        self.beta = beta;
        let state = |name: &str| {
            Parameter::new(format!("{}{name}", self.prefix), [self.in_channels])
                .with_dtype(self.dtype)
                .with_grad_req(GradReq::Null)
        };
        self.running_mean = state("running_mean");
        self.running_var = state("running_var");
    }

    /// The channel axis (default 1; negative counts from the end).
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }

    /// The running statistics' decay (default 0.9), in `[0, 1]`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Added to the variance before the square root (default 1e-5).
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Whether `beta` is learnt (default true); without, it stays at its initial zeros.
    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self.rebuild_params();
        self
    }

    /// Whether `gamma` is learnt (default true); without, it stays at its initial ones.
    pub fn scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self.rebuild_params();
        self
    }

    /// Always normalize with the running statistics, in training too, and never update them
    /// (default false; gluon's `use_global_stats`, for fine-tuning a frozen network).
    pub fn use_global_stats(mut self, yes: bool) -> Self {
        self.use_global_stats = yes;
        self
    }

    /// The channel count, when known in advance (else learnt on the first forward pass).
    pub fn in_channels(mut self, in_channels: usize) -> Self {
        self.in_channels = in_channels;
        self.rebuild_params();
        self
    }

    /// The parameters' dtype (default f32); inputs must have it too.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self.rebuild_params();
        self
    }

    /// The scale, `[channels]`.
    pub fn gamma(&self) -> &Parameter {
        &self.gamma
    }

    /// The shift, `[channels]`.
    pub fn beta(&self) -> &Parameter {
        &self.beta
    }

    /// The running mean, `[channels]` (grad_req null).
    pub fn running_mean(&self) -> &Parameter {
        &self.running_mean
    }

    /// The running (biased) variance, `[channels]` (grad_req null).
    pub fn running_var(&self) -> &Parameter {
        &self.running_var
    }

    /// `running = momentum · running + (1 − momentum) · batch` for mean and biased variance,
    /// with recording paused so the update is no part of the graph.
    fn update_running_stats(&self, x: &NDArray, axis: usize) -> Result<()> {
        autograd::pause(|| {
            let others: Vec<isize> = (0..x.ndim())
                .filter(|&a| a != axis)
                .map(|a| a as isize)
                .collect();
            let x = x.detach();
            let mean_keep = x.mean_axes(&others, true)?;
            let var = x.sub(&mean_keep)?.square()?.mean_axes(&others, false)?;
            let mean = mean_keep.mean_axes(&others, false)?;
            let m = self.momentum;
            for (running, batch) in [(&self.running_mean, &mean), (&self.running_var, &var)] {
                let r = running.data()?;
                let updated = r.mul_scalar(m)?.add(&batch.mul_scalar(1.0 - m)?)?;
                r.assign(&updated)?;
            }
            Ok(())
        })
    }
}

impl Default for BatchNorm {
    fn default() -> Self {
        Self::new()
    }
}

impl Block for BatchNorm {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn params(&self) -> Vec<Parameter> {
        vec![
            self.gamma.clone(),
            self.beta.clone(),
            self.running_mean.clone(),
            self.running_var.clone(),
        ]
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for BatchNorm {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::invalid(
                "BatchNorm",
                format!(
                    "{}: momentum must be in [0, 1], got {}",
                    self.prefix, self.momentum
                ),
            ));
        }
        if x.ndim() < 2 {
            return Err(Error::shape(
                "BatchNorm",
                format!(
                    "{}: the input must have rank >= 2 (a batch axis and a channel axis), got \
                     shape {}",
                    self.prefix,
                    x.shape()
                ),
            ));
        }
        let axis = resolve_axis("BatchNorm", &self.prefix, x, self.axis)?;
        fit_channels(
            "BatchNorm",
            &self.prefix,
            x,
            axis,
            self.dtype,
            &[
                &self.gamma,
                &self.beta,
                &self.running_mean,
                &self.running_var,
            ],
        )?;
        let training = autograd::is_training() && !self.use_global_stats;
        let opts = BatchNormOpts {
            eps: self.epsilon,
            axis: axis as isize,
            use_batch_stats: Some(training),
        };
        let y = x.batch_norm(
            &self.gamma.data()?,
            &self.beta.data()?,
            &self.running_mean.data()?,
            &self.running_var.data()?,
            &opts,
        )?;
        if training {
            self.update_running_stats(x, axis)?;
        }
        Ok(y)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for BatchNorm {
    /// As gluon prints it: `BatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False,
    /// use_global_stats=False, in_channels=None)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.gamma.shape().dims().first().copied().unwrap_or(0);
        let c = if c == 0 {
            "None".to_string()
        } else {
            c.to_string()
        };
        write!(
            f,
            "BatchNorm(axis={}, eps={}, momentum={}, fix_gamma={}, use_global_stats={}, \
             in_channels={c})",
            self.axis,
            self.epsilon,
            self.momentum,
            if self.scale { "False" } else { "True" },
            if self.use_global_stats {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// Layer normalization (`gluon.nn.LayerNorm`): over `axis` (default the last),
/// `y = (x − mean) / sqrt(var + epsilon) · gamma + beta` with the biased variance, the same
/// in training and prediction.
///
/// ```
/// use kiln_frontend::gluon::{init, nn::norm::LayerNorm, Block};
/// use kiln_frontend::{nd, Context};
/// use std::sync::Arc;
/// let ln = LayerNorm::new().epsilon(0.0);
/// ln.initialize(Arc::new(init::Zero), Context::cpu())?; // gamma still starts at one
/// let y = ln.forward(&nd::array(&[1.0f32, 3.0])?.reshape(&[1, 2])?)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 1.0]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct LayerNorm {
    prefix: String,
    axis: isize,
    epsilon: f64,
    center: bool,
    scale: bool,
    in_channels: usize,
    dtype: DType,
    gamma: Parameter,
    beta: Parameter,
    hybrid: HybridState,
}

impl LayerNorm {
    /// Axis −1, epsilon 1e-5, learnt gamma and beta, f32, deferred size.
    pub fn new() -> Self {
        let prefix = unique_prefix("layernorm");
        let (gamma, beta) = affine_params(&prefix, 0, DType::F32, true, true);
        LayerNorm {
            prefix,
            axis: -1,
            epsilon: 1e-5,
            center: true,
            scale: true,
            in_channels: 0,
            dtype: DType::F32,
            gamma,
            beta,
            hybrid: HybridState::default(),
        }
    }

    fn rebuild_params(&mut self) {
        let (gamma, beta) = affine_params(
            &self.prefix,
            self.in_channels,
            self.dtype,
            self.center,
            self.scale,
        );
        self.gamma = gamma;
        self.beta = beta;
    }

    /// The normalized axis (default −1).
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }

    /// Added to the variance before the square root (default 1e-5).
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Whether `beta` is learnt (default true).
    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self.rebuild_params();
        self
    }

    /// Whether `gamma` is learnt (default true).
    pub fn scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self.rebuild_params();
        self
    }

    /// The normalized axis' size, when known in advance (else learnt on the first forward).
    pub fn in_channels(mut self, in_channels: usize) -> Self {
        self.in_channels = in_channels;
        self.rebuild_params();
        self
    }

    /// The parameters' dtype (default f32); inputs must have it too.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self.rebuild_params();
        self
    }

    /// The scale, `[size of axis]`.
    pub fn gamma(&self) -> &Parameter {
        &self.gamma
    }

    /// The shift, `[size of axis]`.
    pub fn beta(&self) -> &Parameter {
        &self.beta
    }
}

impl Default for LayerNorm {
    fn default() -> Self {
        Self::new()
    }
}

impl Block for LayerNorm {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn params(&self) -> Vec<Parameter> {
        vec![self.gamma.clone(), self.beta.clone()]
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for LayerNorm {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        if x.ndim() == 0 {
            return Err(Error::shape(
                "LayerNorm",
                format!(
                    "{}: the input must have rank >= 1, got a scalar",
                    self.prefix
                ),
            ));
        }
        let axis = resolve_axis("LayerNorm", &self.prefix, x, self.axis)?;
        fit_channels(
            "LayerNorm",
            &self.prefix,
            x,
            axis,
            self.dtype,
            &[&self.gamma, &self.beta],
        )?;
        x.layer_norm(
            &self.gamma.data()?,
            &self.beta.data()?,
            axis as isize,
            self.epsilon,
        )
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for LayerNorm {
    /// As gluon prints it: `LayerNorm(axis=-1, eps=1e-05, center=True, scale=True,
    /// in_channels=None)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.gamma.shape().dims().first().copied().unwrap_or(0);
        let c = if c == 0 {
            "None".to_string()
        } else {
            c.to_string()
        };
        let py = |b: bool| if b { "True" } else { "False" };
        write!(
            f,
            "LayerNorm(axis={}, eps={}, center={}, scale={}, in_channels={c})",
            self.axis,
            self.epsilon,
            py(self.center),
            py(self.scale)
        )
    }
}
