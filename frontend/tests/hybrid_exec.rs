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
    // Each step holds only its input while producing its output.
    assert_eq!(stats.peak_values, 2);
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
