//! Neural-network ops as methods, with option structs for the ones with many attributes.

use super::{apply, NDArray};
use crate::autograd;
use kiln_ir::{Error, Op, PoolKind, Result};

/// Per-spatial-dimension sizes: one value for every dimension (`2`), or one per dimension
/// (`[2, 1]`). Empty means the attribute's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dims(pub Vec<usize>);

impl From<usize> for Dims {
    fn from(v: usize) -> Self {
        Dims(vec![v])
    }
}

impl<const N: usize> From<[usize; N]> for Dims {
    fn from(v: [usize; N]) -> Self {
        Dims(v.to_vec())
    }
}

impl From<&[usize]> for Dims {
    fn from(v: &[usize]) -> Self {
        Dims(v.to_vec())
    }
}

impl From<Vec<usize>> for Dims {
    fn from(v: Vec<usize>) -> Self {
        Dims(v)
    }
}

impl Dims {
    /// One entry per spatial dimension: empty gives `default` everywhere, a single value is
    /// repeated; otherwise the values as given (the op checks their count).
    fn resolve(&self, spatial: usize, default: usize) -> Vec<usize> {
        match self.0.as_slice() {
            [] => vec![default; spatial],
            [v] => vec![*v; spatial],
            v => v.to_vec(),
        }
    }
}

/// Attributes of [`NDArray::convolution`] and [`NDArray::deconvolution`] (builder style).
///
/// `ConvOpts::new()` is stride 1, no padding, dilation 1, one group, no output padding.
/// ```
/// use kiln_frontend::ndarray::ConvOpts;
/// let opts = ConvOpts::new().stride(2).pad([1, 0]);
/// assert_eq!(opts.groups, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvOpts {
    /// Stride per spatial dim (default 1).
    pub stride: Dims,
    /// Zero padding per spatial dim (default 0).
    pub pad: Dims,
    /// Dilation per spatial dim (default 1).
    pub dilation: Dims,
    /// Extra output size per spatial dim, deconvolution only (default 0).
    pub output_padding: Dims,
    /// Number of channel groups (default 1).
    pub groups: usize,
}

impl Default for ConvOpts {
    fn default() -> Self {
        ConvOpts {
            stride: Dims::default(),
            pad: Dims::default(),
            dilation: Dims::default(),
            output_padding: Dims::default(),
            groups: 1,
        }
    }
}

impl ConvOpts {
    /// The defaults: stride 1, pad 0, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the stride.
    pub fn stride(mut self, v: impl Into<Dims>) -> Self {
        self.stride = v.into();
        self
    }
    /// Sets the zero padding.
    pub fn pad(mut self, v: impl Into<Dims>) -> Self {
        self.pad = v.into();
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, v: impl Into<Dims>) -> Self {
        self.dilation = v.into();
        self
    }
    /// Sets the deconvolution's output padding.
    pub fn output_padding(mut self, v: impl Into<Dims>) -> Self {
        self.output_padding = v.into();
        self
    }
    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// Attributes of [`NDArray::pooling`]: `PoolOpts::max(2)`, `PoolOpts::avg([3, 3]).stride(1)`,
/// `PoolOpts::global_avg()`.
///
/// The stride defaults to the kernel size (as gluon's pooling layers; MXNet's raw `Pooling`
/// op defaults to 1), padding to 0; average pooling counts padding by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOpts {
    /// Max or average.
    pub kind: PoolKind,
    /// Window size per spatial dim.
    pub kernel: Dims,
    /// Stride per spatial dim (default: the kernel).
    pub stride: Dims,
    /// Zero padding per spatial dim (default 0).
    pub pad: Dims,
    /// Pool the whole spatial extent (kernel, stride and pad ignored).
    pub global: bool,
    /// Average pooling divides by the full window, padding included (MXNet's default).
    pub count_include_pad: bool,
}

impl PoolOpts {
    fn new(kind: PoolKind, kernel: Dims, global: bool) -> Self {
        PoolOpts {
            kind,
            kernel,
            stride: Dims::default(),
            pad: Dims::default(),
            global,
            count_include_pad: true,
        }
    }
    /// Max pooling over windows of `kernel`.
    pub fn max(kernel: impl Into<Dims>) -> Self {
        Self::new(PoolKind::Max, kernel.into(), false)
    }
    /// Average pooling over windows of `kernel`.
    pub fn avg(kernel: impl Into<Dims>) -> Self {
        Self::new(PoolKind::Avg, kernel.into(), false)
    }
    /// Max over the whole spatial extent.
    pub fn global_max() -> Self {
        Self::new(PoolKind::Max, Dims::default(), true)
    }
    /// Average over the whole spatial extent.
    pub fn global_avg() -> Self {
        Self::new(PoolKind::Avg, Dims::default(), true)
    }
    /// Sets the stride.
    pub fn stride(mut self, v: impl Into<Dims>) -> Self {
        self.stride = v.into();
        self
    }
    /// Sets the zero padding.
    pub fn pad(mut self, v: impl Into<Dims>) -> Self {
        self.pad = v.into();
        self
    }
    /// Whether average pooling counts padded positions in the divisor.
    pub fn count_include_pad(mut self, yes: bool) -> Self {
        self.count_include_pad = yes;
        self
    }
}

/// Attributes of [`NDArray::batch_norm`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormOpts {
    /// Added to the variance (default 1e-5, as gluon's `BatchNorm`).
    pub eps: f64,
    /// The channel axis (default 1).
    pub axis: isize,
    /// Normalize with the batch's statistics (`Some(true)`) or the given running ones
    /// (`Some(false)`); `None` (the default) follows [`autograd::is_training`].
    pub use_batch_stats: Option<bool>,
}

impl Default for BatchNormOpts {
    fn default() -> Self {
        BatchNormOpts {
            eps: 1e-5,
            axis: 1,
            use_batch_stats: None,
        }
    }
}

/// The number of spatial dims of an NCW/NCHW input (its rank minus 2; the op checks it).
fn spatial_dims(x: &NDArray) -> usize {
    x.ndim().saturating_sub(2)
}

impl NDArray {
    /// Softmax along the last axis.
    pub fn softmax(&self) -> Result<NDArray> {
        self.softmax_axis(-1)
    }

    /// Softmax along `axis`.
    pub fn softmax_axis(&self, axis: isize) -> Result<NDArray> {
        apply(Op::Softmax { axis }, &[self])
    }

    /// `log(softmax(x))` along the last axis, computed stably.
    pub fn log_softmax(&self) -> Result<NDArray> {
        self.log_softmax_axis(-1)
    }

    /// `log(softmax(x))` along `axis`.
    pub fn log_softmax_axis(&self, axis: isize) -> Result<NDArray> {
        apply(Op::LogSoftmax { axis }, &[self])
    }

    /// Per-sample cross-entropy of these logits `[N, C]` against class `labels` `[N]`:
    /// `-log_softmax(self)[i, labels[i]]`, shape `[N]`.
    pub fn softmax_cross_entropy(&self, labels: &NDArray) -> Result<NDArray> {
        apply(Op::SoftmaxCrossEntropy, &[self, labels])
    }

    /// Convolution of this NCW/NCHW input with `weight` `[O, C/groups, k..]` and an
    /// optional `bias` `[O]`.
    pub fn convolution(
        &self,
        weight: &NDArray,
        bias: Option<&NDArray>,
        opts: &ConvOpts,
    ) -> Result<NDArray> {
        let n = spatial_dims(self);
        let op = Op::Convolution {
            stride: opts.stride.resolve(n, 1),
            pad: opts.pad.resolve(n, 0),
            dilation: opts.dilation.resolve(n, 1),
            groups: opts.groups,
            no_bias: bias.is_none(),
        };
        with_optional_bias(op, self, weight, bias)
    }

    /// Transposed convolution (MXNet `Deconvolution`) with `weight` `[C, O/groups, k..]`.
    pub fn deconvolution(
        &self,
        weight: &NDArray,
        bias: Option<&NDArray>,
        opts: &ConvOpts,
    ) -> Result<NDArray> {
        let n = spatial_dims(self);
        let op = Op::Deconvolution {
            stride: opts.stride.resolve(n, 1),
            pad: opts.pad.resolve(n, 0),
            dilation: opts.dilation.resolve(n, 1),
            output_padding: opts.output_padding.resolve(n, 0),
            groups: opts.groups,
            no_bias: bias.is_none(),
        };
        with_optional_bias(op, self, weight, bias)
    }

    /// Max or average pooling of this NCW/NCHW input.
    pub fn pooling(&self, opts: &PoolOpts) -> Result<NDArray> {
        let n = spatial_dims(self);
        let kernel = opts.kernel.resolve(n, 1);
        let stride = if opts.stride.0.is_empty() {
            kernel.clone()
        } else {
            opts.stride.resolve(n, 1)
        };
        apply(
            Op::Pooling {
                kind: opts.kind,
                kernel,
                stride,
                pad: opts.pad.resolve(n, 0),
                global: opts.global,
                count_include_pad: opts.count_include_pad,
            },
            &[self],
        )
    }

    /// Batch normalization along the channel axis with scale `gamma`, shift `beta` and the
    /// running `mean`/`var` (used unless batch statistics are asked for; this op does not
    /// update them).
    pub fn batch_norm(
        &self,
        gamma: &NDArray,
        beta: &NDArray,
        mean: &NDArray,
        var: &NDArray,
        opts: &BatchNormOpts,
    ) -> Result<NDArray> {
        apply(
            Op::BatchNorm {
                eps: opts.eps,
                axis: opts.axis,
                use_batch_stats: opts.use_batch_stats.unwrap_or_else(autograd::is_training),
            },
            &[self, gamma, beta, mean, var],
        )
    }

    /// Layer normalization over `axis` with `gamma`/`beta` of that axis' size.
    pub fn layer_norm(
        &self,
        gamma: &NDArray,
        beta: &NDArray,
        axis: isize,
        eps: f64,
    ) -> Result<NDArray> {
        apply(Op::LayerNorm { axis, eps }, &[self, gamma, beta])
    }

    /// Inverted dropout with drop probability `p` in `[0, 1)`: active only while
    /// [`autograd::is_training`]; otherwise returns this array itself.
    pub fn dropout(&self, p: f64) -> Result<NDArray> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("drop probability must be in [0, 1), got {p}"),
            ));
        }
        if !autograd::is_training() || p == 0.0 {
            return Ok(self.clone());
        }
        let seed = crate::random::next_seed();
        apply(Op::Dropout { p, seed }, &[self])
    }
}

fn with_optional_bias(
    op: Op,
    x: &NDArray,
    weight: &NDArray,
    bias: Option<&NDArray>,
) -> Result<NDArray> {
    match bias {
        Some(b) => apply(op, &[x, weight, b]),
        None => apply(op, &[x, weight]),
    }
}
