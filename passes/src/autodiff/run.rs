//! Running a differentiated pair: forward, then backward on the forward's saved values.

use super::Differentiated;
use kiln_ir::interp::eval;
use kiln_ir::{Error, Op, Result, Tensor, TensorView};

impl Differentiated {
    /// Runs the forward graph and then the backward graph on the reference interpreter.
    ///
    /// `inputs` binds every input and parameter of the forward graph by name. `heads` gives
    /// the gradient flowing into each user output (`None`: ones, so each output is summed).
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
        let head_names: Vec<String> = (0..heads.len()).map(Differentiated::head_name).collect();
        let mut feed: Vec<(&str, TensorView<'_>)> = Vec::with_capacity(saved.len() + heads.len());
        for (name, t) in saved_names.iter().zip(&saved) {
            feed.push((name, t.view()));
        }
        for (name, h) in head_names.iter().zip(heads) {
            feed.push((name, h));
        }
        let grads = self.backward.run_with(&feed, exec)?;
        Ok((outputs, grads))
    }
}
