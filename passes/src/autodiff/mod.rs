//! Reverse-mode automatic differentiation of whole graphs: `ir` in, `ir` out.
//!
//! [`differentiate`] turns a graph into a pair of graphs:
//!
//! - the **forward** graph: the original graph with the values the backward needs (its
//!   *saved* values, activations and the like) appended to its outputs;
//! - the **backward** graph: inputs `saved:{i}` (forward output `num_outputs + i`) and
//!   `head:{j}` (the gradient flowing into user output `j`, of that output's type); outputs
//!   the gradient of each `wrt` binding, in the order asked for.
//!
//! The backward is built by walking the forward graph in reverse topological order and running
//! each op's vector-Jacobian product ([`kiln_ir::vjp::vjp_wanted`], the one the eager autograd
//! tape runs too) against a builder that appends nodes to the backward graph. A forward value
//! a VJP reads becomes a `saved:{i}` input the first time it is read, and only if some node
//! that reaches a gradient uses it: each saved value is saved once, and nothing that only
//! shapes are read from is saved. Constants and non-random creation ops (`full`, `arange`)
//! that a VJP reads are copied into the backward graph instead of being saved. A VJP op on
//! forward values that the forward graph already computes (the softmax inside softmax
//! cross-entropy's VJP when the forward also returns that softmax) is not computed again: the
//! forward's value is saved and read.
//!
//! Which values are saved decides what the forward can fuse: a value the backward reads is a
//! forward output, and fusion never hides an output inside a kernel. Where a VJP can read
//! either of two values, it reads the one the backward keeps already (see
//! [`kiln_ir::vjp::VjpBuilder::is_kept`]): relu's mask `x > 0` is computed as `relu(x) > 0`,
//! from the activation the next layer's VJP saves anyway, so the pre-activation stays inside
//! the forward's dense/convolution + relu kernel.
//!
//! Gradients reaching one value along several paths (a value used twice, an output listed
//! twice) are summed. Gradients flow only through floating-point values: integer and bool
//! values (labels, indices, comparison results, `argmax`) and the inputs the VJPs declare
//! non-differentiable (see [`kiln_ir::vjp`]) get none. A `wrt` binding no gradient reaches
//! (no path, or an integer binding) gets zeros of its type.
//!
//! Random ops: a VJP that needs the forward op's randomness (`dropout`, `shuffle`) applies the
//! same op with the same `seed` attribute, so the backward holds copies of the forward seeds.
//! A caller that substitutes seeds at run time (seed placeholders) must substitute them in both
//! graphs.
//!
//! # Example
//!
//! `y = relu(x * w)`, differentiated with respect to `w`. Before:
//!
//! ```text
//! %0 = input "x" : f32[3]
//! %1 = param "w" : f32[3]
//! %2 = mul(%0, %1) : f32[3]
//! %3 = relu(%2) : f32[3]
//! return %3
//! ```
//!
//! After, the forward saves `relu(x * w)` (already an output) and `x`:
//!
//! ```text
//! %0 = input "x" : f32[3]
//! %1 = param "w" : f32[3]
//! %2 = mul(%0, %1) : f32[3]
//! %3 = relu(%2) : f32[3]
//! return %3, %3, %0
//! ```
//!
//! and the backward computes `head * (relu(x * w) > 0) * x`:
//!
//! ```text
//! %0 = input "saved:0" : f32[3]
//! %1 = input "saved:1" : f32[3]
//! %2 = input "head:0" : f32[3]
//! %3 = gt_scalar(%0) {scalar=0.0, reverse=false} : f32[3]
//! %4 = mul(%2, %3) : f32[3]
//! %5 = mul(%4, %1) : f32[3]
//! return %5
//! ```
//!
//! ```
//! use kiln_ir::{DType, Graph, Op, Tensor, TensorType, UnaryOp, BinaryOp};
//! use kiln_passes::autodiff::differentiate;
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([3], DType::F32))?;
//! let w = g.add_param("w", TensorType::new([3], DType::F32))?;
//! let xw = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[x, w])?;
//! let y = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[xw])?;
//! g.set_outputs(vec![y])?;
//!
//! let d = differentiate(&g, &["w"])?;
//! assert_eq!((d.num_outputs, d.saved_count()), (1, 2));
//!
//! let x_val = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3])?;
//! let w_val = Tensor::from_vec(vec![1.0f32, -1.0, 2.0], [3])?;
//! let (outputs, grads) = d.run(&[("x", x_val.view()), ("w", w_val.view())], None)?;
//! assert_eq!(outputs[0].to_f64_vec(), vec![1.0, 0.0, 6.0]);
//! assert_eq!(grads[0].to_f64_vec(), vec![1.0, 0.0, 3.0]);
//! # Ok::<(), kiln_ir::Error>(())
//! ```

mod builder;
mod run;

use builder::{BackwardBuilder, Value};
use kiln_ir::graph::NodeKind;
use kiln_ir::{BinaryOp, Error, Graph, NodeId, Op, Result};
use std::collections::HashMap;

/// A graph split for training: a forward that also returns what the backward needs, and the
/// backward that turns output gradients into gradients of the chosen bindings.
#[derive(Clone, Debug)]
pub struct Differentiated {
    /// The forward graph: the input graph's outputs first, then the saved values the backward
    /// graph needs (activations etc.), in the order of the backward's `saved:{i}` inputs.
    pub forward: Graph,
    /// Number of the original (user) outputs at the front of `forward.outputs()`.
    pub num_outputs: usize,
    /// The backward graph. Its inputs (`NodeKind::Input`) are `saved:{i}` for each saved
    /// value (forward output `num_outputs + i`), then `head:{j}` for the head gradient of user
    /// output `j` (same type as that output) for each `j` in `heads`, used or not. Its outputs
    /// are the gradients, one per entry of `wrt`, in that order (zeros of the binding's type
    /// where no gradient reaches it).
    pub backward: Graph,
    /// The `wrt` binding names, in the order of the backward's outputs.
    pub wrt: Vec<String>,
    /// The user outputs that are differentiated (each has a `head:{j}` input), in increasing
    /// order: all of them for [`differentiate`], those chosen for [`differentiate_outputs`].
    pub heads: Vec<usize>,
}

impl Differentiated {
    /// Number of saved values: the forward's outputs after the first `num_outputs`.
    pub fn saved_count(&self) -> usize {
        self.forward
            .outputs()
            .len()
            .saturating_sub(self.num_outputs)
    }

    /// The name of the backward input holding saved value `i`.
    pub fn saved_name(i: usize) -> String {
        format!("saved:{i}")
    }

    /// The name of the backward input holding the head gradient of user output `j`.
    pub fn head_name(j: usize) -> String {
        format!("head:{j}")
    }
}

/// Differentiates every output of `graph` with respect to the named bindings (inputs or
/// parameters); see the [module documentation](self).
///
/// Errors when a name in `wrt` is not an input or parameter of `graph`, or when a VJP fails
/// (an op whose gradient is not expressible, such as the second derivative of max pooling);
/// the message names the op.
pub fn differentiate(graph: &Graph, wrt: &[&str]) -> Result<Differentiated> {
    differentiate_outputs(graph, wrt, &vec![true; graph.outputs().len()])
}

/// [`differentiate`] for the outputs `j` with `heads[j]` set only: the others (say, updated
/// running statistics returned next to a loss) get no `head:{j}` input and no gradient flows
/// from them. The forward graph still returns every output.
///
/// Errors as [`differentiate`], and when `heads` and the outputs differ in length.
pub fn differentiate_outputs(
    graph: &Graph,
    wrt: &[&str],
    heads: &[bool],
) -> Result<Differentiated> {
    if heads.len() != graph.outputs().len() {
        return Err(Error::Graph(format!(
            "autodiff: {} head flags for {} outputs",
            heads.len(),
            graph.outputs().len()
        )));
    }
    let mut wrt_ids = Vec::with_capacity(wrt.len());
    for name in wrt {
        let id = graph.input_id(name).ok_or_else(|| {
            let known: Vec<&str> = graph.bindings().into_iter().map(|(n, _)| n).collect();
            Error::Graph(format!(
                "autodiff: no input or parameter named {name:?} to differentiate with respect \
                 to (this graph binds: {})",
                known.join(", ")
            ))
        })?;
        wrt_ids.push(id);
    }

    let order = graph.topo_order();
    let needs = gradient_mask(graph, &order, &wrt_ids)?;
    let num_outputs = graph.outputs().len();

    let mut b = BackwardBuilder::new(graph);
    // The gradient of each forward value so far (a backward node), by forward node index.
    let mut grads: HashMap<NodeId, NodeId> = HashMap::new();
    let mut head_list = Vec::new();
    for (j, &out) in graph.outputs().iter().enumerate() {
        if !heads[j] {
            continue;
        }
        head_list.push(j);
        let head = b.head_input(j, graph.ty(out)?.clone())?;
        if needs[out.index()] {
            accumulate(&mut b, &mut grads, out, head)?;
        }
    }

    for &id in order.iter().rev() {
        let Some(op) = graph.op(id)? else {
            continue;
        };
        let Some(&g) = grads.get(&id) else {
            continue;
        };
        let inputs = graph.inputs_of(id)?;
        let wanted: Vec<bool> = inputs.iter().map(|i| needs[i.index()]).collect();
        if !wanted.iter().any(|&w| w) {
            continue;
        }
        let values: Vec<Value> = inputs.iter().map(|&i| Value::Fwd(i)).collect();
        let in_grads = kiln_ir::vjp::vjp_wanted(
            &mut b,
            op,
            &values,
            &Value::Fwd(id),
            &Value::Bwd(g),
            &wanted,
        )?;
        if in_grads.len() != inputs.len() {
            return Err(Error::invalid(
                op.name(),
                format!(
                    "autodiff: the vjp returned {} gradients for {} inputs",
                    in_grads.len(),
                    inputs.len()
                ),
            ));
        }
        for (pos, (gi, &input)) in in_grads.into_iter().zip(&inputs).enumerate() {
            let (Some(gi), true) = (gi, wanted[pos]) else {
                continue;
            };
            let gi = b.materialize(&gi)?;
            let (want, got) = (graph.ty(input)?, b.graph().ty(gi)?);
            if want != got {
                return Err(Error::invalid(
                    op.name(),
                    format!(
                        "autodiff: the gradient of input {pos} has type {got}, the input has \
                         type {want}"
                    ),
                ));
            }
            accumulate(&mut b, &mut grads, input, gi)?;
        }
    }

    let mut outputs = Vec::with_capacity(wrt_ids.len());
    for &id in &wrt_ids {
        let out = match grads.get(&id) {
            Some(&g) => g,
            None => {
                let ty = graph.ty(id)?.clone();
                b.graph_mut().add_op(
                    Op::Full {
                        shape: ty.shape,
                        dtype: ty.dtype,
                        value: 0.0,
                    },
                    &[],
                )?
            }
        };
        outputs.push(out);
    }
    let (backward, saved) = b.finish(outputs)?;

    let mut forward = graph.clone();
    let mut fwd_outputs = graph.outputs().to_vec();
    fwd_outputs.extend(saved);
    forward.set_outputs(fwd_outputs)?;
    Ok(Differentiated {
        forward,
        num_outputs,
        backward,
        wrt: wrt.iter().map(|s| s.to_string()).collect(),
        heads: head_list,
    })
}

/// Per node index: true when a gradient of the node's value can reach a `wrt` binding: the
/// value is floating-point and is a `wrt` binding or an op with such an input.
fn gradient_mask(graph: &Graph, order: &[NodeId], wrt: &[NodeId]) -> Result<Vec<bool>> {
    let bound = order.iter().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut needs = vec![false; bound];
    for &id in order {
        let node = graph.node(id)?;
        if !node.ty.dtype.is_float() {
            continue;
        }
        needs[id.index()] = match node.kind {
            NodeKind::Input { .. } | NodeKind::Param { .. } => wrt.contains(&id),
            NodeKind::Const(_) => false,
            NodeKind::Op(_) => graph.inputs_of(id)?.iter().any(|i| needs[i.index()]),
        };
    }
    Ok(needs)
}

/// Adds `g` to the gradient of forward value `id`.
fn accumulate(
    b: &mut BackwardBuilder<'_>,
    grads: &mut HashMap<NodeId, NodeId>,
    id: NodeId,
    g: NodeId,
) -> Result<()> {
    let sum = match grads.get(&id) {
        None => g,
        Some(&prev) => b
            .graph_mut()
            .add_op(Op::Binary { f: BinaryOp::Add }, &[prev, g])?,
    };
    grads.insert(id, sum);
    Ok(())
}
