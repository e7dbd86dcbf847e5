//! Running a graph: inputs bound by name, ops executed in topological order by the reference
//! interpreter or by a backend's executor, intermediates freed after their last use.

use super::{numbering, Graph, NodeKind};
use crate::error::{Error, Result};
use crate::interp::eval;
use crate::op::Op;
use crate::tensor::{Tensor, TensorView};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;

/// A value during a run: borrowed (a bound input, a constant of the graph) or computed.
enum Value<'a> {
    Borrowed(TensorView<'a>),
    Owned(Tensor),
}

impl Value<'_> {
    fn view(&self) -> TensorView<'_> {
        match self {
            Value::Borrowed(v) => v.clone(),
            Value::Owned(t) => t.view(),
        }
    }

    fn into_tensor(self) -> Tensor {
        match self {
            Value::Borrowed(v) => v.to_tensor(),
            Value::Owned(t) => t,
        }
    }
}

impl Graph {
    /// Runs the graph on the reference interpreter ([`crate::interp::eval`]), binding every
    /// input and parameter by name; returns the outputs in order.
    ///
    /// ```
    /// use kiln_ir::{DType, Graph, Tensor, TensorType};
    /// let mut g = Graph::new();
    /// let x = g.add_input("x", TensorType::new([2], DType::F32)).unwrap();
    /// g.set_outputs(vec![x]).unwrap();
    /// let x_val = Tensor::from_vec(vec![1.0f32, 2.0], [2]).unwrap();
    /// let out = g.run(&[("x", x_val.view())]).unwrap();
    /// assert_eq!(out[0].to_f64_vec(), vec![1.0, 2.0]);
    /// ```
    pub fn run(&self, inputs: &[(&str, TensorView<'_>)]) -> Result<Vec<Tensor>> {
        self.run_with(inputs, &mut |op, xs| eval(op, xs))
    }

    /// Runs the graph with `exec` computing each op from its input views (a backend plugs its
    /// kernels in here). Only the nodes the outputs depend on run; each intermediate value is
    /// dropped after its last use. Errors on a missing, unknown, repeated or mis-typed input
    /// (naming it), and when `exec` returns a value of the wrong type.
    pub fn run_with(
        &self,
        inputs: &[(&str, TensorView<'_>)],
        exec: &mut dyn FnMut(&Op, &[TensorView<'_>]) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
        self.execute(inputs, exec, &mut 0)
    }

    /// [`Graph::run_with`], also counting the most computed values held at once in `peak`.
    fn execute(
        &self,
        inputs: &[(&str, TensorView<'_>)],
        exec: &mut dyn FnMut(&Op, &[TensorView<'_>]) -> Result<Tensor>,
        peak: &mut usize,
    ) -> Result<Vec<Tensor>> {
        let bound = self.g.node_bound();
        let mut values: Vec<Option<Value<'_>>> = (0..bound).map(|_| None).collect();
        for (name, view) in inputs {
            let id = self.input_id(name).ok_or_else(|| {
                let known: Vec<&str> = self.bindings().into_iter().map(|(n, _)| n).collect();
                Error::Graph(format!(
                    "run: unknown input {name:?} (this graph binds: {})",
                    known.join(", ")
                ))
            })?;
            let want = &self.node(id)?.ty;
            let got = view.ty();
            if *want != got {
                return Err(Error::Graph(format!(
                    "run: input {name:?} expects {want}, got {got}"
                )));
            }
            if values[id.index()]
                .replace(Value::Borrowed(view.clone()))
                .is_some()
            {
                return Err(Error::Graph(format!("run: input {name:?} is given twice")));
            }
        }
        for (name, id) in self.bindings() {
            if values[id.index()].is_none() {
                return Err(Error::Graph(format!(
                    "run: missing input {name:?} ({})",
                    self.node(id)?.ty
                )));
            }
        }

        let live = self.live_mask();
        // Remaining uses of each live value: edges into live users, plus output slots (which
        // keep a value to the end).
        let mut remaining = vec![0usize; bound];
        for id in self.g.node_indices().filter(|id| live[id.index()]) {
            remaining[id.index()] = self
                .g
                .edges_directed(id, Direction::Outgoing)
                .filter(|e| live[e.target().index()])
                .count();
        }
        let mut output_slots = vec![0usize; bound];
        for o in &self.outputs {
            output_slots[o.index()] += 1;
        }

        let (order, number) = numbering(self);
        let mut held = 0usize;
        // The further outputs of multi-output fused nodes, by node index, until their
        // fused_output nodes take them.
        let mut extras: Vec<Option<Vec<Option<Tensor>>>> = (0..bound).map(|_| None).collect();
        let mut done = vec![false; bound];
        for id in order.into_iter().filter(|id| live[id.index()]) {
            let node = self.node(id)?;
            let value = match &node.kind {
                NodeKind::Input { .. } | NodeKind::Param { .. } => continue,
                NodeKind::Const(t) => Value::Borrowed(t.view()),
                NodeKind::Op(op) => {
                    let args = self.inputs_unchecked(id);
                    let out = {
                        let views = args
                            .iter()
                            .map(|a| {
                                values[a.index()].as_ref().map(Value::view).ok_or_else(|| {
                                    Error::Graph(format!(
                                        "run: %{} ({}) needs %{}, which has no value",
                                        number[id.index()],
                                        op.name(),
                                        number[a.index()]
                                    ))
                                })
                            })
                            .collect::<Result<Vec<_>>>()?;
                        match op {
                            // Every output at once; the body's ops go through `exec`.
                            Op::Fused { kernel } if kernel.is_multi_output() => {
                                let mut all = kernel.eval_all(&views, exec)?.into_iter();
                                let first = all.next().ok_or_else(|| {
                                    Error::Graph("run: a fused kernel returned nothing".into())
                                })?;
                                extras[id.index()] = Some(all.map(Some).collect());
                                first
                            }
                            Op::FusedOutput { index, .. } => {
                                let src = args[0];
                                // The last fused_output reading this output takes it.
                                let later = self
                                    .g
                                    .neighbors_directed(src, Direction::Outgoing)
                                    .filter(|&u| u != id && live[u.index()] && !done[u.index()])
                                    .any(|u| self.node(u).is_ok_and(|n| n.kind.op() == Some(op)));
                                let slot = extras[src.index()]
                                    .as_mut()
                                    .and_then(|v| v.get_mut(index - 1));
                                let value = match slot {
                                    Some(v) if later => v.clone(),
                                    Some(v) => v.take(),
                                    None => None,
                                };
                                value.ok_or_else(|| {
                                    Error::Graph(format!(
                                        "run: %{} (fused_output) finds no output {index} of %{}",
                                        number[id.index()],
                                        number[src.index()]
                                    ))
                                })?
                            }
                            _ => exec(op, &views)?,
                        }
                    };
                    done[id.index()] = true;
                    // Inputs are still held while the output is produced.
                    *peak = (*peak).max(held + 1);
                    if out.ty() != node.ty {
                        return Err(Error::Graph(format!(
                            "run: %{} ({}) should give {}, the executor returned {}",
                            number[id.index()],
                            op.name(),
                            node.ty,
                            out.ty()
                        )));
                    }
                    for a in args {
                        let left = &mut remaining[a.index()];
                        *left = left.saturating_sub(1);
                        if *left == 0 && output_slots[a.index()] == 0 {
                            if let Some(Value::Owned(_)) = values[a.index()].take() {
                                held -= 1;
                            }
                        }
                    }
                    held += 1;
                    Value::Owned(out)
                }
            };
            values[id.index()] = Some(value);
        }

        let mut results = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            let slots = &mut output_slots[o.index()];
            *slots -= 1;
            let value = if *slots == 0 {
                values[o.index()].take()
            } else {
                values[o.index()]
                    .as_ref()
                    .map(|v| Value::Owned(v.view().to_tensor()))
            };
            let value = value.ok_or_else(|| {
                Error::Graph(format!("run: output %{} has no value", number[o.index()]))
            })?;
            results.push(value.into_tensor());
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Graph, Op, Tensor, TensorType, UnaryOp};

    #[test]
    fn intermediates_are_freed_after_their_last_use() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::new([4], DType::F32)).unwrap();
        let mut y = x;
        for _ in 0..10 {
            y = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[y]).unwrap();
        }
        g.set_outputs(vec![y]).unwrap();
        let x_val = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, 0.5], [4]).unwrap();
        let mut peak = 0;
        let out = g
            .execute(
                &[("x", x_val.view())],
                &mut |op, xs| crate::interp::eval(op, xs),
                &mut peak,
            )
            .unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![1.0, -2.0, 3.0, 0.5]);
        // A chain holds its previous value only while computing the next one.
        assert_eq!(peak, 2);
    }
}
