//! Initializers: sample statistics over large shapes, MXNet's exact Xavier scale, name-based
//! dispatch, and reproducibility under `random::seed`.

use kiln_frontend::gluon::init::{
    Constant, FactorType, Initializer, MSRAPrelu, Normal, One, RandType, Uniform, Xavier, Zero,
};
use kiln_frontend::gluon::Parameter;
use kiln_frontend::{random, Context, DType, NDArray, Result, Shape};
use std::sync::{Arc, Mutex, MutexGuard};

/// The global generator is shared by the test threads: tests that draw hold this lock so a
/// seeded sequence is not interleaved with another test's draws.
fn rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn draw(init: &dyn Initializer, shape: &[usize]) -> Result<Vec<f64>> {
    let a = init.init_weight("w", &Shape::from(shape), DType::F32, Context::cpu())?;
    assert_eq!(a.shape().dims(), shape);
    assert_eq!(a.dtype(), DType::F32);
    Ok(a.to_vec_f64())
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn defaults_are_mxnets() {
    assert_eq!(Uniform::default().scale, 0.07);
    assert_eq!(Normal::default().sigma, 0.01);
    let x = Xavier::default();
    assert_eq!(
        (x.rnd_type, x.factor_type, x.magnitude),
        (RandType::Uniform, FactorType::Avg, 3.0)
    );
    let m = MSRAPrelu::default();
    assert_eq!((m.factor_type, m.slope), (FactorType::Avg, 0.25));
}

#[test]
fn uniform_samples_lie_in_the_interval_with_the_right_moments() -> Result<()> {
    let _g = rng_lock();
    let v = draw(&Uniform::new(0.5), &[200, 500])?;
    assert!(v.iter().all(|x| (-0.5..=0.5).contains(x)));
    let (mean, var) = mean_var(&v);
    // U(-a, a): mean 0, variance a²/3.
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 0.25 / 3.0).abs() < 0.03 * 0.25 / 3.0, "var {var}");
    let (lo, hi) = v
        .iter()
        .fold((1.0f64, -1.0f64), |(l, h), &x| (l.min(x), h.max(x)));
    assert!(lo < -0.49 && hi > 0.49, "range [{lo}, {hi}]");
    Ok(())
}

#[test]
fn normal_samples_have_the_right_moments() -> Result<()> {
    let _g = rng_lock();
    let v = draw(&Normal::new(2.0), &[100_000])?;
    let (mean, var) = mean_var(&v);
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var.sqrt() - 2.0).abs() < 0.04, "std {}", var.sqrt());
    Ok(())
}

#[test]
fn xavier_scale_is_mxnets_formula() -> Result<()> {
    // [64, 32, 3, 3]: fan_in = 32·9 = 288, fan_out = 64·9 = 576.
    let conv: Shape = [64, 32, 3, 3].into();
    let by = |factor_type, magnitude| Xavier {
        rnd_type: RandType::Uniform,
        factor_type,
        magnitude,
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(
        by(FactorType::Avg, 3.0).scale(&conv)?,
        (3.0f64 / 432.0).sqrt()
    ));
    assert!(close(
        by(FactorType::In, 3.0).scale(&conv)?,
        (3.0f64 / 288.0).sqrt()
    ));
    assert!(close(
        by(FactorType::Out, 2.0).scale(&conv)?,
        (2.0f64 / 576.0).sqrt()
    ));
    // A dense weight [units = 10, in = 20]: average fan 15.
    assert!(close(
        Xavier::default().scale(&[10, 20].into())?,
        0.2f64.sqrt()
    ));
    Ok(())
}

#[test]
fn xavier_samples_follow_the_scale() -> Result<()> {
    let _g = rng_lock();
    let shape = [256, 512];
    let s = (3.0f64 / 384.0).sqrt();
    let v = draw(&Xavier::default(), &shape)?;
    assert!(v.iter().all(|x| x.abs() <= s + 1e-7));
    let (mean, var) = mean_var(&v);
    assert!(mean.abs() < 0.002, "mean {mean}");
    assert!((var - s * s / 3.0).abs() < 0.03 * s * s / 3.0, "var {var}");

    let gauss = Xavier::new(RandType::Gaussian, FactorType::In, 2.0);
    let s = (2.0f64 / 512.0).sqrt();
    let (mean, var) = mean_var(&draw(&gauss, &shape)?);
    assert!(mean.abs() < 0.002, "mean {mean}");
    assert!(
        (var.sqrt() - s).abs() < 0.02 * s,
        "std {} vs {s}",
        var.sqrt()
    );
    Ok(())
}

#[test]
fn msra_prelu_is_gaussian_xavier_with_magnitude_2_over_1_plus_slope_squared() -> Result<()> {
    let _g = rng_lock();
    let m = MSRAPrelu::new(FactorType::In, 0.5);
    let x = m.as_xavier();
    assert_eq!(x.rnd_type, RandType::Gaussian);
    assert!((x.magnitude - 2.0 / 1.25).abs() < 1e-15);
    // [300, 400]: fan_in = 400, so std = sqrt(1.6 / 400) = 0.0632...
    let (mean, var) = mean_var(&draw(&m, &[300, 400])?);
    let s = (1.6f64 / 400.0).sqrt();
    assert!(mean.abs() < 0.001, "mean {mean}");
    assert!(
        (var.sqrt() - s).abs() < 0.02 * s,
        "std {} vs {s}",
        var.sqrt()
    );
    Ok(())
}

#[test]
fn xavier_rejects_vectors_naming_the_parameter_and_shape() {
    let err = Xavier::default()
        .init_weight("dense0_weight", &[7].into(), DType::F32, Context::cpu())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dense0_weight") && err.contains("[7]") && err.contains("rank >= 2"));
    let out = Xavier::new(RandType::Uniform, FactorType::Out, 3.0);
    let err = out.scale(&[0, 4].into()).unwrap_err().to_string();
    assert!(err.contains("[0, 4]"), "{err}");
    let err = Uniform::new(-1.0)
        .init_weight("w", &[2].into(), DType::F32, Context::cpu())
        .unwrap_err()
        .to_string();
    assert!(err.contains("-1"), "{err}");
}

#[test]
fn constant_initializers_and_dtype() -> Result<()> {
    let _g = rng_lock();
    let ctx = Context::cpu();
    let shape: Shape = [2, 3].into();
    let z = Zero.init_weight("w", &shape, DType::F64, ctx)?;
    assert_eq!((z.dtype(), z.to_vec::<f64>()?), (DType::F64, vec![0.0; 6]));
    assert_eq!(
        One.init_weight("w", &shape, DType::F32, ctx)?
            .to_vec::<f32>()?,
        vec![1.0; 6]
    );
    let c = Constant(-2.5).init_weight("w", &shape, DType::F32, ctx)?;
    assert_eq!(c.to_vec::<f32>()?, vec![-2.5; 6]);
    let u = Uniform::new(1.0).init_weight("w", &shape, DType::F64, ctx)?;
    assert_eq!(u.dtype(), DType::F64);
    Ok(())
}

#[test]
fn init_param_dispatches_on_the_name() -> Result<()> {
    let ctx = Context::cpu();
    let init = Constant(5.0);
    let shape: Shape = [3].into();
    let get = |name: &str| -> Result<Vec<f32>> {
        init.init_param(name, &shape, DType::F32, ctx)?
            .to_vec::<f32>()
    };
    assert_eq!(get("dense0_weight")?, vec![5.0; 3]);
    assert_eq!(get("dense0_bias")?, vec![0.0; 3]);
    assert_eq!(get("batchnorm0_gamma")?, vec![1.0; 3]);
    assert_eq!(get("batchnorm0_running_mean")?, vec![0.0; 3]);
    Ok(())
}

#[test]
fn seeding_makes_initialization_repeat() -> Result<()> {
    let _g = rng_lock();
    let init: Arc<dyn Initializer> = Arc::new(Xavier::default());
    let run = |seed: u64| -> Result<Vec<f32>> {
        random::seed(seed);
        let p = Parameter::new("w", [4, 6]);
        p.initialize(init.clone(), Context::cpu(), false)?;
        let n = Normal::new(1.0).init_weight("v", &[5].into(), DType::F32, Context::cpu())?;
        let mut v = p.data()?.to_vec::<f32>()?;
        v.extend(n.to_vec::<f32>()?);
        Ok(v)
    };
    let a = run(42)?;
    assert_eq!(a, run(42)?);
    assert_ne!(a, run(43)?);
    Ok(())
}

#[test]
fn parameter_uses_its_own_initializer_first() -> Result<()> {
    let p = Parameter::new("w", [2, 2]).with_init(Arc::new(Constant(7.0)));
    p.initialize(Arc::new(Zero), Context::cpu(), false)?;
    assert_eq!(p.data()?.to_vec::<f32>()?, vec![7.0; 4]);
    let q: NDArray = One.init_weight("w", &[1].into(), DType::F32, Context::cpu())?;
    assert_eq!(q.to_vec::<f32>()?, vec![1.0]);
    Ok(())
}
