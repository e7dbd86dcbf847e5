//! gluon BatchNorm and LayerNorm: values, running statistics, train/predict behaviour,
//! gradients against finite differences, deferred sizes and errors.

use kiln_frontend::gluon::init::{Initializer, Zero};
use kiln_frontend::gluon::nn::norm::{BatchNorm, LayerNorm};
use kiln_frontend::gluon::Block;
use kiln_frontend::{autograd, nd, Context, DType, GradReq, NDArray, Result};
use std::sync::Arc;

/// Zero for weights; the name dispatch still starts gamma and running_var at one.
fn zero() -> Arc<dyn Initializer> {
    Arc::new(Zero)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

/// `[N=2, C=2, W=2]`: channel 0 holds {1, 3, 5, 7} (mean 4, biased var 5), channel 1
/// holds {2, 2, 4, 8} (mean 4, biased var 6).
fn batch() -> Result<NDArray> {
    nd::array(&[1.0f32, 3.0, 2.0, 2.0, 5.0, 7.0, 4.0, 8.0])?.reshape(&[2, 2, 2])
}

#[test]
fn batchnorm_names_and_deferred_channels() -> Result<()> {
    let bn = BatchNorm::new();
    assert_eq!(bn.prefix(), "batchnorm0_");
    assert_eq!(
        bn.collect_params()?.names(),
        vec![
            "batchnorm0_gamma",
            "batchnorm0_beta",
            "batchnorm0_running_mean",
            "batchnorm0_running_var"
        ]
    );
    assert_eq!(bn.gamma().shape().dims(), &[0]);
    assert_eq!(bn.running_mean().grad_req(), GradReq::Null);
    assert_eq!(bn.running_var().grad_req(), GradReq::Null);
    assert_eq!(bn.gamma().grad_req(), GradReq::Write);
    bn.initialize(zero(), Context::cpu())?;
    bn.forward(&batch()?)?;
    for p in [bn.gamma(), bn.beta(), bn.running_mean(), bn.running_var()] {
        assert_eq!(p.shape().dims(), &[2], "{}", p.name());
    }
    assert_eq!(bn.gamma().data()?.to_vec_f64(), vec![1.0, 1.0]);
    assert_eq!(bn.beta().data()?.to_vec_f64(), vec![0.0, 0.0]);
    assert_eq!(bn.running_mean().data()?.to_vec_f64(), vec![0.0, 0.0]);
    assert_eq!(bn.running_var().data()?.to_vec_f64(), vec![1.0, 1.0]);

    let frozen = BatchNorm::new().center(false).scale(false).in_channels(3);
    assert_eq!(frozen.gamma().shape().dims(), &[3]);
    assert_eq!(frozen.gamma().grad_req(), GradReq::Null);
    assert_eq!(frozen.beta().grad_req(), GradReq::Null);
    Ok(())
}

#[test]
fn batchnorm_training_uses_batch_stats_and_updates_running_stats() -> Result<()> {
    let bn = BatchNorm::new().epsilon(0.0);
    bn.initialize(zero(), Context::cpu())?;
    let x = batch()?;
    let y = autograd::record(|| bn.forward(&x))?;
    let (s5, s6) = (5f64.sqrt(), 6f64.sqrt());
    assert_close(
        &y.to_vec_f64(),
        &[
            -3.0 / s5,
            -1.0 / s5,
            -2.0 / s6,
            -2.0 / s6,
            1.0 / s5,
            3.0 / s5,
            0.0,
            4.0 / s6,
        ],
        1e-6,
    );
    // running = 0.9 · running + 0.1 · batch, with the biased variance (5 and 6)
    assert_close(&bn.running_mean().data()?.to_vec_f64(), &[0.4, 0.4], 1e-6);
    assert_close(&bn.running_var().data()?.to_vec_f64(), &[1.4, 1.5], 1e-6);

    // A second training step compounds: 0.9 · 0.4 + 0.1 · 4 and 0.9 · 1.4 + 0.1 · 5.
    autograd::train_mode(|| bn.forward(&x))?;
    assert_close(&bn.running_mean().data()?.to_vec_f64(), &[0.76, 0.76], 1e-6);
    assert_close(&bn.running_var().data()?.to_vec_f64(), &[1.76, 1.95], 1e-6);
    Ok(())
}

#[test]
fn batchnorm_momentum_is_used() -> Result<()> {
    let bn = BatchNorm::new().momentum(0.5);
    bn.initialize(zero(), Context::cpu())?;
    autograd::train_mode(|| bn.forward(&batch()?))?;
    assert_close(&bn.running_mean().data()?.to_vec_f64(), &[2.0, 2.0], 1e-6);
    assert_close(&bn.running_var().data()?.to_vec_f64(), &[3.0, 3.5], 1e-6);
    Ok(())
}

#[test]
fn batchnorm_predict_mode_uses_running_stats() -> Result<()> {
    let bn = BatchNorm::new().epsilon(0.0);
    bn.initialize(zero(), Context::cpu())?;
    let x = batch()?;
    autograd::train_mode(|| bn.forward(&x))?; // running mean [0.4, 0.4], var [1.4, 1.5]
    bn.gamma().set_data(&nd::array(&[2.0f32, 1.0])?)?;
    bn.beta().set_data(&nd::array(&[0.0f32, 1.0])?)?;

    // Outside record (and inside record with predict_mode) the running stats are used.
    let y = bn.forward(&x)?;
    let y2 = autograd::record(|| autograd::predict_mode(|| bn.forward(&x)))?;
    let c0 = |v: f64| (v - 0.4) / 1.4f64.sqrt() * 2.0;
    let c1 = |v: f64| (v - 0.4) / 1.5f64.sqrt() + 1.0;
    let want = [
        c0(1.0),
        c0(3.0),
        c1(2.0),
        c1(2.0),
        c0(5.0),
        c0(7.0),
        c1(4.0),
        c1(8.0),
    ];
    assert_close(&y.to_vec_f64(), &want, 1e-5);
    assert_close(&y2.to_vec_f64(), &want, 1e-5);
    // ... and are left unchanged
    assert_close(&bn.running_mean().data()?.to_vec_f64(), &[0.4, 0.4], 1e-6);
    assert_close(&bn.running_var().data()?.to_vec_f64(), &[1.4, 1.5], 1e-6);
    Ok(())
}

#[test]
fn batchnorm_use_global_stats_in_training() -> Result<()> {
    let bn = BatchNorm::new().epsilon(0.0).use_global_stats(true);
    bn.initialize(zero(), Context::cpu())?;
    let x = batch()?;
    // running mean 0, var 1: the output is the input, and nothing is updated
    let y = autograd::record(|| bn.forward(&x))?;
    assert_close(&y.to_vec_f64(), &x.to_vec_f64(), 1e-6);
    assert_close(&bn.running_mean().data()?.to_vec_f64(), &[0.0, 0.0], 0.0);
    assert_close(&bn.running_var().data()?.to_vec_f64(), &[1.0, 1.0], 0.0);
    Ok(())
}

#[test]
fn batchnorm_other_axis() -> Result<()> {
    // axis -1 on [N=2, C=2] rows: channel j is column j.
    let bn = BatchNorm::new().axis(-1).epsilon(0.0);
    bn.initialize(zero(), Context::cpu())?;
    let x = nd::array(&[1.0f32, 10.0, 3.0, 30.0])?.reshape(&[2, 2])?;
    let y = autograd::train_mode(|| bn.forward(&x))?;
    assert_close(&y.to_vec_f64(), &[-1.0, -1.0, 1.0, 1.0], 1e-6);
    assert_close(&bn.running_mean().data()?.to_vec_f64(), &[0.2, 2.0], 1e-6);
    // biased variances 1 and 100
    assert_close(&bn.running_var().data()?.to_vec_f64(), &[1.0, 10.9], 1e-5);
    Ok(())
}

/// `loss(x) = Σ forward(x) · weights` evaluated in training mode, without recording.
fn loss_at(block: &dyn Block, x: &[f64], shape: &[usize], weights: &NDArray) -> Result<f64> {
    let x = NDArray::from_vec(x.to_vec(), shape.to_vec())?;
    let y = autograd::train_mode(|| block.forward(&x))?;
    Ok(y.mul(weights)?.sum()?.to_vec_f64()[0])
}

/// Central differences of `loss_at` w.r.t. each element of `x`.
fn numeric_grad(block: &dyn Block, x: &[f64], shape: &[usize], w: &NDArray) -> Result<Vec<f64>> {
    let h = 1e-6;
    let mut g = Vec::with_capacity(x.len());
    for i in 0..x.len() {
        let mut plus = x.to_vec();
        plus[i] += h;
        let mut minus = x.to_vec();
        minus[i] -= h;
        g.push((loss_at(block, &plus, shape, w)? - loss_at(block, &minus, shape, w)?) / (2.0 * h));
    }
    Ok(g)
}

#[test]
fn batchnorm_gradients_match_finite_differences() -> Result<()> {
    let bn = BatchNorm::new().dtype(DType::F64).epsilon(1e-3);
    bn.initialize(zero(), Context::cpu())?;
    let xs = [0.5, -1.0, 2.0, 0.25, -0.75, 3.0];
    let shape = [3, 2];
    let x = NDArray::from_vec(xs.to_vec(), shape.to_vec())?;
    let w = NDArray::from_vec(vec![1.0, -2.0, 0.5, 3.0, -1.5, 0.25], shape.to_vec())?;
    bn.forward(&x)?; // finish the deferred init
    bn.gamma()
        .set_data(&NDArray::from_vec(vec![1.5, -0.5], [2])?)?;
    bn.beta()
        .set_data(&NDArray::from_vec(vec![0.1, 0.2], [2])?)?;

    x.attach_grad();
    let loss = autograd::record(|| bn.forward(&x)?.mul(&w)?.sum())?;
    loss.backward()?;
    let numeric = numeric_grad(&bn, &xs, &shape, &w)?;
    assert_close(&x.grad()?.to_vec_f64(), &numeric, 1e-6);
    // the gradient through batch statistics sums to zero per channel
    let gx = x.grad()?.to_vec_f64();
    assert!((gx[0] + gx[2] + gx[4]).abs() < 1e-9);

    // d loss / d beta = Σ_n w[n, c]; d loss / d gamma = Σ_n w[n, c] · x̂[n, c]
    assert_close(&bn.beta().grad()?.to_vec_f64(), &[0.0, 1.25], 1e-9);
    let gamma_grad = bn.gamma().grad()?.to_vec_f64();
    let gamma = bn.gamma().data()?;
    let h = 1e-6;
    for c in 0..2 {
        let mut g = vec![1.5, -0.5];
        g[c] += h;
        bn.gamma().set_data(&NDArray::from_vec(g.clone(), [2])?)?;
        let up = loss_at(&bn, &xs, &shape, &w)?;
        g[c] -= 2.0 * h;
        bn.gamma().set_data(&NDArray::from_vec(g, [2])?)?;
        let down = loss_at(&bn, &xs, &shape, &w)?;
        bn.gamma().set_data(&gamma.copy()?)?;
        assert!(
            ((up - down) / (2.0 * h) - gamma_grad[c]).abs() < 1e-6,
            "gamma[{c}]: analytic {}, numeric {}",
            gamma_grad[c],
            (up - down) / (2.0 * h)
        );
    }
    // running statistics get no gradient
    assert!(bn.running_mean().grad().is_err());
    Ok(())
}

#[test]
fn batchnorm_errors_are_clear() -> Result<()> {
    let bn = BatchNorm::new();
    bn.initialize(zero(), Context::cpu())?;
    let e = bn.forward(&nd::ones([4])?).unwrap_err().to_string();
    assert!(e.contains("BatchNorm") && e.contains("rank"), "{e}");

    let bn = BatchNorm::new().in_channels(3);
    bn.initialize(zero(), Context::cpu())?;
    let e = bn.forward(&nd::ones([2, 2, 4])?).unwrap_err().to_string();
    assert!(
        e.contains("batchnorm") && e.contains("2 channels") && e.contains("[3]"),
        "{e}"
    );

    let bn = BatchNorm::new();
    bn.initialize(zero(), Context::cpu())?;
    bn.forward(&nd::ones([2, 2, 4])?)?;
    let e = bn.forward(&nd::ones([2, 5, 4])?).unwrap_err().to_string();
    assert!(e.contains("5 channels"), "{e}");

    let bn = BatchNorm::new().axis(3);
    bn.initialize(zero(), Context::cpu())?;
    let e = bn.forward(&nd::ones([2, 2, 4])?).unwrap_err().to_string();
    assert!(e.contains("axis 3"), "{e}");

    let bn = BatchNorm::new().momentum(1.5);
    bn.initialize(zero(), Context::cpu())?;
    let e = bn.forward(&nd::ones([2, 2])?).unwrap_err().to_string();
    assert!(e.contains("momentum"), "{e}");

    let bn = BatchNorm::new();
    bn.initialize(zero(), Context::cpu())?;
    let x = nd::ones_with([2, 2], DType::F64)?;
    assert!(bn.forward(&x).unwrap_err().to_string().contains("dtype"));

    let bn = BatchNorm::new();
    let e = bn.forward(&nd::ones([2, 2])?).unwrap_err().to_string();
    assert!(e.contains("initialize"), "{e}");
    Ok(())
}

#[test]
fn layernorm_values() -> Result<()> {
    let ln = LayerNorm::new().epsilon(0.0);
    assert_eq!(ln.prefix(), "layernorm0_");
    assert_eq!(
        ln.collect_params()?.names(),
        vec!["layernorm0_gamma", "layernorm0_beta"]
    );
    ln.initialize(zero(), Context::cpu())?;
    let x = nd::array(&[1.0f32, 2.0, 3.0, 2.0, 4.0, 9.0])?.reshape(&[2, 3])?;
    ln.forward(&x)?;
    assert_eq!(ln.gamma().shape().dims(), &[3]); // learnt from the last axis
    ln.gamma().set_data(&nd::array(&[1.0f32, 2.0, 1.0])?)?;
    ln.beta().set_data(&nd::array(&[0.0f32, 0.0, 1.0])?)?;
    let y = ln.forward(&x)?;
    // row 0: mean 2, var 2/3; row 1: mean 5, var 26/3 (biased)
    let (s0, s1) = ((2.0f64 / 3.0).sqrt(), (26.0f64 / 3.0).sqrt());
    assert_close(
        &y.to_vec_f64(),
        &[
            -1.0 / s0,
            0.0,
            1.0 / s0 + 1.0,
            -3.0 / s1,
            -2.0 / s1,
            4.0 / s1 + 1.0,
        ],
        1e-5,
    );
    // the same in training mode
    let yt = autograd::train_mode(|| ln.forward(&x))?;
    assert_close(&yt.to_vec_f64(), &y.to_vec_f64(), 0.0);
    Ok(())
}

#[test]
fn layernorm_axis_and_gradient() -> Result<()> {
    // axis 1 of [1, 2, 2]: each column (w) normalizes its two channel values.
    let ln = LayerNorm::new().axis(1).epsilon(0.0);
    ln.initialize(zero(), Context::cpu())?;
    let x = nd::array(&[1.0f32, 10.0, 3.0, 30.0])?.reshape(&[1, 2, 2])?;
    let y = ln.forward(&x)?;
    assert_eq!(ln.gamma().shape().dims(), &[2]);
    assert_close(&y.to_vec_f64(), &[-1.0, -1.0, 1.0, 1.0], 1e-6);

    let ln = LayerNorm::new().dtype(DType::F64).epsilon(1e-3);
    ln.initialize(zero(), Context::cpu())?;
    let xs = [0.5, -1.0, 2.0, 0.25, -0.75, 3.0];
    let shape = [2, 3];
    let x = NDArray::from_vec(xs.to_vec(), shape.to_vec())?;
    let w = NDArray::from_vec(vec![1.0, -2.0, 0.5, 3.0, -1.5, 0.25], shape.to_vec())?;
    ln.forward(&x)?;
    ln.gamma()
        .set_data(&NDArray::from_vec(vec![1.5, -0.5, 2.0], [3])?)?;
    x.attach_grad();
    let loss = autograd::record(|| ln.forward(&x)?.mul(&w)?.sum())?;
    loss.backward()?;
    let numeric = numeric_grad(&ln, &xs, &shape, &w)?;
    assert_close(&x.grad()?.to_vec_f64(), &numeric, 1e-6);
    assert_close(&ln.beta().grad()?.to_vec_f64(), &[4.0, -3.5, 0.75], 1e-9);
    Ok(())
}

#[test]
fn layernorm_errors_are_clear() -> Result<()> {
    let ln = LayerNorm::new().in_channels(4);
    ln.initialize(zero(), Context::cpu())?;
    let e = ln.forward(&nd::ones([2, 3])?).unwrap_err().to_string();
    assert!(e.contains("LayerNorm") && e.contains("3 channels"), "{e}");

    let ln = LayerNorm::new().axis(-3);
    ln.initialize(zero(), Context::cpu())?;
    let e = ln.forward(&nd::ones([2, 3])?).unwrap_err().to_string();
    assert!(e.contains("axis -3"), "{e}");

    let ln = LayerNorm::new();
    ln.initialize(zero(), Context::cpu())?;
    let e = ln
        .forward(&NDArray::from_vec(vec![1.0f32], Vec::<usize>::new())?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scalar"), "{e}");
    Ok(())
}

#[test]
fn display_as_gluon() {
    assert_eq!(
        BatchNorm::new().to_string(),
        "BatchNorm(axis=1, eps=0.00001, momentum=0.9, fix_gamma=False, use_global_stats=False, \
         in_channels=None)"
    );
    assert_eq!(
        LayerNorm::new().in_channels(8).to_string(),
        "LayerNorm(axis=-1, eps=0.00001, center=True, scale=True, in_channels=8)"
    );
}
