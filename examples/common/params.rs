//! Parameters printed as gluon prints them, for the notebooks that show `print(param)` and
//! `print(net.collect_params())`:
//!
//! ```text
//! sequential0_ (
//!   Parameter sequential0_dense0_weight (shape=(128, 0), dtype=float32)
//! )
//! ```
#![allow(dead_code)] // each example binary uses a different part of the shared module

use kiln::gluon::{Parameter, ParameterDict};
use kiln::prelude::*;

/// A shape as Python writes a tuple: `(128, 784)`, `(10,)`, `()`.
pub fn tuple(shape: &Shape) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// numpy's name for a dtype (`float32`).
pub fn numpy_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    }
}

/// `Parameter NAME (shape=(..), dtype=float32)`; a dimension still unknown before the first
/// forward pass shows as 0, as in gluon.
pub fn describe_param(p: &Parameter) -> String {
    format!(
        "Parameter {} (shape={}, dtype={})",
        p.name(),
        tuple(&p.shape()),
        numpy_dtype(p.dtype())
    )
}

/// A parameter dict under `prefix`, one parameter a line.
pub fn describe_dict(prefix: &str, params: &ParameterDict) -> String {
    let mut s = format!("{prefix} (\n");
    for p in params.iter() {
        s.push_str("  ");
        s.push_str(&describe_param(p));
        s.push('\n');
    }
    s.push(')');
    s
}
