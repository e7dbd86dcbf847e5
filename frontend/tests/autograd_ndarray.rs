//! Autograd through the NDArray methods: a small network checked against finite
//! differences, gradients through views, and dropout's train/predict behaviour.

use kiln_frontend::autograd;
use kiln_frontend::{nd, NDArray};
use kiln_ir::Result;

fn arr(values: &[f64], shape: &[usize]) -> NDArray {
    NDArray::from_vec(values.to_vec(), shape).expect("values match the shape")
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

/// mean(softmax_cross_entropy(relu(x·w1 + b1)·w2, labels)).
fn mlp_loss(x: &NDArray, labels: &NDArray, p: &[NDArray]) -> Result<NDArray> {
    let h = x.dot(&p[0])?.add(&p[1])?.tanh()?;
    h.dot(&p[2])?.softmax_cross_entropy(labels)?.mean()
}

#[test]
fn mlp_gradients_match_finite_differences() -> Result<()> {
    let x = arr(
        &[
            0.5, -1.0, 2.0, 0.1, 0.0, 1.5, -0.7, 0.3, 1.2, -2.0, 0.8, 0.4,
        ],
        &[4, 3],
    );
    let labels = arr(&[0.0, 1.0, 1.0, 0.0], &[4]);
    let params = vec![
        arr(&[0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, -0.8, 0.9], &[3, 3]),
        arr(&[0.01, -0.02, 0.03], &[3]),
        arr(&[0.2, -0.1, 0.4, 0.3, -0.5, 0.6], &[3, 2]),
    ];
    for p in &params {
        p.attach_grad();
    }
    let loss = autograd::record(|| mlp_loss(&x, &labels, &params))?;
    loss.backward()?;
    let eps = 1e-6;
    for (j, p) in params.iter().enumerate() {
        let base = p.to_vec_f64();
        let analytic = p.grad()?.to_vec_f64();
        let mut numeric = Vec::new();
        for k in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut moved = base.clone();
                moved[k] += delta;
                let mut ps = params.clone();
                ps[j] = arr(&moved, p.shape().dims());
                mlp_loss(&x, &labels, &ps)?.as_scalar_f64()
            };
            numeric.push((at(eps)? - at(-eps)?) / (2.0 * eps));
        }
        assert_close(&analytic, &numeric, 1e-6);
    }
    Ok(())
}

#[test]
fn gradients_flow_through_reshape_and_slice_views() -> Result<()> {
    let x = arr(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    x.attach_grad();
    let y = autograd::record(|| -> Result<NDArray> {
        let rows = x.slice_axis0(1..3)?; // a view of rows 1 and 2
        assert!(rows.shares_storage_with(&x));
        let flat = rows.reshape(&[4])?;
        flat.mul(&flat)?.sum()
    })?;
    y.backward()?;
    assert_eq!(x.grad()?.to_vec_f64(), vec![0.0, 0.0, 6.0, 8.0, 10.0, 12.0]);

    // A row taken with `at`, used twice.
    let y = autograd::record(|| -> Result<NDArray> {
        let r = x.at(0)?;
        r.mul(&x.at(2)?)?.add(&r)
    })?;
    y.backward()?;
    assert_eq!(x.grad()?.to_vec_f64(), vec![6.0, 7.0, 0.0, 0.0, 1.0, 2.0]);
    Ok(())
}

#[test]
fn dropout_follows_the_training_flag() -> Result<()> {
    let x = nd::ones(&[2000][..])?.astype(kiln_ir::DType::F64)?;
    x.attach_grad();
    let y = autograd::record(|| x.dropout(0.5))?;
    y.backward()?;
    let (out, g) = (y.to_vec_f64(), x.grad()?.to_vec_f64());
    // Each element is dropped (0) or kept and scaled by 2; the gradient is the same mask.
    assert!(out.iter().all(|&v| v == 0.0 || v == 2.0));
    assert_eq!(out, g);
    let kept = out.iter().filter(|&&v| v == 2.0).count();
    assert!(
        (800..1200).contains(&kept),
        "{kept} of 2000 kept at p = 0.5"
    );

    // Recording in predict mode: dropout is the identity, so the gradient is ones.
    let y = autograd::record_with(false, || x.dropout(0.5))?;
    y.backward()?;
    assert_eq!(y.to_vec_f64(), vec![1.0; 2000]);
    assert_eq!(x.grad()?.to_vec_f64(), vec![1.0; 2000]);
    Ok(())
}

#[test]
fn in_place_sgd_steps_reduce_the_loss() -> Result<()> {
    // Linear regression y = 2x - 1 by gradient descent, updating w and b in place.
    let x = arr(&[0.0, 1.0, 2.0, 3.0], &[4, 1]);
    let t = arr(&[-1.0, 1.0, 3.0, 5.0], &[4, 1]);
    let w = arr(&[0.0], &[1, 1]);
    let b = arr(&[0.0], &[1]);
    w.attach_grad();
    b.attach_grad();
    let mut losses = Vec::new();
    for _ in 0..200 {
        let loss = autograd::record(|| -> Result<NDArray> {
            let r = x.dot(&w)?.add(&b)?.sub(&t)?;
            r.square()?.mean()
        })?;
        loss.backward()?;
        losses.push(loss.as_scalar_f64()?);
        w.assign(&w.sub(&w.grad()?.mul_scalar(0.1)?)?)?;
        b.assign(&b.sub(&b.grad()?.mul_scalar(0.1)?)?)?;
    }
    assert!(
        losses[199] < 1e-6 * losses[0],
        "{} -> {}",
        losses[0],
        losses[199]
    );
    assert_close(&w.to_vec_f64(), &[2.0], 1e-3);
    assert_close(&b.to_vec_f64(), &[-1.0], 1e-3);
    Ok(())
}
