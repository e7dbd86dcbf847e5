//! Running a differentiated pair: forward, then backward on the forward's saved values.

use super::Differentiated;
use kiln_ir::graph::NodeKind;
use kiln_ir::interp::eval;
use kiln_ir::{Error, Graph, NodeId, Op, Result, Tensor, TensorView};
use std::collections::HashMap;

impl Differentiated {
    /// Forward and backward as one graph, for engines that run a whole training step at once
    /// (and may share work between the two halves): its inputs are the forward's inputs and
    /// parameters, then `head:{j}` for each `j` in [`Differentiated::heads`]; its outputs are
    /// the user outputs followed by the gradients (in `wrt` order). The saved values become
    /// plain edges from the forward nodes.
    ///
    /// Errors when the forward graph already binds a name `head:{j}`.
    pub fn joint(&self) -> Result<Graph> {
        let mut g = self.forward.clone();
        let fwd_outputs = self.forward.outputs();
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for id in self.backward.topo_order() {
            let node = self.backward.node(id)?;
            let new = match &node.kind {
                NodeKind::Input { name } => {
                    if let Some(i) = name
                        .strip_prefix("saved:")
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        *fwd_outputs.get(self.num_outputs + i).ok_or_else(|| {
                            Error::Graph(format!(
                                "autodiff: the backward reads {name:?}, the forward saves {} \
                                 values",
                                self.saved_count()
                            ))
                        })?
                    } else {
                        g.add_input(name.clone(), node.ty.clone()).map_err(|e| {
                            Error::Graph(format!("autodiff: cannot join forward and backward: {e}"))
                        })?
                    }
                }
                NodeKind::Param { name } => {
                    return Err(Error::Graph(format!(
                        "autodiff: unexpected parameter {name:?} in the backward graph"
                    )))
                }
                NodeKind::Const(t) => g.add_const(t.clone())?,
                NodeKind::Op(op) => {
                    let inputs = self
                        .backward
                        .inputs_of(id)?
                        .iter()
                        .map(|i| lookup(&map, *i))
                        .collect::<Result<Vec<_>>>()?;
                    g.add_op(op.clone(), &inputs)?
                }
            };
            map.insert(id, new);
        }
        let mut outputs = fwd_outputs[..self.num_outputs].to_vec();
        for &o in self.backward.outputs() {
            outputs.push(lookup(&map, o)?);
        }
        g.set_outputs(outputs)?;
        Ok(g)
    }

    /// Runs the forward graph and then the backward graph on the reference interpreter.
    ///
    /// `inputs` binds every input and parameter of the forward graph by name. `heads` gives
    /// the gradient flowing into each user output (`None`: ones, so each output is summed);
    /// those of outputs not in [`Differentiated::heads`] are not used.
    /// Returns the user outputs and the gradients, one per `wrt` entry.
    ///
    /// Errors as [`kiln_ir::Graph::run`] for bad inputs, and when `heads` has the wrong count
    /// or a head gradient the wrong type.
    pub fn run(
        &self,
        inputs: &[(&str, TensorView<'_>)],
        heads: Option<&[TensorView<'_>]>,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        self.run_with(inputs, heads, &mut |op, xs| eval(op, xs))
    }

    /// [`Differentiated::run`] with `exec` computing each op (a backend's kernels).
    pub fn run_with(
        &self,
        inputs: &[(&str, TensorView<'_>)],
        heads: Option<&[TensorView<'_>]>,
        exec: &mut dyn FnMut(&Op, &[TensorView<'_>]) -> Result<Tensor>,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let mut outputs = self.forward.run_with(inputs, exec)?;
        let saved = outputs.split_off(self.num_outputs.min(outputs.len()));
        let ones: Vec<Tensor>;
        let heads: Vec<TensorView<'_>> = match heads {
            Some(h) => {
                if h.len() != self.num_outputs {
                    return Err(Error::Graph(format!(
                        "autodiff: {} head gradients given for {} outputs",
                        h.len(),
                        self.num_outputs
                    )));
                }
                h.to_vec()
            }
            None => {
                ones = outputs
                    .iter()
                    .map(|o| Tensor::full(o.shape().clone(), o.dtype(), 1.0))
                    .collect();
                ones.iter().map(Tensor::view).collect()
            }
        };
        let saved_names: Vec<String> = (0..saved.len()).map(Differentiated::saved_name).collect();
        let head_names: Vec<String> = self
            .heads
            .iter()
            .map(|&j| Differentiated::head_name(j))
            .collect();
        let mut feed: Vec<(&str, TensorView<'_>)> = Vec::with_capacity(saved.len() + heads.len());
        for (name, t) in saved_names.iter().zip(&saved) {
            feed.push((name, t.view()));
        }
        for (name, &j) in head_names.iter().zip(&self.heads) {
            let h = heads.get(j).cloned().ok_or_else(|| {
                Error::Graph(format!("autodiff: no head gradient for output {j}"))
            })?;
            feed.push((name, h));
        }
        let grads = self.backward.run_with(&feed, exec)?;
        Ok((outputs, grads))
    }
}

/// The joint-graph node of backward node `id` (topological order maps every input first).
fn lookup(map: &HashMap<NodeId, NodeId>, id: NodeId) -> Result<NodeId> {
    map.get(&id).copied().ok_or_else(|| {
        Error::Graph(format!(
            "autodiff: backward node {} was not joined before its use",
            id.index()
        ))
    })
}
