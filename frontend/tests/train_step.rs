//! `hybrid::TrainStep` against the eager loop it compiles: `autograd::record` + `backward` +
//! `Trainer::step`, from the same starting weights on the same batches.
//!
//! Tolerance: after several steps every parameter (and optimizer state, and BatchNorm running
//! statistic) agrees with the eager one to 1e-5 in max-norm relative error
//! (`max|a − b| ≤ 1e-5 · max|b|`), in f32. The compiled step fuses and reorders elementwise
//! work (and the JIT may use fused multiply-add), so bitwise equality is not expected.

use kiln_frontend::gluon::init::Normal;
use kiln_frontend::gluon::loss::{L2Loss, Loss, SoftmaxCrossEntropyLoss};
use kiln_frontend::gluon::nn::{Activation, BatchNorm, Dense, Dropout, HybridSequential};
use kiln_frontend::gluon::optimizer::{Adam, FactorScheduler, Hyper, Optimizer, SGD};
use kiln_frontend::gluon::{Block, HybridBlock, Parameter, Trainer};
use kiln_frontend::hybrid::hybridize::{self, HybridState};
use kiln_frontend::hybrid::{BackendChoice, TrainStep, TrainStepOptions};
use kiln_frontend::{autograd, nd, Context, GradReq, NDArray, Result};
use std::sync::{Arc, Mutex, MutexGuard};

const TOL: f64 = 1e-5;

/// The global random generator is shared by the test threads: a test that seeds it and then
/// draws dropout seeds must not interleave with another test's draws, so each test holds
/// this lock.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn normal(shape: &[usize], seed: u64) -> NDArray {
    kiln_frontend::random::seed(seed);
    nd::random::normal(0.0, 1.0, shape.to_vec()).unwrap()
}

/// `n` batches of `batch` linear-regression samples (2 features, y = 2·x0 − 3.4·x1 + 4.2).
fn regression_batches(n: usize, batch: usize, seed: u64) -> Vec<(NDArray, NDArray)> {
    (0..n)
        .map(|i| {
            let x = normal(&[batch, 2], seed + i as u64);
            let v = x.to_vec::<f32>().unwrap();
            let y: Vec<f32> = v.chunks(2).map(|r| 2.0 * r[0] - 3.4 * r[1] + 4.2).collect();
            (x, nd::array(&y).unwrap())
        })
        .collect()
}

/// `n` batches of `batch` samples with `features` inputs and class labels in `0..classes`.
fn class_batches(
    n: usize,
    batch: usize,
    features: usize,
    classes: usize,
    seed: u64,
) -> Vec<(NDArray, NDArray)> {
    (0..n)
        .map(|i| {
            let x = normal(&[batch, features], seed + i as u64);
            let y: Vec<f32> = (0..batch)
                .map(|k| ((k * 7 + i * 3) % classes) as f32)
                .collect();
            (x, nd::array(&y).unwrap())
        })
        .collect()
}

fn linear() -> Dense {
    let net = Dense::new(1);
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())
        .unwrap();
    // Finish deferred initialization with one eager forward.
    net.forward(&nd::zeros([1, 2]).unwrap()).unwrap();
    net
}

fn mlp(seed: u64) -> HybridSequential {
    kiln_frontend::random::seed(seed);
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Dense::new(8).activation(kiln_frontend::gluon::nn::ActivationKind::Relu));
        net.add(Dense::new(3));
    });
    net.initialize(Arc::new(Normal::new(0.5)), Context::cpu())
        .unwrap();
    net.forward(&nd::zeros([1, 5]).unwrap()).unwrap();
    net
}

/// Dense, BatchNorm, relu, Dropout, Dense: running statistics and dropout masks.
fn bn_dropout(seed: u64) -> HybridSequential {
    kiln_frontend::random::seed(seed);
    let net = HybridSequential::new();
    net.name_scope(|| {
        // No bias before the batch norm: its gradient is zero up to rounding noise.
        net.add(Dense::new(16).use_bias(false));
        net.add(BatchNorm::new());
        net.add(Activation::new("relu").unwrap());
        net.add(Dropout::new(0.5).unwrap());
        net.add(Dense::new(3));
    });
    net.initialize(Arc::new(Normal::new(0.5)), Context::cpu())
        .unwrap();
    autograd::predict_mode(|| net.forward(&nd::zeros([2, 6]).unwrap())).unwrap();
    net
}

fn params_of(net: &dyn Block) -> Vec<Parameter> {
    net.collect_params().unwrap().iter().cloned().collect()
}

fn snapshot(net: &dyn Block) -> Vec<NDArray> {
    params_of(net)
        .iter()
        .map(|p| p.data().unwrap().copy().unwrap())
        .collect()
}

fn restore(net: &dyn Block, values: &[NDArray]) {
    for (p, v) in params_of(net).iter().zip(values) {
        p.set_data(v).unwrap();
    }
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64))
}

/// Max-norm relative error of `got` against `want`.
fn rel_err(got: &NDArray, want: &NDArray) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let diff = g
        .iter()
        .zip(&w)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    diff / max_abs(&w).max(1e-12)
}

fn assert_close(what: &str, got: &[NDArray], want: &[NDArray]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = rel_err(g, w);
        assert!(
            e <= TOL,
            "{what}: array {i} differs by {e:e} (relative)\n got {:?}\nwant {:?}",
            g.to_vec::<f32>().unwrap(),
            w.to_vec::<f32>().unwrap()
        );
    }
}

/// Runs the eager loop over `batches`; returns the per-step mean losses.
fn eager_steps(
    net: &dyn HybridBlock,
    loss: &dyn Loss,
    trainer: &mut Trainer,
    batches: &[(NDArray, NDArray)],
) -> Vec<f32> {
    batches
        .iter()
        .map(|(x, y)| {
            let l = autograd::record(|| loss.loss(&net.forward(x)?, y, None)).unwrap();
            l.backward().unwrap();
            trainer.step(x.shape().dims()[0]).unwrap();
            l.mean().unwrap().as_scalar::<f32>().unwrap()
        })
        .collect()
}

fn compiled_steps(step: &mut TrainStep<'_>, batches: &[(NDArray, NDArray)]) -> Vec<f32> {
    batches
        .iter()
        .map(|(x, y)| {
            step.step(x, y)
                .unwrap()
                .mean()
                .unwrap()
                .as_scalar::<f32>()
                .unwrap()
        })
        .collect()
}

fn close_losses(got: &[f32], want: &[f32]) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            ((g - w).abs() as f64) <= 1e-5 * (w.abs() as f64).max(1e-3),
            "loss of step {k}: {g} vs {w}"
        );
    }
}

/// Eager and compiled training of `net` from the same weights with the optimizer `make`
/// builds (twice: one for the Trainer, one for the TrainStep); compares parameters, losses
/// and optimizer states, and returns the compiled step's compile count.
fn compare(
    net: &dyn HybridBlock,
    loss: &dyn Loss,
    make: &dyn Fn() -> Box<dyn Optimizer>,
    batches: &[(NDArray, NDArray)],
    seed: u64,
) -> usize {
    let start = snapshot(net);
    let mut trainer = Trainer::new(&net.collect_params().unwrap(), make(), Hyper::new()).unwrap();
    kiln_frontend::random::seed(seed);
    let eager_losses = eager_steps(net, loss, &mut trainer, batches);
    let eager = snapshot(net);
    let names: Vec<String> = params_of(net).iter().map(|p| p.name()).collect();

    restore(net, &start);
    let mut step = TrainStep::new(
        net,
        loss,
        make(),
        Hyper::new(),
        &TrainStepOptions::default(),
    )
    .unwrap();
    kiln_frontend::random::seed(seed);
    let losses = compiled_steps(&mut step, batches);
    close_losses(&losses, &eager_losses);
    assert_close("parameters", &snapshot(net), &eager);
    // The optimizer states agree too (momentum; Adam's m and v).
    for (i, state) in trainer.states().iter().enumerate() {
        if let Some(state) = state {
            let compiled = step.state(&names[i]).expect("a compiled state");
            assert_close(&format!("state of {}", names[i]), &compiled, state.arrays());
        }
    }
    assert_eq!(step.steps(), batches.len());
    step.compiles()
}

#[test]
fn sgd_matches_eager_trainer() {
    let _serial = serial();
    let net = linear();
    let batches = regression_batches(6, 4, 10);
    let make = || -> Box<dyn Optimizer> { Box::new(SGD::new(0.05)) };
    assert_eq!(compare(&net, &L2Loss::new(), &make, &batches, 1), 1);
    let make = || -> Box<dyn Optimizer> { Box::new(SGD::new(0.05).with_wd(0.1)) };
    assert_eq!(compare(&net, &L2Loss::new(), &make, &batches, 1), 1);
}

#[test]
fn sgd_momentum_with_weight_decay_matches_eager_trainer() {
    let _serial = serial();
    let net = mlp(3);
    // Per-parameter multipliers are honoured as the Trainer honours them.
    let params = params_of(&net);
    params[1].set_lr_mult(2.0);
    params[1].set_wd_mult(0.0);
    let batches = class_batches(5, 6, 5, 3, 20);
    let make =
        || -> Box<dyn Optimizer> { Box::new(SGD::new(0.1).with_momentum(0.9).with_wd(0.01)) };
    compare(&net, &SoftmaxCrossEntropyLoss::new(), &make, &batches, 2);
}

#[test]
fn adam_with_weight_decay_and_clipping_matches_eager_trainer() {
    let _serial = serial();
    let net = mlp(4);
    let batches = class_batches(6, 6, 5, 3, 30);
    let make = || -> Box<dyn Optimizer> {
        Box::new(
            Adam::new(0.01)
                .with_beta1(0.8)
                .with_wd(0.02)
                .with_clip_gradient(0.5),
        )
    };
    compare(&net, &SoftmaxCrossEntropyLoss::new(), &make, &batches, 3);
    // Adam by name, with the Trainer's hyperparameter list.
    let net = linear();
    let batches = regression_batches(5, 4, 40);
    let make = || -> Box<dyn Optimizer> {
        kiln_frontend::gluon::optimizer::create("adam", [("learning_rate", 0.1), ("wd", 0.01)])
            .unwrap()
    };
    compare(&net, &L2Loss::new(), &make, &batches, 4);
}

#[test]
fn batch_norm_and_dropout_train_as_in_eager_mode() {
    let _serial = serial();
    let net = bn_dropout(5);
    let batches = class_batches(4, 8, 6, 3, 50);
    let make = || -> Box<dyn Optimizer> { Box::new(SGD::new(0.1).with_momentum(0.5)) };
    // Same global seed before both runs: the dropout masks are the same, so weights, gammas,
    // betas and the running mean and variance (all compared) agree.
    compare(&net, &SoftmaxCrossEntropyLoss::new(), &make, &batches, 6);
    let params = params_of(&net);
    let running: Vec<&Parameter> = params
        .iter()
        .filter(|p| p.name().contains("running"))
        .collect();
    assert_eq!(running.len(), 2, "running mean and variance were compared");
    // The running mean moved away from its initial zeros.
    assert!(max_abs(&running[0].data().unwrap().to_vec::<f32>().unwrap()) > 0.0);
}

#[test]
fn a_new_learning_rate_or_schedule_compiles_nothing() {
    let _serial = serial();
    let net = linear();
    let loss = L2Loss::new();
    let batches = regression_batches(6, 4, 60);
    let start = snapshot(&net);
    let mut trainer = Trainer::new(
        &net.collect_params().unwrap(),
        "sgd",
        [("learning_rate", 0.05), ("momentum", 0.9)],
    )
    .unwrap();
    eager_steps(&net, &loss, &mut trainer, &batches[..3]);
    trainer.set_learning_rate(0.01).unwrap();
    eager_steps(&net, &loss, &mut trainer, &batches[3..]);
    let eager = snapshot(&net);

    restore(&net, &start);
    let mut step = TrainStep::new(
        &net,
        &loss,
        "sgd",
        [("learning_rate", 0.05), ("momentum", 0.9)],
        &TrainStepOptions::default(),
    )
    .unwrap();
    compiled_steps(&mut step, &batches[..3]);
    step.set_learning_rate(0.01).unwrap();
    assert_eq!(step.learning_rate(), 0.01);
    compiled_steps(&mut step, &batches[3..]);
    assert_close("parameters", &snapshot(&net), &eager);
    assert_eq!(step.compiles(), 1);

    // A schedule: the rate changes every 2 updates, inside one compiled plan.
    let make = || -> Box<dyn Optimizer> {
        Box::new(SGD::new(0.1).with_lr_scheduler(FactorScheduler::new(2, 0.5)))
    };
    assert_eq!(compare(&net, &loss, &make, &batches, 7), 1);
}

#[test]
fn a_new_batch_size_compiles_once_more_and_keeps_training_right() {
    let _serial = serial();
    let net = mlp(8);
    let mut batches = class_batches(2, 6, 5, 3, 70);
    batches.extend(class_batches(2, 3, 5, 3, 80));
    batches.extend(class_batches(2, 6, 5, 3, 90));
    let make = || -> Box<dyn Optimizer> { Box::new(Adam::new(0.05)) };
    assert_eq!(
        compare(&net, &SoftmaxCrossEntropyLoss::new(), &make, &batches, 9),
        2
    );
}

#[test]
fn the_interpreter_and_cpu_backends_give_the_same_step() {
    let _serial = serial();
    let batches = regression_batches(3, 4, 100);
    let mut results = Vec::new();
    for backend in [
        BackendChoice::Interpreter,
        BackendChoice::Cpu,
        BackendChoice::Cranelift,
    ] {
        let net = linear();
        kiln_frontend::random::seed(0);
        let init = normal(&[1, 2], 5);
        net.weight().set_data(&init).unwrap();
        let loss = L2Loss::new();
        let mut step = TrainStep::new(
            &net,
            &loss,
            "adam",
            [("learning_rate", 0.1)],
            &TrainStepOptions { backend },
        )
        .unwrap();
        assert_eq!(step.backend(), backend);
        compiled_steps(&mut step, &batches);
        results.push(snapshot(&net));
    }
    assert_close("cpu vs interpreter", &results[1], &results[0]);
    assert_close("cranelift vs interpreter", &results[2], &results[0]);
}

#[test]
fn the_step_is_one_compiled_graph_with_the_update_in_it() {
    let _serial = serial();
    let net = linear();
    let loss = L2Loss::new();
    let mut step = TrainStep::new(
        &net,
        &loss,
        "sgd",
        [("learning_rate", 0.1)],
        &TrainStepOptions::default(),
    )
    .unwrap();
    assert!(step.graph().is_none());
    let (x, y) = regression_batches(1, 4, 110).remove(0);
    let l = step.step(&x, &y).unwrap();
    assert_eq!(l.shape().dims(), &[4]);
    let g = step.graph().unwrap();
    let inputs: Vec<&str> = g.inputs().iter().map(|(n, _)| *n).collect();
    assert!(inputs.contains(&kiln_frontend::hybrid::train_step::LR_INPUT));
    // loss, new weight, new bias
    assert_eq!(g.outputs().len(), 3);
    assert!(step.num_ops().unwrap() > 0);
    assert!(step.optimized_graph().unwrap().len() <= g.len());
    assert!(!step.pass_stats().unwrap().to_string().is_empty());
}

#[test]
fn unsupported_optimizers_and_gradient_settings_are_clear_errors() {
    let _serial = serial();
    let net = linear();
    let loss = L2Loss::new();
    let opts = TrainStepOptions::default();
    let err = TrainStep::new(&net, &loss, "rmsprop", [("learning_rate", 0.1)], &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rmsprop") && err.contains("sgd, adam"),
        "{err}"
    );
    let err = TrainStep::new(&net, &loss, "adam", [("beta1", 1.0)], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("beta1"), "{err}");
    let err = TrainStep::new(&net, &loss, SGD::new(0.1), [("momentum", 0.9)], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("optimizer value"), "{err}");

    let (x, y) = regression_batches(1, 4, 120).remove(0);
    let weight = net.weight().clone();
    // grad_req add cannot be compiled.
    weight.set_grad_req(GradReq::Add).unwrap();
    let mut step = TrainStep::new(&net, &loss, "sgd", [("learning_rate", 0.1)], &opts).unwrap();
    let err = step.step(&x, &y).unwrap_err().to_string();
    assert!(err.contains("grad_req add"), "{err}");
    // Nothing to train.
    weight.set_grad_req(GradReq::Null).unwrap();
    net.bias().unwrap().set_grad_req(GradReq::Null).unwrap();
    let err = step.step(&x, &y).unwrap_err().to_string();
    assert!(err.contains("nothing to train"), "{err}");
    // Only the weight: the bias stays as it is.
    weight.set_grad_req(GradReq::Write).unwrap();
    let bias = net.bias().unwrap().data().unwrap().to_vec::<f32>().unwrap();
    let before = weight.data().unwrap().to_vec::<f32>().unwrap();
    step.step(&x, &y).unwrap();
    assert_eq!(
        net.bias().unwrap().data().unwrap().to_vec::<f32>().unwrap(),
        bias
    );
    assert_ne!(weight.data().unwrap().to_vec::<f32>().unwrap(), before);

    // Data of another feature count: the network's own shape error, and nothing changes.
    let before = weight.data().unwrap().to_vec::<f32>().unwrap();
    let err = step
        .step(&nd::zeros([4, 3]).unwrap(), &y)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[4,3]") || err.contains("3"), "{err}");
    assert_eq!(weight.data().unwrap().to_vec::<f32>().unwrap(), before);
    // An empty batch.
    let err = step
        .step(&nd::zeros([0, 2]).unwrap(), &nd::zeros([0]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch"), "{err}");
    // The step still works.
    step.step(&x, &y).unwrap();
}

/// A block with a parameter its forward never uses.
struct Unused {
    dense: Dense,
    spare: Parameter,
    hybrid: HybridState,
}

impl Block for Unused {
    fn prefix(&self) -> String {
        "unused0_".into()
    }
    fn params(&self) -> Vec<Parameter> {
        vec![self.spare.clone()]
    }
    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(&self.dense);
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Unused {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        self.dense.forward(x)
    }
    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

#[test]
fn a_parameter_no_gradient_reaches_is_a_clear_error() {
    let _serial = serial();
    let net = Unused {
        dense: linear(),
        spare: Parameter::new("unused0_spare", [3]),
        hybrid: HybridState::default(),
    };
    net.spare
        .initialize(Arc::new(Normal::new(1.0)), Context::cpu(), false)
        .unwrap();
    let loss = L2Loss::new();
    let mut step = TrainStep::new(
        &net,
        &loss,
        "sgd",
        [("learning_rate", 0.1)],
        &TrainStepOptions::default(),
    )
    .unwrap();
    let (x, y) = regression_batches(1, 4, 130).remove(0);
    let err = step.step(&x, &y).unwrap_err().to_string();
    assert!(
        err.contains("unused0_spare") && err.contains("grad_req to null"),
        "{err}"
    );
    net.spare.set_grad_req(GradReq::Null).unwrap();
    step.step(&x, &y).unwrap();
}

#[test]
fn deferred_initialization_finishes_on_the_first_step() {
    let _serial = serial();
    let net = Dense::new(2);
    net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())
        .unwrap();
    assert!(!net.weight().is_initialized());
    let loss = L2Loss::new();
    let mut step = TrainStep::new(
        &net,
        &loss,
        "sgd",
        [("learning_rate", 0.1)],
        &TrainStepOptions::default(),
    )
    .unwrap();
    let x = normal(&[4, 3], 140);
    let y = normal(&[4, 2], 141);
    let first = step
        .step(&x, &y)
        .unwrap()
        .mean()
        .unwrap()
        .as_scalar::<f32>()
        .unwrap();
    assert_eq!(net.weight().shape().dims(), &[2, 3]);
    for _ in 0..50 {
        step.step(&x, &y).unwrap();
    }
    let last = step
        .step(&x, &y)
        .unwrap()
        .mean()
        .unwrap()
        .as_scalar::<f32>()
        .unwrap();
    assert!(last < first * 0.5, "{first} -> {last}");
}
