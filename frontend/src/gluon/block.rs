//! `Block` and `HybridBlock`: the unit of a gluon model.

use super::init::Initializer;
use super::parameter::{Parameter, ParameterDict};
use crate::context::Context;
use crate::hybrid::hybridize::{self, CacheStats, HybridState};
use crate::hybrid::HybridizeOptions;
use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};
use std::path::{Path, PathBuf};
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
/// values, no data-dependent branching (branching on shapes and Rust-level options is fine) —
/// so it can be traced into a graph. Every layer of [`crate::gluon::nn`] whose MXNet
/// counterpart is a `HybridBlock` implements it.
///
/// The computation is written once, in [`HybridBlock::hybrid_forward`], against `NDArray`: it
/// runs eagerly before [`HybridBlock::hybridize`] and on symbolic arrays when traced. The
/// block's [`Block::forward`] routes the call: it is
/// [`crate::hybrid::hybridize::call`]`(self, x)`.
///
/// ```
/// use kiln_frontend::gluon::{init, Block, HybridBlock, Parameter};
/// use kiln_frontend::hybrid::hybridize::{self, HybridState};
/// use kiln_frontend::{nd, Context, NDArray, Result};
/// use std::sync::Arc;
///
/// /// y = relu(x) * scale, with a learnt scale.
/// struct ScaledRelu { scale: Parameter, hybrid: HybridState }
///
/// impl Block for ScaledRelu {
///     fn prefix(&self) -> String { "scaledrelu0_".into() }
///     fn params(&self) -> Vec<Parameter> { vec![self.scale.clone()] }
///     fn forward(&self, x: &NDArray) -> Result<NDArray> { hybridize::call(self, x) }
/// }
///
/// impl HybridBlock for ScaledRelu {
///     fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
///         x.relu()? * &self.scale.data()?
///     }
///     fn hybrid_state(&self) -> &HybridState { &self.hybrid }
/// }
///
/// let block = ScaledRelu {
///     scale: Parameter::new("scaledrelu0_scale", [2]),
///     hybrid: HybridState::default(),
/// };
/// block.initialize(Arc::new(init::One), Context::cpu())?;
/// block.hybridize();
/// let x = nd::array(&[-1.0f32, 3.0])?;
/// assert_eq!(block.forward(&x)?.to_vec::<f32>()?, vec![0.0, 3.0]); // traces
/// assert_eq!(block.forward(&x)?.to_vec::<f32>()?, vec![0.0, 3.0]); // cached
/// assert_eq!((block.cache_stats().traces, block.cache_stats().hits), (1, 1));
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
pub trait HybridBlock: Block {
    /// The computation (MXNet's `hybrid_forward`): NDArray ops on `x` and the parameters.
    /// It must not read values; it runs eagerly and, once hybridized, on symbolic arrays.
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray>;

    /// The computation on several inputs, returning several outputs (MXNet's
    /// `hybrid_forward(F, x, *args)`). A block that takes more than one input, or returns
    /// more than one output, overrides this and is called with [`HybridBlock::forward_many`];
    /// its one-input [`HybridBlock::hybrid_forward`] may then simply return an error. Traced
    /// like `hybrid_forward`: the inputs are symbolic, the graph gets one data input per
    /// array (`data0`, `data1`, ...) and one output per returned array.
    ///
    /// The default runs `hybrid_forward` on exactly one input (an override called with one
    /// input must compute what `hybrid_forward` computes: both share the hybridize cache).
    ///
    /// ```
    /// use kiln_frontend::gluon::{Block, HybridBlock};
    /// use kiln_frontend::hybrid::hybridize::{self, HybridState};
    /// use kiln_frontend::{nd, Error, NDArray, Result};
    ///
    /// /// `(x + y, x * y)`: two inputs, two outputs.
    /// struct SumProd { hybrid: HybridState }
    ///
    /// impl Block for SumProd {
    ///     fn prefix(&self) -> String { "sumprod0_".into() }
    ///     fn forward(&self, x: &NDArray) -> Result<NDArray> { hybridize::call(self, x) }
    /// }
    ///
    /// impl HybridBlock for SumProd {
    ///     fn hybrid_forward(&self, _x: &NDArray) -> Result<NDArray> {
    ///         Err(Error::invalid("SumProd", "takes two inputs: call forward_many"))
    ///     }
    ///     fn hybrid_forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
    ///         let [x, y] = xs else {
    ///             return Err(Error::invalid("SumProd", "takes two inputs"));
    ///         };
    ///         Ok(vec![(*x + *y)?, (*x * *y)?])
    ///     }
    ///     fn hybrid_state(&self) -> &HybridState { &self.hybrid }
    /// }
    ///
    /// let block = SumProd { hybrid: HybridState::default() };
    /// block.hybridize();
    /// let (x, y) = (nd::array(&[1.0f32, 2.0])?, nd::array(&[3.0f32, 4.0])?);
    /// let out = block.forward_many(&[&x, &y])?; // traces a graph with inputs data0, data1
    /// assert_eq!(out[0].to_vec::<f32>()?, vec![4.0, 6.0]);
    /// assert_eq!(out[1].to_vec::<f32>()?, vec![3.0, 8.0]);
    /// assert_eq!(block.cache_stats().traces, 1);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    fn hybrid_forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        match xs {
            [x] => Ok(vec![self.hybrid_forward(x)?]),
            _ => Err(Error::invalid(
                "hybrid_forward",
                format!(
                    "{}: this block takes one input, {} were given (a block taking several \
                     overrides HybridBlock::hybrid_forward_many)",
                    self.prefix(),
                    xs.len()
                ),
            )),
        }
    }

    /// Runs the block on several inputs and returns all its outputs, routed like
    /// [`Block::forward`]: eagerly until [`HybridBlock::hybridize`], then through the
    /// hybridize cache (one trace per signature of all the inputs), inline while an
    /// enclosing block is traced. Under `autograd::record` gradients reach the parameters
    /// and every input that wants one.
    fn forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        hybridize::call_many(self, xs)
    }

    /// This block's hybridize switch and cache.
    fn hybrid_state(&self) -> &HybridState;

    /// Calls `f` on each child that is itself a `HybridBlock` (so `hybridize` reaches them).
    fn visit_hybrid_children(&self, f: &mut dyn FnMut(&dyn HybridBlock)) {
        let _ = f;
    }

    /// Hybridizes this block and its hybrid children with the default options: the next call
    /// traces the forward into a graph, later calls with the same input shapes, dtypes, mode
    /// and device run that graph without running the Rust forward.
    fn hybridize(&self) {
        self.hybridize_with(HybridizeOptions::default());
    }

    /// [`HybridBlock::hybridize`] with `options` (backend, static_alloc, static_shape).
    fn hybridize_with(&self, options: HybridizeOptions) {
        self.hybrid_state().activate(options);
        self.visit_hybrid_children(&mut |c| c.hybridize_with(options));
    }

    /// Switches hybridization off for this block and its hybrid children (gluon's
    /// `hybridize(False)`): calls run eagerly again and the cached graphs are dropped.
    fn dehybridize(&self) {
        self.hybrid_state().deactivate();
        self.visit_hybrid_children(&mut |c| c.dehybridize());
    }

    /// True after `hybridize()` (until `dehybridize()`).
    fn is_hybridized(&self) -> bool {
        self.hybrid_state().is_active()
    }

    /// The hybridize cache's counters: compiled signatures, hits and traces.
    fn cache_stats(&self) -> CacheStats {
        self.hybrid_state().stats()
    }

    /// Writes the block's graph (`{prefix}-graph.json`) and parameters
    /// (`{prefix}.safetensors`) for [`crate::hybrid::SymbolBlock::imports`]. The graph is the
    /// predict-mode trace for the input types of the latest call: hybridize and call the
    /// block first. Returns the two paths.
    fn export(&self, prefix: &Path) -> Result<(PathBuf, PathBuf)> {
        hybridize::export_block(self, prefix)
    }
}
