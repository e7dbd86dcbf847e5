//! Blocks with several inputs and outputs (`HybridBlock::forward_many`), a `SymbolBlock` of
//! several inputs and outputs inlined into a traced parent, and symbolic arrays kept past
//! their trace: hybridized results and gradients equal imperative ones, and value reads are
//! errors, not panics.

use kiln_frontend::gluon::init::{One, Xavier};
use kiln_frontend::gluon::name::{name_scope, unique_prefix};
use kiln_frontend::gluon::nn::Dense;
use kiln_frontend::gluon::{Block, HybridBlock, Parameter, ParameterDict};
use kiln_frontend::hybrid::hybridize::{self, HybridState};
use kiln_frontend::hybrid::trace::trace;
use kiln_frontend::hybrid::SymbolBlock;
use kiln_frontend::{autograd, nd, Context, Error, NDArray, Result};
use kiln_ir::{DType, TensorType};
use std::sync::{Arc, Mutex, MutexGuard};

/// kiln's generator is process-wide: tests that initialize or draw take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(tanh(dense(x) * y + scale), sum(relu(dense(x) - y), axis 1))` on `x: [B, 5]`,
/// `y: [B, 3]`: two inputs, two outputs, one child and a parameter of its own.
struct Pair {
    prefix: String,
    dense: Dense,
    scale: Parameter,
    hybrid: HybridState,
}

impl Pair {
    fn new() -> Pair {
        let prefix = unique_prefix("pair");
        let dense = name_scope(&prefix, || Dense::new(3).in_units(5));
        Pair {
            scale: Parameter::new(format!("{prefix}scale"), [3]).with_init(Arc::new(One)),
            prefix,
            dense,
            hybrid: HybridState::default(),
        }
    }
}

impl Block for Pair {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
    fn params(&self) -> Vec<Parameter> {
        vec![self.scale.clone()]
    }
    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(&self.dense);
    }
}

impl HybridBlock for Pair {
    fn hybrid_forward(&self, _x: &NDArray) -> Result<NDArray> {
        Err(Error::invalid("Pair", "takes two inputs: use forward_many"))
    }
    fn hybrid_forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        let [x, y] = xs else {
            return Err(Error::invalid(
                "Pair",
                format!("{} input(s) given, takes 2: use forward_many", xs.len()),
            ));
        };
        let h = self.dense.forward(x)?;
        let scale = self.scale.data()?.broadcast_like(&h)?;
        let a = ((&h * *y)? + &scale)?.tanh()?;
        let b = (&h - *y)?.relu()?.sum_axis(1)?;
        Ok(vec![a, b])
    }
    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
    fn visit_hybrid_children(&self, f: &mut dyn FnMut(&dyn HybridBlock)) {
        f(&self.dense);
    }
}

fn array(shape: [usize; 2], seed: usize) -> NDArray {
    let n = shape[0] * shape[1];
    let v: Vec<f32> = (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * 0.8)
        .collect();
    NDArray::from_vec(v, shape.to_vec()).unwrap()
}

/// The two outputs, the loss, and the gradients of the parameters and both inputs after
/// `backward` of `sum(a * w) + sum(b)` (a weighted sum, so every element matters).
struct Run {
    outputs: Vec<Vec<f32>>,
    grads: Vec<Vec<f64>>,
}

fn run_pair(net: &Pair, x: &NDArray, y: &NDArray) -> Result<Run> {
    let params = net.collect_params()?;
    for p in params.iter() {
        p.zero_grad()?;
    }
    x.attach_grad();
    y.attach_grad();
    let w = array([4, 3], 9);
    let (loss, outs) = autograd::record(|| -> Result<(NDArray, Vec<NDArray>)> {
        let outs = net.forward_many(&[x, y])?;
        let loss = ((&outs[0] * &w)?.sum()? + outs[1].sum()?)?;
        Ok((loss, outs))
    })?;
    loss.backward()?;
    let mut grads: Vec<Vec<f64>> = params
        .iter()
        .map(|p| Ok(p.grad()?.to_vec_f64()))
        .collect::<Result<_>>()?;
    grads.push(x.grad()?.to_vec_f64());
    grads.push(y.grad()?.to_vec_f64());
    Ok(Run {
        outputs: outs
            .iter()
            .map(|o| o.to_vec::<f32>())
            .collect::<Result<_>>()?,
        grads,
    })
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1e-2),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

fn new_pair() -> Result<Pair> {
    let net = Pair::new();
    net.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    net.scale.set_data(&nd::array(&[0.1f32, -0.2, 0.3])?)?;
    Ok(net)
}

#[test]
fn two_inputs_two_outputs_hybridized_equal_imperative_with_gradients() -> Result<()> {
    let _serial = serial();
    let net = new_pair()?;
    let (x, y) = (array([4, 5], 1), array([4, 3], 2));
    let eager = run_pair(&net, &x, &y)?;
    assert_eq!(eager.outputs[0].len(), 12);
    assert_eq!(eager.outputs[1].len(), 4);

    net.hybridize();
    let first = run_pair(&net, &x, &y)?;
    let second = run_pair(&net, &x, &y)?;
    let stats = net.cache_stats();
    assert_eq!((stats.traces, stats.hits), (1, 1));
    let graph = net.hybrid_state().last_graph().expect("a traced graph");
    let inputs: Vec<&str> = graph.inputs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(inputs, vec!["data0", "data1"]);
    assert_eq!(graph.outputs().len(), 2);
    for run in [&first, &second] {
        for (o, e) in run.outputs.iter().zip(&eager.outputs) {
            let (o, e): (Vec<f64>, Vec<f64>) = (
                o.iter().map(|&v| f64::from(v)).collect(),
                e.iter().map(|&v| f64::from(v)).collect(),
            );
            assert_close(&o, &e, "output");
        }
        assert_eq!(run.grads.len(), 5, "3 parameters and 2 inputs");
        for (g, e) in run.grads.iter().zip(&eager.grads) {
            assert_close(g, e, "gradient");
        }
    }
    // A new batch size is a new signature (of both inputs).
    let out = net.forward_many(&[&array([2, 5], 3), &array([2, 3], 4)])?;
    assert_eq!(out[1].shape().dims(), &[2]);
    assert_eq!(net.cache_stats().traces, 2);
    Ok(())
}

#[test]
fn one_input_calls_of_multi_input_blocks_are_clear_errors() -> Result<()> {
    let _serial = serial();
    let net = new_pair()?;
    let x = array([4, 5], 1);
    let e = net
        .forward(&x)
        .expect_err("Pair takes two inputs")
        .to_string();
    assert!(e.contains("forward_many"), "{e}");
    net.hybridize();
    let e = net.forward(&x).expect_err("still two inputs").to_string();
    assert!(e.contains("forward_many"), "{e}");
    let e = net.forward_many(&[]).expect_err("no inputs").to_string();
    assert!(e.contains("at least one input"), "{e}");

    // A one-input block called with two inputs says so.
    let dense = Dense::new(2).in_units(5);
    dense.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    let e = dense
        .forward_many(&[&x, &x])
        .expect_err("Dense takes one input")
        .to_string();
    assert!(e.contains("takes one input, 2 were given"), "{e}");
    // And with one input, forward_many is forward.
    let one = dense.forward_many(&[&x])?;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].to_vec::<f32>()?, dense.forward(&x)?.to_vec::<f32>()?);

    // A one-input, two-output block: forward_many gives both, the one-output forward of the
    // compiled graph says to use it.
    let twice = Twice {
        hybrid: HybridState::default(),
    };
    twice.hybridize();
    let both = twice.forward_many(&[&x])?;
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].to_vec::<f32>()?, x.tanh()?.to_vec::<f32>()?);
    let e = twice.forward(&x).expect_err("two outputs").to_string();
    assert!(
        e.contains("returned 2 outputs") && e.contains("forward_many"),
        "{e}"
    );
    Ok(())
}

/// `(relu(x), tanh(x))`.
struct Twice {
    hybrid: HybridState,
}

impl Block for Twice {
    fn prefix(&self) -> String {
        "twice0_".into()
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Twice {
    fn hybrid_forward(&self, _x: &NDArray) -> Result<NDArray> {
        Err(Error::invalid(
            "Twice",
            "returns two outputs: use forward_many",
        ))
    }
    fn hybrid_forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        let [x] = xs else {
            return Err(Error::invalid("Twice", "takes one input"));
        };
        Ok(vec![x.relu()?, x.tanh()?])
    }
    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

#[test]
fn multi_input_blocks_export_and_import() -> Result<()> {
    let _serial = serial();
    let net = new_pair()?;
    let (x, y) = (array([4, 5], 1), array([4, 3], 2));
    net.hybridize();
    let want = autograd::predict_mode(|| net.forward_many(&[&x, &y]))?;
    let dir = tempfile::tempdir().unwrap();
    let (gf, pf) = net.export(&dir.path().join("pair"))?;
    let imported = SymbolBlock::imports(&gf, &["data0", "data1"], &pf, Context::cpu())?;
    let got = imported.forward_many(&[&x, &y])?;
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.to_vec::<f32>()?, w.to_vec::<f32>()?);
    }
    let e = imported.forward(&x).expect_err("two inputs").to_string();
    assert!(e.contains("forward_many"), "{e}");
    Ok(())
}

/// `a, b = imported(x, y)` then `dense(a) + b` (broadcast): a parent whose forward calls a
/// two-input, two-output `SymbolBlock`.
struct Head {
    prefix: String,
    inner: SymbolBlock,
    dense: Dense,
    hybrid: HybridState,
}

impl Block for Head {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(&self.inner);
        f(&self.dense);
    }
}

impl HybridBlock for Head {
    fn hybrid_forward(&self, _x: &NDArray) -> Result<NDArray> {
        Err(Error::invalid("Head", "takes two inputs: use forward_many"))
    }
    fn hybrid_forward_many(&self, xs: &[&NDArray]) -> Result<Vec<NDArray>> {
        let out = self.inner.forward_many(xs)?;
        let d = self.dense.forward(&out[0])?; // [B, 1]
        let b = out[1].reshape(&[-1, 1])?;
        Ok(vec![(d + &b)?])
    }
    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
    fn visit_hybrid_children(&self, f: &mut dyn FnMut(&dyn HybridBlock)) {
        f(&self.inner);
        f(&self.dense);
    }
}

#[test]
fn a_multi_output_symbol_block_inlines_into_a_traced_parent() -> Result<()> {
    let _serial = serial();
    let pair = new_pair()?;
    let (x, y) = (array([4, 5], 1), array([4, 3], 2));
    pair.hybridize();
    pair.forward_many(&[&x, &y])?;
    let dir = tempfile::tempdir().unwrap();
    let (gf, pf) = pair.export(&dir.path().join("pair"))?;
    let prefix = unique_prefix("head");
    let dense = name_scope(&prefix, || Dense::new(1).in_units(3));
    let head = Head {
        prefix,
        inner: SymbolBlock::imports(&gf, &["data0", "data1"], &pf, Context::cpu())?,
        dense,
        hybrid: HybridState::default(),
    };
    head.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    let params: ParameterDict = head.collect_params()?;
    assert_eq!(params.len(), 5, "3 imported and 2 new parameters");

    let grads = |head: &Head| -> Result<(Vec<f32>, Vec<Vec<f64>>)> {
        for p in params.iter() {
            p.zero_grad()?;
        }
        let (out, loss) = autograd::record(|| -> Result<(NDArray, NDArray)> {
            let out = head.forward_many(&[&x, &y])?.remove(0);
            let loss = (&out * &out)?.sum()?;
            Ok((out, loss))
        })?;
        loss.backward()?;
        let g = params
            .iter()
            .map(|p| Ok(p.grad()?.to_vec_f64()))
            .collect::<Result<_>>()?;
        Ok((out.to_vec::<f32>()?, g))
    };
    let (want_out, want_grads) = grads(&head)?;
    head.hybridize();
    let (got_out, got_grads) = grads(&head)?;
    assert_eq!(head.cache_stats().traces, 1);
    let graph = head.hybrid_state().last_graph().expect("a traced graph");
    let param_names: Vec<&str> = graph.params().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        param_names.len(),
        5,
        "the imported weights are graph parameters: {graph}"
    );
    let as64 = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
    assert_close(&as64(&got_out), &as64(&want_out), "output");
    for (g, w) in got_grads.iter().zip(&want_grads) {
        assert!(
            w.iter().any(|v| *v != 0.0),
            "every parameter gets a gradient"
        );
        assert_close(g, w, "gradient");
    }
    Ok(())
}

#[test]
fn reading_a_symbolic_array_after_its_trace_is_an_error() -> Result<()> {
    let _serial = serial();
    let kept: Mutex<Option<NDArray>> = Mutex::new(None);
    let ty = TensorType::new([2, 3], DType::F32);
    trace(&[ty], Context::cpu(), &ParameterDict::new(), |xs| {
        let y = xs[0].relu()?;
        *kept.lock().unwrap() = Some(y.clone());
        Ok(vec![y])
    })?;
    let y = kept.lock().unwrap().take().expect("kept");
    assert!(y.is_symbolic());
    let e = y
        .with_view(|v| v.shape.numel())
        .expect_err("no values")
        .to_string();
    assert!(e.contains("with_view"), "{e}");
    assert!(e.contains("trace that has ended"), "{e}");
    let e = y.to_vec::<f32>().expect_err("no values").to_string();
    assert!(e.contains("trace that has ended"), "{e}");
    assert_eq!(format!("{y}"), "<symbolic NDArray 2x3 f32 @cpu(0)>");
    Ok(())
}
