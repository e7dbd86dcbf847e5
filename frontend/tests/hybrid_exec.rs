//! The hybrid executor and `CachedGraph` on hand-built graphs: results equal eager NDArray
//! ops (bitwise on the CPU backend, which runs the same kernels), the interpreter backend
//! agrees with the CPU one, gradients equal eager autograd's, random ops reproduce eager
//! masks, state updates land in parameters, and bad calls give clear errors.

use kiln_frontend::gluon::{Parameter, ParameterDict};
use kiln_frontend::hybrid::{BackendChoice, CachedGraph, Executor, HybridizeOptions};
use kiln_frontend::ndarray::apply;
use kiln_frontend::{autograd, nd, GradReq, NDArray, Result};
use kiln_ir::graph::testing::{random_feed, random_graph};
use kiln_ir::{BinaryOp, DType, Graph, NodeId, Op, PoolKind, ReduceOp, TensorType, UnaryOp};

// ----- one model description, run eagerly or built into a graph ---------------------------

/// Builds a computation either eagerly (NDArrays) or as graph nodes, so each test model is
/// written once and both forms use exactly the same ops.
trait Emit {
    type V: Clone;
    fn input(&mut self, name: &str, value: &NDArray) -> Self::V;
    fn param(&mut self, p: &Parameter) -> Self::V;
    fn op(&mut self, op: Op, inputs: &[&Self::V]) -> Self::V;
}

/// Runs ops at once.
struct Eager;

impl Emit for Eager {
    type V = NDArray;
    fn input(&mut self, _: &str, value: &NDArray) -> NDArray {
        value.clone()
    }
    fn param(&mut self, p: &Parameter) -> NDArray {
        p.data().unwrap()
    }
    fn op(&mut self, op: Op, inputs: &[&NDArray]) -> NDArray {
        apply(op, inputs).unwrap()
    }
}

/// Appends nodes to a graph.
#[derive(Default)]
struct Build {
    g: Graph,
    inputs: Vec<String>,
}

impl Emit for Build {
    type V = NodeId;
    fn input(&mut self, name: &str, value: &NDArray) -> NodeId {
        self.inputs.push(name.to_string());
        self.g.add_input(name, value.ty()).unwrap()
    }
    fn param(&mut self, p: &Parameter) -> NodeId {
        let name = p.name();
        match self.g.input_id(&name) {
            Some(id) => id,
            None => self
                .g
                .add_param(name, TensorType::new(p.shape(), p.dtype()))
                .unwrap(),
        }
    }
    fn op(&mut self, op: Op, inputs: &[&NodeId]) -> NodeId {
        let ids: Vec<NodeId> = inputs.iter().map(|&&i| i).collect();
        self.g.add_op(op, &ids).unwrap()
    }
}

fn param(name: &str, shape: &[usize], values: impl Fn(usize) -> f32) -> Parameter {
    let n: usize = shape.iter().product();
    let p = Parameter::new(name, shape.to_vec());
    let data: Vec<f32> = (0..n).map(values).collect();
    p.set_data(&NDArray::from_vec(data, shape.to_vec()).unwrap())
        .unwrap();
    p
}

fn dict(ps: &[&Parameter]) -> ParameterDict {
    let mut d = ParameterDict::new();
    for p in ps {
        d.insert((*p).clone()).unwrap();
    }
    d
}

/// Deterministic pseudo-random values in about [-1, 1].
fn wave(seed: usize) -> impl Fn(usize) -> f32 {
    move |i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * 0.9
}

fn data(shape: &[usize], seed: usize) -> NDArray {
    let n: usize = shape.iter().product();
    NDArray::from_vec((0..n).map(wave(seed)).collect::<Vec<f32>>(), shape.to_vec()).unwrap()
}

fn bits(a: &NDArray) -> Vec<u32> {
    a.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn assert_close(got: &NDArray, want: &NDArray, rel: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let (g, w) = (got.to_vec_f64(), want.to_vec_f64());
    let scale = w.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= rel * scale,
            "{what}: element {i}: got {a}, want {b} (rel {rel} of {scale})"
        );
    }
}

// ----- the models ------------------------------------------------------------------------

/// A two-layer MLP: `relu(x W1ᵀ + b1) W2ᵀ + b2`, then a summed softmax cross-entropy.
struct Mlp {
    w1: Parameter,
    b1: Parameter,
    w2: Parameter,
    b2: Parameter,
}

impl Mlp {
    fn new() -> Mlp {
        Mlp {
            w1: param("mlp0_dense0_weight", &[8, 6], wave(1)),
            b1: param("mlp0_dense0_bias", &[8], wave(2)),
            w2: param("mlp0_dense1_weight", &[4, 8], wave(3)),
            b2: param("mlp0_dense1_bias", &[4], wave(4)),
        }
    }

    fn params(&self) -> ParameterDict {
        dict(&[&self.w1, &self.b1, &self.w2, &self.b2])
    }

    /// Returns the logits.
    fn logits<E: Emit>(&self, e: &mut E, x: &E::V) -> E::V {
        let fc = Op::FullyConnected {
            flatten: true,
            no_bias: false,
        };
        let (w1, b1) = (e.param(&self.w1), e.param(&self.b1));
        let h = e.op(fc.clone(), &[x, &w1, &b1]);
        let h = e.op(Op::Unary { f: UnaryOp::Relu }, &[&h]);
        let (w2, b2) = (e.param(&self.w2), e.param(&self.b2));
        e.op(fc, &[&h, &w2, &b2])
    }

    fn loss<E: Emit>(&self, e: &mut E, x: &E::V, labels: &E::V) -> E::V {
        let logits = self.logits(e, x);
        let l = e.op(Op::SoftmaxCrossEntropy, &[&logits, labels]);
        e.op(
            Op::Reduce {
                f: ReduceOp::Sum,
                axes: None,
                keepdims: false,
            },
            &[&l],
        )
    }
}

fn mlp_graph(m: &Mlp, x: &NDArray) -> (Graph, Vec<String>) {
    let mut b = Build::default();
    let xv = b.input("data", x);
    let y = m.logits(&mut b, &xv);
    b.g.set_outputs(vec![y]).unwrap();
    (b.g, b.inputs)
}

fn cached(g: Graph, inputs: Vec<String>, backend: BackendChoice) -> CachedGraph {
    let n = g.outputs().len();
    let opts = HybridizeOptions {
        backend,
        ..HybridizeOptions::default()
    };
    CachedGraph::new(g, inputs, n, vec![], 0, &opts).unwrap()
}

// ----- forward --------------------------------------------------------------------------

#[test]
fn mlp_forward_is_bitwise_eager() -> Result<()> {
    let m = Mlp::new();
    let x = data(&[5, 6], 9);
    let (g, inputs) = mlp_graph(&m, &x);
    let c = cached(g, inputs, BackendChoice::Cpu);
    let got = c.call(&[&x], &m.params())?;
    let want = m.logits(&mut Eager, &x);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].shape().dims(), &[5, 4]);
    assert_eq!(bits(&got[0]), bits(&want));
    assert_eq!(c.calls(), 1);

    // Updating a weight in place needs no new graph: parameters are bound at every call.
    m.w2.data()?.assign(&(&m.w2.data()? * 2.0)?)?;
    let got = c.call(&[&x], &m.params())?;
    assert_eq!(bits(&got[0]), bits(&m.logits(&mut Eager, &x)));
    Ok(())
}

#[test]
fn interpreter_backend_matches_cpu() -> Result<()> {
    let m = Mlp::new();
    let x = data(&[3, 6], 4);
    let (g, inputs) = mlp_graph(&m, &x);
    let cpu = cached(g.clone(), inputs.clone(), BackendChoice::Cpu);
    let interp = cached(g, inputs, BackendChoice::Interpreter);
    assert_eq!(interp.backend().name(), "interp");
    let a = cpu.call(&[&x], &m.params())?;
    let b = interp.call(&[&x], &m.params())?;
    assert_close(&b[0], &a[0], 1e-5, "mlp interp vs cpu");
    Ok(())
}

/// conv -> relu -> max pool -> avg pool (global) -> flatten.
struct ConvNet {
    w: Parameter,
    b: Parameter,
}

impl ConvNet {
    fn new() -> ConvNet {
        ConvNet {
            w: param("conv0_weight", &[4, 2, 3, 3], wave(11)),
            b: param("conv0_bias", &[4], wave(12)),
        }
    }

    fn forward<E: Emit>(&self, e: &mut E, x: &E::V) -> E::V {
        let (w, b) = (e.param(&self.w), e.param(&self.b));
        let y = e.op(
            Op::Convolution {
                stride: vec![1, 1],
                pad: vec![1, 1],
                dilation: vec![1, 1],
                groups: 1,
                no_bias: false,
            },
            &[x, &w, &b],
        );
        let y = e.op(Op::Unary { f: UnaryOp::Relu }, &[&y]);
        let y = e.op(
            Op::Pooling {
                kind: PoolKind::Max,
                kernel: vec![2, 2],
                stride: vec![2, 2],
                pad: vec![0, 0],
                global: false,
                count_include_pad: true,
            },
            &[&y],
        );
        let y = e.op(
            Op::Pooling {
                kind: PoolKind::Avg,
                kernel: vec![1, 1],
                stride: vec![1, 1],
                pad: vec![0, 0],
                global: true,
                count_include_pad: true,
            },
            &[&y],
        );
        e.op(Op::Flatten, &[&y])
    }
}

#[test]
fn conv_pool_forward_matches_eager_on_both_backends() -> Result<()> {
    let net = ConvNet::new();
    let x = data(&[2, 2, 6, 6], 13);
    let mut b = Build::default();
    let xv = b.input("x", &x);
    let y = net.forward(&mut b, &xv);
    b.g.set_outputs(vec![y])?;
    let params = dict(&[&net.w, &net.b]);
    let want = net.forward(&mut Eager, &x);
    let cpu = cached(b.g.clone(), b.inputs.clone(), BackendChoice::Cpu);
    let got = cpu.call(&[&x], &params)?;
    assert_eq!(got[0].shape().dims(), &[2, 4]);
    assert_eq!(bits(&got[0]), bits(&want));
    let interp = cached(b.g, b.inputs, BackendChoice::Interpreter);
    assert_close(&interp.call(&[&x], &params)?[0], &want, 1e-5, "conv interp");
    Ok(())
}

#[test]
fn random_graphs_run_the_same_on_both_backends_and_the_ir_runner() -> Result<()> {
    for seed in 0..12u64 {
        let g = random_graph(seed, 14);
        let feed = random_feed(&g, seed);
        let views: Vec<_> = g
            .bindings()
            .iter()
            .map(|(name, _)| {
                feed.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.view())
                    .unwrap()
            })
            .collect();
        let want = g.run(
            &feed
                .iter()
                .map(|(n, t)| (n.as_str(), t.view()))
                .collect::<Vec<_>>(),
        )?;
        for backend in [BackendChoice::Cpu, BackendChoice::Interpreter] {
            let exec = Executor::new(&g, 0, backend)?;
            let got = exec.run(&views, &[])?;
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(a.ty(), b.ty());
                let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                        "seed {seed} {backend:?}: {x} vs {y}"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn executor_frees_values_after_their_last_use() -> Result<()> {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new([16], DType::F32))?;
    let mut y = x;
    for _ in 0..20 {
        y = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[y])?;
    }
    // A dead branch: never run.
    let dead = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
    let _ = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[dead])?;
    g.set_outputs(vec![y])?;
    let exec = Executor::new(&g, 0, BackendChoice::Cpu)?;
    assert_eq!(exec.num_ops(), 20);
    let xv = kiln_ir::Tensor::from_vec((0..16).map(|i| i as f32).collect::<Vec<_>>(), [16])?;
    let (out, stats) = exec.run_with_stats(&[xv.view()], &[])?;
    assert_eq!(
        out[0].to_f64_vec(),
        (0..16).map(|i| i as f64).collect::<Vec<_>>()
    );
    assert_eq!(stats.ops_run, 20);
    // With the memory plan (the default pipeline) the first step reads the caller's array and
    // every later step overwrites its input in place (each value's only reader), so one value
    // is live at a time. Without it (`KILN_PASSES=none`) each step holds only its input while
    // producing its output.
    let peak = if stats.in_place > 0 {
        assert_eq!(stats.in_place, 19);
        1
    } else {
        assert!(
            std::env::var_os("KILN_PASSES").is_some(),
            "no step ran in place under the default pipeline"
        );
        2
    };
    assert_eq!(stats.peak_values, peak);
    Ok(())
}

#[test]
fn outputs_may_repeat_and_be_inputs_or_intermediates() -> Result<()> {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new([3], DType::F32))?;
    let a = g.add_op(Op::Unary { f: UnaryOp::Square }, &[x])?;
    let b = g.add_op(Op::Binary { f: BinaryOp::Add }, &[a, x])?;
    g.set_outputs(vec![a, b, a, x])?;
    let c = cached(g, vec!["x".into()], BackendChoice::Cpu);
    let xv = nd::array(&[1.0f32, 2.0, 3.0])?;
    let out = c.call(&[&xv], &ParameterDict::new())?;
    assert_eq!(out[0].to_vec::<f32>()?, vec![1.0, 4.0, 9.0]);
    assert_eq!(out[1].to_vec::<f32>()?, vec![2.0, 6.0, 12.0]);
    assert_eq!(out[2].to_vec::<f32>()?, vec![1.0, 4.0, 9.0]);
    assert_eq!(out[3].to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
    assert!(!out[3].shares_storage_with(&xv));
    Ok(())
}

// ----- gradients ------------------------------------------------------------------------

fn grads_of(ps: &ParameterDict) -> Vec<NDArray> {
    ps.iter()
        .map(|p| p.grad().unwrap().copy().unwrap())
        .collect()
}

fn sum_all(x: &NDArray) -> Result<NDArray> {
    apply(
        Op::Reduce {
            f: ReduceOp::Sum,
            axes: None,
            keepdims: false,
        },
        &[x],
    )
}

#[test]
fn mlp_parameter_gradients_equal_eager_with_an_imperative_loss() -> Result<()> {
    let m = Mlp::new();
    let params = m.params();
    let x = data(&[5, 6], 9);
    let labels = nd::array(&[0.0f32, 1.0, 2.0, 3.0, 1.0])?;

    let loss = autograd::record(|| m.loss(&mut Eager, &x, &labels));
    loss.backward()?;
    let want = grads_of(&params);
    params.zero_grad()?;

    let (g, inputs) = mlp_graph(&m, &x);
    let c = cached(g, inputs, BackendChoice::Cpu);
    let hybrid_loss = autograd::record(|| -> Result<NDArray> {
        let logits = c.call(&[&x], &params)?.remove(0);
        sum_all(&apply(Op::SoftmaxCrossEntropy, &[&logits, &labels])?)
    })?;
    assert_close(&hybrid_loss, &loss, 1e-6, "loss");
    hybrid_loss.backward()?;
    for ((got, want), name) in grads_of(&params).iter().zip(&want).zip(params.names()) {
        assert_close(got, want, 1e-5, &name);
    }
    // The first-layer weight gradient is not trivially zero.
    assert!(want[0].to_vec_f64().iter().any(|v| v.abs() > 1e-3));
    assert_eq!(c.backward_plans(), 1);

    // A second training step reuses the compiled backward.
    params.zero_grad()?;
    let l2 = autograd::record(|| -> Result<NDArray> {
        let logits = c.call(&[&x], &params)?.remove(0);
        sum_all(&apply(Op::SoftmaxCrossEntropy, &[&logits, &labels])?)
    })?;
    l2.backward()?;
    assert_close(&grads_of(&params)[2], &want[2], 1e-5, "second step");
    assert_eq!(c.backward_plans(), 1);
    Ok(())
}

#[test]
fn whole_loss_graph_gives_input_and_parameter_gradients_on_both_backends() -> Result<()> {
    let m = Mlp::new();
    let params = m.params();
    let x = data(&[4, 6], 21);
    let labels = nd::array(&[3.0f32, 0.0, 2.0, 1.0])?;
    x.attach_grad();
    let loss = autograd::record(|| m.loss(&mut Eager, &x, &labels));
    loss.backward()?;
    let want = grads_of(&params);
    let want_x = x.grad()?.copy()?;

    let mut b = Build::default();
    let xv = b.input("data", &x);
    let lv = b.input("label", &labels);
    let l = m.loss(&mut b, &xv, &lv);
    b.g.set_outputs(vec![l])?;
    for backend in [BackendChoice::Cpu, BackendChoice::Interpreter] {
        params.zero_grad()?;
        x.grad()?.fill(0.0)?;
        let c = cached(b.g.clone(), b.inputs.clone(), backend);
        let out = autograd::record(|| c.call(&[&x, &labels], &params))?;
        out[0].backward()?;
        for ((got, want), name) in grads_of(&params).iter().zip(&want).zip(params.names()) {
            assert_close(got, want, 1e-5, &format!("{backend:?} {name}"));
        }
        assert_close(&x.grad()?, &want_x, 1e-5, "input gradient");
    }
    Ok(())
}

#[test]
fn only_wanted_gradients_are_computed_and_plans_are_cached_per_set() -> Result<()> {
    let m = Mlp::new();
    let params = m.params();
    let x = data(&[3, 6], 2);
    let (g, inputs) = mlp_graph(&m, &x);
    let c = cached(g, inputs, BackendChoice::Cpu);
    // Freeze the first layer: its weight gets no gradient and keeps its buffer untouched.
    m.w1.set_grad_req(GradReq::Null)?;
    let y = autograd::record(|| sum_all(&c.call(&[&x], &params)?[0]))?;
    y.backward()?;
    assert!(m.w1.grad().is_err());
    assert!(m.w2.grad()?.to_vec_f64().iter().any(|v| *v != 0.0));
    assert_eq!(c.backward_plans(), 1);
    m.w1.set_grad_req(GradReq::Write)?;
    let y = autograd::record(|| sum_all(&c.call(&[&x], &params)?[0]))?;
    y.backward()?;
    assert!(m.w1.grad()?.to_vec_f64().iter().any(|v| *v != 0.0));
    assert_eq!(c.backward_plans(), 2);
    // Outside record nothing is differentiated and the outputs carry no history.
    let y = c.call(&[&x], &params)?;
    assert!(y[0].backward().is_err());
    Ok(())
}

#[test]
fn conv_pool_gradients_equal_eager() -> Result<()> {
    let net = ConvNet::new();
    let params = dict(&[&net.w, &net.b]);
    let x = data(&[2, 2, 6, 6], 5);
    let y = autograd::record(|| sum_all(&net.forward(&mut Eager, &x).square()?))?;
    y.backward()?;
    let want = grads_of(&params);
    params.zero_grad()?;
    let mut b = Build::default();
    let xv = b.input("x", &x);
    let out = net.forward(&mut b, &xv);
    b.g.set_outputs(vec![out])?;
    let c = cached(b.g, b.inputs, BackendChoice::Cpu);
    let y2 = autograd::record(|| sum_all(&c.call(&[&x], &params)?[0].square()?))?;
    assert_eq!(bits(&y2), bits(&y));
    y2.backward()?;
    for ((got, want), name) in grads_of(&params).iter().zip(&want).zip(params.names()) {
        assert_close(got, want, 1e-5, &name);
    }
    Ok(())
}

// ----- seeds ------------------------------------------------------------------------------

/// Tests that draw from the global random generator hold this, so that one test reseeding
/// it does not change what another draws (tests run on parallel threads).
fn global_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// Dropout with seed slots.

/// `dropout(dropout(x, 0.5) * w, 0.3)`: two random ops, seed slots 0 and 1.
fn dropout_model<E: Emit>(e: &mut E, x: &E::V, w: &E::V, seeds: [u64; 2]) -> E::V {
    let d = e.op(
        Op::Dropout {
            p: 0.5,
            seed: seeds[0],
        },
        &[x],
    );
    let y = e.op(Op::Binary { f: BinaryOp::Mul }, &[&d, w]);
    e.op(
        Op::Dropout {
            p: 0.3,
            seed: seeds[1],
        },
        &[&y],
    )
}

#[test]
fn dropout_masks_and_gradients_equal_eager_under_the_same_global_seed() -> Result<()> {
    use kiln_frontend::random;
    let _rng = global_rng();
    let w = param("drop0_w", &[16], wave(31));
    let params = dict(&[&w]);
    let x = data(&[6, 16], 8);

    let mut b = Build::default();
    let xv = b.input("x", &x);
    let wv = b.param(&w);
    let out = dropout_model(&mut b, &xv, &wv, [0, 1]);
    b.g.set_outputs(vec![out])?;
    let c = CachedGraph::new(b.g, b.inputs, 1, vec![], 2, &HybridizeOptions::default())?;

    let mut eager_runs = Vec::new();
    random::seed(1234);
    for _ in 0..2 {
        let y = autograd::record(|| {
            let s = [random::next_seed(), random::next_seed()];
            let wd = w.data().unwrap();
            sum_all(&dropout_model(&mut Eager, &x, &wd, s).square()?)
        })?;
        y.backward()?;
        eager_runs.push((y, w.grad()?.copy()?));
    }
    random::seed(1234);
    let mut outputs = Vec::new();
    for (want_y, want_g) in &eager_runs {
        let (y, out) = autograd::record(|| -> Result<(NDArray, NDArray)> {
            let out = c.call(&[&x], &params)?.remove(0);
            Ok((sum_all(&out.square()?)?, out))
        })?;
        assert_eq!(bits(&y), bits(want_y), "forward with the same masks");
        y.backward()?;
        assert_close(&w.grad()?, want_g, 1e-6, "gradient through the same masks");
        outputs.push(out);
    }
    // Every call draws fresh seeds: the two calls' masks differ.
    assert_ne!(bits(&outputs[0]), bits(&outputs[1]));
    let zeros = outputs[0]
        .to_vec::<f32>()?
        .iter()
        .filter(|v| **v == 0.0)
        .count();
    assert!(zeros > 20 && zeros < 80, "{zeros} of 96 dropped");
    Ok(())
}

// ----- state updates ----------------------------------------------------------------------

#[test]
fn batchnorm_running_stats_are_written_as_eager_and_gradients_match() -> Result<()> {
    use kiln_frontend::gluon::init::Uniform;
    use kiln_frontend::gluon::nn::norm::BatchNorm;
    use kiln_frontend::gluon::Block;
    use kiln_frontend::Context;
    use std::sync::Arc;

    let _rng = global_rng();
    let momentum = 0.8;
    let bn = BatchNorm::new().momentum(momentum).in_channels(3);
    bn.initialize(Arc::new(Uniform::new(0.5)), Context::cpu())?;
    let params = bn.collect_params()?;
    // Non-trivial starting statistics.
    bn.running_mean()
        .set_data(&nd::array(&[0.1f32, -0.2, 0.3])?)?;
    bn.running_var()
        .set_data(&nd::array(&[1.5f32, 0.5, 2.0])?)?;
    let start: Vec<NDArray> = params
        .iter()
        .map(|p| p.data().unwrap().copy().unwrap())
        .collect();
    let x = data(&[4, 3, 5], 17);

    // Eager, training mode.
    let y = autograd::record(|| sum_all(&bn.forward(&x)?.square()?))?;
    y.backward()?;
    let want_state: Vec<NDArray> = [bn.running_mean(), bn.running_var()]
        .iter()
        .map(|p| p.data().unwrap().copy().unwrap())
        .collect();
    let want_grads = [bn.gamma().grad()?.copy()?, bn.beta().grad()?.copy()?];
    for (p, v) in params.iter().zip(&start) {
        p.data()?.assign(v)?;
    }
    params.zero_grad()?;

    // The same computation as a graph: y and the two new running statistics.
    let mut b = Build::default();
    let xv = b.input("x", &x);
    let [gamma, beta, rm, rv] =
        [bn.gamma(), bn.beta(), bn.running_mean(), bn.running_var()].map(|p| b.param(p));
    let y_node = b.op(
        Op::BatchNorm {
            eps: 1e-5,
            axis: 1,
            use_batch_stats: true,
        },
        &[&xv, &gamma, &beta, &rm, &rv],
    );
    let mean = |b: &mut Build, v: &NodeId, keep: bool| {
        b.op(
            Op::Reduce {
                f: ReduceOp::Mean,
                axes: Some(vec![0, 2]),
                keepdims: keep,
            },
            &[v],
        )
    };
    let mean_keep = mean(&mut b, &xv, true);
    let centered = b.op(Op::Binary { f: BinaryOp::Sub }, &[&xv, &mean_keep]);
    let sq = b.op(Op::Unary { f: UnaryOp::Square }, &[&centered]);
    let var = mean(&mut b, &sq, false);
    let batch_mean = mean(&mut b, &mean_keep, false);
    let update = |b: &mut Build, running: &NodeId, batch: &NodeId| {
        let r = b.op(
            Op::Scalar {
                f: BinaryOp::Mul,
                scalar: momentum,
                reverse: false,
            },
            &[running],
        );
        let s = b.op(
            Op::Scalar {
                f: BinaryOp::Mul,
                scalar: 1.0 - momentum,
                reverse: false,
            },
            &[batch],
        );
        b.op(Op::Binary { f: BinaryOp::Add }, &[&r, &s])
    };
    let new_mean = update(&mut b, &rm, &batch_mean);
    let new_var = update(&mut b, &rv, &var);
    b.g.set_outputs(vec![y_node, new_mean, new_var])?;
    let c = CachedGraph::new(
        b.g,
        b.inputs,
        1,
        vec![(bn.running_mean().name(), 1), (bn.running_var().name(), 2)],
        0,
        &HybridizeOptions::default(),
    )?;
    let y2 = autograd::record(|| -> Result<NDArray> {
        let out = c.call(&[&x], &params)?;
        assert_eq!(out.len(), 1);
        sum_all(&out[0].square()?)
    })?;
    assert_eq!(bits(&y2), bits(&y));
    // The running statistics are means over the batch: the compiled reduction sums in its own
    // documented order (vector accumulators), so they may differ from eager mode's in the last
    // bit, never more.
    for (p, want) in [bn.running_mean(), bn.running_var()]
        .iter()
        .zip(&want_state)
    {
        assert_close(&p.data()?, want, 1e-6, &p.name());
    }
    y2.backward()?;
    assert_close(&bn.gamma().grad()?, &want_grads[0], 1e-5, "gamma");
    // beta's gradient is 2·sum(y) with y normalized to mean zero: mathematically zero, so what
    // both modes compute is rounding noise (order 1e-7), which a reordered sum changes
    // entirely. It is compared at the scale of gamma's gradient, the layer's real signal.
    let gamma_scale = want_grads[0]
        .to_vec_f64()
        .iter()
        .fold(0f64, |m, x| m.max(x.abs()));
    for (a, b) in bn
        .beta()
        .grad()?
        .to_vec_f64()
        .iter()
        .zip(want_grads[1].to_vec_f64())
    {
        assert!(
            (a - b).abs() <= 1e-5 * gamma_scale,
            "beta: got {a}, want {b} (1e-5 of gamma's gradient scale {gamma_scale})"
        );
    }
    // Running statistics have grad_req null: never differentiated.
    assert!(bn.running_mean().grad().is_err());
    Ok(())
}

// ----- errors -----------------------------------------------------------------------------

fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_calls_and_graphs_are_clear_errors() -> Result<()> {
    let m = Mlp::new();
    let x = data(&[5, 6], 9);
    let (g, inputs) = mlp_graph(&m, &x);
    let opts = HybridizeOptions::default();

    let e = err_text(CachedGraph::new(g.clone(), vec![], 1, vec![], 0, &opts));
    assert!(e.contains("\"data\" is missing from input_names"), "{e}");
    let e = err_text(CachedGraph::new(
        g.clone(),
        vec!["data".into(), "mlp0_dense0_weight".into()],
        1,
        vec![],
        0,
        &opts,
    ));
    assert!(
        e.contains("is a parameter of the graph, not a data input"),
        "{e}"
    );
    let e = err_text(CachedGraph::new(
        g.clone(),
        inputs.clone(),
        2,
        vec![],
        0,
        &opts,
    ));
    assert!(
        e.contains("2 user outputs asked for, the graph has 1"),
        "{e}"
    );
    let e = err_text(CachedGraph::new(
        g.clone(),
        inputs.clone(),
        1,
        vec![("mlp0_dense0_bias".into(), 3)],
        0,
        &opts,
    ));
    assert!(e.contains("reads output 3"), "{e}");
    let e = err_text(CachedGraph::new(Graph::new(), vec![], 0, vec![], 0, &opts));
    assert!(e.contains("no outputs"), "{e}");

    let c = cached(g, inputs, BackendChoice::Cpu);
    let e = err_text(c.call(&[], &m.params()));
    assert!(
        e.contains("0 inputs given, the graph takes 1 (data)"),
        "{e}"
    );
    let e = err_text(c.call(&[&data(&[2, 6], 1)], &m.params()));
    assert!(
        e.contains("input \"data\" is f32[2,6], the graph was traced for f32[5,6]"),
        "{e}"
    );
    let e = err_text(c.call(&[&x.astype(DType::F64)?], &m.params()));
    assert!(e.contains("f64[5,6]"), "{e}");
    let e = err_text(c.call(&[&x], &dict(&[&m.w1, &m.b1])));
    assert!(
        e.contains("needs parameter \"mlp0_dense1_weight\", which is not in the given parameters"),
        "{e}"
    );
    let wrong = param("mlp0_dense1_weight", &[4, 7], wave(0));
    let e = err_text(c.call(&[&x], &dict(&[&m.w1, &m.b1, &wrong, &m.b2])));
    assert!(
        e.contains("parameter \"mlp0_dense1_weight\" is f32[4,7]"),
        "{e}"
    );
    let uninit = Parameter::new("mlp0_dense1_weight", [4, 8]);
    let e = err_text(c.call(&[&x], &dict(&[&m.w1, &m.b1, &uninit, &m.b2])));
    assert!(e.contains("not initialized"), "{e}");
    Ok(())
}

#[test]
fn gradients_of_a_hybridized_backward_carry_no_history() -> Result<()> {
    // Second-order use: the gradient a hybridized graph produced cannot be differentiated
    // again; backward says it has no recorded history rather than giving a wrong number.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new([3], DType::F32))?;
    let y = g.add_op(Op::Unary { f: UnaryOp::Square }, &[x])?;
    g.set_outputs(vec![y])?;
    let c = cached(g, vec!["x".into()], BackendChoice::Cpu);
    let xv = nd::array(&[1.0f32, 2.0, 3.0])?;
    xv.attach_grad();
    autograd::record(|| -> Result<()> {
        let y = c.call(&[&xv], &ParameterDict::new())?;
        sum_all(&y[0])?.backward()
    })?;
    assert_eq!(xv.grad()?.to_vec::<f32>()?, vec![2.0, 4.0, 6.0]);
    let gx = xv.grad()?;
    let e = err_text(autograd::record(|| sum_all(&gx)?.backward()));
    assert!(e.contains("autograd"), "{e}");
    Ok(())
}

#[test]
fn static_alloc_builds_the_backward_on_the_first_call() -> Result<()> {
    let m = Mlp::new();
    let params = m.params();
    let x = data(&[3, 6], 6);
    let (g, inputs) = mlp_graph(&m, &x);
    let opts = HybridizeOptions {
        static_alloc: true,
        ..HybridizeOptions::default()
    };
    let c = CachedGraph::new(g, inputs, 1, vec![], 0, &opts)?;
    let plain = c.call(&[&x], &params)?;
    assert_eq!(c.backward_plans(), 1, "built before any recording");
    assert_eq!(bits(&plain[0]), bits(&m.logits(&mut Eager, &x)));
    let y = autograd::record(|| sum_all(&c.call(&[&x], &params)?[0]))?;
    y.backward()?;
    assert_eq!(c.backward_plans(), 1);
    let want_y = autograd::record(|| sum_all(&m.logits(&mut Eager, &x)))?;
    let got = grads_of(&params);
    params.zero_grad()?;
    want_y.backward()?;
    for ((g, w), name) in got.iter().zip(&grads_of(&params)).zip(params.names()) {
        assert_close(g, w, 1e-5, &name);
    }
    Ok(())
}

#[test]
fn hybridized_graphs_nest_inside_an_imperative_model() -> Result<()> {
    // scale (eager, with a gradient) -> graph 1 (MLP) -> graph 2 (square) -> eager sum: the
    // gradient reaches the eager parameter through both graphs' inputs.
    let m = Mlp::new();
    let params = m.params();
    let x = data(&[4, 6], 3);
    let scale = nd::array(&[1.5f32])?;
    scale.attach_grad();
    let (g1, in1) = mlp_graph(&m, &x);
    let c1 = cached(g1, in1, BackendChoice::Cpu);
    let mut g2 = Graph::new();
    let h = g2.add_input("h", TensorType::new([4, 4], DType::F32))?;
    let sq = g2.add_op(Op::Unary { f: UnaryOp::Square }, &[h])?;
    g2.set_outputs(vec![sq])?;
    let c2 = cached(g2, vec!["h".into()], BackendChoice::Interpreter);

    let y = autograd::record(|| -> Result<NDArray> {
        let xs = (&x * &scale)?;
        let h = c1.call(&[&xs], &params)?.remove(0);
        sum_all(&c2.call(&[&h], &ParameterDict::new())?[0])
    })?;
    y.backward()?;
    let got_scale = scale.grad()?.copy()?;
    let got = grads_of(&params);
    params.zero_grad()?;
    let want = autograd::record(|| -> Result<NDArray> {
        let xs = (&x * &scale)?;
        sum_all(&m.logits(&mut Eager, &xs).square()?)
    })?;
    assert_close(&y, &want, 1e-6, "value");
    want.backward()?;
    assert_close(
        &got_scale,
        &scale.grad()?,
        1e-5,
        "eager parameter before the graphs",
    );
    for ((g, w), name) in got.iter().zip(&grads_of(&params)).zip(params.names()) {
        assert_close(g, w, 1e-5, &name);
    }
    Ok(())
}

#[test]
fn saved_inputs_share_storage_with_the_callers_arrays_as_in_eager_mode() -> Result<()> {
    // d(x * w)/dw = x is read from the caller's x at backward time, not from a copy: writing
    // x in place between forward and backward changes the gradient exactly as it does for
    // eager autograd (MXNet behaves the same).
    let w = param("mul0_w", &[3], |i| i as f32 + 1.0);
    let params = dict(&[&w]);
    let mut g = Graph::new();
    let xi = g.add_input("x", TensorType::new([3], DType::F32))?;
    let wi = g.add_param("mul0_w", TensorType::new([3], DType::F32))?;
    let y = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[xi, wi])?;
    g.set_outputs(vec![y])?;
    let c = cached(g, vec!["x".into()], BackendChoice::Cpu);
    let plan = c.differentiated(&["mul0_w"])?;
    assert_eq!(plan.saved_count(), 1, "the backward reads x");

    let mut results = Vec::new();
    for hybrid in [false, true] {
        let x = nd::array(&[1.0f32, 2.0, 3.0])?;
        let y = autograd::record(|| -> Result<NDArray> {
            if hybrid {
                sum_all(&c.call(&[&x], &params)?[0])
            } else {
                sum_all(&(&x * &w.data()?)?)
            }
        })?;
        x.assign(&nd::array(&[10.0f32, 20.0, 30.0])?)?;
        y.backward()?;
        results.push(w.grad()?.to_vec::<f32>()?);
    }
    assert_eq!(results[0], vec![10.0, 20.0, 30.0]);
    assert_eq!(results[1], results[0]);
    Ok(())
}
