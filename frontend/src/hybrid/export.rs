//! Exporting a traced graph and its parameters, to be loaded with no Rust model code by
//! [`super::SymbolBlock::imports`] (gluon's `export` / `SymbolBlock.imports`).
//!
//! # The export format
//!
//! [`export`]`(prefix, graph, params)` writes two files next to each other:
//!
//! - **`{prefix}-graph.json`**: the graph in kiln's versioned graph JSON (documented in
//!   [`kiln_ir::graph::json`]): `"format": "kiln-graph"`, a `"version"` number
//!   ([`kiln_ir::graph::FORMAT_VERSION`]), the `"nodes"` in topological order and the
//!   `"outputs"`. Data inputs are `"kind": "input"` nodes carrying the name a caller binds
//!   them by (`imports` takes these names, in call order); parameters are `"kind": "param"`
//!   nodes named by the parameter's full name (`dense0_weight`); every op node stores its
//!   attributes and its inferred `"type"`, which the reader re-infers and checks. Random ops
//!   keep the seed they were traced with: placeholders `0, 1, ...` (one per random op, in
//!   trace order) are recognized on import and replaced by fresh seeds at every call.
//! - **`{prefix}.safetensors`**: the values of exactly the graph's parameters, each stored
//!   under its full name (the `"param"` node's name) with its shape and dtype, in the
//!   safetensors format that Python tools read directly (see
//!   [`crate::gluon::serialize`]; the order of the graph's parameters is kept in the file's
//!   metadata).
//!
//! Each file is written atomically (a temporary file in the same folder, flushed, then
//! renamed over the target): a crash leaves the old file or the new one, never half of one.
//!
//! A reader refuses, with an error naming the file: invalid JSON, a missing or different
//! `format`, a `version` newer than it reads, an op or attribute it does not know, dangling
//! node references, cycles, types that do not re-infer; a parameter file that is corrupt,
//! lacks one of the graph's parameters, holds one of another shape or dtype, or holds names
//! the graph does not use.

use crate::gluon::parameter::ParameterDict;
use crate::gluon::serialize;
use crate::ndarray::NDArray;
use kiln_ir::{Error, Graph, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The graph file of an export `prefix`: `{prefix}-graph.json`.
pub fn graph_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, "-graph.json")
}

/// The parameter file of an export `prefix`: `{prefix}.safetensors`.
pub fn params_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".safetensors")
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `graph` to `{prefix}-graph.json` and the values of its parameters, taken from
/// `params` by full name, to `{prefix}.safetensors` (the format is described in the
/// [module documentation](self)); returns the two paths.
///
/// Export the graph a model runs for inference (traced in predict mode): the file holds
/// exactly what runs, so a training-mode graph would keep dropping units after import.
///
/// Errors, before writing anything, when the graph has no outputs or when a parameter of the
/// graph is missing from `params`, not initialized, or of another shape or dtype than the
/// graph's (every problem is listed).
///
/// ```
/// use kiln_frontend::gluon::{Parameter, ParameterDict};
/// use kiln_frontend::hybrid::{export, SymbolBlock};
/// use kiln_frontend::{nd, Context};
/// use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut g = Graph::new();
/// let x = g.add_input("data", TensorType::new([2], DType::F32))?;
/// let b = g.add_param("net0_bias", TensorType::new([2], DType::F32))?;
/// let y = g.add_op(Op::Binary { f: BinaryOp::Add }, &[x, b])?;
/// g.set_outputs(vec![y])?;
/// let bias = Parameter::new("net0_bias", [2]);
/// bias.set_data(&nd::array(&[0.5f32, -0.5])?)?;
/// let mut params = ParameterDict::new();
/// params.insert(bias)?;
///
/// let dir = tempfile::tempdir()?;
/// let (graph_file, params_file) = export::export(&dir.path().join("net"), &g, &params)?;
/// assert!(graph_file.ends_with("net-graph.json") && params_file.ends_with("net.safetensors"));
///
/// let net = SymbolBlock::imports(&graph_file, &["data"], &params_file, Context::cpu())?;
/// let out = net.call(&[&nd::array(&[1.0f32, 2.0])?])?;
/// assert_eq!(out[0].to_vec::<f32>()?, vec![1.5, 1.5]);
/// # Ok(())
/// # }
/// ```
pub fn export(prefix: &Path, graph: &Graph, params: &ParameterDict) -> Result<(PathBuf, PathBuf)> {
    if graph.outputs().is_empty() {
        return Err(Error::invalid(
            "export",
            "the graph has no outputs: nothing to export",
        ));
    }
    let mut problems = Vec::new();
    let mut named: Vec<(String, NDArray)> = Vec::new();
    for (name, id) in graph.params() {
        let want = graph.ty(id)?;
        let Some(p) = params.get(name) else {
            problems.push(format!("{name} ({want}) is not among the given parameters"));
            continue;
        };
        match p.data() {
            Ok(data) if data.ty() == *want => named.push((name.to_string(), data)),
            Ok(data) => problems.push(format!(
                "{name} is {}, the graph uses it as {want}",
                data.ty()
            )),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid(
            "export",
            format!(
                "cannot export to {}: {}",
                prefix.display(),
                problems.join("; ")
            ),
        ));
    }
    let graph_file = graph_path(prefix);
    let params_file = params_path(prefix);
    serialize::write_atomically(&graph_file, graph.to_json().as_bytes())?;
    serialize::save_map(&params_file, &named)?;
    Ok((graph_file, params_file))
}
