//! Parameter initializers (`mxnet.init`).

use crate::context::Context;
use crate::ndarray::NDArray;
use kiln_ir::{DType, Result, Shape};
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
