//! Convolution layers (`gluon.nn.Conv1D`, `Conv2D`, `Conv2DTranspose`), channels-first only
//! (NCW / NCHW).
//!
//! Each layer's prefix comes from [`unique_prefix`]`("conv")` (`conv0_`, as gluon names every
//! convolution), its parameters are `{prefix}weight` and `{prefix}bias`, and it computes with
//! the nd convolution ops only, so the same forward can later be traced by `hybridize()`.
//! Without `.in_channels(..)` the input channel count is learnt on the first forward pass
//! (the weight is declared with a 0 there).

use crate::gluon::block::{Block, HybridBlock};
use crate::gluon::init::Initializer;
use crate::gluon::name::unique_prefix;
use crate::gluon::nn::basic::ActivationKind;
use crate::gluon::parameter::Parameter;
use crate::hybrid::hybridize::{self, HybridState};
use crate::nd::{ConvOpts, Dims};
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Result};
use std::fmt;
use std::sync::Arc;

/// What the three convolution layers share: their configuration and parameters.
#[derive(Debug)]
struct ConvCore {
    /// The layer's class name for messages (`Conv2D`).
    op: &'static str,
    /// Number of spatial dims (1 for NCW, 2 for NCHW).
    spatial: usize,
    transpose: bool,
    prefix: String,
    channels: usize,
    in_channels: usize,
    kernel: Dims,
    strides: Dims,
    padding: Dims,
    dilation: Dims,
    output_padding: Dims,
    groups: usize,
    use_bias: bool,
    act: Option<ActivationKind>,
    dtype: DType,
    weight_init: Option<Arc<dyn Initializer>>,
    bias_init: Option<Arc<dyn Initializer>>,
    weight: Parameter,
    bias: Option<Parameter>,
    hybrid: HybridState,
}

impl ConvCore {
    fn new(
        op: &'static str,
        spatial: usize,
        transpose: bool,
        channels: usize,
        kernel: Dims,
    ) -> Self {
        let mut c = ConvCore {
            op,
            spatial,
            transpose,
            prefix: unique_prefix("conv"),
            channels,
            in_channels: 0,
            kernel,
            strides: Dims::default(),
            padding: Dims::default(),
            dilation: Dims::default(),
            output_padding: Dims::default(),
            groups: 1,
            use_bias: true,
            act: None,
            dtype: DType::F32,
            weight_init: None,
            bias_init: None,
            weight: Parameter::new("", [0]),
            bias: None,
            hybrid: HybridState::default(),
        };
        c.rebuild_params();
        c
    }

    /// One value per spatial dim: a single value repeats; `None` for a wrong count.
    fn per_dim(&self, d: &Dims, default: usize) -> Option<Vec<usize>> {
        match d.0.as_slice() {
            [] => Some(vec![default; self.spatial]),
            [v] => Some(vec![*v; self.spatial]),
            v if v.len() == self.spatial => Some(v.to_vec()),
            _ => None,
        }
    }

    /// The kernel's spatial sizes as declared (a wrong count is reported by `forward`; the
    /// weight then gets the values as given).
    fn kernel_dims(&self) -> Vec<usize> {
        self.per_dim(&self.kernel, 1)
            .unwrap_or_else(|| self.kernel.0.clone())
    }

    /// The weight's shape for `in_channels` input channels (0 = not known yet).
    fn weight_shape(&self, in_channels: usize) -> Vec<usize> {
        let groups = self.groups.max(1);
        let mut shape = if self.transpose {
            vec![in_channels, self.channels / groups]
        } else {
            vec![self.channels, in_channels / groups]
        };
        shape.extend(self.kernel_dims());
        shape
    }

    fn rebuild_params(&mut self) {
        let mut w = Parameter::new(
            format!("{}weight", self.prefix),
            self.weight_shape(self.in_channels),
        )
        .with_dtype(self.dtype);
        if let Some(init) = &self.weight_init {
            w = w.with_init(init.clone());
        }
        self.weight = w;
        self.bias = self.use_bias.then(|| {
            let mut b = Parameter::new(format!("{}bias", self.prefix), [self.channels])
                .with_dtype(self.dtype);
            if let Some(init) = &self.bias_init {
                b = b.with_init(init.clone());
            }
            b
        });
    }

    fn err(&self, msg: String) -> Error {
        Error::invalid(self.op, format!("{}: {msg}", self.prefix))
    }

    /// The resolved attributes, or an error naming the bad one.
    fn opts(&self) -> Result<ConvOpts> {
        let pick = |name: &str, d: &Dims, default: usize| {
            self.per_dim(d, default).ok_or_else(|| {
                self.err(format!(
                    "{name} {:?} must have 1 or {} entries",
                    d.0, self.spatial
                ))
            })
        };
        let kernel = pick("kernel_size", &self.kernel, 1)?;
        let strides = pick("strides", &self.strides, 1)?;
        let padding = pick("padding", &self.padding, 0)?;
        let dilation = pick("dilation", &self.dilation, 1)?;
        let output_padding = pick("output_padding", &self.output_padding, 0)?;
        if self.channels == 0 {
            return Err(self.err("channels must be positive, got 0".into()));
        }
        if kernel.contains(&0) || strides.contains(&0) || dilation.contains(&0) {
            return Err(self.err(format!(
                "kernel_size {kernel:?}, strides {strides:?} and dilation {dilation:?} must be \
                 positive"
            )));
        }
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return Err(self.err(format!(
                "groups ({}) must be positive and divide channels ({})",
                self.groups, self.channels
            )));
        }
        let opts = ConvOpts::new()
            .stride(strides)
            .pad(padding)
            .dilation(dilation)
            .groups(self.groups);
        Ok(if self.transpose {
            opts.output_padding(output_padding)
        } else {
            opts
        })
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        let opts = self.opts()?;
        let layout = if self.spatial == 1 { "NCW" } else { "NCHW" };
        if x.ndim() != self.spatial + 2 {
            return Err(Error::shape(
                self.op,
                format!(
                    "{}: expected a rank-{} {layout} input, got shape {}",
                    self.prefix,
                    self.spatial + 2,
                    x.shape()
                ),
            ));
        }
        if x.dtype() != self.dtype {
            return Err(Error::dtype(
                self.op,
                format!(
                    "{}: input dtype {} but the parameters are {}",
                    self.prefix,
                    x.dtype(),
                    self.dtype
                ),
            ));
        }
        let in_channels = x.shape().dims()[1];
        if !in_channels.is_multiple_of(self.groups) {
            return Err(Error::shape(
                self.op,
                format!(
                    "{}: input of shape {} has {in_channels} channels, not divisible by groups \
                     ({})",
                    self.prefix,
                    x.shape(),
                    self.groups
                ),
            ));
        }
        let expected = self.weight_shape(in_channels);
        let ws = self.weight.shape();
        let fits = ws.rank() == expected.len()
            && ws
                .iter()
                .zip(expected.iter())
                .all(|(&d, &e)| d == 0 || d == e);
        if !fits {
            return Err(Error::shape(
                self.op,
                format!(
                    "{}: input of shape {} has {in_channels} channels but weight {} has shape \
                     {ws} (expected {expected:?})",
                    self.prefix,
                    x.shape(),
                    self.weight.name()
                ),
            ));
        }
        if ws.contains(&0) {
            self.weight.finish_deferred_init(expected)?;
        }
        let w = self.weight.data()?;
        let b = self.bias.as_ref().map(Parameter::data).transpose()?;
        let y = if self.transpose {
            x.deconvolution(&w, b.as_ref(), &opts)?
        } else {
            x.convolution(&w, b.as_ref(), &opts)?
        };
        match self.act {
            Some(act) => act.apply(&y),
            None => Ok(y),
        }
    }

    fn params(&self) -> Vec<Parameter> {
        let mut p = vec![self.weight.clone()];
        p.extend(self.bias.clone());
        p
    }
}

impl fmt::Display for ConvCore {
    /// As gluon prints it: `Conv2D(1 -> 20, kernel_size=(5, 5), stride=(1, 1))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ws = self.weight.shape();
        let in_channels = if self.transpose {
            ws.dims().first().copied().unwrap_or(0)
        } else {
            ws.dims().get(1).copied().unwrap_or(0) * self.groups.max(1)
        };
        let input = if in_channels == 0 {
            "None".to_string()
        } else {
            in_channels.to_string()
        };
        let tuple = |v: Vec<usize>| {
            let items: Vec<String> = v.iter().map(usize::to_string).collect();
            if items.len() == 1 {
                format!("({},)", items[0])
            } else {
                format!("({})", items.join(", "))
            }
        };
        let strides = self
            .per_dim(&self.strides, 1)
            .unwrap_or_else(|| self.strides.0.clone());
        write!(
            f,
            "{}({input} -> {}, kernel_size={}, stride={}",
            self.op,
            self.channels,
            tuple(self.kernel_dims()),
            tuple(strides)
        )?;
        if let Some(p) = self.per_dim(&self.padding, 0) {
            if p.iter().any(|&v| v != 0) {
                write!(f, ", padding={}", tuple(p))?;
            }
        }
        if self.groups != 1 {
            write!(f, ", groups={}", self.groups)?;
        }
        if let Some(a) = self.act {
            write!(f, ", Activation({a})")?;
        }
        f.write_str(")")
    }
}

/// Builder methods, accessors and the `Block` impl shared by the three layer types.
macro_rules! conv_layer {
    ($name:ident) => {
        impl $name {
            /// The stride per spatial dim (one value for all, or one each; default 1).
            pub fn strides(mut self, strides: impl Into<Dims>) -> Self {
                self.core.strides = strides.into();
                self
            }

            /// Zero padding per spatial dim (default 0).
            pub fn padding(mut self, padding: impl Into<Dims>) -> Self {
                self.core.padding = padding.into();
                self
            }

            /// Dilation per spatial dim (default 1).
            pub fn dilation(mut self, dilation: impl Into<Dims>) -> Self {
                self.core.dilation = dilation.into();
                self
            }

            /// The number of channel groups (default 1); it must divide both the input and
            /// the output channel counts.
            pub fn groups(mut self, groups: usize) -> Self {
                self.core.groups = groups;
                self.core.rebuild_params();
                self
            }

            /// Whether the layer has a bias (default true).
            pub fn use_bias(mut self, use_bias: bool) -> Self {
                self.core.use_bias = use_bias;
                self.core.rebuild_params();
                self
            }

            /// Applies `act` to the output (default: none).
            pub fn activation(mut self, act: ActivationKind) -> Self {
                self.core.act = Some(act);
                self
            }

            /// The number of input channels, when known in advance (else learnt on the first
            /// forward pass).
            pub fn in_channels(mut self, in_channels: usize) -> Self {
                self.core.in_channels = in_channels;
                self.core.rebuild_params();
                self
            }

            /// The weight's own initializer (overrides the one given to `initialize`).
            pub fn weight_initializer(mut self, init: Arc<dyn Initializer>) -> Self {
                self.core.weight_init = Some(init);
                self.core.rebuild_params();
                self
            }

            /// The bias's own initializer (default: zeros, by the bias's name).
            pub fn bias_initializer(mut self, init: Arc<dyn Initializer>) -> Self {
                self.core.bias_init = Some(init);
                self.core.rebuild_params();
                self
            }

            /// The parameters' dtype (default f32); inputs must have it too.
            pub fn dtype(mut self, dtype: DType) -> Self {
                self.core.dtype = dtype;
                self.core.rebuild_params();
                self
            }

            /// The weight (see the type's documentation for its shape).
            pub fn weight(&self) -> &Parameter {
                &self.core.weight
            }

            /// The bias, `[channels]`, if the layer has one.
            pub fn bias(&self) -> Option<&Parameter> {
                self.core.bias.as_ref()
            }

            /// The number of output channels.
            pub fn channels(&self) -> usize {
                self.core.channels
            }
        }

        impl Block for $name {
            fn prefix(&self) -> String {
                self.core.prefix.clone()
            }

            fn params(&self) -> Vec<Parameter> {
                self.core.params()
            }

            fn forward(&self, x: &NDArray) -> Result<NDArray> {
                hybridize::call(self, x)
            }
        }

        impl HybridBlock for $name {
            fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
                self.core.forward(x)
            }

            fn hybrid_state(&self) -> &HybridState {
                &self.core.hybrid
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt(f)
            }
        }
    };
}

/// 1-D convolution over NCW input (`gluon.nn.Conv1D`): weight `[channels, in_channels/groups,
/// k]`, bias `[channels]`, output `[N, channels, W_out]` with
/// `W_out = (W + 2·pad − dilation·(k − 1) − 1) / stride + 1`.
///
/// ```
/// use kiln_frontend::gluon::{init, nn::conv::Conv1D, Block};
/// use kiln_frontend::{nd, Context};
/// use std::sync::Arc;
/// let conv = Conv1D::new(4, 3).padding(1);
/// conv.initialize(Arc::new(init::Xavier::default()), Context::cpu())?;
/// let y = conv.forward(&nd::ones([2, 3, 10])?)?;
/// assert_eq!(y.shape().dims(), &[2, 4, 10]);
/// assert_eq!(conv.weight().shape().dims(), &[4, 3, 3]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct Conv1D {
    core: ConvCore,
}

impl Conv1D {
    /// `channels` output channels with a kernel of `kernel_size`; stride 1, no padding,
    /// dilation 1, one group, a bias, no activation, f32, deferred input channels.
    pub fn new(channels: usize, kernel_size: impl Into<Dims>) -> Self {
        Conv1D {
            core: ConvCore::new("Conv1D", 1, false, channels, kernel_size.into()),
        }
    }
}

conv_layer!(Conv1D);

/// 2-D convolution over NCHW input (`gluon.nn.Conv2D`): weight `[channels,
/// in_channels/groups, kh, kw]`, bias `[channels]`, output `[N, channels, H_out, W_out]` with
/// `H_out = (H + 2·pad − dilation·(kh − 1) − 1) / stride + 1` (likewise W).
///
/// ```
/// use kiln_frontend::gluon::{init, nn::{conv::Conv2D, ActivationKind}, Block};
/// use kiln_frontend::{nd, Context};
/// use std::sync::Arc;
/// let conv = Conv2D::new(20, 5).activation(ActivationKind::Relu);
/// conv.initialize(Arc::new(init::Xavier::default()), Context::cpu())?;
/// let y = conv.forward(&nd::ones([2, 1, 28, 28])?)?;
/// assert_eq!(y.shape().dims(), &[2, 20, 24, 24]);
/// assert_eq!(conv.weight().shape().dims(), &[20, 1, 5, 5]); // in_channels learnt
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct Conv2D {
    core: ConvCore,
}

impl Conv2D {
    /// `channels` output channels with a kernel of `kernel_size` (`3` or `[3, 5]`); stride
    /// 1, no padding, dilation 1, one group, a bias, no activation, f32, deferred input
    /// channels.
    pub fn new(channels: usize, kernel_size: impl Into<Dims>) -> Self {
        Conv2D {
            core: ConvCore::new("Conv2D", 2, false, channels, kernel_size.into()),
        }
    }
}

conv_layer!(Conv2D);

/// 2-D transposed convolution over NCHW input (`gluon.nn.Conv2DTranspose`, MXNet's
/// `Deconvolution`): weight `[in_channels, channels/groups, kh, kw]`, bias `[channels]`,
/// output `[N, channels, H_out, W_out]` with
/// `H_out = (H − 1)·stride − 2·pad + dilation·(kh − 1) + output_padding + 1` (likewise W).
///
/// ```
/// use kiln_frontend::gluon::{init, nn::conv::Conv2DTranspose, Block};
/// use kiln_frontend::{nd, Context};
/// use std::sync::Arc;
/// let up = Conv2DTranspose::new(3, 4).strides(2).padding(1);
/// up.initialize(Arc::new(init::Xavier::default()), Context::cpu())?;
/// let y = up.forward(&nd::ones([1, 8, 5, 5])?)?;
/// assert_eq!(y.shape().dims(), &[1, 3, 10, 10]);
/// assert_eq!(up.weight().shape().dims(), &[8, 3, 4, 4]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Debug)]
pub struct Conv2DTranspose {
    core: ConvCore,
}

impl Conv2DTranspose {
    /// `channels` output channels with a kernel of `kernel_size`; stride 1, no padding, no
    /// output padding, dilation 1, one group, a bias, no activation, f32, deferred input
    /// channels.
    pub fn new(channels: usize, kernel_size: impl Into<Dims>) -> Self {
        Conv2DTranspose {
            core: ConvCore::new("Conv2DTranspose", 2, true, channels, kernel_size.into()),
        }
    }

    /// Extra rows/columns added to one side of the output (default 0; must be below the
    /// stride), to pick among the output sizes a strided convolution maps from.
    pub fn output_padding(mut self, output_padding: impl Into<Dims>) -> Self {
        self.core.output_padding = output_padding.into();
        self
    }
}

conv_layer!(Conv2DTranspose);
