//! The JSON exchange format of graphs, version 1.
//!
//! ```json
//! {
//!   "format": "kiln-graph",
//!   "version": 1,
//!   "nodes": [
//!     {"id":0,"kind":"input","name":"x","inputs":[],"type":{"shape":[2,3],"dtype":"f32"}},
//!     {"id":1,"kind":"param","name":"b","inputs":[],"type":{"shape":[3],"dtype":"f32"}},
//!     {"id":2,"kind":"const","value":{"dtype":"f32","shape":[],"data":[0.5]},"inputs":[],"type":{"shape":[],"dtype":"f32"}},
//!     {"id":3,"kind":"op","op":{"op":"binary","f":"add"},"inputs":[0,1],"type":{"shape":[2,3],"dtype":"f32"}}
//!   ],
//!   "outputs": [3]
//! }
//! ```
//!
//! - `format` is always `"kiln-graph"`; `version` is [`FORMAT_VERSION`]. A reader refuses a
//!   newer version rather than guess.
//! - `nodes`: each has a unique `id` (a non-negative integer), a `kind` (`input`, `param`,
//!   `const` or `op`), its `inputs` (ids, in input-position order; empty except for ops) and
//!   its `type` (`shape`, a list of dims, and `dtype`: `f32`, `f64`, `i32`, `i64`, `u8`, `bool`).
//!   Inputs and params carry their binding `name`; consts a `value` (`dtype`, `shape` and the
//!   row-major `data`; non-finite floats are the strings `"inf"`, `"-inf"` and `"nan"`); ops
//!   their `op`: the op's snake-case name under `"op"` and its attributes by field name, as
//!   documented in [`crate::op::Op`].
//! - `outputs`: the ids of the graph's outputs, in order.
//!
//! kiln writes nodes in topological order, numbered `0..n` as in the text form, one node per
//! line, inputs and params first in binding order. A reader accepts nodes in any order and
//! checks everything: ids unique, inputs and outputs referring to existing nodes, no cycles,
//! every op's type re-inferred and equal to the stored one.
//!
//! Limitation: an op attribute that is not a finite number (a `clip` to infinity) is written
//! by serde as `null` and cannot be read back; such a graph fails to load with an error naming
//! the node.

use super::{numbering, Graph, NodeId, NodeKind};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::{DataRef, Element, Storage, Tensor, TensorType};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The value of the `format` field.
pub const FORMAT_TAG: &str = "kiln-graph";
/// The format version this kiln writes and the newest it reads.
pub const FORMAT_VERSION: u64 = 1;

/// A node's kind in the file.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Input,
    Param,
    Const,
    Op,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Param => "param",
            Kind::Const => "const",
            Kind::Op => "op",
        }
    }
}

/// A node as written.
#[derive(Serialize)]
struct NodeOut<'a> {
    id: usize,
    kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<TensorOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'a Op>,
    inputs: Vec<usize>,
    #[serde(rename = "type")]
    ty: &'a TensorType,
}

/// A node as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeIn {
    id: u64,
    kind: Kind,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<TensorIn>,
    #[serde(default)]
    op: Option<Op>,
    #[serde(default)]
    inputs: Vec<u64>,
    #[serde(rename = "type")]
    ty: TensorType,
}

/// A constant as written.
#[derive(Serialize)]
struct TensorOut<'a> {
    dtype: DType,
    shape: &'a Shape,
    data: DataOut<'a>,
}

/// A constant as read: elements stay JSON values until the dtype says how to read them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorIn {
    dtype: DType,
    shape: Shape,
    data: Vec<Value>,
}

/// Element data, with non-finite floats as strings (JSON has no infinities or NaN).
struct DataOut<'a>(DataRef<'a>);

impl Serialize for DataOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        match self.0 {
            DataRef::F32(v) => {
                for &x in v {
                    match non_finite_name(x as f64) {
                        Some(name) => seq.serialize_element(name)?,
                        None => seq.serialize_element(&x)?,
                    }
                }
            }
            DataRef::F64(v) => {
                for &x in v {
                    match non_finite_name(x) {
                        Some(name) => seq.serialize_element(name)?,
                        None => seq.serialize_element(&x)?,
                    }
                }
            }
            DataRef::I32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            DataRef::I64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            DataRef::U8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            DataRef::Bool(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
        }
        seq.end()
    }
}

fn non_finite_name(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("nan")
    } else if x == f64::INFINITY {
        Some("inf")
    } else if x == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

impl Graph {
    /// The graph in the JSON format documented in [`crate::graph::json`], one node per line.
    /// Deterministic: `from_json(g.to_json())?.to_json() == g.to_json()`.
    pub fn to_json(&self) -> String {
        let (order, number) = numbering(self);
        let mut lines = Vec::with_capacity(order.len());
        for &id in &order {
            let Some(node) = self.g.node_weight(id) else {
                continue;
            };
            let (kind, name, value, op) = match &node.kind {
                NodeKind::Input { name } => (Kind::Input, Some(name.as_str()), None, None),
                NodeKind::Param { name } => (Kind::Param, Some(name.as_str()), None, None),
                NodeKind::Const(t) => (
                    Kind::Const,
                    None,
                    Some(TensorOut {
                        dtype: t.dtype(),
                        shape: t.shape(),
                        data: DataOut(t.storage().as_ref()),
                    }),
                    None,
                ),
                NodeKind::Op(op) => (Kind::Op, None, None, Some(op)),
            };
            let out = NodeOut {
                id: number[id.index()],
                kind,
                name,
                value,
                op,
                inputs: self
                    .inputs_unchecked(id)
                    .iter()
                    .map(|i| number[i.index()])
                    .collect(),
                ty: &node.ty,
            };
            // Serializing plain data with string keys cannot fail; were it to, the `null`
            // placeholder makes loading the file fail loudly rather than lose the node.
            lines.push(serde_json::to_string(&out).unwrap_or_else(|_| "null".into()));
        }
        let outputs: Vec<String> = self
            .outputs
            .iter()
            .map(|o| number[o.index()].to_string())
            .collect();
        let mut out = String::from("{\n");
        out.push_str(&format!("  \"format\": \"{FORMAT_TAG}\",\n"));
        out.push_str(&format!("  \"version\": {FORMAT_VERSION},\n"));
        if lines.is_empty() {
            out.push_str("  \"nodes\": [],\n");
        } else {
            out.push_str("  \"nodes\": [\n    ");
            out.push_str(&lines.join(",\n    "));
            out.push_str("\n  ],\n");
        }
        out.push_str(&format!("  \"outputs\": [{}]\n}}\n", outputs.join(", ")));
        out
    }

    /// Reads a graph written by [`Graph::to_json`] (or by hand, in that format), checking it
    /// fully: format tag and version, node fields, references, acyclicity and every type.
    pub fn from_json(text: &str) -> Result<Graph> {
        let top: Value =
            serde_json::from_str(text).map_err(|e| Error::Format(format!("graph JSON: {e}")))?;
        let Value::Object(mut top) = top else {
            return Err(Error::Format(
                "graph JSON: expected an object at the top level".into(),
            ));
        };
        match top.get("format") {
            Some(Value::String(tag)) if tag == FORMAT_TAG => {}
            Some(other) => {
                return Err(Error::Format(format!(
                    "graph JSON: format is {other}, expected \"{FORMAT_TAG}\""
                )))
            }
            None => {
                return Err(Error::Format(format!(
                    "graph JSON: missing \"format\": \"{FORMAT_TAG}\""
                )))
            }
        }
        match top.get("version").and_then(Value::as_u64) {
            Some(v) if v == FORMAT_VERSION => {}
            Some(v) if v > FORMAT_VERSION => {
                return Err(Error::Format(format!(
                "graph JSON: version {v} is newer than this kiln reads (version {FORMAT_VERSION})"
            )))
            }
            _ => {
                return Err(Error::Format(format!(
                    "graph JSON: \"version\" must be {FORMAT_VERSION}, got {}",
                    top.get("version")
                        .map_or("nothing".to_string(), Value::to_string)
                )))
            }
        }
        for key in top.keys() {
            if !matches!(key.as_str(), "format" | "version" | "nodes" | "outputs") {
                return Err(Error::Format(format!("graph JSON: unknown field {key:?}")));
            }
        }
        let nodes = match top.remove("nodes") {
            Some(Value::Array(nodes)) => nodes,
            _ => return Err(Error::Format("graph JSON: \"nodes\" must be a list".into())),
        };
        let outputs: Vec<u64> = match top.remove("outputs") {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| Error::Format(format!("graph JSON: \"outputs\": {e}")))?,
            None => return Err(Error::Format("graph JSON: missing \"outputs\"".into())),
        };

        let mut parsed = Vec::with_capacity(nodes.len());
        for (i, v) in nodes.into_iter().enumerate() {
            let label = match v.get("id") {
                Some(id) => format!("node {id}"),
                None => format!("node #{i} in the list"),
            };
            let node: NodeIn = serde_json::from_value(v).map_err(|e| {
                let mut msg = format!("graph JSON: {label}: {e}");
                if msg.contains("null, expected f64") {
                    msg.push_str(
                        " (an op attribute that was infinite or NaN: JSON cannot store it)",
                    );
                }
                Error::Format(msg)
            })?;
            parsed.push(node);
        }
        build(parsed, &outputs)
    }
}

impl Graph {
    /// Writes [`Graph::to_json`] to the file `path`.
    pub fn save_json(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a graph from the JSON file `path` (see [`Graph::from_json`]); errors name the file.
    pub fn load_json(path: impl AsRef<std::path::Path>) -> Result<Graph> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Graph::from_json(&text).map_err(|e| match e {
            Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
            other => other,
        })
    }
}

fn build(nodes: Vec<NodeIn>, outputs: &[u64]) -> Result<Graph> {
    let err = |id: u64, msg: String| Error::Format(format!("graph JSON: node {id}: {msg}"));
    let mut position: HashMap<u64, usize> = HashMap::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        if position.insert(n.id, i).is_some() {
            return Err(err(n.id, "duplicate id".into()));
        }
    }
    // Kahn's algorithm over the file's nodes, earliest in the file first, so that a file
    // written by kiln is rebuilt in its own order.
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for (pos, src) in n.inputs.iter().enumerate() {
            let &s = position.get(src).ok_or_else(|| {
                err(
                    n.id,
                    format!("input {pos} refers to node {src}, which does not exist"),
                )
            })?;
            pending[i] += 1;
            users[s].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| pending[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck: Vec<String> = (0..nodes.len())
            .filter(|&i| pending[i] > 0)
            .map(|i| nodes[i].id.to_string())
            .collect();
        return Err(Error::Format(format!(
            "graph JSON: the nodes form a cycle (nodes {} cannot be ordered)",
            stuck.join(", ")
        )));
    }

    let mut g = Graph::new();
    let mut ids: Vec<Option<NodeId>> = vec![None; nodes.len()];
    for i in order {
        let n = &nodes[i];
        let id = add_node(&mut g, n, &position, &ids).map_err(|e| err(n.id, e.to_string()))?;
        let ty = &g.node(id)?.ty;
        if *ty != n.ty {
            return Err(err(
                n.id,
                format!("stored type {} but its inputs give {ty}", n.ty),
            ));
        }
        ids[i] = Some(id);
    }
    let mut outs = Vec::with_capacity(outputs.len());
    for (k, o) in outputs.iter().enumerate() {
        let id = position.get(o).and_then(|&i| ids[i]).ok_or_else(|| {
            Error::Format(format!(
                "graph JSON: output {k} refers to node {o}, which does not exist"
            ))
        })?;
        outs.push(id);
    }
    g.set_outputs(outs)?;
    Ok(g)
}

/// Adds one file node whose inputs are already in `g`.
fn add_node(
    g: &mut Graph,
    n: &NodeIn,
    position: &HashMap<u64, usize>,
    ids: &[Option<NodeId>],
) -> Result<NodeId> {
    let fields = |allowed: &[&str]| -> Result<()> {
        let present = [
            ("name", n.name.is_some()),
            ("value", n.value.is_some()),
            ("op", n.op.is_some()),
            ("inputs", !n.inputs.is_empty()),
        ];
        for (field, here) in present {
            if here && !allowed.contains(&field) {
                return Err(Error::Format(format!(
                    "{} nodes cannot have {field:?}",
                    n.kind.name()
                )));
            }
        }
        Ok(())
    };
    let missing = |field: &str| Error::Format(format!("{} nodes need {field:?}", n.kind.name()));
    match n.kind {
        Kind::Input | Kind::Param => {
            fields(&["name"])?;
            let name = n.name.clone().ok_or_else(|| missing("name"))?;
            if n.kind == Kind::Input {
                g.add_input(name, n.ty.clone())
            } else {
                g.add_param(name, n.ty.clone())
            }
        }
        Kind::Const => {
            fields(&["value"])?;
            let value = n.value.as_ref().ok_or_else(|| missing("value"))?;
            g.add_const(read_tensor(value)?)
        }
        Kind::Op => {
            fields(&["op", "inputs"])?;
            let op = n.op.clone().ok_or_else(|| missing("op"))?;
            let inputs: Vec<NodeId> = n
                .inputs
                .iter()
                .filter_map(|src| position.get(src).and_then(|&i| ids[i]))
                .collect();
            if inputs.len() != n.inputs.len() {
                // Unreachable after the topological sort; kept so a logic slip is an error.
                return Err(Error::Format("an input is not yet built".into()));
            }
            g.add_op(op, &inputs)
        }
    }
}

/// Decodes a constant, checking the element count and every element's type and range.
fn read_tensor(t: &TensorIn) -> Result<Tensor> {
    match t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    {
        Some(n) if n == t.data.len() => {}
        Some(n) => {
            return Err(Error::Format(format!(
                "const of shape {} needs {n} elements, got {}",
                t.shape,
                t.data.len()
            )))
        }
        None => {
            return Err(Error::Format(format!(
                "const of shape {} has too many elements",
                t.shape
            )))
        }
    }
    let storage = match t.dtype {
        DType::F32 => Storage::F32(read_elements(&t.data, |v| read_float(v).map(|x| x as f32))?),
        DType::F64 => Storage::F64(read_elements(&t.data, read_float)?),
        DType::I32 => Storage::I32(read_elements(&t.data, read_int::<i32>)?),
        DType::I64 => Storage::I64(read_elements(&t.data, read_int::<i64>)?),
        DType::U8 => Storage::U8(read_elements(&t.data, read_int::<u8>)?),
        DType::Bool => Storage::Bool(read_elements(&t.data, Value::as_bool)?),
    };
    Tensor::new(t.shape.clone(), storage)
}

fn read_elements<T: Element>(data: &[Value], read: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
    data.iter()
        .enumerate()
        .map(|(i, v)| {
            read(v).ok_or_else(|| {
                Error::Format(format!(
                    "const element {i} is {v}, which is not a {} value",
                    T::DTYPE
                ))
            })
        })
        .collect()
}

fn read_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

fn read_int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_i64().and_then(|x| T::try_from(x).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_elements_are_range_checked() {
        let t = TensorIn {
            dtype: DType::U8,
            shape: Shape::from([2]),
            data: vec![Value::from(3), Value::from(300)],
        };
        let e = read_tensor(&t).unwrap_err().to_string();
        assert_eq!(e, "const element 1 is 300, which is not a u8 value");
    }

    #[test]
    fn node_fields_are_checked() {
        let n = NodeIn {
            id: 4,
            kind: Kind::Input,
            name: Some("x".into()),
            value: None,
            op: Some(Op::Flatten),
            inputs: vec![],
            ty: TensorType::new([1], DType::F32),
        };
        let e = add_node(&mut Graph::new(), &n, &HashMap::new(), &[]).unwrap_err();
        assert_eq!(e.to_string(), "input nodes cannot have \"op\"");
    }
}
