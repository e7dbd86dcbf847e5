//! Pooling layers (`gluon.nn.MaxPool1D/2D`, `AvgPool1D/2D`, `GlobalMaxPool1D/2D`,
//! `GlobalAvgPool1D/2D`), channels-first only (NCW / NCHW).
//!
//! Prefixes come from [`unique_prefix`]`("pool")` (`pool0_`, as gluon names every pooling
//! layer); the layers have no parameters. As in gluon the stride defaults to the pool size,
//! and output sizes round down (`ceil_mode = false`).

use crate::gluon::block::{Block, HybridBlock};
use crate::gluon::name::unique_prefix;
use crate::hybrid::hybridize::{self, HybridState};
use crate::nd::{Dims, PoolOpts};
use crate::ndarray::NDArray;
use kiln_ir::{Error, PoolKind, Result};
use std::fmt;

/// What every pooling layer holds.
#[derive(Debug)]
struct PoolCore {
    op: &'static str,
    spatial: usize,
    kind: PoolKind,
    global: bool,
    prefix: String,
    pool_size: Dims,
    strides: Option<Dims>,
    padding: Dims,
    count_include_pad: bool,
    hybrid: HybridState,
}

impl PoolCore {
    fn new(op: &'static str, spatial: usize, kind: PoolKind, global: bool, size: Dims) -> Self {
        PoolCore {
            op,
            spatial,
            kind,
            global,
            prefix: unique_prefix("pool"),
            pool_size: size,
            strides: None,
            padding: Dims::default(),
            count_include_pad: true,
            hybrid: HybridState::default(),
        }
    }

    fn per_dim(&self, name: &str, d: &Dims, default: usize) -> Result<Vec<usize>> {
        match d.0.as_slice() {
            [] => Ok(vec![default; self.spatial]),
            [v] => Ok(vec![*v; self.spatial]),
            v if v.len() == self.spatial => Ok(v.to_vec()),
            v => Err(Error::invalid(
                self.op,
                format!(
                    "{}: {name} {v:?} must have 1 or {} entries",
                    self.prefix, self.spatial
                ),
            )),
        }
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
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
        let opts = if self.global {
            match self.kind {
                PoolKind::Max => PoolOpts::global_max(),
                PoolKind::Avg => PoolOpts::global_avg(),
            }
        } else {
            let size = self.per_dim("pool_size", &self.pool_size, 1)?;
            let strides = match &self.strides {
                Some(s) => self.per_dim("strides", s, 1)?,
                None => size.clone(),
            };
            let padding = self.per_dim("padding", &self.padding, 0)?;
            let spatial = &x.shape().dims()[2..];
            let too_big = size
                .iter()
                .zip(&padding)
                .zip(spatial)
                .any(|((&k, &p), &n)| k > n + 2 * p);
            if too_big {
                return Err(Error::shape(
                    self.op,
                    format!(
                        "{}: pool_size {size:?} (padding {padding:?}) is larger than the \
                         input's spatial size {spatial:?} (input shape {})",
                        self.prefix,
                        x.shape()
                    ),
                ));
            }
            let base = match self.kind {
                PoolKind::Max => PoolOpts::max(size),
                PoolKind::Avg => PoolOpts::avg(size),
            };
            base.stride(strides)
                .pad(padding)
                .count_include_pad(self.count_include_pad)
        };
        x.pooling(&opts)
    }
}

impl fmt::Display for PoolCore {
    /// As gluon prints it: `MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.global {
            return write!(f, "{}", self.op);
        }
        let tuple = |d: &Dims, default: usize| {
            let v = self.per_dim("", d, default).unwrap_or_else(|_| d.0.clone());
            let items: Vec<String> = v.iter().map(usize::to_string).collect();
            if items.len() == 1 {
                format!("({},)", items[0])
            } else {
                format!("({})", items.join(", "))
            }
        };
        let strides = self.strides.as_ref().unwrap_or(&self.pool_size);
        write!(
            f,
            "{}(size={}, stride={}, padding={})",
            self.op,
            tuple(&self.pool_size, 1),
            tuple(strides, 1),
            tuple(&self.padding, 0)
        )
    }
}

macro_rules! pool_block {
    ($name:ident) => {
        impl Block for $name {
            fn prefix(&self) -> String {
                self.core.prefix.clone()
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

macro_rules! windowed_pool {
    ($(#[$doc:meta])* $name:ident, $op:literal, $spatial:literal, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            core: PoolCore,
        }

        impl $name {
            /// Pooling over windows of `pool_size` (one value for all spatial dims, or one
            /// each), with the stride equal to the pool size and no padding.
            pub fn new(pool_size: impl Into<Dims>) -> Self {
                $name {
                    core: PoolCore::new($op, $spatial, $kind, false, pool_size.into()),
                }
            }

            /// The stride (default: the pool size).
            pub fn strides(mut self, strides: impl Into<Dims>) -> Self {
                self.core.strides = Some(strides.into());
                self
            }

            /// Zero padding per spatial dim (default 0; must be below the pool size).
            pub fn padding(mut self, padding: impl Into<Dims>) -> Self {
                self.core.padding = padding.into();
                self
            }
        }

        impl Default for $name {
            /// Pool size 2 (gluon's default), stride 2.
            fn default() -> Self {
                Self::new(2)
            }
        }

        pool_block!($name);
    };
}

windowed_pool!(
    /// Max pooling over NCHW input (`gluon.nn.MaxPool2D`): each output is the maximum of its
    /// window; padded positions never win.
    ///
    /// ```
    /// use kiln_frontend::gluon::{nn::pool::MaxPool2D, Block};
    /// use kiln_frontend::nd;
    /// let x = nd::arange(16.0)?.reshape(&[1, 1, 4, 4])?;
    /// let y = MaxPool2D::new(2).forward(&x)?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![5.0, 7.0, 13.0, 15.0]);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    MaxPool2D, "MaxPool2D", 2, PoolKind::Max
);

windowed_pool!(
    /// Max pooling over NCW input (`gluon.nn.MaxPool1D`).
    MaxPool1D, "MaxPool1D", 1, PoolKind::Max
);

macro_rules! avg_pool_extra {
    ($name:ident) => {
        impl $name {
            /// Whether padded positions count in the divisor (default true, as MXNet).
            pub fn count_include_pad(mut self, yes: bool) -> Self {
                self.core.count_include_pad = yes;
                self
            }
        }
    };
}

windowed_pool!(
    /// Average pooling over NCHW input (`gluon.nn.AvgPool2D`); with padding, the divisor is
    /// the full window unless `count_include_pad(false)`.
    ///
    /// ```
    /// use kiln_frontend::gluon::{nn::pool::AvgPool2D, Block};
    /// use kiln_frontend::nd;
    /// let x = nd::arange(16.0)?.reshape(&[1, 1, 4, 4])?;
    /// let y = AvgPool2D::new(2).forward(&x)?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![2.5, 4.5, 10.5, 12.5]);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    AvgPool2D, "AvgPool2D", 2, PoolKind::Avg
);
avg_pool_extra!(AvgPool2D);

windowed_pool!(
    /// Average pooling over NCW input (`gluon.nn.AvgPool1D`).
    AvgPool1D, "AvgPool1D", 1, PoolKind::Avg
);
avg_pool_extra!(AvgPool1D);

macro_rules! global_pool {
    ($(#[$doc:meta])* $name:ident, $op:literal, $spatial:literal, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            core: PoolCore,
        }

        impl $name {
            /// The layer.
            pub fn new() -> Self {
                $name {
                    core: PoolCore::new($op, $spatial, $kind, true, Dims::default()),
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        pool_block!($name);
    };
}

global_pool!(
    /// The mean over each channel's whole H×W plane (`gluon.nn.GlobalAvgPool2D`): NCHW
    /// `[N, C, H, W]` → `[N, C, 1, 1]`.
    ///
    /// ```
    /// use kiln_frontend::gluon::{nn::pool::GlobalAvgPool2D, Block};
    /// use kiln_frontend::nd;
    /// let x = nd::arange(8.0)?.reshape(&[1, 2, 2, 2])?;
    /// let y = GlobalAvgPool2D::new().forward(&x)?;
    /// assert_eq!(y.shape().dims(), &[1, 2, 1, 1]);
    /// assert_eq!(y.to_vec::<f32>()?, vec![1.5, 5.5]);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    GlobalAvgPool2D, "GlobalAvgPool2D", 2, PoolKind::Avg
);

global_pool!(
    /// The maximum over each channel's whole H×W plane (`gluon.nn.GlobalMaxPool2D`): NCHW
    /// `[N, C, H, W]` → `[N, C, 1, 1]`.
    GlobalMaxPool2D, "GlobalMaxPool2D", 2, PoolKind::Max
);

global_pool!(
    /// The mean over each channel's whole width (`gluon.nn.GlobalAvgPool1D`): NCW
    /// `[N, C, W]` → `[N, C, 1]`.
    GlobalAvgPool1D, "GlobalAvgPool1D", 1, PoolKind::Avg
);

global_pool!(
    /// The maximum over each channel's whole width (`gluon.nn.GlobalMaxPool1D`): NCW
    /// `[N, C, W]` → `[N, C, 1]`.
    GlobalMaxPool1D, "GlobalMaxPool1D", 1, PoolKind::Max
);
