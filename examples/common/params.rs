//! Parameter dicts printed as gluon prints them, for the notebooks that show
//! `print(net.collect_params())` (a collected dict has no prefix of its own; the block's is
//! shown):
//!
//! ```text
//! sequential0_ (
//!   Parameter sequential0_dense0_weight (shape=(128, 0), dtype=float32)
//! )
//! ```
#![allow(dead_code)] // each example binary uses a different part of the shared module

use kiln::gluon::ParameterDict;
use kiln::prelude::*;

/// A shape as Python writes a tuple: `(128, 784)`, `(10,)`, `()`.
pub fn tuple(shape: &Shape) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// A parameter dict under `prefix`, one parameter a line.
pub fn describe_dict(prefix: &str, params: &ParameterDict) -> String {
    let mut s = format!("{prefix} (\n");
    for p in params.iter() {
        s.push_str("  ");
        s.push_str(&p.to_string());
        s.push('\n');
    }
    s.push(')');
    s
}
