//! `Trainer`: gradient rescaling by batch size, learning-rate control, grad_req null,
//! deferred parameters, errors, and linear regression trained end to end.

use kiln_frontend::autograd::{self, GradReq};
use kiln_frontend::gluon::init::Initializer;
use kiln_frontend::gluon::optimizer::{FactorScheduler, Hyper, SGD};
use kiln_frontend::gluon::trainer::Trainer;
use kiln_frontend::gluon::{Parameter, ParameterDict};
use kiln_frontend::{nd, Context, DType, NDArray, Result, Shape};
use std::sync::Arc;

/// Fills weights with a constant.
#[derive(Debug)]
struct Constant(f64);

impl Initializer for Constant {
    fn init_weight(&self, _: &str, shape: &Shape, dtype: DType, ctx: Context) -> Result<NDArray> {
        nd::full_with(shape.clone(), self.0, nd::Opts::new().dtype(dtype).ctx(ctx))
    }
}

/// An f64 parameter holding `value`, with gradient `grad`.
fn param(name: &str, value: &[f64], grad: &[f64]) -> Result<Parameter> {
    let p = Parameter::new(name, [value.len()]).with_dtype(DType::F64);
    p.set_data(&NDArray::from_slice(value))?;
    p.grad()?.assign(&NDArray::from_slice(grad))?;
    Ok(p)
}

fn vals(p: &Parameter) -> Vec<f64> {
    p.data().unwrap().to_vec::<f64>().unwrap()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
            "got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn step_rescales_by_batch_size() -> Result<()> {
    let w = param("w", &[1.0, 2.0], &[4.0, -8.0])?;
    let mut trainer = Trainer::new([&w], "sgd", [("learning_rate", 0.1)])?;
    trainer.step(4)?;
    // w − 0.1·g/4 = [1 − 0.1, 2 + 0.2]
    assert_close(&vals(&w), &[0.9, 2.2]);
    // The same gradient again (stale: no backward in between) is used as it is.
    trainer.step(2)?;
    assert_close(&vals(&w), &[0.7, 2.6]);
    assert!(trainer.step(0).is_err());
    Ok(())
}

#[test]
fn step_inside_record_is_not_taped() -> Result<()> {
    let w = param("w", &[1.0], &[2.0])?;
    let mut trainer = Trainer::new([&w], "sgd", [("learning_rate", 0.5)])?;
    autograd::record(|| trainer.step(1))?;
    assert_close(&vals(&w), &[0.0]);
    Ok(())
}

#[test]
fn rescale_grad_hyperparameter_multiplies_the_batch_scaling() -> Result<()> {
    let w = param("w", &[1.0], &[4.0])?;
    let mut trainer = Trainer::new(
        vec![w.clone()],
        "sgd",
        [("learning_rate", 0.1), ("rescale_grad", 2.0)],
    )?;
    trainer.update(4)?;
    // g·2/4 = 2: w = 1 − 0.2
    assert_close(&vals(&w), &[0.8]);
    assert_eq!(trainer.optimizer().core().rescale_grad, 0.5);
    Ok(())
}

#[test]
fn momentum_state_lives_in_the_trainer() -> Result<()> {
    let w = param("w", &[1.0, -2.0], &[0.5, 1.0])?;
    let mut trainer = Trainer::new([&w], "sgd", [("learning_rate", 0.1), ("momentum", 0.9)])?;
    assert!(trainer.states()[0].is_none());
    trainer.step(1)?;
    trainer.step(1)?;
    // mom₁ = −0.1·g = [−0.05, −0.1]; mom₂ = 0.9·mom₁ − 0.1·g = [−0.095, −0.19]
    // w = w0 + mom₁ + mom₂ = [1 − 0.145, −2 − 0.29]
    assert_close(&vals(&w), &[0.855, -2.29]);
    let mom = trainer.states()[0]
        .as_ref()
        .map(|s| s.arrays()[0].to_vec::<f64>());
    assert_close(&mom.unwrap()?, &[-0.095, -0.19]);
    Ok(())
}

#[test]
fn set_learning_rate_takes_effect() -> Result<()> {
    let w = param("w", &[1.0], &[1.0])?;
    let mut trainer = Trainer::new([&w], "sgd", [("learning_rate", 0.1)])?;
    assert_eq!(trainer.learning_rate(), 0.1);
    trainer.set_learning_rate(0.5)?;
    assert_eq!(trainer.learning_rate(), 0.5);
    trainer.step(1)?;
    assert_close(&vals(&w), &[0.5]);
    Ok(())
}

#[test]
fn scheduler_drives_the_learning_rate() -> Result<()> {
    let w = param("w", &[0.0], &[1.0])?;
    let hyper = Hyper::new()
        .set("learning_rate", 1.0)
        .lr_scheduler(FactorScheduler::new(1, 0.5));
    let mut trainer = Trainer::new([&w], "sgd", hyper)?;
    trainer.step(1)?; // lr(1) = 1
    trainer.step(1)?; // lr(2) = 0.5
    trainer.step(1)?; // lr(3) = 0.25
    assert_close(&vals(&w), &[-1.75]);
    assert_eq!(trainer.learning_rate(), 0.25);
    assert!(trainer.set_learning_rate(0.1).is_err());
    Ok(())
}

#[test]
fn null_grad_req_parameters_are_not_updated() -> Result<()> {
    let w = param("w", &[1.0], &[1.0])?;
    let frozen = Parameter::new("running_mean", [1])
        .with_dtype(DType::F64)
        .with_grad_req(GradReq::Null);
    frozen.set_data(&NDArray::from_slice(&[3.0f64]))?;
    let mut dict = ParameterDict::new();
    dict.insert(w.clone())?;
    dict.insert(frozen.clone())?;
    let mut trainer = Trainer::new(&dict, "sgd", [("learning_rate", 1.0)])?;
    trainer.step(1)?;
    assert_close(&vals(&w), &[0.0]);
    assert_close(&vals(&frozen), &[3.0]);
    Ok(())
}

#[test]
fn multipliers_come_from_the_parameters() -> Result<()> {
    let w = param("w", &[1.0], &[1.0])?;
    let b = param("b", &[1.0], &[1.0])?;
    w.set_lr_mult(0.5);
    b.set_wd_mult(0.0);
    let mut trainer = Trainer::new([&w, &b], "sgd", [("learning_rate", 0.2), ("wd", 1.0)])?;
    trainer.step(1)?;
    // w: lr 0.1, wd 1: 1 − 0.1·(1 + 1) = 0.8; b: lr 0.2, no wd: 1 − 0.2 = 0.8
    assert_close(&vals(&w), &[0.8]);
    assert_close(&vals(&b), &[0.8]);
    b.set_lr_mult(2.0);
    trainer.step(1)?;
    // b: lr 0.4: 0.8 − 0.4 = 0.4
    assert_close(&vals(&b), &[0.4]);
    Ok(())
}

#[test]
fn deferred_parameters_work_once_initialized() -> Result<()> {
    let w = Parameter::new("dense0_weight", [0]).with_dtype(DType::F64);
    w.initialize(Arc::new(Constant(2.0)), Context::cpu(), false)?;
    let mut trainer = Trainer::new([&w], "adam", [("learning_rate", 0.1)])?;
    let e = trainer.step(1).unwrap_err().to_string();
    assert!(e.contains("dense0_weight"), "{e}");
    w.finish_deferred_init([3])?;
    w.grad()?
        .assign(&NDArray::from_slice(&[1.0f64, -1.0, 0.0]))?;
    trainer.step(1)?;
    // Adam's first step is lr·sign(g) (0 for a zero gradient).
    let got = vals(&w);
    assert!(
        (got[0] - 1.9).abs() < 1e-7 && (got[1] - 2.1).abs() < 1e-7,
        "{got:?}"
    );
    assert_eq!(got[2], 2.0);
    Ok(())
}

#[test]
fn optimizer_values_are_accepted() -> Result<()> {
    let w = param("w", &[1.0], &[1.0])?;
    let mut trainer = Trainer::with_optimizer([&w], SGD::new(0.25).with_momentum(0.5))?;
    trainer.step(1)?;
    assert_close(&vals(&w), &[0.75]);
    assert_eq!(trainer.optimizer().name(), "sgd");
    let mut t2 = Trainer::new([&w], SGD::new(0.25), Hyper::new())?;
    t2.step(1)?;
    assert_close(&vals(&w), &[0.5]);
    trainer.optimizer_mut().core_mut().wd = 0.1;
    assert_eq!(trainer.optimizer().core().wd, 0.1);
    Ok(())
}

#[test]
fn creation_errors_name_the_problem() -> Result<()> {
    let w = param("w", &[1.0], &[1.0])?;
    let e = Trainer::new([&w], "adamw", Hyper::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("adamw") && e.contains("sgd"), "{e}");
    let e = Trainer::new([&w], "sgd", [("lr", 0.1)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"lr\"") && e.contains("learning_rate"), "{e}");
    let e = Trainer::new([&w], SGD::new(0.1), [("momentum", 0.9)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("optimizer value"), "{e}");
    let e = Trainer::new([&w, &w], "sgd", Hyper::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
    Ok(())
}

/// The book's chapter 2 problem: y = 2·x₁ − 3.4·x₂ + 4.2 + noise, 1000 samples, trained by
/// minibatch SGD (batch 10, lr 0.03) on the squared loss.
#[test]
fn linear_regression_end_to_end() -> Result<()> {
    kiln_frontend::random::seed(42);
    let (n, batch) = (1000usize, 10usize);
    let features = nd::random::normal(0.0, 1.0, [n, 2])?;
    let true_w = nd::array(&[[2.0f32], [-3.4]])?;
    let noise = nd::random::normal(0.0, 0.01, [n, 1])?;
    let labels = ((nd::dot(&features, &true_w)? + 4.2)? + &noise)?;

    let w = Parameter::new("linreg_weight", [2, 1]);
    w.set_data(&nd::random::normal(0.0, 0.01, [2, 1])?)?;
    let b = Parameter::new("linreg_bias", [1]);
    b.set_data(&nd::zeros([1])?)?;
    let mut trainer = Trainer::new([&w, &b], "sgd", [("learning_rate", 0.03)])?;

    for _epoch in 0..3 {
        for i in (0..n).step_by(batch) {
            let x = features.slice_axis(0, i as i64, Some((i + batch) as i64))?;
            let y = labels.slice_axis(0, i as i64, Some((i + batch) as i64))?;
            let loss = autograd::record(|| -> Result<NDArray> {
                let y_hat = (nd::dot(&x, &w.data()?)? + &b.data()?)?;
                (&y_hat - &y)?.square()? / 2.0
            })?;
            loss.backward()?;
            trainer.step(batch)?;
        }
    }
    let learnt_w = w.data()?.to_vec::<f32>()?;
    let learnt_b = b.data()?.to_vec::<f32>()?;
    assert!((learnt_w[0] - 2.0).abs() < 0.05, "{learnt_w:?}");
    assert!((learnt_w[1] + 3.4).abs() < 0.05, "{learnt_w:?}");
    assert!((learnt_b[0] - 4.2).abs() < 0.05, "{learnt_b:?}");
    Ok(())
}
