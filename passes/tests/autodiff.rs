//! `autodiff::differentiate` on fixed and random graphs: gradients against f64 finite
//! differences and against the per-op VJPs applied eagerly, forward outputs against the
//! original graph, saved values unique and used, both graphs valid (JSON round trip).

use kiln_ir::graph::testing::{random_feed, random_graph};
use kiln_ir::graph::NodeKind;
use kiln_ir::vjp::{vjp, VjpBuilder};
use kiln_ir::{
    interp, ArgReduceOp, BinaryOp, DType, Graph, NodeId, Op, PoolKind, ReduceOp, Result, Shape,
    Storage, Tensor, TensorType, TensorView, UnaryOp,
};
use kiln_passes::autodiff::{differentiate, differentiate_outputs, Differentiated};
use std::collections::HashMap;

// ----- helpers ---------------------------------------------------------------------------------

type Feed = Vec<(String, Tensor)>;

fn views(feed: &Feed) -> Vec<(&str, TensorView<'_>)> {
    feed.iter().map(|(n, t)| (n.as_str(), t.view())).collect()
}

/// splitmix64: reproducible test numbers without a dependency.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A tensor of `ty` uniform on `[lo, hi)`.
    fn tensor(&mut self, ty: &TensorType, lo: f64, hi: f64) -> Tensor {
        let v: Vec<f64> = (0..ty.shape.numel())
            .map(|_| lo + (hi - lo) * self.next())
            .collect();
        Tensor::from_vec(v, ty.shape.clone())
            .unwrap()
            .cast(ty.dtype)
    }
}

/// Evaluates each VJP op at once on tensors (the reference the graph must match).
struct Eager;

impl VjpBuilder for Eager {
    type Value = Tensor;

    fn apply(&mut self, op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
        let v: Vec<TensorView<'_>> = inputs.iter().map(|t| t.view()).collect();
        interp::eval(&op, &v)
    }

    fn shape(&self, v: &Tensor) -> Shape {
        v.shape().clone()
    }

    fn dtype(&self, v: &Tensor) -> DType {
        v.dtype()
    }
}

/// Gradients of `sum_j <heads[j], outputs[j]>` w.r.t. the `wrt` bindings, by running every
/// op's VJP eagerly in reverse topological order on the interpreter's values.
fn eager_grads(g: &Graph, feed: &Feed, heads: &[Tensor], wrt: &[&str]) -> Vec<Tensor> {
    let order = g.topo_order();
    let mut all = g.clone();
    all.set_outputs(order.clone()).unwrap();
    let vals: HashMap<NodeId, Tensor> = order
        .iter()
        .copied()
        .zip(all.run(&views(feed)).unwrap())
        .collect();
    let mut grads: HashMap<NodeId, Tensor> = HashMap::new();
    let add = |grads: &mut HashMap<NodeId, Tensor>, id: NodeId, t: Tensor| {
        let sum = match grads.remove(&id) {
            None => t,
            Some(prev) => Eager
                .apply(Op::Binary { f: BinaryOp::Add }, &[&prev, &t])
                .unwrap(),
        };
        grads.insert(id, sum);
    };
    for (&o, h) in g.outputs().iter().zip(heads) {
        if h.dtype().is_float() {
            add(&mut grads, o, h.clone());
        }
    }
    for &id in order.iter().rev() {
        let (Some(op), Some(gy)) = (g.op(id).unwrap(), grads.get(&id).cloned()) else {
            continue;
        };
        let inputs = g.inputs_of(id).unwrap();
        let xs: Vec<Tensor> = inputs.iter().map(|i| vals[i].clone()).collect();
        let gx = vjp(&mut Eager, op, &xs, &vals[&id], &gy).unwrap();
        for (i, gi) in inputs.iter().zip(gx) {
            if let Some(gi) = gi {
                if gi.dtype().is_float() {
                    add(&mut grads, *i, gi);
                }
            }
        }
    }
    wrt.iter()
        .map(|name| {
            let id = g.input_id(name).unwrap();
            grads.remove(&id).unwrap_or_else(|| {
                Tensor::zeros(g.ty(id).unwrap().shape.clone(), g.ty(id).unwrap().dtype)
            })
        })
        .collect()
}

/// `sum_j <heads[j], outputs[j]>` in f64.
fn loss(g: &Graph, feed: &Feed, heads: &[Tensor]) -> f64 {
    g.run(&views(feed))
        .unwrap()
        .iter()
        .zip(heads)
        .map(|(o, h)| {
            o.to_f64_vec()
                .iter()
                .zip(h.to_f64_vec())
                .map(|(a, b)| a * b)
                .sum::<f64>()
        })
        .sum()
}

fn perturbed(feed: &Feed, name: &str, k: usize, delta: f64) -> Feed {
    let mut f = feed.clone();
    let t = &mut f.iter_mut().find(|(n, _)| n == name).unwrap().1;
    match t.storage_mut() {
        Storage::F64(v) => v[k] += delta,
        _ => panic!("finite differences need f64 bindings"),
    }
    f
}

/// Central differences of the loss w.r.t. binding `name`; `None` where the loss is not smooth
/// at that point (two step sizes disagree: a kink or a step lies within the step).
fn finite_diff(g: &Graph, feed: &Feed, heads: &[Tensor], name: &str) -> Vec<Option<f64>> {
    let n = feed
        .iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
        .shape()
        .numel();
    (0..n)
        .map(|k| {
            let d = |h: f64| {
                (loss(g, &perturbed(feed, name, k, h), heads)
                    - loss(g, &perturbed(feed, name, k, -h), heads))
                    / (2.0 * h)
            };
            let (d1, d2) = (d(1e-5), d(2.5e-6));
            ((d1 - d2).abs() <= 1e-6 * (1.0 + d1.abs())).then_some(d2)
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= rtol * (1.0 + b.abs()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

/// What [`check`] measured.
struct Checked {
    d: Differentiated,
    grads: Vec<Tensor>,
    /// Elements compared with finite differences, and those skipped as not smooth.
    fd_compared: usize,
    fd_skipped: usize,
}

/// Differentiates `g` w.r.t. `wrt` and checks everything the pass promises on `feed`:
/// forward outputs, saved values, JSON round trips, gradients against the eager VJPs and
/// (for f64 bindings) against finite differences.
fn check(g: &Graph, wrt: &[&str], feed: &Feed, seed: u64) -> Checked {
    let d = differentiate(g, wrt).unwrap();
    let n = g.outputs().len();
    assert_eq!(d.num_outputs, n);
    assert_eq!(d.wrt, wrt);
    assert_eq!(d.heads, (0..n).collect::<Vec<_>>());
    assert_eq!(&d.forward.outputs()[..n], g.outputs());

    // Saved values: distinct, each one a `saved:i` input the backward uses.
    let saved = &d.forward.outputs()[n..];
    assert_eq!(saved.len(), d.saved_count());
    for (i, s) in saved.iter().enumerate() {
        assert!(!saved[..i].contains(s), "saved value {i} repeats");
        let id = d.backward.input_id(&format!("saved:{i}")).unwrap();
        assert!(d.backward.use_count(id).unwrap() > 0, "saved:{i} unused");
        assert_eq!(d.backward.ty(id).unwrap(), d.forward.ty(*s).unwrap());
    }
    let names: Vec<String> = d
        .backward
        .inputs()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let expected: Vec<String> = (0..saved.len())
        .map(|i| format!("saved:{i}"))
        .chain((0..n).map(|j| format!("head:{j}")))
        .collect();
    assert_eq!(names, expected);
    assert!(d.backward.params().is_empty());
    assert_eq!(d.backward.outputs().len(), wrt.len());
    for (o, name) in d.backward.outputs().iter().zip(wrt) {
        let b = g.input_id(name).unwrap();
        assert_eq!(d.backward.ty(*o).unwrap(), g.ty(b).unwrap());
    }

    let mut nums = Numbers(seed);
    let heads: Vec<Tensor> = g
        .outputs()
        .iter()
        .map(|&o| nums.tensor(g.ty(o).unwrap(), -1.0, 1.0))
        .collect();
    let head_views: Vec<TensorView<'_>> = heads.iter().map(Tensor::view).collect();
    let (outs, grads) = d.run(&views(feed), Some(&head_views)).unwrap();
    assert_eq!(outs, g.run(&views(feed)).unwrap(), "forward outputs");

    // Both graphs survive JSON and compute the same after it.
    let fwd = Graph::from_json(&d.forward.to_json()).unwrap();
    let bwd = Graph::from_json(&d.backward.to_json()).unwrap();
    assert_eq!(fwd.to_json(), d.forward.to_json());
    assert_eq!(bwd.to_json(), d.backward.to_json());
    let again = Differentiated {
        forward: fwd,
        backward: bwd,
        ..d.clone()
    };
    let (outs2, grads2) = again.run(&views(feed), Some(&head_views)).unwrap();
    assert_eq!((&outs2, &grads2), (&outs, &grads));

    // The joint graph computes the same outputs and gradients in one run.
    let joint = d.joint().unwrap();
    let mut joint_feed = views(feed);
    let head_names: Vec<String> = (0..n).map(|j| format!("head:{j}")).collect();
    joint_feed.extend(
        head_names
            .iter()
            .map(String::as_str)
            .zip(head_views.clone()),
    );
    let joint_out = joint.run(&joint_feed).unwrap();
    assert_eq!(joint_out[..n], outs[..]);
    assert_eq!(joint_out[n..], grads[..]);
    assert_eq!(
        Graph::from_json(&joint.to_json()).unwrap().to_json(),
        joint.to_json()
    );

    // The same VJPs on the same values, accumulated in the same order: bitwise equal.
    let eager = eager_grads(g, feed, &heads, wrt);
    for ((name, a), b) in wrt.iter().zip(&grads).zip(&eager) {
        assert_eq!(a, b, "{name}: graph vs eager VJPs");
    }

    let (mut fd_compared, mut fd_skipped) = (0, 0);
    for (name, gr) in wrt.iter().zip(&grads) {
        if g.ty(g.input_id(name).unwrap()).unwrap().dtype != DType::F64 {
            continue;
        }
        let fd = finite_diff(g, feed, &heads, name);
        for (k, (a, b)) in gr.to_f64_vec().iter().zip(fd).enumerate() {
            match b {
                Some(b) => {
                    fd_compared += 1;
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                        "{name}[{k}]: autodiff {a}, finite differences {b}"
                    );
                }
                None => fd_skipped += 1,
            }
        }
    }
    Checked {
        d,
        grads,
        fd_compared,
        fd_skipped,
    }
}

/// A copy of `g` with every f32 binding and constant made f64.
fn to_f64(g: &Graph) -> Graph {
    let mut out = Graph::new();
    let mut map = HashMap::new();
    for id in g.topo_order() {
        let node = g.node(id).unwrap();
        let ty = TensorType::new(node.ty.shape.clone(), DType::F64);
        let new = match &node.kind {
            NodeKind::Input { name } => out.add_input(name.clone(), ty).unwrap(),
            NodeKind::Param { name } => out.add_param(name.clone(), ty).unwrap(),
            NodeKind::Const(t) => out.add_const(t.cast(DType::F64)).unwrap(),
            NodeKind::Op(op) => {
                let inputs: Vec<NodeId> = g.inputs_of(id).unwrap().iter().map(|i| map[i]).collect();
                out.add_op(op.clone(), &inputs).unwrap()
            }
        };
        map.insert(id, new);
    }
    out.set_outputs(g.outputs().iter().map(|o| map[o]).collect())
        .unwrap();
    out
}

fn all_bindings(g: &Graph) -> Vec<&str> {
    g.bindings().into_iter().map(|(n, _)| n).collect()
}

/// `random_feed`, with the named bindings replaced.
fn feed_with(g: &Graph, seed: u64, set: Vec<(&str, Tensor)>) -> Feed {
    let mut feed = random_feed(g, seed);
    for (name, t) in set {
        feed.iter_mut().find(|(n, _)| n == name).unwrap().1 = t;
    }
    feed
}

fn op(g: &mut Graph, op: Op, inputs: &[NodeId]) -> NodeId {
    g.add_op(op, inputs).unwrap()
}

fn f64_ty(shape: &[usize]) -> TensorType {
    TensorType::new(shape, DType::F64)
}

fn count_ops(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&id| g.op(id).unwrap().is_some_and(&pred))
        .count()
}

// ----- the documented example --------------------------------------------------------------------

#[test]
fn doc_example() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new([3], DType::F32)).unwrap();
    let w = g.add_param("w", TensorType::new([3], DType::F32)).unwrap();
    let xw = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[x, w]);
    let y = op(&mut g, Op::Unary { f: UnaryOp::Relu }, &[xw]);
    g.set_outputs(vec![y]).unwrap();
    let d = differentiate(&g, &["w"]).unwrap();
    assert_eq!(
        d.forward.to_text(),
        "%0 = input \"x\" : f32[3]\n%1 = param \"w\" : f32[3]\n%2 = mul(%0, %1) : f32[3]\n\
         %3 = relu(%2) : f32[3]\nreturn %3, %3, %0\n"
    );
    assert_eq!(
        d.backward.to_text(),
        "%0 = input \"saved:0\" : f32[3]\n%1 = input \"saved:1\" : f32[3]\n\
         %2 = input \"head:0\" : f32[3]\n\
         %3 = gt_scalar(%0) {scalar=0.0, reverse=false} : f32[3]\n\
         %4 = mul(%2, %3) : f32[3]\n%5 = mul(%4, %1) : f32[3]\nreturn %5\n"
    );
}

// ----- what the forward saves ------------------------------------------------------------------

/// Dense -> relu -> dense: relu's VJP reads the activation, which the second layer's VJP
/// saves anyway, so the pre-activation is not saved and the forward's first dense + relu
/// fuse into one kernel.
#[test]
fn relu_reads_the_saved_activation_not_the_pre_activation() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[2, 3])).unwrap();
    let w1 = g.add_param("w1", f64_ty(&[4, 3])).unwrap();
    let w2 = g.add_param("w2", f64_ty(&[2, 4])).unwrap();
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: true,
    };
    let h = op(&mut g, fc.clone(), &[x, w1]);
    let a = op(&mut g, Op::Unary { f: UnaryOp::Relu }, &[h]);
    let y = op(&mut g, fc, &[a, w2]);
    g.set_outputs(vec![y]).unwrap();
    // Gradients against finite differences and the eager VJPs.
    let c = check(&g, &["w1", "w2"], &random_feed(&g, 5), 5);
    assert!(c.fd_compared > 0);
    let d = c.d;
    let saved = &d.forward.outputs()[d.num_outputs..];
    assert!(saved.contains(&a), "{}", d.forward);
    assert!(!saved.contains(&h), "{}", d.forward);
    let mut fwd = d.forward.clone();
    let stats = kiln_passes::PassManager::new(kiln_passes::Pipeline::Training)
        .run(&mut fwd)
        .unwrap();
    let fired = &stats.get("fuse").unwrap().firings;
    assert_eq!(fired, &vec![("epilogue".to_string(), 1)], "{fwd}");
}

/// When the pre-activation is kept anyway (here, a user output) and the activation is not,
/// relu's VJP reads the pre-activation: one saved value either way, never two.
#[test]
fn relu_reads_its_input_when_only_the_input_is_kept() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new([5], DType::F32)).unwrap();
    let w = g.add_param("w", TensorType::new([5], DType::F32)).unwrap();
    let h = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[x, w]);
    let a = op(&mut g, Op::Unary { f: UnaryOp::Relu }, &[h]);
    let s = op(
        &mut g,
        Op::Reduce {
            f: ReduceOp::Sum,
            axes: None,
            keepdims: false,
        },
        &[a],
    );
    g.set_outputs(vec![s, h]).unwrap();
    let d = differentiate_outputs(&g, &["w"], &[true, false]).unwrap();
    let saved = &d.forward.outputs()[d.num_outputs..];
    assert!(saved.contains(&h) && !saved.contains(&a), "{}", d.forward);
    let x_val = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, 0.0, -1.0], [5]).unwrap();
    let w_val = Tensor::from_vec(vec![1.0f32, 1.0, -1.0, 2.0, -3.0], [5]).unwrap();
    let (_, grads) = d
        .run(&[("x", x_val.view()), ("w", w_val.view())], None)
        .unwrap();
    // d sum(relu(x * w)) / dw = x where x * w > 0.
    assert_eq!(grads[0].to_f64_vec(), vec![1.0, 0.0, 0.0, 0.0, -1.0]);
}

// ----- fixed graphs --------------------------------------------------------------------------------

/// Two dense layers with relu, softmax cross-entropy against integer labels, mean loss.
#[test]
fn dense_relu_softmax_cross_entropy() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[4, 6])).unwrap();
    let labels = g
        .add_input("labels", TensorType::new([4], DType::I64))
        .unwrap();
    let w1 = g.add_param("w1", f64_ty(&[5, 6])).unwrap();
    let b1 = g.add_param("b1", f64_ty(&[5])).unwrap();
    let w2 = g.add_param("w2", f64_ty(&[3, 5])).unwrap();
    let b2 = g.add_param("b2", f64_ty(&[3])).unwrap();
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: false,
    };
    let h = op(&mut g, fc.clone(), &[x, w1, b1]);
    let h = op(&mut g, Op::Unary { f: UnaryOp::Relu }, &[h]);
    let logits = op(&mut g, fc, &[h, w2, b2]);
    let ce = op(&mut g, Op::SoftmaxCrossEntropy, &[logits, labels]);
    let mean = Op::Reduce {
        f: ReduceOp::Mean,
        axes: None,
        keepdims: false,
    };
    let l = op(&mut g, mean, &[ce]);
    let probs = op(&mut g, Op::Softmax { axis: -1 }, &[logits]);
    g.set_outputs(vec![l, probs]).unwrap();
    let labels_val = Tensor::from_vec(vec![0i64, 2, 1, 2], [4]).unwrap();
    let feed = feed_with(&g, 1, vec![("labels", labels_val)]);
    let c = check(&g, &["w1", "b1", "w2", "b2", "x", "labels"], &feed, 11);
    assert!(c.fd_compared >= 5 * 6 + 5 + 3 * 5 + 3 + 4 * 6 - 2);
    assert!(c.fd_skipped <= 2);
    // Labels are integers: zeros, and no gradient op runs on them.
    assert_eq!(c.grads[5], Tensor::zeros([4], DType::I64));
    // The cross-entropy's VJP needs softmax(logits): the forward computes it already, so the
    // backward reads it (saved) instead of computing it again.
    assert_eq!(
        count_ops(&c.d.backward, |o| matches!(o, Op::Softmax { .. })),
        0,
        "{}",
        c.d.backward
    );
    assert!(c.d.forward.outputs()[2..].contains(&probs));
}

/// Convolution, relu, max pooling, average pooling, flatten, a dense layer.
#[test]
fn conv_and_pooling() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[2, 2, 6, 6])).unwrap();
    let w = g.add_param("w", f64_ty(&[3, 2, 3, 3])).unwrap();
    let b = g.add_param("b", f64_ty(&[3])).unwrap();
    let v = g.add_param("v", f64_ty(&[2, 3])).unwrap();
    let conv = Op::Convolution {
        stride: vec![1, 1],
        pad: vec![1, 1],
        dilation: vec![1, 1],
        groups: 1,
        no_bias: false,
    };
    let y = op(&mut g, conv, &[x, w, b]);
    let y = op(&mut g, Op::Unary { f: UnaryOp::Tanh }, &[y]);
    let pool = |kind| Op::Pooling {
        kind,
        kernel: vec![2, 2],
        stride: vec![2, 2],
        pad: vec![0, 0],
        global: false,
        count_include_pad: true,
    };
    let p = op(&mut g, pool(PoolKind::Max), &[y]);
    let q = op(&mut g, pool(PoolKind::Avg), &[p]);
    let f = op(&mut g, Op::Flatten, &[q]);
    let z = op(
        &mut g,
        Op::FullyConnected {
            flatten: true,
            no_bias: true,
        },
        &[f, v],
    );
    g.set_outputs(vec![z]).unwrap();
    let feed = random_feed(&g, 2);
    let c = check(&g, &["x", "w", "b", "v"], &feed, 12);
    assert!(
        c.fd_compared >= 2 * 2 * 36 + 54 + 3 + 6 - 4,
        "{}",
        c.fd_compared
    );
    assert_eq!(
        count_ops(&c.d.backward, |o| matches!(o, Op::PoolingGrad { .. })),
        2,
        "one gradient per pooling"
    );
    assert_eq!(
        count_ops(&c.d.backward, |o| matches!(o, Op::Deconvolution { .. })),
        1
    );
}

/// Batch norm with batch statistics (and with running statistics), then layer norm.
#[test]
fn batch_norm_and_layer_norm() {
    for use_batch_stats in [true, false] {
        let mut g = Graph::new();
        let x = g.add_input("x", f64_ty(&[4, 3, 2, 2])).unwrap();
        let gamma = g.add_param("gamma", f64_ty(&[3])).unwrap();
        let beta = g.add_param("beta", f64_ty(&[3])).unwrap();
        let mean = g.add_param("running_mean", f64_ty(&[3])).unwrap();
        let var = g.add_param("running_var", f64_ty(&[3])).unwrap();
        let lg = g.add_param("ln_gamma", f64_ty(&[2])).unwrap();
        let lb = g.add_param("ln_beta", f64_ty(&[2])).unwrap();
        let bn = Op::BatchNorm {
            eps: 1e-5,
            axis: 1,
            use_batch_stats,
        };
        let y = op(&mut g, bn, &[x, gamma, beta, mean, var]);
        let y = op(&mut g, Op::Unary { f: UnaryOp::Sin }, &[y]);
        let z = op(
            &mut g,
            Op::LayerNorm {
                axis: -1,
                eps: 1e-5,
            },
            &[y, lg, lb],
        );
        g.set_outputs(vec![z]).unwrap();
        let mut nums = Numbers(5);
        let var_val = nums.tensor(&f64_ty(&[3]), 0.5, 2.0);
        let feed = feed_with(&g, 3, vec![("running_var", var_val)]);
        let c = check(&g, &["x", "gamma", "beta", "ln_gamma"], &feed, 13);
        assert!(c.fd_compared >= 48 + 3 + 3 + 2 - 2, "{}", c.fd_compared);
        // Running statistics are state: no gradient (as MXNet), even where the output
        // depends on them.
        let d = differentiate(&g, &["running_mean", "running_var"]).unwrap();
        let (_, grads) = d.run(&views(&feed), None).unwrap();
        for gr in grads {
            assert_eq!(gr.to_f64_vec(), vec![0.0; 3]);
        }
    }
}

/// Broadcasting in both directions: each gradient is summed back to its input's shape.
#[test]
fn broadcasting_add_and_mul() {
    let mut g = Graph::new();
    let a = g.add_input("a", f64_ty(&[2, 1, 3])).unwrap();
    let b = g.add_input("b", f64_ty(&[4, 1])).unwrap();
    let c = g.add_param("c", f64_ty(&[])).unwrap();
    let d = g.add_param("d", f64_ty(&[3])).unwrap();
    let s = op(&mut g, Op::Binary { f: BinaryOp::Add }, &[a, b]);
    let s = op(&mut g, Op::Binary { f: BinaryOp::Add }, &[s, c]);
    let m = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[d, s]);
    g.set_outputs(vec![m]).unwrap();
    let feed = random_feed(&g, 4);
    let ch = check(&g, &["a", "b", "c", "d"], &feed, 14);
    assert_eq!(ch.fd_compared, 6 + 4 + 1 + 3);
    // An add's VJP reads nothing: only d and a + b + c are saved.
    assert_eq!(ch.d.saved_count(), 2);
}

/// A value used several times, an output listed twice, an output that is a binding.
#[test]
fn value_used_twice() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[5])).unwrap();
    let xx = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[x, x]);
    let sx = op(&mut g, Op::Unary { f: UnaryOp::Sin }, &[x]);
    let y = op(&mut g, Op::Binary { f: BinaryOp::Add }, &[xx, sx]);
    g.set_outputs(vec![y, y, x]).unwrap();
    let x_val = Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.0, 1.5], [5]).unwrap();
    let feed = vec![("x".to_string(), x_val.clone())];
    let c = check(&g, &["x"], &feed, 15);
    assert_eq!(c.fd_compared, 5);
    // Heads of 1: d/dx (2 (x² + sin x) + x) = 2 (2x + cos x) + 1.
    let ones: Vec<Tensor> = (0..3).map(|_| Tensor::full([5], DType::F64, 1.0)).collect();
    let ones: Vec<TensorView<'_>> = ones.iter().map(Tensor::view).collect();
    let (_, grads) = c.d.run(&[("x", x_val.view())], Some(&ones)).unwrap();
    let want: Vec<f64> = x_val
        .to_f64_vec()
        .iter()
        .map(|x| 2.0 * (2.0 * x + x.cos()) + 1.0)
        .collect();
    assert_close(&grads[0].to_f64_vec(), &want, 1e-14, "x");
    // x is saved once although mul reads it twice and sin once.
    assert_eq!(c.d.saved_count(), 1);
}

/// Integer values carry no gradient: take's indices, argmax, a round trip through an integer
/// cast, comparisons; an integer binding gets zeros.
#[test]
fn integer_paths_carry_no_gradient() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[2, 4])).unwrap();
    let idx = g
        .add_input("idx", TensorType::new([3], DType::I64))
        .unwrap();
    let k = g.add_param("k", TensorType::new([4], DType::I32)).unwrap();
    let unused = g.add_param("unused", f64_ty(&[2])).unwrap();
    let _ = unused;
    let taken = op(&mut g, Op::Take { axis: 1 }, &[x, idx]);
    let am = op(
        &mut g,
        Op::ArgReduce {
            f: ArgReduceOp::Argmax,
            axis: Some(1),
            keepdims: true,
        },
        &[x],
    );
    let xi = op(&mut g, Op::Cast { dtype: DType::I32 }, &[x]);
    let xik = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[xi, k]);
    let back = op(&mut g, Op::Cast { dtype: DType::F64 }, &[xik]);
    let gt = op(
        &mut g,
        Op::Scalar {
            f: BinaryOp::Gt,
            scalar: 0.0,
            reverse: false,
        },
        &[x],
    );
    let s = op(&mut g, Op::Binary { f: BinaryOp::Add }, &[back, gt]);
    let s = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[s, am]);
    let sq = op(&mut g, Op::Unary { f: UnaryOp::Square }, &[taken]);
    g.set_outputs(vec![sq, s, xik]).unwrap();

    let idx_val = Tensor::from_vec(vec![3i64, 0, 3], [3]).unwrap();
    let k_val = Tensor::from_vec(vec![1i32, -2, 3, 4], [4]).unwrap();
    let feed = feed_with(&g, 6, vec![("idx", idx_val), ("k", k_val)]);
    let c = check(&g, &["x", "idx", "k", "unused"], &feed, 16);
    assert_eq!(c.grads[1], Tensor::zeros([3], DType::I64));
    assert_eq!(c.grads[2], Tensor::zeros([4], DType::I32));
    assert_eq!(c.grads[3], Tensor::zeros([2], DType::F64));
    // Only take's path reaches x: 2 * x[i, idx] * head summed per column, and nothing
    // from argmax, the cast round trip or the comparison.
    let x_val = feed[0].1.to_f64_vec();
    let mut nums = Numbers(16);
    let head0 = nums.tensor(&f64_ty(&[2, 3]), -1.0, 1.0).to_f64_vec();
    let mut want = vec![0.0; 8];
    for r in 0..2 {
        for (j, &col) in [3usize, 0, 3].iter().enumerate() {
            want[r * 4 + col] += 2.0 * x_val[r * 4 + col] * head0[r * 3 + j];
        }
    }
    assert_close(&c.grads[0].to_f64_vec(), &want, 1e-14, "x");
    // The backward never touches the integer branch.
    assert_eq!(
        count_ops(&c.d.backward, |o| matches!(
            o,
            Op::Cast { .. } | Op::ArgReduce { .. }
        )),
        0,
        "{}",
        c.d.backward
    );
}

/// Dropout with a fixed seed: the backward applies dropout with the same seed, so the
/// gradient uses the forward's mask.
#[test]
fn dropout_with_fixed_seed() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[6, 5])).unwrap();
    let w = g.add_param("w", f64_ty(&[5])).unwrap();
    let xw = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[x, w]);
    let dr = op(&mut g, Op::Dropout { p: 0.5, seed: 42 }, &[xw]);
    let y = op(&mut g, Op::Unary { f: UnaryOp::Tanh }, &[dr]);
    g.set_outputs(vec![y]).unwrap();
    let feed = random_feed(&g, 7);
    let c = check(&g, &["x", "w"], &feed, 17);
    assert_eq!(c.fd_compared, 30 + 5);
    let seeds: Vec<u64> =
        c.d.backward
            .node_ids()
            .into_iter()
            .filter_map(|id| match c.d.backward.op(id).unwrap() {
                Some(Op::Dropout { seed, .. }) => Some(*seed),
                _ => None,
            })
            .collect();
    assert_eq!(seeds, vec![42]);
    // dx = head * tanh'(dropout(xw)) * mask * 2 * w: zero exactly where the forward dropped.
    let (outs, _) = c.d.run(&views(&feed), None).unwrap();
    let dropped: Vec<bool> = outs[0].to_f64_vec().iter().map(|&v| v == 0.0).collect();
    assert!(dropped.iter().any(|&d| d) && dropped.iter().any(|&d| !d));
    for (k, &gx) in c.grads[0].to_f64_vec().iter().enumerate() {
        assert_eq!(gx == 0.0, dropped[k], "element {k}");
    }
}

// ----- random graphs -------------------------------------------------------------------------------

/// Random elementwise/broadcast/reduction graphs: f32 gradients equal the eager VJPs; the same
/// graphs in f64 equal finite differences wherever the function is smooth.
#[test]
fn random_graphs() {
    let (mut compared, mut skipped, mut saved) = (0, 0, 0);
    for seed in 0..30 {
        let g32 = random_graph(seed, 12);
        let wrt = all_bindings(&g32);
        check(&g32, &wrt, &random_feed(&g32, seed), seed);
        let g64 = to_f64(&g32);
        let c = check(&g64, &wrt, &random_feed(&g64, seed), seed);
        compared += c.fd_compared;
        skipped += c.fd_skipped;
        saved += c.d.saved_count();
    }
    eprintln!("random graphs: {compared} elements compared with finite differences, {skipped} skipped, {saved} values saved");
    // Kinks (relu, abs, max, clip) and steps (gt) rarely fall within a step of a random point.
    assert!(skipped * 50 <= compared, "{skipped} of {compared} skipped");
    assert!(saved > 0);
}

/// A subset of bindings: gradients only for those, and the saved set does not grow.
#[test]
fn subset_of_bindings() {
    for seed in 30..40 {
        let g = to_f64(&random_graph(seed, 10));
        let feed = random_feed(&g, seed);
        let all = all_bindings(&g);
        let full = check(&g, &all, &feed, seed);
        let one = check(&g, &["p0"], &feed, seed);
        let p0 = all.iter().position(|&n| n == "p0").unwrap();
        assert_eq!(one.grads[0], full.grads[p0], "seed {seed}");
        assert!(one.d.saved_count() <= full.d.saved_count());
    }
}

// ----- errors and edge cases -----------------------------------------------------------------------

#[test]
fn unknown_binding_is_an_error_naming_it() {
    let g = random_graph(0, 4);
    let e = differentiate(&g, &["nope"]).unwrap_err().to_string();
    assert!(e.contains("\"nope\"") && e.contains("p0"), "{e}");
}

#[test]
fn sums_and_adds_save_nothing() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[3, 4])).unwrap();
    let b = g.add_param("b", f64_ty(&[4])).unwrap();
    let y = op(&mut g, Op::Binary { f: BinaryOp::Add }, &[x, b]);
    let s = op(
        &mut g,
        Op::Reduce {
            f: ReduceOp::Sum,
            axes: Some(vec![0]),
            keepdims: false,
        },
        &[y],
    );
    g.set_outputs(vec![s]).unwrap();
    let feed = random_feed(&g, 9);
    let c = check(&g, &["x", "b"], &feed, 19);
    assert_eq!(c.d.saved_count(), 0);
    let (_, grads) = c.d.run(&views(&feed), None).unwrap();
    assert_eq!(grads[0].to_f64_vec(), vec![1.0; 12]);
    assert_eq!(grads[1].to_f64_vec(), vec![3.0; 4]);
}

#[test]
fn wrong_head_count_is_an_error() {
    let g = random_graph(1, 4);
    let d = differentiate(&g, &["p0"]).unwrap();
    let feed = random_feed(&g, 1);
    let e = d.run(&views(&feed), Some(&[])).unwrap_err().to_string();
    assert!(e.contains("0 head gradients given for 2 outputs"), "{e}");
}

/// Only the chosen outputs are differentiated: the others (here a running-mean update) get
/// no head input, and the gradients equal a full differentiation with zero heads for them.
#[test]
fn only_chosen_outputs_are_differentiated() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[4, 3])).unwrap();
    let w = g.add_param("w", f64_ty(&[3])).unwrap();
    let rm = g.add_param("running_mean", f64_ty(&[3])).unwrap();
    let y = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[x, w]);
    let y = op(&mut g, Op::Unary { f: UnaryOp::Tanh }, &[y]);
    let mean = op(
        &mut g,
        Op::Reduce {
            f: ReduceOp::Mean,
            axes: Some(vec![0]),
            keepdims: false,
        },
        &[y],
    );
    let decayed = op(
        &mut g,
        Op::Scalar {
            f: BinaryOp::Mul,
            scalar: 0.9,
            reverse: false,
        },
        &[rm],
    );
    let fresh = op(
        &mut g,
        Op::Scalar {
            f: BinaryOp::Mul,
            scalar: 0.1,
            reverse: false,
        },
        &[mean],
    );
    let update = op(&mut g, Op::Binary { f: BinaryOp::Add }, &[decayed, fresh]);
    let loss = op(
        &mut g,
        Op::Reduce {
            f: ReduceOp::Sum,
            axes: None,
            keepdims: false,
        },
        &[y],
    );
    g.set_outputs(vec![loss, update]).unwrap();
    let feed = random_feed(&g, 21);

    let d = kiln_passes::differentiate_outputs(&g, &["x", "w"], &[true, false]).unwrap();
    assert_eq!(d.heads, vec![0]);
    assert_eq!(d.num_outputs, 2);
    assert!(d.backward.input_id("head:1").is_none());
    let full = differentiate(&g, &["x", "w"]).unwrap();
    assert_eq!(full.heads, vec![0, 1]);
    assert!(d.backward.len() < full.backward.len());

    let ones = Tensor::full([], DType::F64, 1.0);
    let zeros = Tensor::zeros([3], DType::F64);
    let heads = [ones.view(), zeros.view()];
    let (outs, grads) = d.run(&views(&feed), Some(&heads)).unwrap();
    let (outs_full, grads_full) = full.run(&views(&feed), Some(&heads)).unwrap();
    assert_eq!(outs, outs_full);
    assert_eq!(outs, g.run(&views(&feed)).unwrap());
    for (a, b) in grads.iter().zip(&grads_full) {
        assert_close(&a.to_f64_vec(), &b.to_f64_vec(), 1e-14, "grad");
    }
    // The loss's gradient w.r.t. w: sum over rows of x * (1 - tanh²(x w)).
    let (xv, wv) = (feed[0].1.to_f64_vec(), feed[1].1.to_f64_vec());
    let want: Vec<f64> = (0..3)
        .map(|c| {
            (0..4)
                .map(|r| {
                    let t = (xv[r * 3 + c] * wv[c]).tanh();
                    xv[r * 3 + c] * (1.0 - t * t)
                })
                .sum()
        })
        .collect();
    assert_close(&grads[1].to_f64_vec(), &want, 1e-12, "w");

    let e = kiln_passes::differentiate_outputs(&g, &["x"], &[true])
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 head flags for 2 outputs"), "{e}");
}

#[test]
fn joint_graph_rejects_a_forward_binding_named_like_a_head() {
    let mut g = Graph::new();
    let x = g.add_input("head:0", f64_ty(&[2])).unwrap();
    let y = op(&mut g, Op::Unary { f: UnaryOp::Sin }, &[x]);
    g.set_outputs(vec![y]).unwrap();
    let d = differentiate(&g, &["head:0"]).unwrap();
    // Split graphs are fine: the names live in different graphs.
    let xv = Tensor::from_vec(vec![0.0f64, 1.0], [2]).unwrap();
    let (_, grads) = d.run(&[("head:0", xv.view())], None).unwrap();
    assert_close(&grads[0].to_f64_vec(), &[1.0, 1.0f64.cos()], 1e-15, "x");
    let e = d.joint().unwrap_err().to_string();
    assert!(e.contains("cannot join") && e.contains("head:0"), "{e}");
}

/// Embedding lookup, batched attention-like products, concatenation, slicing, reshapes, a
/// `where`, and a log-softmax/pick loss with float labels (as the gluon loss computes it).
#[test]
fn embedding_attention_and_pick_loss() {
    let mut g = Graph::new();
    let tokens = g.add_input("tokens", f64_ty(&[2, 3])).unwrap();
    let labels = g.add_input("labels", f64_ty(&[2])).unwrap();
    let emb = g.add_param("emb", f64_ty(&[5, 4])).unwrap();
    let wo = g.add_param("wo", f64_ty(&[3, 8])).unwrap();
    let e = op(&mut g, Op::Take { axis: 0 }, &[emb, tokens]); // [2, 3, 4]
    let et = op(
        &mut g,
        Op::Transpose {
            axes: Some(vec![0, 2, 1]),
        },
        &[e],
    ); // [2, 4, 3]
    let scores = op(
        &mut g,
        Op::BatchDot {
            transpose_a: false,
            transpose_b: false,
        },
        &[e, et],
    ); // [2, 3, 3]
    let att = op(&mut g, Op::Softmax { axis: -1 }, &[scores]);
    let ctx = op(
        &mut g,
        Op::BatchDot {
            transpose_a: false,
            transpose_b: false,
        },
        &[att, e],
    ); // [2, 3, 4]
    let both = op(&mut g, Op::Concat { axis: 2 }, &[ctx, e]); // [2, 3, 8]
    let first = op(
        &mut g,
        Op::SliceAxis {
            axis: 1,
            begin: 0,
            end: Some(1),
        },
        &[both],
    ); // [2, 1, 8]
    let flat = op(&mut g, Op::Reshape { shape: vec![0, -1] }, &[first]); // [2, 8]
    let pos = op(
        &mut g,
        Op::Scalar {
            f: BinaryOp::Gt,
            scalar: 0.0,
            reverse: false,
        },
        &[flat],
    );
    let sq = op(&mut g, Op::Unary { f: UnaryOp::Square }, &[flat]);
    let mixed = op(&mut g, Op::Where, &[pos, flat, sq]);
    let logits = op(
        &mut g,
        Op::Dot {
            transpose_a: false,
            transpose_b: true,
        },
        &[mixed, wo],
    ); // [2, 3]
    let logp = op(&mut g, Op::LogSoftmax { axis: -1 }, &[logits]);
    let picked = op(
        &mut g,
        Op::Pick {
            axis: -1,
            keepdims: false,
        },
        &[logp, labels],
    );
    let nll = op(&mut g, Op::Unary { f: UnaryOp::Neg }, &[picked]);
    g.set_outputs(vec![nll]).unwrap();
    let feed = feed_with(
        &g,
        8,
        vec![
            (
                "tokens",
                Tensor::from_vec(vec![0.0f64, 4.0, 2.0, 1.0, 1.0, 3.0], [2, 3]).unwrap(),
            ),
            ("labels", Tensor::from_vec(vec![2.0f64, 0.0], [2]).unwrap()),
        ],
    );
    let c = check(&g, &["emb", "wo", "tokens", "labels"], &feed, 18);
    assert!(c.fd_compared >= 20 + 24 - 2, "{}", c.fd_compared);
    // Indices and labels are not differentiable, though they are floats.
    assert_eq!(c.grads[2].to_f64_vec(), vec![0.0; 6]);
    assert_eq!(c.grads[3].to_f64_vec(), vec![0.0; 2]);
    // The table's gradient arrives through take's scatter-add.
    assert!(c.grads[0].to_f64_vec().iter().any(|&v| v != 0.0));
}

/// Differentiating the joint graph again gives Hessian-vector products.
#[test]
fn second_order_through_the_joint_graph() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[4])).unwrap();
    let w = g.add_param("w", f64_ty(&[4])).unwrap();
    let s = op(&mut g, Op::Unary { f: UnaryOp::Sin }, &[x]);
    let sx = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[s, x]);
    let y = op(&mut g, Op::Binary { f: BinaryOp::Mul }, &[sx, w]);
    let l = op(
        &mut g,
        Op::Reduce {
            f: ReduceOp::Sum,
            axes: None,
            keepdims: false,
        },
        &[y],
    );
    g.set_outputs(vec![l]).unwrap();
    let first = differentiate(&g, &["x"]).unwrap();
    let joint = first.joint().unwrap(); // inputs x, w, head:0; outputs l, dl/dx
    let second = kiln_passes::differentiate_outputs(&joint, &["x"], &[false, true]).unwrap();
    let feed = random_feed(&g, 10);
    let one = Tensor::full([], DType::F64, 1.0);
    let v = Tensor::from_vec(vec![0.5f64, -1.0, 0.25, 2.0], [4]).unwrap();
    let mut jfeed = views(&feed);
    jfeed.push(("head:0", one.view()));
    let (_, hv) = second.run(&jfeed, Some(&[one.view(), v.view()])).unwrap();
    // d²/dx² (w x sin x) = w (2 cos x - x sin x), diagonal.
    let (xv, wv) = (feed[0].1.to_f64_vec(), feed[1].1.to_f64_vec());
    let want: Vec<f64> = (0..4)
        .map(|i| wv[i] * (2.0 * xv[i].cos() - xv[i] * xv[i].sin()) * v.to_f64_vec()[i])
        .collect();
    assert_close(&hv[0].to_f64_vec(), &want, 1e-12, "hessian-vector product");
}

/// The second derivative of max pooling is not expressible in the op set: a clear error
/// naming the op, not a panic.
#[test]
fn inexpressible_gradient_is_an_error_naming_the_op() {
    let mut g = Graph::new();
    let x = g.add_input("x", f64_ty(&[1, 1, 4, 4])).unwrap();
    let p = op(
        &mut g,
        Op::Pooling {
            kind: PoolKind::Max,
            kernel: vec![2, 2],
            stride: vec![2, 2],
            pad: vec![0, 0],
            global: false,
            count_include_pad: true,
        },
        &[x],
    );
    let s = op(&mut g, Op::Unary { f: UnaryOp::Square }, &[p]);
    g.set_outputs(vec![s]).unwrap();
    let joint = differentiate(&g, &["x"]).unwrap().joint().unwrap();
    // d(dl/dx)/d(head) goes through max pooling's gradient w.r.t. its dy.
    let e = differentiate(&joint, &["head:0"]).unwrap_err().to_string();
    assert!(e.contains("pooling_grad"), "{e}");
}
