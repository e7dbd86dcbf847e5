//! Parameter initializers (`mxnet.init`).

use crate::context::Context;
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Result, Shape};
use std::fmt::Debug;

/// How a parameter gets its first value.
///
/// As in MXNet, [`Initializer::init_param`] dispatches on the parameter's name: biases,
/// `beta` and running means start at zero, `gamma` and running variances at one, and
/// everything else (weights) goes to [`Initializer::init_weight`].
pub trait Initializer: Debug + Send + Sync {
    /// A weight's initial value.
    fn init_weight(&self, name: &str, shape: &Shape, dtype: DType, ctx: Context)
        -> Result<NDArray>;

    /// A parameter's initial value, by its name.
    fn init_param(&self, name: &str, shape: &Shape, dtype: DType, ctx: Context) -> Result<NDArray> {
        let value = if name.ends_with("bias")
            || name.ends_with("beta")
            || name.ends_with("running_mean")
            || name.ends_with("moving_mean")
        {
            Some(0.0)
        } else if name.ends_with("gamma")
            || name.ends_with("running_var")
            || name.ends_with("moving_var")
        {
            Some(1.0)
        } else {
            None
        };
        match value {
            Some(v) => crate::nd::full_with(
                shape.clone(),
                v,
                crate::nd::Opts::new().dtype(dtype).ctx(ctx),
            ),
            None => self.init_weight(name, shape, dtype, ctx),
        }
    }
}

fn opts(dtype: DType, ctx: Context) -> crate::nd::Opts {
    crate::nd::Opts::new().dtype(dtype).ctx(ctx)
}

/// Weights uniform on `[-scale, scale)` (`mxnet.init.Uniform`, default scale 0.07).
///
/// ```
/// use kiln_frontend::gluon::init::{Initializer, Uniform};
/// use kiln_frontend::{Context, DType};
/// let w = Uniform::new(0.5).init_weight("w", &[3, 4].into(), DType::F32, Context::cpu())?;
/// assert!(w.to_vec::<f32>()?.iter().all(|v| v.abs() <= 0.5));
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uniform {
    /// Half-width of the interval.
    pub scale: f64,
}

impl Uniform {
    /// Uniform on `[-scale, scale)`.
    pub fn new(scale: f64) -> Self {
        Uniform { scale }
    }
}

impl Default for Uniform {
    fn default() -> Self {
        Uniform { scale: 0.07 }
    }
}

impl Initializer for Uniform {
    fn init_weight(
        &self,
        name: &str,
        shape: &Shape,
        dtype: DType,
        ctx: Context,
    ) -> Result<NDArray> {
        if !(self.scale.is_finite() && self.scale >= 0.0) {
            return Err(Error::invalid(
                "init.Uniform",
                format!("{name}: scale must be finite and >= 0, got {}", self.scale),
            ));
        }
        crate::nd::random::uniform_with(-self.scale, self.scale, shape.clone(), opts(dtype, ctx))
    }
}

/// Weights from `N(0, sigma²)` (`mxnet.init.Normal`, default sigma 0.01).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normal {
    /// Standard deviation.
    pub sigma: f64,
}

impl Normal {
    /// Normal with mean 0 and standard deviation `sigma`.
    pub fn new(sigma: f64) -> Self {
        Normal { sigma }
    }
}

impl Default for Normal {
    fn default() -> Self {
        Normal { sigma: 0.01 }
    }
}

impl Initializer for Normal {
    fn init_weight(
        &self,
        name: &str,
        shape: &Shape,
        dtype: DType,
        ctx: Context,
    ) -> Result<NDArray> {
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(Error::invalid(
                "init.Normal",
                format!("{name}: sigma must be finite and >= 0, got {}", self.sigma),
            ));
        }
        crate::nd::random::normal_with(0.0, self.sigma, shape.clone(), opts(dtype, ctx))
    }
}

/// The distribution [`Xavier`] draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RandType {
    /// `U(-s, s)`.
    #[default]
    Uniform,
    /// `N(0, s²)`.
    Gaussian,
}

/// Which fan [`Xavier`] scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FactorType {
    /// `(fan_in + fan_out) / 2`.
    #[default]
    Avg,
    /// `fan_in`.
    In,
    /// `fan_out`.
    Out,
}

/// Glorot & Bengio's initializer, computed as MXNet's `mxnet.init.Xavier`.
///
/// For a weight of shape `[d0, d1, k...]` (rank ≥ 2), `fan_in = d1·∏k` and
/// `fan_out = d0·∏k`; the factor is their average, `fan_in` or `fan_out` by
/// [`FactorType`], and `s = sqrt(magnitude / factor)`. Values come from `U(-s, s)` or
/// `N(0, s²)` by [`RandType`]. The default is uniform, average, magnitude 3.
///
/// ```
/// use kiln_frontend::gluon::init::Xavier;
/// // [64, 32, 3, 3]: fan_in = 288, fan_out = 576, s = sqrt(3 / 432)
/// let s = Xavier::default().scale(&[64, 32, 3, 3].into())?;
/// assert!((s - (3.0f64 / 432.0).sqrt()).abs() < 1e-12);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Xavier {
    /// The distribution.
    pub rnd_type: RandType,
    /// The fan used as the factor.
    pub factor_type: FactorType,
    /// The numerator of the variance scale.
    pub magnitude: f64,
}

impl Default for Xavier {
    fn default() -> Self {
        Xavier {
            rnd_type: RandType::Uniform,
            factor_type: FactorType::Avg,
            magnitude: 3.0,
        }
    }
}

impl Xavier {
    /// A Xavier initializer with all three settings.
    pub fn new(rnd_type: RandType, factor_type: FactorType, magnitude: f64) -> Self {
        Xavier {
            rnd_type,
            factor_type,
            magnitude,
        }
    }

    /// The scale `s` for a weight of `shape` (see the type's documentation).
    pub fn scale(&self, shape: &Shape) -> Result<f64> {
        if shape.rank() < 2 {
            return Err(Error::shape(
                "init.Xavier",
                format!("cannot initialize a weight of shape {shape}: it needs rank >= 2"),
            ));
        }
        let dims = shape.dims();
        let hw: f64 = dims[2..].iter().map(|&d| d as f64).product();
        let fan_in = dims[1] as f64 * hw;
        let fan_out = dims[0] as f64 * hw;
        let factor = match self.factor_type {
            FactorType::Avg => (fan_in + fan_out) / 2.0,
            FactorType::In => fan_in,
            FactorType::Out => fan_out,
        };
        if factor <= 0.0 {
            return Err(Error::shape(
                "init.Xavier",
                format!("cannot initialize a weight of shape {shape}: its fan is 0"),
            ));
        }
        if !(self.magnitude.is_finite() && self.magnitude >= 0.0) {
            return Err(Error::invalid(
                "init.Xavier",
                format!("magnitude must be finite and >= 0, got {}", self.magnitude),
            ));
        }
        Ok((self.magnitude / factor).sqrt())
    }
}

impl Initializer for Xavier {
    fn init_weight(
        &self,
        name: &str,
        shape: &Shape,
        dtype: DType,
        ctx: Context,
    ) -> Result<NDArray> {
        let s = self.scale(shape).map_err(|e| match e {
            Error::Shape { op, msg } => Error::Shape {
                op,
                msg: format!("{name}: {msg}"),
            },
            other => other,
        })?;
        match self.rnd_type {
            RandType::Uniform => {
                crate::nd::random::uniform_with(-s, s, shape.clone(), opts(dtype, ctx))
            }
            RandType::Gaussian => {
                crate::nd::random::normal_with(0.0, s, shape.clone(), opts(dtype, ctx))
            }
        }
    }
}

/// He et al.'s initializer for (P)ReLU networks (`mxnet.init.MSRAPrelu`): a gaussian
/// [`Xavier`] with magnitude `2 / (1 + slope²)`. Defaults: average fan, slope 0.25.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MSRAPrelu {
    /// Which fan scales the variance.
    pub factor_type: FactorType,
    /// The negative slope of the (P)ReLU that follows.
    pub slope: f64,
}

impl Default for MSRAPrelu {
    fn default() -> Self {
        MSRAPrelu {
            factor_type: FactorType::Avg,
            slope: 0.25,
        }
    }
}

impl MSRAPrelu {
    /// An MSRAPrelu initializer.
    pub fn new(factor_type: FactorType, slope: f64) -> Self {
        MSRAPrelu { factor_type, slope }
    }

    /// The equivalent [`Xavier`] initializer.
    pub fn as_xavier(&self) -> Xavier {
        Xavier {
            rnd_type: RandType::Gaussian,
            factor_type: self.factor_type,
            magnitude: 2.0 / (1.0 + self.slope * self.slope),
        }
    }
}

impl Initializer for MSRAPrelu {
    fn init_weight(
        &self,
        name: &str,
        shape: &Shape,
        dtype: DType,
        ctx: Context,
    ) -> Result<NDArray> {
        self.as_xavier().init_weight(name, shape, dtype, ctx)
    }
}

/// Every weight starts at 0 (`mxnet.init.Zero`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Zero;

impl Initializer for Zero {
    fn init_weight(&self, _: &str, shape: &Shape, dtype: DType, ctx: Context) -> Result<NDArray> {
        crate::nd::full_with(shape.clone(), 0.0, opts(dtype, ctx))
    }
}

/// Every weight starts at 1 (`mxnet.init.One`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct One;

impl Initializer for One {
    fn init_weight(&self, _: &str, shape: &Shape, dtype: DType, ctx: Context) -> Result<NDArray> {
        crate::nd::full_with(shape.clone(), 1.0, opts(dtype, ctx))
    }
}

/// Every weight starts at one value (`mxnet.init.Constant`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant(pub f64);

impl Initializer for Constant {
    fn init_weight(&self, _: &str, shape: &Shape, dtype: DType, ctx: Context) -> Result<NDArray> {
        crate::nd::full_with(shape.clone(), self.0, opts(dtype, ctx))
    }
}

/// Applies `inner`'s [`Initializer::init_weight`] to a parameter whatever its name, skipping
/// the name-based dispatch: MXNet's behaviour for an initializer given to one parameter
/// (`Dense(bias_initializer=One())` really starts the bias at one). Layers wrap their
/// `weight_initializer` / `bias_initializer` in it.
///
/// ```
/// use kiln_frontend::gluon::init::{Explicit, Initializer, One};
/// use kiln_frontend::{Context, DType};
/// use std::sync::Arc;
/// let b = Explicit(Arc::new(One)).init_param("dense0_bias", &[2].into(), DType::F32, Context::cpu())?;
/// assert_eq!(b.to_vec::<f32>()?, vec![1.0, 1.0]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Explicit(pub std::sync::Arc<dyn Initializer>);

impl Initializer for Explicit {
    fn init_weight(
        &self,
        name: &str,
        shape: &Shape,
        dtype: DType,
        ctx: Context,
    ) -> Result<NDArray> {
        self.0.init_weight(name, shape, dtype, ctx)
    }

    fn init_param(&self, name: &str, shape: &Shape, dtype: DType, ctx: Context) -> Result<NDArray> {
        self.0.init_weight(name, shape, dtype, ctx)
    }
}
