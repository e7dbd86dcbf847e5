//! `Trainer::save_states` / `load_states`: training resumed from a checkpoint (parameters +
//! optimizer states) continues bitwise exactly as uninterrupted training, for SGD with
//! momentum and for Adam (with a learning-rate schedule); mismatched states are errors.

use kiln_frontend::autograd;
use kiln_frontend::gluon::init::Xavier;
use kiln_frontend::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln_frontend::gluon::nn::{ActivationKind, Dense, Sequential};
use kiln_frontend::gluon::optimizer::{FactorScheduler, Hyper};
use kiln_frontend::gluon::serialize::{load_parameters, save_parameters};
use kiln_frontend::gluon::trainer::Trainer;
use kiln_frontend::gluon::Block;
use kiln_frontend::{nd, Context, NDArray, Result};
use std::sync::Arc;

const BATCH: usize = 8;

/// A small MLP, 6 -> 5 (relu) -> 3, initialized from `seed`.
fn mlp(seed: u64, hidden: usize) -> Result<Sequential> {
    kiln_frontend::random::seed(seed);
    let net = Sequential::new();
    net.name_scope(|| {
        net.add(Dense::new(hidden).activation(ActivationKind::Relu));
        net.add(Dense::new(3));
    });
    net.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    net.forward(&nd::zeros([1, 6])?)?;
    Ok(net)
}

/// Batch `i` of a fixed synthetic classification problem.
fn batch(i: usize) -> Result<(NDArray, NDArray)> {
    let x: Vec<f32> = (0..BATCH * 6)
        .map(|k| (((k * 7 + i * 13) % 17) as f32 - 8.0) / 8.0)
        .collect();
    let y: Vec<f32> = (0..BATCH).map(|k| ((k + i) % 3) as f32).collect();
    Ok((
        NDArray::from_vec(x, [BATCH, 6])?,
        NDArray::from_vec(y, [BATCH])?,
    ))
}

/// Trains `net` on batches `steps`.
fn train(net: &Sequential, trainer: &mut Trainer, steps: std::ops::Range<usize>) -> Result<()> {
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    for i in steps {
        let (x, y) = batch(i)?;
        let loss = autograd::record(|| loss_fn.forward(&net.forward(&x)?, &y))?;
        loss.backward()?;
        trainer.step(BATCH)?;
    }
    Ok(())
}

/// Every parameter's bits, in order.
fn bits(net: &Sequential) -> Result<Vec<Vec<u32>>> {
    net.collect_params()?
        .iter()
        .map(|p| {
            Ok(p.data()?
                .to_vec::<f32>()?
                .iter()
                .map(|v| v.to_bits())
                .collect())
        })
        .collect()
}

/// Trains 7 steps without a break and 3 + (checkpoint, fresh model and trainer, restore) + 4,
/// and asserts the two end with bitwise equal parameters.
fn check_resume(make_trainer: &dyn Fn(&Sequential) -> Result<Trainer>) -> Result<()> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (params_path, states_path) = (dir.path().join("net.params"), dir.path().join("t.states"));

    let init_path = dir.path().join("init.params");

    let whole = mlp(3, 5)?;
    // Tests run in parallel and share the random generator: start both runs from the same
    // saved initial parameters rather than from the same seed.
    save_parameters(&whole, &init_path)?;
    let mut t = make_trainer(&whole)?;
    train(&whole, &mut t, 0..7)?;
    let want = bits(&whole)?;

    let first = mlp(3, 5)?;
    load_parameters(&first, &init_path, Context::cpu())?;
    let mut t1 = make_trainer(&first)?;
    train(&first, &mut t1, 0..3)?;
    save_parameters(&first, &params_path)?;
    t1.save_states(&states_path)?;

    // A fresh instance (its parameters get a new prefix) with a fresh trainer.
    let resumed = mlp(99, 5)?;
    load_parameters(&resumed, &params_path, Context::cpu())?;
    let mut t2 = make_trainer(&resumed)?;
    t2.load_states(&states_path)?;
    assert_eq!(
        t2.optimizer().core().update_count(0),
        3,
        "update counts restored"
    );
    assert_eq!(t2.learning_rate(), t1.learning_rate());
    train(&resumed, &mut t2, 3..7)?;
    let got = bits(&resumed)?;
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "parameter {i} differs after resuming");
    }
    // Without the states (momentum lost, counts restarted) the result differs: the test has
    // teeth.
    let naive = mlp(99, 5)?;
    load_parameters(&naive, &params_path, Context::cpu())?;
    let mut t3 = make_trainer(&naive)?;
    train(&naive, &mut t3, 3..7)?;
    assert_ne!(bits(&naive)?, want, "states made no difference");
    Ok(())
}

#[test]
fn resumed_sgd_with_momentum_matches_uninterrupted_training_bitwise() -> Result<()> {
    check_resume(&|net| {
        Trainer::new(
            &net.collect_params()?,
            "sgd",
            Hyper::new()
                .set("learning_rate", 0.1)
                .set("momentum", 0.9)
                .set("wd", 1e-3),
        )
    })
}

#[test]
fn resumed_adam_with_a_schedule_matches_uninterrupted_training_bitwise() -> Result<()> {
    check_resume(&|net| {
        Trainer::new(
            &net.collect_params()?,
            "adam",
            Hyper::new()
                .set("learning_rate", 0.01)
                .lr_scheduler(FactorScheduler::new(2, 0.5)),
        )
    })
}

#[test]
fn a_changed_learning_rate_is_restored() -> Result<()> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("t.states");
    let net = mlp(1, 5)?;
    let mut t = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.1)])?;
    train(&net, &mut t, 0..2)?;
    t.set_learning_rate(0.025)?;
    t.save_states(&path)?;
    let mut fresh = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.1)])?;
    fresh.load_states(&path)?;
    assert_eq!(fresh.learning_rate(), 0.025);
    // Plain SGD has no state arrays, but the parameters were updated: empty states.
    assert!(fresh
        .states()
        .iter()
        .all(|s| s.as_ref().is_some_and(|s| s.is_empty())));
    Ok(())
}

#[test]
fn states_for_other_parameters_or_another_optimizer_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("t.states");
    let net = mlp(1, 5)?;
    let hyper = || Hyper::new().set("learning_rate", 0.1).set("momentum", 0.9);
    let mut t = Trainer::new(&net.collect_params()?, "sgd", hyper())?;
    train(&net, &mut t, 0..2)?;
    t.save_states(&path)?;

    // Another architecture: the hidden layer has 4 units, not 5.
    let other = mlp(1, 4)?;
    let mut t_other = Trainer::new(&other.collect_params()?, "sgd", hyper())?;
    let e = t_other.load_states(&path).unwrap_err().to_string();
    assert!(e.contains("do not fit"), "{e}");
    assert!(e.contains("[5, 6]") && e.contains("[4, 6]"), "{e}");
    assert!(
        t_other.states().iter().all(Option::is_none),
        "a failed load changed the trainer"
    );

    // Fewer parameters.
    let params = net.collect_params()?;
    let first_two: Vec<_> = params.iter().take(2).cloned().collect();
    let mut t_few = Trainer::new(first_two, "sgd", hyper())?;
    let e = t_few.load_states(&path).unwrap_err().to_string();
    assert!(e.contains("4 parameters") && e.contains("has 2"), "{e}");

    // Another optimizer.
    let mut t_adam = Trainer::new(&net.collect_params()?, "adam", Hyper::new())?;
    let e = t_adam.load_states(&path).unwrap_err().to_string();
    assert!(e.contains("\"sgd\"") && e.contains("\"adam\""), "{e}");

    // A parameter file is not a state file; a truncated state file is corrupt.
    let params_path = dir.path().join("net.params");
    save_parameters(&net, &params_path)?;
    let e = t.load_states(&params_path).unwrap_err().to_string();
    assert!(e.contains("not a trainer-state file"), "{e}");
    let bytes = std::fs::read(&path).expect("read");
    let cut = dir.path().join("cut.states");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let e = t.load_states(&cut).unwrap_err().to_string();
    assert!(e.contains("truncated or corrupt"), "{e}");
    Ok(())
}
