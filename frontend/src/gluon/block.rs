//! `Block` and `HybridBlock`: the unit of a gluon model.

use super::init::Initializer;
use super::parameter::{Parameter, ParameterDict};
use crate::context::Context;
use crate::ndarray::NDArray;
use kiln_ir::Result;
use std::sync::Arc;

/// A piece of a model: a layer, a container of layers, or a whole network.
///
/// A custom layer is a user struct implementing this trait: it lists its own parameters in
/// [`Block::params`], its sub-blocks in [`Block::visit_children`], and computes in
/// [`Block::forward`] with NDArray ops.
///
/// ```
/// use kiln_frontend::gluon::{Block, Parameter};
/// use kiln_frontend::{NDArray, Result};
///
/// /// y = x * scale, with a learnt scale.
/// struct Scale { scale: Parameter }
///
/// impl Block for Scale {
///     fn prefix(&self) -> String { "scale0_".into() }
///     fn params(&self) -> Vec<Parameter> { vec![self.scale.clone()] }
///     fn forward(&self, x: &NDArray) -> Result<NDArray> {
///         x * &self.scale.data()?
///     }
/// }
/// ```
pub trait Block: Send + Sync {
    /// The name prefix of this block's parameters (`dense0_`).
    fn prefix(&self) -> String;

    /// Runs the block on `x`.
    fn forward(&self, x: &NDArray) -> Result<NDArray>;

    /// This block's own parameters, not its children's.
    fn params(&self) -> Vec<Parameter> {
        Vec::new()
    }

    /// Calls `f` on each child block, in registration order.
    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        let _ = f;
    }

    /// Every parameter of this block and its descendants, by full name.
    fn collect_params(&self) -> Result<ParameterDict> {
        let mut dict = ParameterDict::new();
        for p in self.params() {
            dict.insert(p)?;
        }
        let mut err = None;
        self.visit_children(&mut |child| {
            if err.is_some() {
                return;
            }
            match child.collect_params() {
                Ok(d) => {
                    if let Err(e) = dict.extend(d) {
                        err = Some(e);
                    }
                }
                Err(e) => err = Some(e),
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(dict),
        }
    }

    /// Initializes every parameter with `init` on `ctx` (parameters with unknown dimensions
    /// finish on the first forward pass). Already-initialized parameters are kept.
    fn initialize(&self, init: Arc<dyn Initializer>, ctx: Context) -> Result<()> {
        self.collect_params()?.initialize(init, ctx, false)
    }
}

/// A block whose forward uses only NDArray ops on its inputs and parameters — no reading of
/// values, no data-dependent branching — so it can be traced into a graph. Every layer of
/// [`crate::gluon`] whose MXNet counterpart is a `HybridBlock` implements it.
pub trait HybridBlock: Block {}
