//! Reading models saved by Apache MXNet 1.x: a `NAME-symbol.json` and a `NAME-0000.params`
//! (as gluon's `export()` and `save_checkpoint` write them) become a kiln [`Graph`] and its
//! parameters, or directly a [`SymbolBlock`] that runs hybridized and can be fine-tuned.
//!
//! - [`symbol`]: the symbol JSON reader ([`Symbol`]);
//! - [`params`]: the `.params` reader ([`params::MxParams`]);
//! - [`convert`](mod@convert): the op mapping to kiln's IR ([`convert()`]).
//!
//! A symbol carries no input shapes, and kiln graphs are typed, so loading takes the data
//! inputs' types:
//!
//! ```no_run
//! use kiln_frontend::{mxnet, Context, DType};
//! use kiln_ir::TensorType;
//! # fn main() -> kiln_frontend::Result<()> {
//! let net = mxnet::import(
//!     "model-symbol.json",
//!     "model-0000.params",
//!     &[("data", TensorType::new([1, 1, 28, 28], DType::F32))],
//!     Context::cpu(),
//! )?;
//! let y = net.call(&[&kiln_frontend::nd::zeros([1, 1, 28, 28])?])?;
//! # Ok(())
//! # }
//! ```

pub mod convert;
pub mod params;
pub mod symbol;

pub use convert::{convert, Converted};
pub use symbol::Symbol;

use crate::autograd::GradReq;
use crate::context::Context;
use crate::gluon::parameter::{Parameter, ParameterDict};
use crate::hybrid::{export, HybridizeOptions, SymbolBlock};
use crate::ndarray::NDArray;
use kiln_ir::{Error, Graph, Result, Tensor, TensorType};
use params::MxParams;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A converted MXNet model: the graph and the values of the parameters it uses.
#[derive(Debug)]
pub struct MxModel {
    /// The kiln graph (outputs: the symbol's heads).
    pub graph: Graph,
    /// Its data inputs, in call order.
    pub inputs: Vec<String>,
    /// The parameter values the graph binds, by name (no `arg:`/`aux:` prefix).
    pub params: BTreeMap<String, Tensor>,
    /// The parameters that are auxiliary states (running statistics): no gradient.
    pub aux: BTreeSet<String>,
}

/// Converts a parsed symbol with its parameters. `inputs` are the data inputs and their
/// types, in call order.
pub fn from_parts(
    sym: &Symbol,
    params: &MxParams,
    inputs: &[(&str, TensorType)],
) -> Result<MxModel> {
    let mut values: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut aux: BTreeSet<String> = BTreeSet::new();
    for (name, t) in params.args.iter().chain(&params.other) {
        values.insert(name.clone(), t.clone());
    }
    for (name, t) in &params.auxs {
        values.insert(name.clone(), t.clone());
        aux.insert(name.clone());
    }
    let types: BTreeMap<String, TensorType> =
        values.iter().map(|(n, t)| (n.clone(), t.ty())).collect();
    let inputs: Vec<(String, TensorType)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let c = convert(sym, &inputs, &types)?;
    aux.extend(c.aux.iter().cloned());
    let used: BTreeSet<&str> = c.params.iter().map(String::as_str).collect();
    values.retain(|n, _| used.contains(n.as_str()));
    aux.retain(|n| used.contains(n.as_str()));
    Ok(MxModel {
        graph: c.graph,
        inputs: c.inputs,
        params: values,
        aux,
    })
}

/// Reads a symbol file and a `.params` file and converts them (see [`from_parts`]).
pub fn load(
    symbol_path: impl AsRef<Path>,
    params_path: impl AsRef<Path>,
    inputs: &[(&str, TensorType)],
) -> Result<MxModel> {
    let sym = Symbol::load(symbol_path.as_ref())?;
    let params = params::load_params(params_path.as_ref())?;
    from_parts(&sym, &params, inputs).map_err(|e| with_file(e, symbol_path.as_ref()))
}

fn with_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Invalid { op, msg } => Error::invalid(format!("{}: {op}", path.display()), msg),
        Error::Shape { op, msg } => Error::shape(format!("{}: {op}", path.display()), msg),
        other => other,
    }
}

/// The `.params` file beside a `NAME-symbol.json`: `NAME-0000.params` if it exists, else the
/// highest-numbered `NAME-NNNN.params` (the last checkpoint).
pub fn default_params_path(symbol_path: &Path) -> Option<PathBuf> {
    let file = symbol_path.file_name()?.to_str()?;
    let prefix = file.strip_suffix("-symbol.json")?;
    let first = symbol_path.with_file_name(format!("{prefix}-0000.params"));
    if first.exists() {
        return Some(first);
    }
    let dir = match symbol_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(epoch) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".params"))
            .filter(|r| r.len() == 4)
            .and_then(|r| r.parse::<u32>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| epoch > *b) {
            best = Some((epoch, entry.path()));
        }
    }
    best.map(|(_, p)| p)
}

impl MxModel {
    /// The parameters as gluon [`Parameter`]s on `ctx`: learned ones take gradients (grad_req
    /// write), auxiliary states and non-float arrays do not.
    pub fn param_dict(&self, ctx: Context) -> Result<ParameterDict> {
        let mut dict = ParameterDict::new();
        for (name, t) in &self.params {
            let trainable = t.dtype().is_float() && !self.aux.contains(name);
            let p = Parameter::new(name, t.shape().clone())
                .with_dtype(t.dtype())
                .with_grad_req(if trainable {
                    GradReq::Write
                } else {
                    GradReq::Null
                });
            p.set_data(&NDArray::from_tensor(t.clone(), ctx))?;
            dict.insert(p)?;
        }
        Ok(dict)
    }

    /// A [`SymbolBlock`] running the graph with these parameters on `ctx`.
    pub fn into_symbol_block(self, ctx: Context) -> Result<SymbolBlock> {
        self.into_symbol_block_with(ctx, &HybridizeOptions::default())
    }

    /// [`MxModel::into_symbol_block`] with [`HybridizeOptions`] (backend...).
    pub fn into_symbol_block_with(
        self,
        ctx: Context,
        options: &HybridizeOptions,
    ) -> Result<SymbolBlock> {
        let params = self.param_dict(ctx)?;
        let names: Vec<&str> = self.inputs.iter().map(String::as_str).collect();
        SymbolBlock::with_options(self.graph, &names, params, options)
    }

    /// Writes the model in kiln's own format (`{prefix}-graph.json`, `{prefix}.safetensors`),
    /// which `SymbolBlock::imports` and the `kiln` tool read.
    pub fn export(&self, prefix: impl AsRef<Path>) -> Result<(PathBuf, PathBuf)> {
        let params = self.param_dict(Context::cpu())?;
        export::export(prefix.as_ref(), &self.graph, &params)
    }
}

/// Loads an MXNet model as a [`SymbolBlock`] on `ctx`: `inputs` are the data inputs with their
/// types, in call order (a gluon export names its input `data`, or `data0, data1, ...`).
/// The block runs hybridized; its parameters take gradients (not BatchNorm's running
/// statistics), so a `Trainer` can fine-tune it.
pub fn import(
    symbol_path: impl AsRef<Path>,
    params_path: impl AsRef<Path>,
    inputs: &[(&str, TensorType)],
    ctx: Context,
) -> Result<SymbolBlock> {
    load(symbol_path, params_path, inputs)?.into_symbol_block(ctx)
}
