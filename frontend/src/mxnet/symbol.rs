//! MXNet 1.x symbol JSON (`NAME-symbol.json`), read and validated.
//!
//! The file is an nnvm graph:
//!
//! ```json
//! {
//!   "nodes": [
//!     {"op": "null", "name": "data", "inputs": []},
//!     {"op": "null", "name": "fc_weight", "inputs": []},
//!     {"op": "FullyConnected", "name": "fc", "attrs": {"num_hidden": "4", "no_bias": "True"},
//!      "inputs": [[0, 0, 0], [1, 0, 0]]}
//!   ],
//!   "arg_nodes": [0, 1],
//!   "node_row_ptr": [0, 1, 2, 3],
//!   "heads": [[2, 0, 0]],
//!   "attrs": {"mxnet_version": ["int", 10901]}
//! }
//! ```
//!
//! - a node's attributes are strings in Python syntax (`"(3, 3)"`, `"True"`, `"None"`); they
//!   are under `attrs` (MXNet ≥ 0.9), `param` (older files) or `attr` (some writers put user
//!   attributes such as `__shape__` there); all three are merged, `attrs` winning;
//! - an input or head is `[node, output_index, version]` (older files: `[node, index]`);
//! - `node_row_ptr` (optional) gives each node's number of outputs as a prefix sum;
//! - variables (`"op": "null"`) are data inputs, parameters and auxiliary states alike.
//!
//! [`Symbol::from_json`] checks everything a converter relies on, with an error naming the
//! node: references to missing nodes or outputs, cycles, missing fields, an absurd size.

use kiln_ir::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The largest symbol file read (bytes): real models' symbol files are a few MB.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// The most nodes a symbol may have.
pub const MAX_NODES: usize = 1 << 20;
/// The most inputs one node may have.
pub const MAX_INPUTS: usize = 1 << 16;

/// One output of one node: `node`'s output number `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The producing node's position in [`Symbol::nodes`].
    pub node: usize,
    /// Which of its outputs.
    pub index: usize,
}

/// One node of a symbol: a variable (`op == "null"`) or an op.
#[derive(Clone, Debug, PartialEq)]
pub struct SymNode {
    /// The op's registered name (`FullyConnected`, `_plus_scalar`), or `null` for a variable.
    pub op: String,
    /// The node's name (variables are bound by it).
    pub name: String,
    /// Attributes as written (Python-syntax strings), `param`/`attr`/`attrs` merged.
    pub attrs: BTreeMap<String, String>,
    /// Its inputs, in order.
    pub inputs: Vec<Entry>,
}

impl SymNode {
    /// True for a variable (data input, parameter or auxiliary state).
    pub fn is_variable(&self) -> bool {
        self.op == "null"
    }
}

/// A parsed and validated MXNet symbol.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    /// The nodes, as in the file (MXNet writes them in topological order).
    pub nodes: Vec<SymNode>,
    /// The variables' positions, as listed by the file (`arg_nodes`).
    pub arg_nodes: Vec<usize>,
    /// The outputs of the symbol.
    pub heads: Vec<Entry>,
    /// Each node's number of outputs when the file has `node_row_ptr`.
    pub num_outputs: Option<Vec<usize>>,
    /// `attrs.mxnet_version` (e.g. `10901` for 1.9.1), when present.
    pub mxnet_version: Option<i64>,
}

/// True when `text` looks like an MXNet symbol file (a JSON object with `nodes` and `heads`
/// whose nodes carry `op` fields), as opposed to kiln's own graph format. Cheap: looks only
/// at the top-level keys of a parsed value.
pub fn looks_like_symbol(value: &Value) -> bool {
    let Some(obj) = value.as_object() else {
        return false;
    };
    obj.contains_key("heads")
        && obj
            .get("nodes")
            .and_then(Value::as_array)
            .is_some_and(|nodes| {
                nodes
                    .first()
                    .is_none_or(|n| n.get("op").is_some_and(Value::is_string))
            })
}

/// True when the file at `path` is an MXNet symbol file (see [`looks_like_symbol`]). I/O and
/// parse failures read as "no" (the caller's own loader reports them).
pub fn is_symbol_file(path: impl AsRef<Path>) -> bool {
    let path = path.as_ref();
    match std::fs::metadata(path) {
        Ok(m) if m.len() <= MAX_FILE_BYTES => {}
        _ => return false,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .is_some_and(|v| looks_like_symbol(&v))
}

fn fmt_err(msg: impl std::fmt::Display) -> Error {
    Error::Format(format!("MXNet symbol: {msg}"))
}

impl Symbol {
    /// Reads and validates a symbol file.
    pub fn load(path: impl AsRef<Path>) -> Result<Symbol> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(Error::Format(format!(
                "{}: {len} bytes is larger than the {MAX_FILE_BYTES} bytes a symbol file may have",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Symbol::from_json(&text).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates symbol JSON text.
    pub fn from_json(text: &str) -> Result<Symbol> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| fmt_err(format!("not valid JSON: {e}")))?;
        Symbol::from_value(&value)
    }

    /// Validates an already parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Symbol> {
        let obj = value
            .as_object()
            .ok_or_else(|| fmt_err("the top level is not a JSON object"))?;
        let raw_nodes = obj
            .get("nodes")
            .ok_or_else(|| fmt_err("no \"nodes\" field"))?
            .as_array()
            .ok_or_else(|| fmt_err("\"nodes\" is not a list"))?;
        if raw_nodes.len() > MAX_NODES {
            return Err(fmt_err(format!(
                "{} nodes is more than the {MAX_NODES} allowed",
                raw_nodes.len()
            )));
        }
        let mut nodes = Vec::with_capacity(raw_nodes.len());
        for (i, n) in raw_nodes.iter().enumerate() {
            nodes.push(parse_node(i, n)?);
        }
        let n = nodes.len();

        let num_outputs = match obj.get("node_row_ptr") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_row_ptr(v, n)?),
        };

        let heads_v = obj
            .get("heads")
            .ok_or_else(|| fmt_err("no \"heads\" field (the symbol's outputs)"))?
            .as_array()
            .ok_or_else(|| fmt_err("\"heads\" is not a list"))?;
        if heads_v.is_empty() {
            return Err(fmt_err("\"heads\" is empty: the symbol has no outputs"));
        }
        let heads = heads_v
            .iter()
            .enumerate()
            .map(|(i, h)| parse_entry(h, &format!("head {i}")))
            .collect::<Result<Vec<_>>>()?;

        let arg_nodes = match obj.get("arg_nodes") {
            None | Some(Value::Null) => (0..n).filter(|&i| nodes[i].is_variable()).collect(),
            Some(v) => {
                let list = v
                    .as_array()
                    .ok_or_else(|| fmt_err("\"arg_nodes\" is not a list"))?;
                let mut out = Vec::with_capacity(list.len().min(n));
                for a in list {
                    let i = as_index(a).ok_or_else(|| {
                        fmt_err(format!("\"arg_nodes\" holds {a}, not a node index"))
                    })?;
                    if i >= n {
                        return Err(fmt_err(format!(
                            "\"arg_nodes\" names node {i}, but there are {n} nodes"
                        )));
                    }
                    if !nodes[i].is_variable() {
                        return Err(fmt_err(format!(
                            "\"arg_nodes\" names node {i} ({:?}), which is a {} op, not a variable",
                            nodes[i].name, nodes[i].op
                        )));
                    }
                    out.push(i);
                }
                out
            }
        };

        let mxnet_version = obj
            .get("attrs")
            .and_then(|a| a.get("mxnet_version"))
            .and_then(|v| match v {
                Value::Array(items) => items.get(1).and_then(Value::as_i64),
                other => other.as_i64(),
            });

        let sym = Symbol {
            nodes,
            arg_nodes,
            heads,
            num_outputs,
            mxnet_version,
        };
        sym.check_references()?;
        sym.topo_order()?;
        Ok(sym)
    }

    /// How many outputs node `i` has, when the file says (`node_row_ptr`).
    pub fn outputs_of(&self, i: usize) -> Option<usize> {
        self.num_outputs.as_ref().and_then(|v| v.get(i).copied())
    }

    fn check_entry(&self, e: Entry, what: &str) -> Result<()> {
        let n = self.nodes.len();
        if e.node >= n {
            return Err(fmt_err(format!(
                "{what} refers to node {}, but there are {n} nodes",
                e.node
            )));
        }
        if let Some(count) = self.outputs_of(e.node) {
            if e.index >= count {
                return Err(fmt_err(format!(
                    "{what} refers to output {} of node {} ({:?}, {}), which has {count} output{}",
                    e.index,
                    e.node,
                    self.nodes[e.node].name,
                    self.nodes[e.node].op,
                    if count == 1 { "" } else { "s" }
                )));
            }
        } else if self.nodes[e.node].is_variable() && e.index != 0 {
            return Err(fmt_err(format!(
                "{what} refers to output {} of variable {:?}, which has one output",
                e.index, self.nodes[e.node].name
            )));
        }
        Ok(())
    }

    fn check_references(&self) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.is_variable() && !node.inputs.is_empty() {
                return Err(fmt_err(format!(
                    "node {i} ({:?}) is a variable with {} inputs",
                    node.name,
                    node.inputs.len()
                )));
            }
            for (k, &e) in node.inputs.iter().enumerate() {
                self.check_entry(
                    e,
                    &format!("input {k} of node {i} ({:?}, {})", node.name, node.op),
                )?;
            }
        }
        for (k, &h) in self.heads.iter().enumerate() {
            self.check_entry(h, &format!("head {k}"))?;
        }
        Ok(())
    }

    /// The nodes in an order where every node follows its inputs (the file's order when it is
    /// already topological, as MXNet writes it). Errors on a cycle, naming a node on it.
    pub fn topo_order(&self) -> Result<Vec<usize>> {
        let n = self.nodes.len();
        if self
            .nodes
            .iter()
            .enumerate()
            .all(|(i, node)| node.inputs.iter().all(|e| e.node < i))
        {
            return Ok((0..n).collect());
        }
        // Kahn's algorithm, smallest index first so the order is stable.
        let mut indegree = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for e in &node.inputs {
                indegree[i] += 1;
                users[e.node].push(i);
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
            .filter(|&i| indegree[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() < n {
            let stuck: Vec<String> = (0..n)
                .filter(|&i| indegree[i] > 0)
                .take(5)
                .map(|i| format!("{i} ({:?})", self.nodes[i].name))
                .collect();
            return Err(fmt_err(format!(
                "the graph has a cycle through node(s) {}",
                stuck.join(", ")
            )));
        }
        Ok(order)
    }

    /// The nodes the heads depend on (`true` at their positions).
    pub fn live_nodes(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = self.heads.iter().map(|e| e.node).collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut live[i], true) {
                stack.extend(self.nodes[i].inputs.iter().map(|e| e.node));
            }
        }
        live
    }

    /// The position of the node named `name` (the last one, as later names shadow earlier).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().rposition(|n| n.name == name)
    }
}

fn as_index(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|x| usize::try_from(x).ok())
}

fn parse_entry(v: &Value, what: &str) -> Result<Entry> {
    let items = v
        .as_array()
        .ok_or_else(|| fmt_err(format!("{what} is {v}, not a [node, index, version] list")))?;
    if !(2..=3).contains(&items.len()) {
        return Err(fmt_err(format!(
            "{what} is {v}: expected [node, index] or [node, index, version]"
        )));
    }
    let node = as_index(&items[0])
        .ok_or_else(|| fmt_err(format!("{what}: node {} is not an index", items[0])))?;
    let index = as_index(&items[1])
        .ok_or_else(|| fmt_err(format!("{what}: output {} is not an index", items[1])))?;
    Ok(Entry { node, index })
}

fn parse_row_ptr(v: &Value, n: usize) -> Result<Vec<usize>> {
    let list = v
        .as_array()
        .ok_or_else(|| fmt_err("\"node_row_ptr\" is not a list"))?;
    if list.len() != n + 1 {
        return Err(fmt_err(format!(
            "\"node_row_ptr\" has {} entries, expected {} (nodes + 1)",
            list.len(),
            n + 1
        )));
    }
    let ptr = list
        .iter()
        .map(|x| as_index(x).ok_or_else(|| fmt_err(format!("\"node_row_ptr\" holds {x}"))))
        .collect::<Result<Vec<usize>>>()?;
    if ptr.first() != Some(&0) {
        return Err(fmt_err("\"node_row_ptr\" does not start at 0"));
    }
    let mut counts = Vec::with_capacity(n);
    for (i, w) in ptr.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(fmt_err(format!(
                "\"node_row_ptr\" decreases at node {i} ({} then {})",
                w[0], w[1]
            )));
        }
        counts.push(w[1] - w[0]);
    }
    Ok(counts)
}

fn attr_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_node(i: usize, v: &Value) -> Result<SymNode> {
    let obj = v
        .as_object()
        .ok_or_else(|| fmt_err(format!("node {i} is not a JSON object")))?;
    let op = obj
        .get("op")
        .ok_or_else(|| fmt_err(format!("node {i} has no \"op\" field")))?
        .as_str()
        .ok_or_else(|| fmt_err(format!("node {i}: \"op\" is not a string")))?
        .to_string();
    let name = obj
        .get("name")
        .ok_or_else(|| fmt_err(format!("node {i} ({op}) has no \"name\" field")))?
        .as_str()
        .ok_or_else(|| fmt_err(format!("node {i} ({op}): \"name\" is not a string")))?
        .to_string();
    let mut attrs = BTreeMap::new();
    for key in ["attr", "param", "attrs"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, val) in map {
                    attrs.insert(k.clone(), attr_string(val));
                }
            }
            Some(other) => {
                return Err(fmt_err(format!(
                    "node {i} ({name:?}, {op}): \"{key}\" is {other}, not an object"
                )))
            }
        }
    }
    let inputs = match obj.get("inputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            if list.len() > MAX_INPUTS {
                return Err(fmt_err(format!(
                    "node {i} ({name:?}) has {} inputs, more than the {MAX_INPUTS} allowed",
                    list.len()
                )));
            }
            list.iter()
                .enumerate()
                .map(|(k, e)| parse_entry(e, &format!("input {k} of node {i} ({name:?}, {op})")))
                .collect::<Result<Vec<_>>>()?
        }
        Some(other) => {
            return Err(fmt_err(format!(
                "node {i} ({name:?}, {op}): \"inputs\" is {other}, not a list"
            )))
        }
    };
    Ok(SymNode {
        op,
        name,
        attrs,
        inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MLP: &str = r#"{
      "nodes": [
        {"op": "null", "name": "data", "inputs": []},
        {"op": "null", "name": "fc_weight", "attrs": {"__shape__": "(4, 0)"}, "inputs": []},
        {"op": "FullyConnected", "name": "fc", "attrs": {"num_hidden": "4", "no_bias": "True"},
         "inputs": [[0, 0, 0], [1, 0, 0]]},
        {"op": "Activation", "name": "relu", "param": {"act_type": "relu"}, "inputs": [[2, 0]]}
      ],
      "arg_nodes": [0, 1],
      "node_row_ptr": [0, 1, 2, 3, 4],
      "heads": [[3, 0, 0]],
      "attrs": {"mxnet_version": ["int", 10901]}
    }"#;

    #[test]
    fn parses_a_small_symbol() {
        let s = Symbol::from_json(MLP).unwrap();
        assert_eq!(s.nodes.len(), 4);
        assert_eq!(s.mxnet_version, Some(10901));
        assert_eq!(s.arg_nodes, vec![0, 1]);
        assert_eq!(s.heads, vec![Entry { node: 3, index: 0 }]);
        assert_eq!(s.nodes[3].attrs["act_type"], "relu");
        assert_eq!(s.nodes[1].attrs["__shape__"], "(4, 0)");
        assert_eq!(s.nodes[2].inputs[1], Entry { node: 1, index: 0 });
        assert_eq!(s.outputs_of(2), Some(1));
        assert_eq!(s.topo_order().unwrap(), vec![0, 1, 2, 3]);
        assert!(looks_like_symbol(&serde_json::from_str(MLP).unwrap()));
    }

    #[test]
    fn out_of_order_nodes_are_sorted() {
        let text = r#"{"nodes": [
            {"op": "relu", "name": "r", "inputs": [[1, 0, 0]]},
            {"op": "null", "name": "x", "inputs": []}],
            "heads": [[0, 0, 0]]}"#;
        let s = Symbol::from_json(text).unwrap();
        assert_eq!(s.topo_order().unwrap(), vec![1, 0]);
        assert_eq!(s.arg_nodes, vec![1]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("[1, 2]", "not a JSON object"),
            ("{\"heads\": []}", "no \"nodes\""),
            ("{\"nodes\": []}", "no \"heads\""),
            ("{\"nodes\": [], \"heads\": []}", "no outputs"),
            (
                r#"{"nodes": [{"name": "x"}], "heads": [[0,0,0]]}"#,
                "node 0 has no \"op\"",
            ),
            (
                r#"{"nodes": [{"op": "null"}], "heads": [[0,0,0]]}"#,
                "has no \"name\"",
            ),
            (
                r#"{"nodes": [{"op": "null", "name": "x"}], "heads": [[3,0,0]]}"#,
                "head 0 refers to node 3, but there are 1 nodes",
            ),
            (
                r#"{"nodes": [{"op": "null", "name": "x"}, {"op": "relu", "name": "r", "inputs": [[0, 2, 0]]}], "node_row_ptr": [0, 1, 2], "heads": [[1,0,0]]}"#,
                "output 2 of node 0",
            ),
            (
                r#"{"nodes": [{"op": "relu", "name": "a", "inputs": [[1,0,0]]}, {"op": "relu", "name": "b", "inputs": [[0,0,0]]}], "heads": [[1,0,0]]}"#,
                "cycle",
            ),
            (
                r#"{"nodes": [{"op": "null", "name": "x", "inputs": "no"}], "heads": [[0,0,0]]}"#,
                "not a list",
            ),
            (
                r#"{"nodes": [{"op": "null", "name": "x"}], "heads": [[0]]}"#,
                "expected [node, index]",
            ),
            (
                r#"{"nodes": [{"op": "null", "name": "x"}], "heads": [[-1, 0]]}"#,
                "not an index",
            ),
            (
                r#"{"nodes": [{"op": "null", "name": "x"}], "node_row_ptr": [0], "heads": [[0, 0]]}"#,
                "node_row_ptr",
            ),
            (
                r#"{"nodes": [{"op": "relu", "name": "x"}], "arg_nodes": [0], "heads": [[0, 0]]}"#,
                "not a variable",
            ),
            ("{\"nodes\": [", "not valid JSON"),
        ];
        for (text, want) in cases {
            let err = Symbol::from_json(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err} (wanted {want:?})");
        }
    }

    #[test]
    fn live_nodes_follow_the_heads() {
        let text = r#"{"nodes": [
            {"op": "null", "name": "x"}, {"op": "relu", "name": "dead", "inputs": [[0,0,0]]},
            {"op": "tanh", "name": "t", "inputs": [[0,0,0]]}], "heads": [[2,0,0]]}"#;
        let s = Symbol::from_json(text).unwrap();
        assert_eq!(s.live_nodes(), vec![true, false, true]);
        assert_eq!(s.find("t"), Some(2));
    }
}
