//! Inference rewrites: what only an inference graph may do.
//!
//! - [`RemoveDropout`] (pass `dropout`, required in the inference pipeline): dropout is the
//!   identity at inference, so every `dropout(x)` becomes `x`;
//! - [`FoldBatchNorm`] (pass `bn_fold`): `batch_norm` with running statistics
//!   (`use_batch_stats=false`) right after a `convolution` or `fully_connected` whose only
//!   user it is, along the layer's output-channel axis, is folded into the layer:
//!   with `s = gamma / sqrt(var + eps)`, the weights become `w * s` (per output channel) and
//!   the bias `(b - mean) * s + beta` (`b = 0` without a bias).
//!
//! When `w`, `b`, `gamma`, `beta`, `mean` and `var` are all constants, the new weights and
//! bias are computed now (by the interpreter, whatever their size) and the graph holds
//! constants of the same size as before. When some are parameters, their values are only
//! known at run time, so the pass writes the per-channel arithmetic as graph nodes on the
//! parameters: they cost one pass over the weights per run instead of one over the
//! activations, and a frontend that binds parameters as constants gets them folded away.
//!
//! Rounding: the folded layer rounds `w * s` to the weight dtype before the convolution,
//! where the original normalized the convolution's rounded output; results agree to a few
//! units in the last place of the output dtype (the tests use 1e-5 relative for f32).
//!
//! # Example
//!
//! ```
//! use kiln_ir::{DType, Graph, Op, Tensor, TensorType};
//! use kiln_passes::{FoldBatchNorm, Pass};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([4, 3], DType::F32))?;
//! let w = g.add_const(Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?)?;
//! let fc = g.add_op(Op::FullyConnected { flatten: true, no_bias: true }, &[x, w])?;
//! let gamma = g.add_const(Tensor::from_vec(vec![4.0f32, 1.0], [2])?)?;
//! let beta = g.add_const(Tensor::from_vec(vec![0.5f32, 0.0], [2])?)?;
//! let mean = g.add_const(Tensor::from_vec(vec![1.0f32, -1.0], [2])?)?;
//! let var = g.add_const(Tensor::from_vec(vec![4.0f32, 1.0], [2])?)?;
//! let bn = Op::BatchNorm { eps: 0.0, axis: 1, use_batch_stats: false };
//! let y = g.add_op(bn, &[fc, gamma, beta, mean, var])?;
//! g.set_outputs(vec![y])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[4,3]
//! %1 = const [1, 2, 3, 4, 5, 6] : f32[2,3]
//! %2 = fully_connected(%0, %1) {flatten=true, no_bias=true} : f32[4,2]
//! %3 = const [4, 1] : f32[2]
//! %4 = const [0.5, 0] : f32[2]
//! %5 = const [1, -1] : f32[2]
//! %6 = const [4, 1] : f32[2]
//! %7 = batch_norm(%2, %3, %4, %5, %6) {eps=0.0, axis=1, use_batch_stats=false} : f32[4,2]
//! return %7
//! ");
//! FoldBatchNorm.run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[4,3]
//! %1 = const [2, 4, 6, 4, 5, 6] : f32[2,3]
//! %2 = const [-1.5, 1] : f32[2]
//! %3 = fully_connected(%0, %1, %2) {flatten=true, no_bias=false} : f32[4,2]
//! return %3
//! ");
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::const_fold::try_fold;
use crate::util::{remove_if_dead, replace_and_clean};
use crate::{Firings, Pass, PassReport};
use kiln_ir::shape::normalize_axis;
use kiln_ir::{BinaryOp, Graph, NodeId, Op, Result, UnaryOp};

/// Removes dropout (pass name `dropout`; inference pipeline only).
#[derive(Clone, Copy, Debug, Default)]
pub struct RemoveDropout;

impl Pass for RemoveDropout {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn description(&self) -> &'static str {
        "inference: dropout is the identity"
    }
    fn optional(&self) -> bool {
        false
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let mut firings = Firings::default();
        for id in graph.topo_order() {
            if matches!(graph.op(id)?, Some(Op::Dropout { .. })) {
                // Inference gave dropout exactly one input.
                let Some(&x) = graph.inputs_of(id)?.first() else {
                    continue;
                };
                replace_and_clean(graph, id, x)?;
                firings.bump("remove-dropout");
            }
        }
        Ok(PassReport::new(before, graph.len(), firings.into_vec()))
    }
}

/// Folds inference batch norm into the preceding convolution or dense layer (pass name
/// `bn_fold`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldBatchNorm;

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "bn_fold"
    }
    fn description(&self) -> &'static str {
        "inference: batch norm with running statistics folded into conv/dense weights"
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let mut firings = Firings::default();
        for id in graph.topo_order() {
            if !graph.contains(id) {
                continue;
            }
            if let Some((new, made)) = fold_one(graph, id)? {
                replace_and_clean(graph, id, new)?;
                // The arithmetic nodes that were folded into constants are dead now.
                for m in made.into_iter().rev() {
                    remove_if_dead(graph, m)?;
                }
                firings.bump("fold-batch-norm");
            }
        }
        Ok(PassReport::new(before, graph.len(), firings.into_vec()))
    }
}

/// Folds batch-norm node `bn` into its producer if it can; returns the new layer node.
/// Returns the new layer node and the arithmetic nodes it added.
fn fold_one(g: &mut Graph, bn: NodeId) -> Result<Option<(NodeId, Vec<NodeId>)>> {
    let Some(Op::BatchNorm {
        eps,
        axis,
        use_batch_stats: false,
    }) = g.op(bn)?.cloned()
    else {
        return Ok(None);
    };
    let args = g.inputs_of(bn)?;
    let &[layer, gamma, beta, mean, var] = args.as_slice() else {
        return Ok(None);
    };
    if g.use_count(layer)? != 1 {
        return Ok(None);
    }
    let Some(layer_op) = g.op(layer)?.cloned() else {
        return Ok(None);
    };
    let out_rank = g.ty(layer)?.shape.rank();
    let Ok(axis) = normalize_axis(axis, out_rank, "batch_norm") else {
        return Ok(None);
    };
    let (new_op, channel_axis) = match &layer_op {
        Op::Convolution {
            stride,
            pad,
            dilation,
            groups,
            ..
        } => (
            Op::Convolution {
                stride: stride.clone(),
                pad: pad.clone(),
                dilation: dilation.clone(),
                groups: *groups,
                no_bias: false,
            },
            1,
        ),
        Op::FullyConnected { flatten, .. } => (
            Op::FullyConnected {
                flatten: *flatten,
                no_bias: false,
            },
            out_rank - 1,
        ),
        _ => return Ok(None),
    };
    if axis != channel_axis {
        return Ok(None);
    }
    let layer_in = g.inputs_of(layer)?;
    let (Some(&x), Some(&w)) = (layer_in.first(), layer_in.get(1)) else {
        return Ok(None);
    };
    let dtype = g.ty(w)?.dtype;
    let channels = g.ty(w)?.shape.dims().first().copied().unwrap_or(0);
    for v in [gamma, beta, mean, var] {
        let t = g.ty(v)?;
        if t.dtype != dtype || t.shape.dims() != [channels] {
            return Ok(None);
        }
    }
    if !dtype.is_float() {
        return Ok(None);
    }
    let mut made = Vec::new();
    let mut add = |g: &mut Graph, op: Op, inputs: &[NodeId]| -> Result<NodeId> {
        let id = g.add_op(op, inputs)?;
        made.push(id);
        Ok(id)
    };
    // s = gamma * rsqrt(var + eps)
    let ve = add(
        g,
        Op::Scalar {
            f: BinaryOp::Add,
            scalar: eps,
            reverse: false,
        },
        &[var],
    )?;
    let inv = add(g, Op::Unary { f: UnaryOp::Rsqrt }, &[ve])?;
    let s = add(g, Op::Binary { f: BinaryOp::Mul }, &[gamma, inv])?;
    // w' = w * s, with s shaped [O, 1, ...] against w [O, ...]
    let w_rank = g.ty(w)?.shape.rank();
    let s_shape: Vec<i64> = (0..w_rank)
        .map(|i| if i == 0 { channels as i64 } else { 1 })
        .collect();
    let s_col = add(g, Op::Reshape { shape: s_shape }, &[s])?;
    let w_new = add(g, Op::Binary { f: BinaryOp::Mul }, &[w, s_col])?;
    // b' = (b - mean) * s + beta
    let centered = match layer_in.get(2) {
        Some(&b) => add(g, Op::Binary { f: BinaryOp::Sub }, &[b, mean])?,
        None => add(g, Op::Unary { f: UnaryOp::Neg }, &[mean])?,
    };
    let scaled = add(g, Op::Binary { f: BinaryOp::Mul }, &[centered, s])?;
    let b_new = add(g, Op::Binary { f: BinaryOp::Add }, &[scaled, beta])?;
    // With every input known, compute the new weights and bias now (no size limit: the
    // results replace tensors of the same size).
    let mut folded: Vec<(NodeId, NodeId)> = Vec::new();
    for &id in &made {
        if let Some(t) = try_fold(g, id, None)? {
            let c = g.add_const(t)?;
            g.replace_all_uses(id, c)?;
            folded.push((id, c));
        }
    }
    let now = |id: NodeId| {
        folded
            .iter()
            .find(|(o, _)| *o == id)
            .map_or(id, |(_, c)| *c)
    };
    let new = g.add_op(new_op, &[x, now(w_new), now(b_new)])?;
    Ok(Some((new, made)))
}
