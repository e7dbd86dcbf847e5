//! The text form: one line per node in topological order, then `return`.
//!
//! ```text
//! %0 = input "x" : f32[64,784]
//! %1 = param "w" : f32[256,784]
//! %2 = param "b" : f32[256]
//! %3 = fully_connected(%0, %1, %2) {flatten=true, no_bias=false} : f32[64,256]
//! %4 = relu(%3) : f32[64,256]
//! return %4
//! ```
//!
//! A fused node ([`Op::Fused`]) prints its kind and then its body, indented:
//!
//! ```text
//! %5 = fused.elementwise(%3, %2) : f32[64,256]
//!     $0 = add(in0, in1) : f32[64,256]
//!     $1 = relu($0) : f32[64,256]
//! ```
//!
//! A multi-output kernel marks each output in its body, and each output after the first is
//! read by a `fused_output` node:
//!
//! ```text
//! %2 = fused.elementwise(%0) : f32[4]
//!     $0 = exp(in0) : f32[4]  (output 0)
//!     $1 = tanh(in0) : f32[4]  (output 1)
//! %3 = fused_output(%2) {index=1} : f32[4]
//! ```

use super::{numbering, Graph, NodeKind};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::with_data;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;

/// Constants with at most this many elements print their values.
const MAX_PRINTED_ELEMENTS: usize = 8;

impl Graph {
    /// The text form (see the module docs of [`crate::graph`]); the same as `to_string()`.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (order, number) = numbering(self);
        for &id in &order {
            let Some(node) = self.g.node_weight(id) else {
                continue;
            };
            write!(f, "%{} = ", number[id.index()])?;
            match &node.kind {
                NodeKind::Input { name } => write!(f, "input {name:?}")?,
                NodeKind::Param { name } => write!(f, "param {name:?}")?,
                NodeKind::Const(t) => {
                    write!(f, "const")?;
                    if let Some(values) = const_values(t) {
                        write!(f, " {values}")?;
                    }
                }
                NodeKind::Op(op) => {
                    let args: Vec<String> = self
                        .inputs_unchecked(id)
                        .iter()
                        .map(|i| format!("%{}", number[i.index()]))
                        .collect();
                    if let Op::Fused { kernel } = op {
                        // The body follows, indented, one instruction a line.
                        writeln!(
                            f,
                            "fused.{}({}) : {}",
                            kernel.kind().name(),
                            args.join(", "),
                            node.ty
                        )?;
                        for line in kernel.body_text().lines() {
                            writeln!(f, "    {line}")?;
                        }
                        continue;
                    }
                    write!(f, "{}({})", op.name(), args.join(", "))?;
                    let attrs = attrs_text(op);
                    if !attrs.is_empty() {
                        write!(f, " {{{attrs}}}")?;
                    }
                }
            }
            writeln!(f, " : {}", node.ty)?;
        }
        let outs: Vec<String> = self
            .outputs
            .iter()
            .map(|o| format!("%{}", number[o.index()]))
            .collect();
        if outs.is_empty() {
            writeln!(f, "return")
        } else {
            writeln!(f, "return {}", outs.join(", "))
        }
    }
}

/// An op's attributes as `(key, value)` in declaration order, values in compact JSON. The
/// function selector `f` is left out: the op's name already says it (`add`, `sum`, `argmax`).
pub(crate) fn attrs(op: &Op) -> Vec<(String, String)> {
    // Parsing the serialized text (rather than building a `serde_json::Value`, whose map
    // sorts its keys) keeps the fields in the order the op declares them.
    let Ok(text) = serde_json::to_string(op) else {
        return Vec::new();
    };
    match serde_json::from_str::<OrderedFields>(&text) {
        // A fused_output's type is printed after the colon already.
        Ok(OrderedFields(fields)) => fields
            .into_iter()
            .filter(|(k, _)| k != "op" && k != "f")
            .filter(|(k, _)| !(k == "ty" && matches!(op, Op::FusedOutput { .. })))
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A JSON object's fields in document order.
struct OrderedFields(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(OrderedFields(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// The attributes as `k=v, k=v`.
pub(crate) fn attrs_text(op: &Op) -> String {
    let parts: Vec<String> = attrs(op)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.join(", ")
}

/// A small constant's values: `3.5` for a scalar, `[1, 2, 3]` (flat, row-major) otherwise;
/// `None` when it has too many elements to print.
pub(crate) fn const_values(t: &Tensor) -> Option<String> {
    let data = t.storage().as_ref();
    if data.len() > MAX_PRINTED_ELEMENTS {
        return None;
    }
    let items: Vec<String> = with_data!(data, T, s => s.iter().map(|x| format!("{x}")).collect());
    if t.shape().rank() == 0 {
        return items.into_iter().next();
    }
    Some(format!("[{}]", items.join(", ")))
}
