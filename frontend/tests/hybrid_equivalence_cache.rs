//! hybridize's behaviour around the equivalence contract: one trace per signature and
//! observable cache statistics, the Rust forward not running again, weights bound (not baked
//! in), clear errors for value reads, deferred initialization, nested use (hybridized child in
//! an imperative parent, imperative loss on a hybridized net, two hybridized blocks in one
//! model, a hybridized parent tracing hybridized children inline) and training with a Trainer.

use kiln_frontend::gluon::init::{Initializer, Normal, One};
use kiln_frontend::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln_frontend::gluon::nn::{
    ActivationKind, BatchNorm, Dense, Dropout, HybridSequential, Sequential,
};
use kiln_frontend::gluon::{Block, HybridBlock, Parameter, Trainer};
use kiln_frontend::hybrid::hybridize::{self, HybridState};
use kiln_frontend::hybrid::{BackendChoice, HybridizeOptions};
use kiln_frontend::{autograd, nd, Context, NDArray, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The tests of this file share the global random generator: they run one at a time so that
/// seeding it makes their draws repeat.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn init() -> Arc<dyn Initializer> {
    Arc::new(Normal::new(0.3))
}

fn input(shape: &[usize], seed: u64) -> Result<NDArray> {
    kiln_frontend::random::seed(seed);
    nd::random::normal(0.0, 1.0, shape.to_vec())
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-30f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * scale,
            "element {i}: got {g}, want {w}"
        );
    }
}

/// `y = tanh(x) * scale`, counting how often its Rust forward runs.
struct Counting {
    scale: Parameter,
    runs: AtomicUsize,
    /// Reads a value in its forward when set (a forward that cannot be hybridized).
    read_value: bool,
    hybrid: HybridState,
}

impl Counting {
    fn new(read_value: bool) -> Result<Counting> {
        let c = Counting {
            scale: Parameter::new("counting0_scale", [3]),
            runs: AtomicUsize::new(0),
            read_value,
            hybrid: HybridState::default(),
        };
        c.initialize(Arc::new(One), Context::cpu())?;
        Ok(c)
    }
}

impl Block for Counting {
    fn prefix(&self) -> String {
        "counting0_".into()
    }

    fn params(&self) -> Vec<Parameter> {
        vec![self.scale.clone()]
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Counting {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let y = x.tanh()?;
        if self.read_value && y.sum()?.as_scalar::<f32>()? > 0.0 {
            return y.mul_scalar(2.0);
        }
        y.mul(&self.scale.data()?)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

#[test]
fn one_trace_per_signature_and_the_forward_never_runs_again() -> Result<()> {
    let _serial = serial();
    let block = Counting::new(false)?;
    let x4 = input(&[4, 3], 1)?;
    let eager = block.forward(&x4)?.to_vec_f64();
    assert_eq!(block.runs.load(Ordering::Relaxed), 1);
    block.hybridize();
    assert!(block.is_hybridized());
    assert_eq!(block.forward(&x4)?.to_vec_f64(), eager);
    assert_eq!(block.runs.load(Ordering::Relaxed), 2, "traced once");
    for _ in 0..3 {
        assert_eq!(block.forward(&x4)?.to_vec_f64(), eager);
    }
    assert_eq!(
        block.runs.load(Ordering::Relaxed),
        2,
        "cached calls run no Rust forward"
    );
    let s = block.cache_stats();
    assert_eq!((s.entries, s.hits, s.traces), (1, 3, 1));

    // A smaller last batch traces once more, then hits.
    let x1 = input(&[1, 3], 2)?;
    block.forward(&x1)?;
    block.forward(&x1)?;
    let s = block.cache_stats();
    assert_eq!((s.entries, s.hits, s.traces), (2, 4, 2));
    // Training mode is another signature.
    autograd::train_mode(|| block.forward(&x4))?;
    assert_eq!(block.cache_stats().traces, 3);
    let mut sigs: Vec<String> = block
        .hybrid_state()
        .signatures()
        .iter()
        .map(|s| s.to_string())
        .collect();
    sigs.sort();
    assert_eq!(
        sigs,
        vec![
            "(f32[1,3]) predict @cpu(0)",
            "(f32[4,3]) predict @cpu(0)",
            "(f32[4,3]) train @cpu(0)"
        ]
    );
    assert_eq!(block.runs.load(Ordering::Relaxed), 4);

    // New options drop the compiled graphs; dehybridize runs eagerly again.
    block.hybridize_with(HybridizeOptions {
        backend: BackendChoice::Interpreter,
        ..HybridizeOptions::default()
    });
    assert_eq!(block.cache_stats().entries, 0);
    assert_close(&block.forward(&x4)?.to_vec_f64(), &eager);
    block.dehybridize();
    assert!(!block.is_hybridized());
    block.forward(&x4)?;
    assert_eq!(block.runs.load(Ordering::Relaxed), 6);
    Ok(())
}

#[test]
fn updated_weights_need_no_new_trace() -> Result<()> {
    let _serial = serial();
    let block = Counting::new(false)?;
    block.hybridize();
    let x = input(&[2, 3], 3)?;
    let first = block.forward(&x)?.to_vec_f64();
    block.scale.set_data(&nd::array(&[2.0f32, 0.0, -1.0])?)?;
    let second = block.forward(&x)?.to_vec_f64();
    assert_eq!(block.cache_stats().traces, 1);
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        let want = a * [2.0, 0.0, -1.0][i % 3];
        assert!((b - want).abs() < 1e-6, "{i}: {b} vs {want}");
    }
    Ok(())
}

#[test]
fn a_forward_that_reads_values_fails_to_hybridize_with_a_clear_error() -> Result<()> {
    let _serial = serial();
    let block = Counting::new(true)?;
    let x = input(&[2, 3], 4)?;
    block.forward(&x)?; // eagerly fine
    block.hybridize();
    let err = block.forward(&x).unwrap_err().to_string();
    assert!(err.contains("as_scalar"), "{err}");
    assert!(err.contains("cannot read values while tracing"), "{err}");
    assert!(err.contains("ops"), "{err}");
    assert!(err.contains("counting0_"), "names the block: {err}");
    assert_eq!(block.cache_stats().entries, 0);
    // Nothing is left half-traced: eager ops still work.
    assert_eq!(x.relu()?.shape().dims(), &[2, 3]);
    Ok(())
}

#[test]
fn deferred_initialization_runs_the_first_call_eagerly_then_caches() -> Result<()> {
    let _serial = serial();
    let x = input(&[3, 5], 5)?;
    let reference = Dense::new(4).activation(ActivationKind::Relu);
    reference.initialize(init(), Context::cpu())?;
    kiln_frontend::random::seed(77);
    let eager = reference.forward(&x)?.to_vec_f64();

    let net = HybridSequential::new();
    net.add(Dense::new(4).activation(ActivationKind::Relu));
    net.initialize(init(), Context::cpu())?;
    net.hybridize();
    kiln_frontend::random::seed(77);
    let first = net.forward(&x)?.to_vec_f64();
    assert_eq!(
        first, eager,
        "the first call is the eager forward (same initial weights)"
    );
    let s = net.cache_stats();
    assert_eq!((s.entries, s.traces, s.hits), (1, 1, 0));
    let child = &net.children()[0];
    assert!(child.is_hybridized());
    assert_eq!(
        child.cache_stats().traces,
        0,
        "the eager first call ran the child eagerly"
    );
    assert_close(&net.forward(&x)?.to_vec_f64(), &eager);
    assert_eq!(net.cache_stats().hits, 1);
    Ok(())
}

#[test]
fn a_hybridized_parent_traces_hybridized_children_inline() -> Result<()> {
    let _serial = serial();
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Dense::new(6).activation(ActivationKind::Tanh));
        net.add(Dropout::new(0.4).expect("rate"));
        net.add(Dense::new(2));
    });
    net.initialize(init(), Context::cpu())?;
    let x = input(&[3, 4], 6)?;
    net.forward(&x)?; // finish deferred init
    net.hybridize(); // reaches the children too
    let children = net.children();
    assert!(children.iter().all(|c| c.is_hybridized()));
    kiln_frontend::random::seed(5);
    net.forward(&x)?;
    net.forward(&x)?;
    assert_eq!(net.cache_stats().traces, 1);
    for c in &children {
        assert_eq!(
            c.cache_stats().traces,
            0,
            "children ran inside the parent's graph"
        );
    }
    let graph = net.hybrid_state().last_graph().expect("a compiled graph");
    let params: Vec<&str> = graph.params().into_iter().map(|(n, _)| n).collect();
    let prefix = net.prefix();
    assert_eq!(
        params,
        vec![
            format!("{prefix}dense0_weight"),
            format!("{prefix}dense0_bias"),
            format!("{prefix}dense1_weight"),
            format!("{prefix}dense1_bias"),
        ]
    );
    // Called on their own, the children use their own caches.
    children[0].forward(&x)?;
    assert_eq!(children[0].cache_stats().traces, 1);
    Ok(())
}

/// Values by parameter name.
type Named = Vec<(String, Vec<f64>)>;

/// One recorded forward of `model` with an imperative loss, and backward: the loss, and per
/// parameter its gradient (its value for grad_req null: running statistics).
fn loss_and_grads(model: &Sequential, x: &NDArray, label: &NDArray) -> Result<(Vec<f64>, Named)> {
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    kiln_frontend::random::seed(31);
    let loss = autograd::record(|| loss_fn.forward(&model.forward(x)?, label))?;
    loss.backward()?;
    let mut grads = Vec::new();
    for p in &model.collect_params()? {
        if p.grad_req() != kiln_frontend::GradReq::Null {
            grads.push((p.name(), p.grad()?.to_vec_f64()));
        } else {
            grads.push((p.name(), p.data()?.to_vec_f64()));
        }
    }
    Ok((loss.to_vec_f64(), grads))
}

/// An imperative Sequential holding two HybridSequential parts with a hand-written
/// imperative step between them.
struct TwoPart {
    model: Sequential,
    first: Arc<HybridSequential>,
    second: Arc<HybridSequential>,
}

struct Scale2(String);

impl Block for Scale2 {
    fn prefix(&self) -> String {
        self.0.clone()
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        x.mul_scalar(2.0)
    }
}

/// A forwarding wrapper so the same HybridSequential can sit in a Sequential and be
/// hybridized from the test.
struct Shared(Arc<HybridSequential>);

impl Block for Shared {
    fn prefix(&self) -> String {
        self.0.prefix()
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        self.0.forward(x)
    }
    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(self.0.as_ref())
    }
}

fn two_part() -> Result<TwoPart> {
    let first = Arc::new(HybridSequential::new());
    first.name_scope(|| {
        first.add(Dense::new(8).activation(ActivationKind::Relu));
        first.add(BatchNorm::new());
        first.add(Dropout::new(0.3).expect("rate"));
    });
    let second = Arc::new(HybridSequential::new());
    second.name_scope(|| {
        second.add(Dense::new(8).activation(ActivationKind::Tanh));
        second.add(Dense::new(3));
    });
    let model = Sequential::new();
    model.add(Shared(first.clone()));
    model.add(Scale2("scale2_".into()));
    model.add(Shared(second.clone()));
    model.initialize(init(), Context::cpu())?;
    Ok(TwoPart {
        model,
        first,
        second,
    })
}

#[test]
fn nested_use_inside_an_imperative_model_with_an_imperative_loss() -> Result<()> {
    let _serial = serial();
    let x = input(&[4, 5], 7)?;
    let label = nd::array(&[0.0f32, 2.0, 1.0, 2.0])?;
    let parts = two_part()?;
    autograd::predict_mode(|| parts.model.forward(&x))?; // finish deferred init
    let params = parts.model.collect_params()?;
    let start: Vec<NDArray> = params
        .iter()
        .map(|p| p.data()?.copy())
        .collect::<Result<_>>()?;
    let restore = || -> Result<()> {
        for (p, v) in params.iter().zip(&start) {
            p.data()?.assign(v)?;
        }
        Ok(())
    };

    let (loss_e, grads_e) = loss_and_grads(&parts.model, &x, &label)?;
    for setup in ["first", "second", "both"] {
        restore()?;
        parts.first.dehybridize();
        parts.second.dehybridize();
        if setup != "second" {
            parts.first.hybridize();
        }
        if setup != "first" {
            parts.second.hybridize();
        }
        let (loss_h, grads_h) = loss_and_grads(&parts.model, &x, &label)?;
        assert_close(&loss_h, &loss_e);
        for ((name, h), (_, e)) in grads_h.iter().zip(&grads_e) {
            let scale = e.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            let err = h
                .iter()
                .zip(e)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(err <= 1e-5, "{setup}: {name} rel err {err:e}");
        }
    }
    // Each part was hybridized in two setups (dehybridize drops the graphs in between).
    assert_eq!(parts.first.cache_stats().traces, 2);
    assert_eq!(parts.second.cache_stats().traces, 2);
    Ok(())
}

#[test]
fn training_a_hybridized_mlp_with_a_trainer_matches_imperative_training() -> Result<()> {
    let _serial = serial();
    let build = || -> Result<HybridSequential> {
        let net = HybridSequential::new();
        net.name_scope(|| {
            net.add(Dense::new(16).activation(ActivationKind::Relu));
            net.add(Dropout::new(0.2).expect("rate"));
            net.add(Dense::new(3));
        });
        net.initialize(init(), Context::cpu())?;
        Ok(net)
    };
    let x = input(&[6, 4], 8)?;
    let label = nd::array(&[0.0f32, 1.0, 2.0, 0.0, 1.0, 2.0])?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut losses = Vec::new();
    for hybrid in [false, true] {
        kiln_frontend::random::seed(2024);
        let net = build()?;
        autograd::predict_mode(|| net.forward(&x))?;
        if hybrid {
            net.hybridize();
        }
        let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.5)])?;
        let mut curve = Vec::new();
        for _ in 0..5 {
            let loss = autograd::record(|| loss_fn.forward(&net.forward(&x)?, &label))?;
            loss.backward()?;
            trainer.step(6)?;
            curve.push(loss.mean()?.as_scalar::<f32>()? as f64);
        }
        if hybrid {
            assert_eq!(
                net.cache_stats().traces,
                1,
                "weights change, the graph does not"
            );
        }
        losses.push(curve);
    }
    assert_close(&losses[1], &losses[0]);
    assert!(losses[0][4] < losses[0][0], "it learns: {:?}", losses[0]);
    Ok(())
}
