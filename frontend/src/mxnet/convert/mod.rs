//! Converting an MXNet [`Symbol`] to a kiln [`Graph`].
//!
//! Every MXNet op maps to one kiln op or a short composition of them, written per family:
//! [`nn`] (layers), [`elementwise`], [`reduce`], [`shape`] (shape and indexing) and [`rnn`]
//! (the fused `RNN` op, unrolled over the static sequence length). The graph is built for
//! inference: `Dropout` is the identity, `BatchNorm` uses its running statistics and the
//! loss heads (`SoftmaxOutput`...) give their forward values.
//!
//! Variables become graph inputs or parameters when an op first uses them: a name found among
//! the parameters is a parameter (MXNet's `arg:`/`aux:` prefixes already stripped), a name
//! among the given inputs is an input; a variable no op needs (the label of `SoftmaxOutput`)
//! does not appear. MXNet nodes can have several outputs; kiln nodes have one, so each
//! output a graph uses becomes its own kiln node.
//!
//! MXNet 1.x has no 0-d arrays: a result that would be a scalar (a full reduction, a 1-D
//! `dot`) has shape `[1]`, as in MXNet.

mod attrs;
mod elementwise;
mod nn;
mod reduce;
mod rnn;
mod shape;

use crate::mxnet::symbol::{Entry, SymNode, Symbol};
pub(crate) use attrs::Attrs;
use kiln_ir::{BinaryOp, DType, Error, Graph, NodeId, Op, Result, Tensor, TensorType, UnaryOp};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The result of a conversion.
#[derive(Debug)]
pub struct Converted {
    /// The kiln graph: the symbol's heads are its outputs, in order.
    pub graph: Graph,
    /// The data inputs the graph uses, in the order they were given.
    pub inputs: Vec<String>,
    /// The parameters the graph uses.
    pub params: Vec<String>,
    /// The parameters used as normalization statistics (MXNet's auxiliary states, never
    /// trained by gradient).
    pub aux: BTreeSet<String>,
}

/// A value of one MXNet node output while converting.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// A kiln node.
    Node(NodeId),
    /// `_zeros`/`_ones`/`_full` whose shape has unknown (0) dims, made concrete by the op that
    /// uses it (MXNet infers them backwards; gluon's RNN layers make their begin states so).
    Fill {
        dims: Vec<usize>,
        dtype: DType,
        value: f64,
    },
}

/// A converter for one MXNet op: the node, and the outputs it produces.
pub(crate) type ConvertFn = fn(&mut Cx<'_>, &SymNode) -> Result<Vec<Val>>;

/// The converter of `op`, or `None` when kiln does not know it.
pub(crate) fn lookup(op: &str) -> Option<ConvertFn> {
    nn::lookup(op)
        .or_else(|| elementwise::lookup(op))
        .or_else(|| reduce::lookup(op))
        .or_else(|| shape::lookup(op))
        .or_else(|| rnn::lookup(op))
}

/// True when kiln can convert the MXNet op named `op`.
pub fn is_supported(op: &str) -> bool {
    lookup(op).is_some()
}

/// The conversion state: the graph being built and the values of the converted nodes.
pub(crate) struct Cx<'a> {
    pub(crate) g: Graph,
    sym: &'a Symbol,
    inputs: &'a [(String, TensorType)],
    params: &'a BTreeMap<String, TensorType>,
    /// Per MXNet node, its outputs' values once converted.
    values: Vec<Option<Vec<Val>>>,
    /// Variables already bound (by node index).
    vars: HashMap<usize, NodeId>,
    used_inputs: BTreeSet<String>,
    used_params: Vec<String>,
    aux: BTreeSet<String>,
}

impl<'a> Cx<'a> {
    /// The value of `node`'s input `k`.
    pub(crate) fn val(&mut self, node: &SymNode, k: usize) -> Result<Val> {
        let e = *node.inputs.get(k).ok_or_else(|| {
            Error::invalid(
                node.op.clone(),
                format!(
                    "node {:?} has {} input(s), input {k} is needed",
                    node.name,
                    node.inputs.len()
                ),
            )
        })?;
        self.entry(e)
    }

    fn entry(&mut self, e: Entry) -> Result<Val> {
        let sym = self.sym;
        let src = &sym.nodes[e.node];
        if src.is_variable() {
            return self.var(e.node).map(Val::Node);
        }
        let outs = self.values[e.node].as_ref().ok_or_else(|| {
            Error::Graph(format!(
                "MXNet node {:?} is used before it is converted",
                src.name
            ))
        })?;
        outs.get(e.index).cloned().ok_or_else(|| {
            Error::invalid(
                src.op.clone(),
                format!(
                    "node {:?}: output {} is used, but kiln gives this op {} output(s)",
                    src.name,
                    e.index,
                    outs.len()
                ),
            )
        })
    }

    /// The kiln node of `node`'s input `k` (a deferred fill must have a known shape here).
    pub(crate) fn input(&mut self, node: &SymNode, k: usize) -> Result<NodeId> {
        match self.val(node, k)? {
            Val::Node(id) => Ok(id),
            Val::Fill { dims, dtype, value } => {
                if dims.contains(&0) {
                    return Err(Error::shape(
                        node.op.clone(),
                        format!(
                            "node {:?}: input {k} is a constant of shape {dims:?} whose unknown \
                             (0) dims kiln cannot infer here",
                            node.name
                        ),
                    ));
                }
                self.full(&dims, dtype, value)
            }
        }
    }

    /// Input `k` as a node of shape `dims`: a deferred fill takes that shape, a node must
    /// have it.
    pub(crate) fn input_shaped(
        &mut self,
        node: &SymNode,
        k: usize,
        dims: &[usize],
        dtype: DType,
    ) -> Result<NodeId> {
        match self.val(node, k)? {
            Val::Fill {
                dims: fd, value, ..
            } => {
                let fits =
                    fd.len() == dims.len() && fd.iter().zip(dims).all(|(&a, &b)| a == 0 || a == b);
                if !fits {
                    return Err(Error::shape(
                        node.op.clone(),
                        format!(
                            "node {:?}: input {k} has shape {fd:?}, {dims:?} is needed",
                            node.name
                        ),
                    ));
                }
                // The consumer's dtype: gluon writes float32 states for any model.
                self.full(dims, dtype, value)
            }
            Val::Node(id) => {
                let ty = self.ty(id)?;
                if ty.shape.dims() != dims {
                    return Err(Error::shape(
                        node.op.clone(),
                        format!(
                            "node {:?}: input {k} has shape {}, {dims:?} is needed",
                            node.name, ty.shape
                        ),
                    ));
                }
                Ok(id)
            }
        }
    }

    /// Marks the parameter behind `node`'s input `k` (if it is one) as an auxiliary state.
    pub(crate) fn mark_aux(&mut self, node: &SymNode, k: usize) {
        if let Some(e) = node.inputs.get(k) {
            let src = &self.sym.nodes[e.node];
            if src.is_variable() && self.params.contains_key(&src.name) {
                self.aux.insert(src.name.clone());
            }
        }
    }

    fn var(&mut self, i: usize) -> Result<NodeId> {
        if let Some(&id) = self.vars.get(&i) {
            return Ok(id);
        }
        let sym = self.sym;
        let node = &sym.nodes[i];
        let name = node.name.as_str();
        let id = if let Some(ty) = self.params.get(name) {
            self.used_params.push(name.to_string());
            self.g.add_param(name, ty.clone())?
        } else if let Some((_, ty)) = self.inputs.iter().find(|(n, _)| n == name) {
            self.used_inputs.insert(name.to_string());
            self.g.add_input(name, ty.clone())?
        } else if looks_like_param(node) {
            return Err(Error::invalid(
                "MXNet import",
                format!(
                    "variable {name:?} is a parameter{} missing from the parameters (they hold \
                     {} names)",
                    node.attrs
                        .get("__shape__")
                        .map(|s| format!(" of shape {s}"))
                        .unwrap_or_default(),
                    self.params.len()
                ),
            ));
        } else if let Some(ty) = declared_type(node)? {
            self.used_inputs.insert(name.to_string());
            self.g.add_input(name, ty)?
        } else {
            let given: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::invalid(
                "MXNet import",
                format!(
                    "variable {name:?} is neither a parameter (the parameters hold {} names) nor \
                     a given input (given: {}); give its shape as an input",
                    self.params.len(),
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
            ));
        };
        self.vars.insert(i, id);
        Ok(id)
    }

    // ----- graph helpers -------------------------------------------------------------------

    pub(crate) fn op(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        self.g.add_op(op, inputs)
    }

    pub(crate) fn ty(&self, id: NodeId) -> Result<TensorType> {
        self.g.ty(id).cloned()
    }

    pub(crate) fn dims(&self, id: NodeId) -> Result<Vec<usize>> {
        Ok(self.g.ty(id)?.shape.dims().to_vec())
    }

    pub(crate) fn unary(&mut self, f: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.op(Op::Unary { f }, &[x])
    }

    pub(crate) fn binary(&mut self, f: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Binary { f }, &[a, b])
    }

    /// `x ∘ s`, or `s ∘ x` when `reverse`.
    pub(crate) fn scalar(
        &mut self,
        f: BinaryOp,
        x: NodeId,
        s: f64,
        reverse: bool,
    ) -> Result<NodeId> {
        self.op(
            Op::Scalar {
                f,
                scalar: s,
                reverse,
            },
            &[x],
        )
    }

    pub(crate) fn full(&mut self, dims: &[usize], dtype: DType, value: f64) -> Result<NodeId> {
        self.g.add_const(Tensor::full(dims.to_vec(), dtype, value))
    }

    pub(crate) fn reshape(&mut self, x: NodeId, dims: &[usize]) -> Result<NodeId> {
        if self.dims(x)? == dims {
            return Ok(x);
        }
        let shape = dims
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| Error::shape("reshape", "dim too large")))
            .collect::<Result<Vec<i64>>>()?;
        self.op(Op::Reshape { shape }, &[x])
    }

    pub(crate) fn slice_axis(
        &mut self,
        x: NodeId,
        axis: isize,
        begin: usize,
        end: usize,
    ) -> Result<NodeId> {
        self.op(
            Op::SliceAxis {
                axis,
                begin: begin as i64,
                end: Some(end as i64),
            },
            &[x],
        )
    }
}

/// True for a variable that gluon or the symbol API marked as a learned parameter or an
/// auxiliary state (never a data input, even when it declares its shape).
fn looks_like_param(node: &SymNode) -> bool {
    const MARKS: [&str; 4] = ["__lr_mult__", "__wd_mult__", "__init__", "__storage_type__"];
    const SUFFIXES: [&str; 8] = [
        "_weight",
        "_bias",
        "_gamma",
        "_beta",
        "_running_mean",
        "_running_var",
        "_moving_mean",
        "_moving_var",
    ];
    MARKS.iter().any(|m| node.attrs.contains_key(*m))
        || SUFFIXES.iter().any(|s| node.name.ends_with(s))
}

/// The type a variable declares through `__shape__` (every dim known) and `__dtype__`.
fn declared_type(node: &SymNode) -> Result<Option<TensorType>> {
    let a = Attrs::new(node);
    let Some(dims) = a.utuple("__shape__")? else {
        return Ok(None);
    };
    if dims.is_empty() || dims.contains(&0) {
        return Ok(None);
    }
    Ok(Some(TensorType::new(
        dims,
        a.dtype("__dtype__", DType::F32)?,
    )))
}

/// Node outputs, one kiln node each.
pub(crate) fn one(id: NodeId) -> Result<Vec<Val>> {
    Ok(vec![Val::Node(id)])
}

/// Converts `sym` to a kiln graph. `inputs` are the data inputs with their types (a variable
/// not listed there or among `params` may still declare its shape with `__shape__`); `params`
/// are the parameter names (no `arg:`/`aux:` prefix) with their types.
///
/// Errors: the ops kiln does not know, all listed at once with their nodes; then the first
/// node that cannot be converted (bad attributes, shapes that do not fit), named.
pub fn convert(
    sym: &Symbol,
    inputs: &[(String, TensorType)],
    params: &BTreeMap<String, TensorType>,
) -> Result<Converted> {
    let live = sym.live_nodes();
    let order = sym.topo_order()?;
    let mut unknown: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for &i in &order {
        let node = &sym.nodes[i];
        if live[i] && !node.is_variable() && lookup(&node.op).is_none() {
            unknown.entry(&node.op).or_default().push(&node.name);
        }
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|(op, names)| {
                let shown: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
                let more = if names.len() > 3 {
                    format!(" and {} more", names.len() - 3)
                } else {
                    String::new()
                };
                format!("{op} (node {}{more})", shown.join(", "))
            })
            .collect();
        return Err(Error::invalid(
            "MXNet import",
            format!(
                "{} op(s) kiln does not support: {}",
                unknown.len(),
                list.join("; ")
            ),
        ));
    }
    for (name, _) in inputs {
        if sym.find(name).is_none_or(|i| !sym.nodes[i].is_variable()) {
            let vars: Vec<&str> = sym
                .arg_nodes
                .iter()
                .map(|&i| sym.nodes[i].name.as_str())
                .filter(|n| !params.contains_key(*n))
                .collect();
            return Err(Error::invalid(
                "MXNet import",
                format!(
                    "the symbol has no input {name:?} (its variables that are not parameters: {})",
                    vars.join(", ")
                ),
            ));
        }
    }

    let mut cx = Cx {
        g: Graph::new(),
        sym,
        inputs,
        params,
        values: vec![None; sym.nodes.len()],
        vars: HashMap::new(),
        used_inputs: BTreeSet::new(),
        used_params: Vec::new(),
        aux: BTreeSet::new(),
    };
    for &i in &order {
        let node = &sym.nodes[i];
        if !live[i] || node.is_variable() {
            continue;
        }
        let f = lookup(&node.op)
            .ok_or_else(|| Error::Graph(format!("no converter for {}", node.op)))?;
        let outs = f(&mut cx, node).map_err(|e| {
            let what = format!("MXNet node {:?} ({})", node.name, node.op);
            match e {
                Error::Shape { op, msg } => Error::shape(what, format!("{op}: {msg}")),
                Error::DType { op, msg } => Error::dtype(what, format!("{op}: {msg}")),
                Error::Invalid { op, msg } => Error::invalid(what, format!("{op}: {msg}")),
                Error::Graph(msg) => Error::Graph(format!("{what}: {msg}")),
                other => other,
            }
        })?;
        // MXNet 1.x arrays have at least one dim.
        let mut fixed = Vec::with_capacity(outs.len());
        for v in outs {
            fixed.push(match v {
                Val::Node(id) if cx.ty(id)?.shape.rank() == 0 => Val::Node(cx.reshape(id, &[1])?),
                other => other,
            });
        }
        cx.values[i] = Some(fixed);
    }
    let mut outputs = Vec::with_capacity(sym.heads.len());
    for &h in &sym.heads {
        let id = match cx.entry(h)? {
            Val::Node(id) => id,
            Val::Fill { dims, dtype, value } => {
                if dims.contains(&0) {
                    return Err(Error::shape(
                        "MXNet import",
                        format!(
                            "output {:?} is a constant with unknown dims {dims:?}",
                            sym.nodes[h.node].name
                        ),
                    ));
                }
                cx.full(&dims, dtype, value)?
            }
        };
        outputs.push(id);
    }
    cx.g.set_outputs(outputs)?;
    remove_dead(&mut cx.g)?;
    let bound: BTreeSet<String> = cx.g.bindings().iter().map(|(n, _)| n.to_string()).collect();
    cx.used_inputs.retain(|n| bound.contains(n));
    cx.used_params.retain(|n| bound.contains(n));
    cx.aux.retain(|n| bound.contains(n));
    let inputs_used = inputs
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| cx.used_inputs.contains(n))
        .chain(
            cx.used_inputs
                .iter()
                .filter(|n| inputs.iter().all(|(m, _)| m != *n))
                .cloned(),
        )
        .collect();
    Ok(Converted {
        graph: cx.g,
        inputs: inputs_used,
        params: cx.used_params,
        aux: cx.aux,
    })
}

/// Removes the nodes no output depends on (state outputs nobody reads, parameters a
/// `fix_gamma` BatchNorm ignores), so the graph binds only what it uses.
fn remove_dead(g: &mut Graph) -> Result<()> {
    let mut live: BTreeSet<NodeId> = BTreeSet::new();
    let mut stack: Vec<NodeId> = g.outputs().to_vec();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(g.inputs_of(id)?);
        }
    }
    for id in g.topo_order().into_iter().rev() {
        if !live.contains(&id) {
            g.remove_node(id)?;
        }
    }
    Ok(())
}
