//! The Graphviz DOT form: render with `dot -Tsvg graph.dot -o graph.svg`.
//!
//! Each node is a box labelled `%k op`, its attributes (shortened, string quotes dropped,
//! wrapped) and its type; inputs and
//! parameters are ellipses, constants are notes, outputs are plain `output i` nodes. Edges into
//! a node with several inputs are labelled with the input position.

use super::text::{attrs, const_values};
use super::{numbering, Graph, NodeKind};
use crate::op::Op;
use std::fmt::Write;

/// Attribute values longer than this are cut (the text and JSON forms keep them whole).
const MAX_ATTR_CHARS: usize = 24;
/// Attribute lines wrap before passing this width.
const MAX_LINE_CHARS: usize = 40;

impl Graph {
    /// The graph in Graphviz DOT syntax, numbered as the text form.
    pub fn to_dot(&self) -> String {
        let (order, number) = numbering(self);
        let mut out = String::from("digraph kiln {\n");
        out.push_str("  node [shape=box, fontname=\"monospace\"];\n");
        for &id in &order {
            let Some(node) = self.g.node_weight(id) else {
                continue;
            };
            let k = number[id.index()];
            let (head, extra, shape) = match &node.kind {
                NodeKind::Input { name } => (format!("input {name:?}"), None, "ellipse"),
                NodeKind::Param { name } => (format!("param {name:?}"), None, "ellipse"),
                NodeKind::Const(t) => ("const".to_string(), const_values(t), "note"),
                NodeKind::Op(Op::Fused { kernel }) => (
                    format!("fused.{}", kernel.kind().name()),
                    Some(wrap(&[kernel.summary()])),
                    "box3d",
                ),
                NodeKind::Op(op) => {
                    let parts: Vec<String> = attrs(op)
                        .into_iter()
                        .map(|(k, v)| format!("{k}={}", shorten(v.trim_matches('"'))))
                        .collect();
                    let extra = (!parts.is_empty()).then(|| wrap(&parts));
                    (op.name().to_string(), extra, "box")
                }
            };
            let mut label = format!("%{k} {head}");
            if let Some(extra) = extra {
                label.push('\n');
                label.push_str(&extra);
            }
            label.push('\n');
            label.push_str(&node.ty.to_string());
            let _ = writeln!(out, "  n{k} [label=\"{}\", shape={shape}];", escape(&label));
        }
        for &id in &order {
            let inputs = self.inputs_unchecked(id);
            let k = number[id.index()];
            for (pos, src) in inputs.iter().enumerate() {
                let s = number[src.index()];
                if inputs.len() > 1 {
                    let _ = writeln!(out, "  n{s} -> n{k} [label=\"{pos}\"];");
                } else {
                    let _ = writeln!(out, "  n{s} -> n{k};");
                }
            }
        }
        for (i, o) in self.outputs.iter().enumerate() {
            let _ = writeln!(
                out,
                "  out{i} [label=\"output {i}\", shape=plaintext];\n  n{} -> out{i};",
                number[o.index()]
            );
        }
        out.push_str("}\n");
        out
    }
}

/// Joins `k=v` parts with `, `, starting a new line before one that would pass
/// `MAX_LINE_CHARS`.
fn wrap(parts: &[String]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for (i, p) in parts.iter().enumerate() {
        let len = p.chars().count();
        if i > 0 {
            if line + 2 + len > MAX_LINE_CHARS {
                out.push_str(",\n");
                line = 0;
            } else {
                out.push_str(", ");
                line += 2;
            }
        }
        out.push_str(p);
        line += len;
    }
    out
}

/// Cuts a long attribute value to `MAX_ATTR_CHARS` characters plus an ellipsis.
fn shorten(v: &str) -> String {
    if v.chars().count() <= MAX_ATTR_CHARS {
        v.to_string()
    } else {
        let cut: String = v.chars().take(MAX_ATTR_CHARS).collect();
        format!("{cut}…")
    }
}

/// Escapes a label for a DOT double-quoted string; newlines become centred line breaks.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}
