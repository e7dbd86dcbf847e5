//! Each optimizer's update against its formula written out by hand in f64, the shared
//! hyperparameters (wd, clip_gradient, rescale_grad, multipliers), learning-rate schedules,
//! creation by name and gradient clipping by global norm.

use kiln_frontend::gluon::optimizer::{
    create, AdaDelta, Adagrad, Adam, CosineScheduler, FactorScheduler, Hyper, LrScheduler,
    MultiFactorScheduler, Optimizer, PolyScheduler, RMSProp, State, NAG, SGD,
};
use kiln_frontend::gluon::utils::clip_global_norm;
use kiln_frontend::{NDArray, Result};

const W0: [f64; 3] = [1.0, -2.0, 0.5];
const G: [f64; 3] = [0.5, 1.0, -3.0];

fn arr(v: &[f64]) -> NDArray {
    NDArray::from_slice(v)
}

fn vals(a: &NDArray) -> Vec<f64> {
    a.to_vec::<f64>().unwrap()
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

/// Runs `steps` updates of `opt` from W0 with gradient G each time; returns the weight and
/// the state.
fn run(opt: &mut dyn Optimizer, steps: usize) -> Result<(NDArray, State)> {
    let w = arr(&W0);
    let g = arr(&G);
    let mut state = opt.create_state(0, &w)?;
    for _ in 0..steps {
        opt.update(0, &w, &g, &mut state)?;
    }
    Ok((w, state))
}

fn clip(x: f64, c: Option<f64>) -> f64 {
    match c {
        Some(c) => x.clamp(-c, c),
        None => x,
    }
}

#[test]
fn sgd_plain_two_steps() -> Result<()> {
    let (w, state) = run(&mut SGD::new(0.1), 2)?;
    assert!(state.is_empty());
    // w − 0.1·g, twice: 1 − 0.05 − 0.05, −2 − 0.1 − 0.1, 0.5 + 0.3 + 0.3
    assert_close(&vals(&w), &[0.9, -2.2, 1.1]);
    Ok(())
}

#[test]
fn sgd_momentum_carries_state() -> Result<()> {
    let mut sgd = SGD::new(0.1).with_momentum(0.9);
    let (w, state) = run(&mut sgd, 1)?;
    // mom = −0.1·g = [−0.05, −0.1, 0.3]; w = w0 + mom
    assert_close(&vals(&state.arrays()[0]), &[-0.05, -0.1, 0.3]);
    assert_close(&vals(&w), &[0.95, -2.1, 0.8]);
    let (w, state) = run(&mut SGD::new(0.1).with_momentum(0.9), 2)?;
    // mom = 0.9·[−0.05, −0.1, 0.3] − 0.1·g = [−0.095, −0.19, 0.57]
    assert_close(&vals(&state.arrays()[0]), &[-0.095, -0.19, 0.57]);
    // w = [0.95, −2.1, 0.8] + mom
    assert_close(&vals(&w), &[0.855, -2.29, 1.37]);
    Ok(())
}

#[test]
fn sgd_wd_clip_and_rescale() -> Result<()> {
    // rescale 0.5: [0.25, 0.5, −1.5]; clip 0.4: [0.25, 0.4, −0.4]; wd 0.01 after clipping:
    // w = (1 − 0.1·0.01)·w0 − 0.1·[0.25, 0.4, −0.4]
    //   = [0.999 − 0.025, −1.998 − 0.04, 0.4995 + 0.04]
    let want = [0.974, -2.038, 0.5395];
    let mut plain = SGD::new(0.1)
        .with_wd(0.01)
        .with_rescale_grad(0.5)
        .with_clip_gradient(0.4);
    assert_close(&vals(&run(&mut plain, 1)?.0), &want);
    // With momentum the first step is the same: mom = −lr·wd·w0 − lr·clipped
    let mut mom = SGD::new(0.1)
        .with_momentum(0.9)
        .with_wd(0.01)
        .with_rescale_grad(0.5)
        .with_clip_gradient(0.4);
    let (w, state) = run(&mut mom, 1)?;
    assert_close(&vals(&w), &want);
    assert_close(&vals(&state.arrays()[0]), &[-0.026, -0.038, 0.0395]);
    Ok(())
}

#[test]
fn nag_two_steps() -> Result<()> {
    let (w, state) = run(&mut NAG::new(0.1).with_momentum(0.9), 2)?;
    // step 1: mom = −0.1·g = [−0.05, −0.1, 0.3]; w = w0 + 0.9·mom − 0.1·g = w0 + 1.9·mom
    //         = [0.905, −2.19, 1.07]
    // step 2: mom = 0.9·mom − 0.1·g = [−0.095, −0.19, 0.57];
    //         w += 0.9·mom − 0.1·g = [−0.0855 − 0.05, −0.171 − 0.1, 0.513 + 0.3]
    assert_close(&vals(&state.arrays()[0]), &[-0.095, -0.19, 0.57]);
    assert_close(&vals(&w), &[0.7695, -2.461, 1.883]);
    Ok(())
}

#[test]
fn nag_with_wd_and_clip() -> Result<()> {
    let (lr, m, wd, rs, c) = (0.05, 0.8, 0.1, 2.0, Some(1.5));
    let mut opt = NAG::new(lr)
        .with_momentum(m)
        .with_wd(wd)
        .with_rescale_grad(rs)
        .with_clip_gradient(1.5);
    let (w, _) = run(&mut opt, 2)?;
    let want: Vec<f64> = (0..3)
        .map(|i| {
            let (mut w, mut mom) = (W0[i], 0.0);
            for _ in 0..2 {
                let g = clip(rs * G[i], c) + wd * w;
                mom = m * mom - lr * g;
                w = w + m * mom - lr * g;
            }
            w
        })
        .collect();
    assert_close(&vals(&w), &want);
    Ok(())
}

#[test]
fn adagrad_two_steps() -> Result<()> {
    let (lr, wd, eps) = (0.1, 0.05, 1e-7);
    let (w, state) = run(&mut Adagrad::new(lr).with_wd(wd), 2)?;
    let mut want_w = vec![];
    let mut want_h = vec![];
    for i in 0..3 {
        let (mut w, mut h) = (W0[i], 0.0);
        for _ in 0..2 {
            let g = G[i];
            h += g * g;
            w -= lr * (g / (h + eps).sqrt() + wd * w);
        }
        want_w.push(w);
        want_h.push(h);
    }
    // The history is Σg² = 2·g²: [0.5, 2, 18].
    assert_close(&want_h, &[0.5, 2.0, 18.0]);
    assert_close(&vals(&state.arrays()[0]), &want_h);
    assert_close(&vals(&w), &want_w);
    Ok(())
}

#[test]
fn rmsprop_plain_two_steps() -> Result<()> {
    let (lr, g1, eps, wd, c) = (0.01, 0.9, 1e-8, 0.1, Some(2.0));
    let mut opt = RMSProp::new(lr).with_wd(wd).with_clip_gradient(2.0);
    let (w, state) = run(&mut opt, 2)?;
    assert_eq!(state.arrays().len(), 1);
    let want: Vec<f64> = (0..3)
        .map(|i| {
            let (mut w, mut n) = (W0[i], 0.0);
            for _ in 0..2 {
                // weight decay enters before clipping in MXNet's rmsprop_update
                let g = clip(G[i] + wd * w, c);
                n = (1.0 - g1) * g * g + g1 * n;
                w -= lr * g / (n + eps).sqrt();
            }
            w
        })
        .collect();
    assert_close(&vals(&w), &want);
    // One step by hand for the first element: g = 0.5 + 0.1 = 0.6, n = 0.1·0.36 = 0.036,
    // w = 1 − 0.01·0.6/sqrt(0.036 + 1e-8)
    let (w1, _) = run(&mut RMSProp::new(lr).with_wd(wd).with_clip_gradient(2.0), 1)?;
    assert!((vals(&w1)[0] - (1.0 - 0.006 / (0.036f64 + 1e-8).sqrt())).abs() < 1e-12);
    Ok(())
}

#[test]
fn rmsprop_centered_two_steps() -> Result<()> {
    let (lr, g1, g2, eps, wd) = (0.01, 0.95, 0.8, 1e-4, 0.02);
    let mut opt = RMSProp::new(lr)
        .with_centered(true)
        .with_gamma1(g1)
        .with_gamma2(g2)
        .with_epsilon(eps)
        .with_wd(wd);
    let (w, state) = run(&mut opt, 2)?;
    assert_eq!(state.arrays().len(), 3);
    let mut want = vec![];
    let mut want_delta = vec![];
    for i in 0..3 {
        let (mut w, mut n, mut gb, mut d) = (W0[i], 0.0, 0.0, 0.0);
        for _ in 0..2 {
            let g = G[i] + wd * w;
            n = (1.0 - g1) * g * g + g1 * n;
            gb = (1.0 - g1) * g + g1 * gb;
            d = g2 * d - lr * g / (n - gb * gb + eps).sqrt();
            w += d;
        }
        want.push(w);
        want_delta.push(d);
    }
    assert_close(&vals(&w), &want);
    assert_close(&vals(&state.arrays()[2]), &want_delta);
    Ok(())
}

#[test]
fn rmsprop_clip_weights() -> Result<()> {
    let mut opt = RMSProp::new(10.0).with_clip_weights(1.2);
    let (w, _) = run(&mut opt, 1)?;
    // Steps of about ±10·sign(g)/sqrt(0.1) overshoot; the weights are clipped to ±1.2.
    assert_close(&vals(&w), &[-1.2, -1.2, 1.2]);
    Ok(())
}

#[test]
fn adadelta_two_steps() -> Result<()> {
    let (rho, eps, wd): (f64, f64, f64) = (0.9, 1e-5, 0.01);
    let mut opt = AdaDelta::new().with_wd(wd).with_clip_gradient(2.0);
    assert_eq!(opt.learning_rate(), 1.0);
    let (w, state) = run(&mut opt, 2)?;
    let mut want = vec![];
    let mut want_acc = vec![];
    for i in 0..3 {
        let (mut w, mut acc_g, mut acc_d) = (W0[i], 0.0, 0.0);
        for _ in 0..2 {
            let g = clip(G[i], Some(2.0));
            acc_g = rho * acc_g + (1.0 - rho) * g * g;
            let delta = (acc_d + eps).sqrt() / (acc_g + eps).sqrt() * g;
            acc_d = rho * acc_d + (1.0 - rho) * delta * delta;
            w -= delta + wd * w;
        }
        want.push(w);
        want_acc.push((acc_g, acc_d));
    }
    assert_close(&vals(&w), &want);
    let acc_g: Vec<f64> = want_acc.iter().map(|a| a.0).collect();
    let acc_d: Vec<f64> = want_acc.iter().map(|a| a.1).collect();
    assert_close(&vals(&state.arrays()[0]), &acc_g);
    assert_close(&vals(&state.arrays()[1]), &acc_d);
    Ok(())
}

#[test]
fn adam_two_steps() -> Result<()> {
    let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
    let mut opt = Adam::new(lr).with_wd(wd).with_clip_gradient(1.0);
    let (w, state) = run(&mut opt, 2)?;
    let mut want = vec![];
    for i in 0..3 {
        let (mut w, mut m, mut v) = (W0[i], 0.0, 0.0);
        for t in 1..=2 {
            let g = clip(G[i] + wd * w, Some(1.0));
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let lr_t = lr * (1.0 - f64::powi(b2, t)).sqrt() / (1.0 - f64::powi(b1, t));
            w -= lr_t * m / (v.sqrt() + eps);
        }
        want.push(w);
    }
    assert_close(&vals(&w), &want);
    assert_eq!(state.arrays().len(), 2);
    // The first bias-corrected step is lr·sign(g) up to epsilon: m̂ = g, v̂ = g².
    let (w1, _) = run(&mut Adam::new(0.01), 1)?;
    for (got, (w0, g)) in vals(&w1).iter().zip(W0.iter().zip(G)) {
        assert!((got - (w0 - 0.01 * g.signum())).abs() < 1e-8);
    }
    Ok(())
}

#[test]
fn lr_and_wd_multipliers_apply_per_index() -> Result<()> {
    let mut sgd = SGD::new(0.1).with_wd(0.5);
    sgd.core_mut().set_lr_mult(0, 2.0);
    sgd.core_mut().set_wd_mult(0, 0.0);
    let (w, _) = run(&mut sgd, 1)?;
    // lr 0.2, no weight decay: w0 − 0.2·g
    assert_close(&vals(&w), &[0.9, -2.2, 1.1]);
    // index 1 keeps the defaults: (1 − 0.1·0.5)·w0 − 0.1·g
    let w = arr(&W0);
    let mut st = sgd.create_state(1, &w)?;
    sgd.update(1, &w, &arr(&G), &mut st)?;
    assert_close(&vals(&w), &[0.9, -2.0, 0.775]);
    Ok(())
}

#[test]
fn update_counts_are_per_parameter() -> Result<()> {
    let mut adam = Adam::new(0.01);
    let (a, b) = (arr(&W0), arr(&W0));
    let mut sa = adam.create_state(0, &a)?;
    let mut sb = adam.create_state(1, &b)?;
    adam.update(0, &a, &arr(&G), &mut sa)?;
    adam.update(0, &a, &arr(&G), &mut sa)?;
    adam.update(1, &b, &arr(&G), &mut sb)?;
    assert_eq!(adam.core().update_count(0), 2);
    assert_eq!(adam.core().update_count(1), 1);
    assert_eq!(adam.core().num_update(), 2);
    // Parameter 1's first update used t = 1: w0 − 0.01·sign(g)
    for (got, (w0, g)) in vals(&b).iter().zip(W0.iter().zip(G)) {
        assert!((got - (w0 - 0.01 * g.signum())).abs() < 1e-8);
    }
    Ok(())
}

#[test]
fn factor_scheduler_values() {
    let s = FactorScheduler::new(3, 0.5)
        .with_base_lr(1.0)
        .with_stop_factor_lr(0.2);
    // Decays after updates 3, 6, 9...: 1, 1, 1, 0.5, 0.5, 0.5, 0.25, ..., floored at 0.2.
    let got: Vec<f64> = (1..=10).map(|n| s.lr(n)).collect();
    assert_eq!(
        got,
        vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2]
    );
    assert_eq!(s.lr(0), 1.0);
    assert_eq!(s.lr(1000), 0.2);
}

#[test]
fn multi_factor_scheduler_values() {
    let s = MultiFactorScheduler::new(vec![5, 8], 0.1).with_base_lr(2.0);
    assert_eq!(s.lr(1), 2.0);
    assert_eq!(s.lr(5), 2.0);
    assert!((s.lr(6) - 0.2).abs() < 1e-15);
    assert!((s.lr(8) - 0.2).abs() < 1e-15);
    assert!((s.lr(9) - 0.02).abs() < 1e-15);
    assert!((s.lr(100) - 0.02).abs() < 1e-15);
    assert_eq!(s.base_lr(), 2.0);
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn poly_scheduler_values() {
    let s = PolyScheduler::new(10).with_base_lr(1.0);
    // (1 − n/10)²: 1, 0.25 at 5, 0 from 10 on
    assert!(close(s.lr(0), 1.0) && close(s.lr(5), 0.25) && close(s.lr(10), 0.0));
    assert!(close(s.lr(11), 0.0));
    let s = PolyScheduler::new(10)
        .with_base_lr(1.0)
        .with_pwr(1.0)
        .with_final_lr(0.2)
        .with_warmup(2, 0.0);
    // warm-up 0, 0.5; then 0.2 + 0.8·(1 − (n − 2)/8)
    assert!(close(s.lr(0), 0.0) && close(s.lr(1), 0.5) && close(s.lr(2), 1.0));
    assert!(close(s.lr(6), 0.6) && close(s.lr(10), 0.2) && close(s.lr(50), 0.2));
}

#[test]
fn cosine_scheduler_values() {
    let s = CosineScheduler::new(10)
        .with_base_lr(1.0)
        .with_final_lr(0.1);
    // 0.1 + 0.9·(1 + cos(π·n/10))/2: 1 at 0, 0.55 at 5, 0.1 at 10
    assert!(close(s.lr(0), 1.0) && close(s.lr(5), 0.55) && close(s.lr(10), 0.1));
    assert!(close(s.lr(30), 0.1));
    let s = CosineScheduler::new(15)
        .with_base_lr(1.0)
        .with_warmup(5, 0.0);
    // warm-up 0.2 per update, then (1 + cos(π·(n − 5)/10))/2
    assert!(close(s.lr(1), 0.2) && close(s.lr(5), 1.0) && close(s.lr(10), 0.5));
}

#[test]
fn optimizer_follows_its_scheduler() -> Result<()> {
    // The scheduler takes the optimizer's rate as its base: updates 1, 2 at lr 1, update 3
    // at lr 0.5.
    let mut sgd = SGD::new(1.0).with_lr_scheduler(FactorScheduler::new(2, 0.5));
    assert_eq!(
        sgd.core().lr_scheduler.as_ref().map(|s| s.base_lr()),
        Some(1.0)
    );
    let (w, _) = run(&mut sgd, 3)?;
    // w0 − (1 + 1 + 0.5)·g
    assert_close(&vals(&w), &[-0.25, -4.5, 8.0]);
    assert_eq!(sgd.learning_rate(), 0.5);
    assert!(sgd.set_learning_rate(0.1).is_err());
    Ok(())
}

#[test]
fn set_learning_rate_without_scheduler() -> Result<()> {
    let mut sgd = SGD::new(0.1);
    sgd.set_learning_rate(0.2)?;
    assert_eq!(sgd.learning_rate(), 0.2);
    let (w, _) = run(&mut sgd, 1)?;
    assert_close(&vals(&w), &[0.9, -2.2, 1.1]);
    assert!(sgd.set_learning_rate(f64::NAN).is_err());
    Ok(())
}

#[test]
fn create_by_name_applies_hyperparameters() -> Result<()> {
    let mut sgd = create(
        "SGD",
        [
            ("learning_rate", 0.1),
            ("momentum", 0.9),
            ("wd", 0.01),
            ("rescale_grad", 0.5),
            ("clip_gradient", 0.4),
        ],
    )?;
    assert_eq!(sgd.name(), "sgd");
    let (w, _) = run(sgd.as_mut(), 1)?;
    assert_close(&vals(&w), &[0.974, -2.038, 0.5395]);

    let adam = create(
        "adam",
        Hyper::new().set("beta1", 0.5).set("learning_rate", 0.2),
    )?;
    assert_eq!(adam.learning_rate(), 0.2);
    let rms = create("rmsprop", Hyper::new().set("centered", true))?;
    assert_eq!(rms.create_state(0, &arr(&W0))?.arrays().len(), 3);
    let sched = create(
        "nag",
        Hyper::new()
            .set("learning_rate", 0.4)
            .lr_scheduler(MultiFactorScheduler::new(vec![1], 0.5)),
    )?;
    assert_eq!(
        sched.core().lr_scheduler.as_ref().map(|s| s.lr(2)),
        Some(0.2)
    );
    // A negative clip_gradient means no clipping, as in MXNet.
    let c = create("adagrad", [("clip_gradient", -1.0)])?;
    assert_eq!(c.core().clip_gradient, None);
    for name in ["sgd", "nag", "adagrad", "rmsprop", "adadelta", "adam"] {
        assert_eq!(create(name, Hyper::new())?.name(), name);
    }
    Ok(())
}

#[test]
fn unknown_names_are_clear_errors() {
    let e = create("sgdd", Hyper::new()).unwrap_err().to_string();
    assert!(
        e.contains("sgdd") && e.contains("adam") && e.contains("rmsprop"),
        "{e}"
    );
    let e = create("sgd", [("beta1", 0.9)]).unwrap_err().to_string();
    assert!(
        e.contains("beta1") && e.contains("momentum") && e.contains("learning_rate"),
        "{e}"
    );
    let e = create("adam", [("momentum", 0.9)]).unwrap_err().to_string();
    assert!(e.contains("momentum") && e.contains("beta2"), "{e}");
    assert!(create("sgd", [("begin_num_update", 1.5)]).is_err());
}

#[test]
fn bad_updates_are_errors() -> Result<()> {
    let mut sgd = SGD::new(0.1).with_momentum(0.9);
    let w = arr(&W0);
    let mut state = sgd.create_state(0, &w)?;
    let e = sgd
        .update(0, &w, &arr(&[1.0, 2.0]), &mut state)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
    // A state made without momentum does not fit an update with momentum.
    let mut empty = State::default();
    assert!(sgd.update(0, &w, &arr(&G), &mut empty).is_err());
    let f32_grad = NDArray::from_slice(&[0.5f32, 1.0, -3.0]);
    assert!(sgd.update(0, &w, &f32_grad, &mut state).is_err());
    let mut bad = SGD::new(f64::INFINITY);
    let mut st = bad.create_state(0, &w)?;
    assert!(bad.update(0, &w, &arr(&G), &mut st).is_err());
    let mut adam = Adam::new(0.1).with_beta1(1.0);
    let mut st = adam.create_state(0, &w)?;
    let e = adam
        .update(0, &w, &arr(&G), &mut st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("beta1") && e.contains("[0, 1)"), "{e}");
    let mut ada = AdaDelta::new().with_rho(2.0);
    let mut st = ada.create_state(0, &w)?;
    assert!(ada.update(0, &w, &arr(&G), &mut st).is_err());
    let mut clipped = SGD::new(0.1).with_clip_gradient(-1.0);
    let mut st = clipped.create_state(0, &w)?;
    assert!(clipped.update(0, &w, &arr(&G), &mut st).is_err());
    // Failed updates left the weight alone.
    assert_eq!(vals(&w), W0.to_vec());
    Ok(())
}

#[test]
fn works_on_f32_weights() -> Result<()> {
    let w = NDArray::from_slice(&[1.0f32, -2.0]);
    let g = NDArray::from_slice(&[0.5f32, 1.0]);
    let mut adam = Adam::new(0.1);
    let mut st = adam.create_state(0, &w)?;
    adam.update(0, &w, &g, &mut st)?;
    let got = w.to_vec::<f32>()?;
    assert!(
        (got[0] - 0.9).abs() < 1e-5 && (got[1] + 2.1).abs() < 1e-5,
        "{got:?}"
    );
    Ok(())
}

#[test]
fn clip_global_norm_scales_jointly() -> Result<()> {
    // ‖[3, 0]‖² + ‖[4]‖² = 25: norm 5, scaled by 1/(5 + 1e-8)
    let a = arr(&[3.0, 0.0]);
    let b = arr(&[4.0]);
    let norm = clip_global_norm(&[a.clone(), b.clone()], 1.0)?;
    assert_eq!(norm, 5.0);
    let s = 1.0 / (5.0 + 1e-8);
    assert_close(&vals(&a), &[3.0 * s, 0.0]);
    assert_close(&vals(&b), &[4.0 * s]);
    // Below the limit nothing changes.
    let c = arr(&[0.3, 0.4]);
    let norm = clip_global_norm(std::slice::from_ref(&c), 1.0)?;
    assert!((norm - 0.5).abs() < 1e-15);
    assert_eq!(vals(&c), vec![0.3, 0.4]);
    assert!(clip_global_norm(&[], 1.0).is_err());
    assert!(clip_global_norm(std::slice::from_ref(&c), 0.0).is_err());
    assert!(clip_global_norm(&[c], f64::NAN).is_err());
    Ok(())
}
