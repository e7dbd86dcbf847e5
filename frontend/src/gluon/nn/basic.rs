//! The basic layers of `gluon.nn`: Dense, Activation, Dropout, Flatten, LeakyReLU, Embedding.
//!
//! Each layer names its parameters `{prefix}weight` / `{prefix}bias` with a prefix from
//! [`unique_prefix`] (so inside a container's name scope they come out as
//! `sequential0_dense0_weight`), and computes only with NDArray ops, so the same forward can
//! later be traced by `hybridize()`.

use crate::gluon::block::{Block, HybridBlock};
use crate::gluon::init::{Explicit, Initializer};
use crate::gluon::name::unique_prefix;
use crate::gluon::parameter::Parameter;
use crate::hybrid::hybridize::{self, HybridState};
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

// ----- activations --------------------------------------------------------------------------

/// An activation function, as named by MXNet's `Activation(act_type)`.
///
/// ```
/// use kiln_frontend::gluon::nn::ActivationKind;
/// let relu: ActivationKind = "relu".parse()?;
/// assert_eq!(relu, ActivationKind::Relu);
/// assert!("swish".parse::<ActivationKind>().is_err());
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivationKind {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// softplus, `ln(1 + e^x)`.
    Softrelu,
    /// `x / (1 + |x|)`.
    Softsign,
}

impl ActivationKind {
    /// Every kind, in MXNet's order.
    pub const ALL: [ActivationKind; 5] = [
        ActivationKind::Relu,
        ActivationKind::Sigmoid,
        ActivationKind::Tanh,
        ActivationKind::Softrelu,
        ActivationKind::Softsign,
    ];

    /// MXNet's name (`"relu"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Relu => "relu",
            ActivationKind::Sigmoid => "sigmoid",
            ActivationKind::Tanh => "tanh",
            ActivationKind::Softrelu => "softrelu",
            ActivationKind::Softsign => "softsign",
        }
    }

    /// Applies the function elementwise to `x`.
    pub fn apply(self, x: &NDArray) -> Result<NDArray> {
        match self {
            ActivationKind::Relu => x.relu(),
            ActivationKind::Sigmoid => x.sigmoid(),
            ActivationKind::Tanh => x.tanh(),
            ActivationKind::Softrelu => x.softrelu(),
            ActivationKind::Softsign => x.div(&x.abs()?.add_scalar(1.0)?),
        }
    }
}

impl FromStr for ActivationKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ActivationKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ActivationKind::ALL.iter().map(|k| k.name()).collect();
                Error::invalid(
                    "Activation",
                    format!("unknown activation {s:?}; expected one of {known:?}"),
                )
            })
    }
}

impl fmt::Display for ActivationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Applies an activation function (`gluon.nn.Activation`); its prefix is the function's name
/// (`relu0_`), as in MXNet.
///
/// ```
/// use kiln_frontend::gluon::{nn::Activation, Block};
/// use kiln_frontend::nd;
/// let act = Activation::new("relu")?;
/// let y = act.forward(&nd::array(&[-1.0f32, 2.0])?)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![0.0, 2.0]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct Activation {
    prefix: String,
    kind: ActivationKind,
    hybrid: HybridState,
}

impl Activation {
    /// The activation called `name` (`"relu"`, `"sigmoid"`, `"tanh"`, `"softrelu"`,
    /// `"softsign"`); another name is an error.
    pub fn new(name: &str) -> Result<Self> {
        Ok(Self::from_kind(name.parse()?))
    }

    /// The activation of `kind`.
    pub fn from_kind(kind: ActivationKind) -> Self {
        Activation {
            prefix: unique_prefix(kind.name()),
            kind,
            hybrid: HybridState::default(),
        }
    }

    /// Which function this is.
    pub fn kind(&self) -> ActivationKind {
        self.kind
    }
}

impl Block for Activation {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Activation {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        self.kind.apply(x)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Activation({})", self.kind)
    }
}

// ----- Dense --------------------------------------------------------------------------------

/// A fully connected layer (`gluon.nn.Dense`): `y = act(x · Wᵀ + b)` with `W` of shape
/// `[units, in_units]`.
///
/// Without [`Dense::in_units`] the weight is declared `[units, 0]` and its input size is learnt
/// on the first forward pass (deferred initialization). With `flatten` (the default) an input
/// `[N, ...]` is seen as `[N, prod(...)]`; without, the last axis is contracted and the
/// output is `[..., units]`.
///
/// ```
/// use kiln_frontend::gluon::{init, nn::{ActivationKind, Dense}, Block};
/// use kiln_frontend::{nd, Context};
/// use std::sync::Arc;
/// let layer = Dense::new(3).activation(ActivationKind::Relu);
/// layer.initialize(Arc::new(init::Xavier::default()), Context::cpu())?;
/// let y = layer.forward(&nd::ones([2, 5])?)?;
/// assert_eq!(y.shape().dims(), &[2, 3]);
/// assert_eq!(layer.weight().shape().dims(), &[3, 5]); // in_units learnt
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct Dense {
    prefix: String,
    units: usize,
    in_units: usize,
    act: Option<ActivationKind>,
    flatten: bool,
    use_bias: bool,
    dtype: DType,
    weight_init: Option<Arc<dyn Initializer>>,
    bias_init: Option<Arc<dyn Initializer>>,
    weight: Parameter,
    bias: Option<Parameter>,
    /// The parameters came from elsewhere (weight tying): builder calls no longer rebuild them.
    shared: bool,
    hybrid: HybridState,
}

impl Dense {
    /// A layer with `units` outputs, no activation, a bias, flattening its input, f32, and a
    /// deferred input size.
    pub fn new(units: usize) -> Self {
        let mut d = Dense {
            prefix: unique_prefix("dense"),
            units,
            in_units: 0,
            act: None,
            flatten: true,
            use_bias: true,
            dtype: DType::F32,
            weight_init: None,
            bias_init: None,
            weight: Parameter::new("", [units, 0]),
            bias: None,
            shared: false,
            hybrid: HybridState::default(),
        };
        d.rebuild_params();
        d
    }

    /// A layer using existing parameters: `weight` of shape `[units, in_units]` (`in_units` may
    /// be 0, deferred) and an optional `bias` of shape `[units]`. The layer gets its own
    /// prefix but computes with these handles, so another layer holding them shares them.
    pub fn from_params(weight: Parameter, bias: Option<Parameter>) -> Result<Self> {
        let ws = weight.shape();
        if ws.rank() != 2 || ws.dims()[0] == 0 {
            return Err(Error::shape(
                "Dense",
                format!(
                    "weight {} must have shape [units, in_units] with units > 0, got {ws}",
                    weight.name()
                ),
            ));
        }
        let (units, in_units) = (ws.dims()[0], ws.dims()[1]);
        if let Some(b) = &bias {
            if b.shape().dims() != [units] {
                return Err(Error::shape(
                    "Dense",
                    format!(
                        "bias {} must have shape [{units}] to match weight {} {ws}, got {}",
                        b.name(),
                        weight.name(),
                        b.shape()
                    ),
                ));
            }
        }
        Ok(Dense {
            prefix: unique_prefix("dense"),
            units,
            in_units,
            act: None,
            flatten: true,
            use_bias: bias.is_some(),
            dtype: weight.dtype(),
            weight_init: None,
            bias_init: None,
            weight,
            bias,
            shared: true,
            hybrid: HybridState::default(),
        })
    }

    /// This layer computing with `other`'s weight and bias (gluon's
    /// `Dense(units, params=other.params)`): the two layers stay tied through training.
    /// Call it last: later builder calls no longer change the parameters.
    pub fn share_params(mut self, other: &Dense) -> Self {
        self.units = other.units;
        self.in_units = other.in_units;
        self.use_bias = other.bias.is_some();
        self.dtype = other.dtype;
        self.weight = other.weight.clone();
        self.bias = other.bias.clone();
        self.shared = true;
        self
    }

    /// Applies `act` after the affine map (default: none, "linear").
    pub fn activation(mut self, act: ActivationKind) -> Self {
        self.act = Some(act);
        self
    }

    /// Whether the layer has a bias (default true).
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self.rebuild_params();
        self
    }

    /// Whether an input `[N, ...]` is flattened to `[N, prod(...)]` (default true).
    pub fn flatten(mut self, flatten: bool) -> Self {
        self.flatten = flatten;
        self
    }

    /// The input size, when known in advance (else learnt on the first forward pass).
    pub fn in_units(mut self, in_units: usize) -> Self {
        self.in_units = in_units;
        self.rebuild_params();
        self
    }

    /// The weight's own initializer (overrides the one given to `initialize`).
    pub fn weight_initializer(mut self, init: Arc<dyn Initializer>) -> Self {
        self.weight_init = Some(Arc::new(Explicit(init)));
        self.rebuild_params();
        self
    }

    /// The bias's own initializer (default: zeros, by the bias's name).
    pub fn bias_initializer(mut self, init: Arc<dyn Initializer>) -> Self {
        self.bias_init = Some(Arc::new(Explicit(init)));
        self.rebuild_params();
        self
    }

    /// The parameters' dtype (default f32); inputs must have it too.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self.rebuild_params();
        self
    }

    fn rebuild_params(&mut self) {
        if self.shared {
            return;
        }
        let mut w = Parameter::new(
            format!("{}weight", self.prefix),
            [self.units, self.in_units],
        )
        .with_dtype(self.dtype);
        if let Some(init) = &self.weight_init {
            w = w.with_init(init.clone());
        }
        self.weight = w;
        self.bias = self.use_bias.then(|| {
            let mut b =
                Parameter::new(format!("{}bias", self.prefix), [self.units]).with_dtype(self.dtype);
            if let Some(init) = &self.bias_init {
                b = b.with_init(init.clone());
            }
            b
        });
    }

    /// The weight, `[units, in_units]`.
    pub fn weight(&self) -> &Parameter {
        &self.weight
    }

    /// The bias, `[units]`, if the layer has one.
    pub fn bias(&self) -> Option<&Parameter> {
        self.bias.as_ref()
    }

    /// The number of outputs.
    pub fn units(&self) -> usize {
        self.units
    }
}

impl Block for Dense {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn params(&self) -> Vec<Parameter> {
        let mut p = vec![self.weight.clone()];
        p.extend(self.bias.clone());
        p
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Dense {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        let layer = &self.prefix;
        if self.units == 0 {
            return Err(Error::invalid(
                "Dense",
                format!("{layer}: units must be positive, got 0"),
            ));
        }
        let dims = x.shape().dims();
        let in_units = if self.flatten {
            if dims.len() < 2 {
                return Err(Error::shape(
                    "Dense",
                    format!(
                        "{layer}: with flatten the input must be [batch, features...] (rank >= 2), \
                         got shape {}",
                        x.shape()
                    ),
                ));
            }
            dims[1..].iter().product::<usize>()
        } else {
            match dims.last() {
                Some(&d) => d,
                None => {
                    return Err(Error::shape(
                        "Dense",
                        format!("{layer}: the input must have rank >= 1, got a scalar"),
                    ))
                }
            }
        };
        let ws = self.weight.shape();
        let declared_in = ws.dims().get(1).copied().unwrap_or(0);
        if declared_in != 0 && declared_in != in_units {
            return Err(Error::shape(
                "Dense",
                format!(
                    "{layer}: input of shape {} has {in_units} features (flatten = {}) but \
                     weight {} has shape {ws}",
                    x.shape(),
                    self.flatten,
                    self.weight.name()
                ),
            ));
        }
        if x.dtype() != self.weight.dtype() {
            return Err(Error::dtype(
                "Dense",
                format!(
                    "{layer}: input dtype {} but the parameters are {}",
                    x.dtype(),
                    self.weight.dtype()
                ),
            ));
        }
        if !self.weight.is_initialized() {
            self.weight.finish_deferred_init([self.units, in_units])?;
        }
        let w = self.weight.data()?;
        let b = self.bias.as_ref().map(Parameter::data).transpose()?;
        let y = x.fully_connected(&w, b.as_ref(), self.flatten)?;
        match self.act {
            Some(act) => act.apply(&y),
            None => Ok(y),
        }
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for Dense {
    /// As gluon prints it: `Dense(None -> 256, Activation(relu))`, `Dense(20 -> 10, linear)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ws = self.weight.shape();
        let in_units = ws.dims().get(1).copied().unwrap_or(0);
        let units = ws.dims().first().copied().unwrap_or(self.units);
        let input = if in_units == 0 {
            "None".to_string()
        } else {
            in_units.to_string()
        };
        match self.act {
            Some(a) => write!(f, "Dense({input} -> {units}, Activation({a}))"),
            None => write!(f, "Dense({input} -> {units}, linear)"),
        }
    }
}

// ----- Dropout, Flatten, LeakyReLU ----------------------------------------------------------

/// Zeroes each element with probability `rate` and scales the rest by `1 / (1 - rate)` while
/// training ([`crate::autograd::is_training`], e.g. inside `autograd::record`); the identity
/// otherwise (`gluon.nn.Dropout`).
#[derive(Debug)]
pub struct Dropout {
    prefix: String,
    rate: f64,
    hybrid: HybridState,
}

impl Dropout {
    /// Dropout with drop probability `rate`, which must be in `[0, 1)`.
    pub fn new(rate: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::invalid(
                "Dropout",
                format!("rate must be in [0, 1), got {rate}"),
            ));
        }
        Ok(Dropout {
            prefix: unique_prefix("dropout"),
            rate,
            hybrid: HybridState::default(),
        })
    }

    /// The drop probability.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl Block for Dropout {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Dropout {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        x.dropout(self.rate)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for Dropout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dropout(p = {}, axes=())", self.rate)
    }
}

/// `[N, ...] -> [N, prod(...)]` (`gluon.nn.Flatten`).
#[derive(Debug)]
pub struct Flatten {
    prefix: String,
    hybrid: HybridState,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten {
            prefix: unique_prefix("flatten"),
            hybrid: HybridState::default(),
        }
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

impl Block for Flatten {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Flatten {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        if x.ndim() == 0 {
            return Err(Error::shape(
                "Flatten",
                format!(
                    "{}: the input must have rank >= 1, got a scalar",
                    self.prefix
                ),
            ));
        }
        x.flatten()
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for Flatten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flatten")
    }
}

/// `x` where `x > 0`, else `alpha · x` (`gluon.nn.LeakyReLU`).
#[derive(Debug)]
pub struct LeakyReLU {
    prefix: String,
    alpha: f64,
    hybrid: HybridState,
}

impl LeakyReLU {
    /// A leaky ReLU with negative slope `alpha`.
    pub fn new(alpha: f64) -> Self {
        LeakyReLU {
            prefix: unique_prefix("leakyrelu"),
            alpha,
            hybrid: HybridState::default(),
        }
    }

    /// The negative slope.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
}

impl Block for LeakyReLU {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for LeakyReLU {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        // max(x, 0) + alpha * min(x, 0): two ops with ordinary gradients.
        x.maximum_scalar(0.0)?
            .add(&x.minimum_scalar(0.0)?.mul_scalar(self.alpha)?)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for LeakyReLU {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeakyReLU({})", self.alpha)
    }
}

// ----- Embedding ----------------------------------------------------------------------------

/// Maps integer indices to dense vectors (`gluon.nn.Embedding`): the weight is
/// `[input_dim, output_dim]` and indices `[i..]` give `[i.., output_dim]`. Indices may be of
/// any numeric dtype (floats truncate, as in MXNet) and are clipped to `[0, input_dim - 1]`.
#[derive(Debug)]
pub struct Embedding {
    prefix: String,
    input_dim: usize,
    output_dim: usize,
    dtype: DType,
    init: Option<Arc<dyn Initializer>>,
    weight: Parameter,
    hybrid: HybridState,
}

impl Embedding {
    /// A table of `input_dim` vectors of length `output_dim`, f32.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        let mut e = Embedding {
            prefix: unique_prefix("embedding"),
            input_dim,
            output_dim,
            dtype: DType::F32,
            init: None,
            weight: Parameter::new("", [input_dim, output_dim]),
            hybrid: HybridState::default(),
        };
        e.weight = e.build_weight();
        e
    }

    /// The table's dtype (default f32).
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self.weight = self.build_weight();
        self
    }

    /// The table's own initializer (overrides the one given to `initialize`).
    pub fn weight_initializer(mut self, init: Arc<dyn Initializer>) -> Self {
        self.init = Some(Arc::new(Explicit(init)));
        self.weight = self.build_weight();
        self
    }

    fn build_weight(&self) -> Parameter {
        let w = Parameter::new(
            format!("{}weight", self.prefix),
            [self.input_dim, self.output_dim],
        )
        .with_dtype(self.dtype);
        match &self.init {
            Some(init) => w.with_init(init.clone()),
            None => w,
        }
    }

    /// The table, `[input_dim, output_dim]`.
    pub fn weight(&self) -> &Parameter {
        &self.weight
    }
}

impl Block for Embedding {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn params(&self) -> Vec<Parameter> {
        vec![self.weight.clone()]
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Embedding {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::invalid(
                "Embedding",
                format!(
                    "{}: input_dim and output_dim must be positive, got {} and {}",
                    self.prefix, self.input_dim, self.output_dim
                ),
            ));
        }
        self.weight.data()?.take_axis(x, 0)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Embedding({} -> {}, {})",
            self.input_dim,
            self.output_dim,
            self.weight.dtype()
        )
    }
}
