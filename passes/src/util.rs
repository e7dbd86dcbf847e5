//! Small graph helpers shared by the passes.

use kiln_ir::graph::NodeKind;
use kiln_ir::{Graph, NodeId, Op, Result, Tensor, TensorType};

/// Removes `id` if nothing uses it and it is an op or a constant (inputs and parameters are
/// the graph's calling convention and stay), then does the same for its inputs. Returns how
/// many nodes went.
pub(crate) fn remove_if_dead(g: &mut Graph, id: NodeId) -> Result<usize> {
    let mut removed = 0;
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        if !g.contains(n) || g.use_count(n)? > 0 {
            continue;
        }
        if matches!(
            g.node(n)?.kind,
            NodeKind::Input { .. } | NodeKind::Param { .. }
        ) {
            continue;
        }
        let inputs = g.inputs_of(n)?;
        g.remove_node(n)?;
        removed += 1;
        stack.extend(inputs);
    }
    Ok(removed)
}

/// Replaces every use of `old` by `new`, then removes `old` and whatever only it used.
pub(crate) fn replace_and_clean(g: &mut Graph, old: NodeId, new: NodeId) -> Result<()> {
    g.replace_all_uses(old, new)?;
    remove_if_dead(g, old)?;
    Ok(())
}

/// Bytes a value of type `ty` occupies.
pub(crate) fn bytes(ty: &TensorType) -> usize {
    ty.shape.numel().saturating_mul(ty.dtype.size_of())
}

/// An op's identity for hashing: its JSON form, which (unlike `==` on `f64`) tells `-0.0`
/// from `0.0`.
pub(crate) fn op_key(op: &Op) -> String {
    serde_json::to_string(op).unwrap_or_else(|_| format!("{op:?}"))
}

/// A constant's identity for hashing: dtype, shape and the bit patterns of its values.
pub(crate) fn const_key(t: &Tensor) -> String {
    let bits: Vec<u64> = t.to_f64_vec().iter().map(|x| x.to_bits()).collect();
    format!("{}{:?}{bits:?}", t.dtype(), t.shape().dims())
}

/// When node `id` holds one value everywhere (a constant whose elements are all equal, or a
/// `full`), that value as the node's dtype reads it.
pub(crate) fn uniform_value(g: &Graph, id: NodeId) -> Option<f64> {
    let node = g.node(id).ok()?;
    match &node.kind {
        NodeKind::Const(t) => {
            let v = t.to_f64_vec();
            let first = *v.first()?;
            v.iter()
                .all(|x| x.to_bits() == first.to_bits())
                .then_some(first)
        }
        NodeKind::Op(Op::Full { dtype, value, .. }) => Tensor::full([1], *dtype, *value)
            .to_f64_vec()
            .first()
            .copied(),
        _ => None,
    }
}
