//! gluon losses against hand-computed values.

use kiln_frontend::gluon::loss::{
    HingeLoss, HuberLoss, KLDivLoss, L1Loss, L2Loss, Loss, SigmoidBinaryCrossEntropyLoss,
    SoftmaxCrossEntropyLoss,
};
use kiln_frontend::{autograd, nd, DType, NDArray, Result};

fn close(got: &NDArray, want: &[f64]) {
    let got = got.to_vec_f64();
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6, "got {got:?}, want {want:?}");
    }
}

fn pred_2x2() -> NDArray {
    nd::array(&[[1.0, 2.0], [3.0, 5.0]]).unwrap()
}

#[test]
fn l2_is_half_squared_error_per_sample() -> Result<()> {
    let label = nd::array(&[[1.0, 1.0], [3.0, 3.0]])?;
    let loss = L2Loss::new().forward(&pred_2x2(), &label)?;
    assert_eq!(loss.shape().dims(), &[2]);
    assert_eq!(loss.dtype(), DType::F32);
    // 0.5 * mean([0, 1]), 0.5 * mean([0, 4])
    close(&loss, &[0.25, 1.0]);
    Ok(())
}

#[test]
fn l2_reshapes_label_to_pred() -> Result<()> {
    // A [4] label against [4, 1] pred, as gluon's label.reshape(pred.shape).
    let pred = nd::array(&[[1.0], [2.0], [3.0], [4.0]])?;
    let label = nd::array(&[0.0, 2.0, 5.0, 4.5])?;
    close(
        &L2Loss::new().forward(&pred, &label)?,
        &[0.5, 0.0, 2.0, 0.125],
    );
    let bad = nd::array(&[1.0, 2.0, 3.0])?;
    let err = L2Loss::new().forward(&pred, &bad).unwrap_err().to_string();
    assert!(
        err.contains("L2Loss") && err.contains("[3]") && err.contains("[4, 1]"),
        "{err}"
    );
    Ok(())
}

#[test]
fn l2_weight_and_sample_weight() -> Result<()> {
    let label = nd::array(&[[1.0, 1.0], [3.0, 3.0]])?;
    let loss = L2Loss::new()
        .with_weight(4.0)
        .forward(&pred_2x2(), &label)?;
    close(&loss, &[1.0, 4.0]);
    let sw = nd::array(&[[2.0], [0.5]])?;
    let loss = L2Loss::new().forward_weighted(&pred_2x2(), &label, &sw)?;
    close(&loss, &[0.5, 0.5]);
    // Per-element weights of the loss' full shape.
    let sw = nd::array(&[[0.0, 1.0], [1.0, 0.0]])?;
    close(
        &L2Loss::new().forward_weighted(&pred_2x2(), &label, &sw)?,
        &[0.25, 0.0],
    );
    Ok(())
}

#[test]
fn sample_weight_that_would_enlarge_the_loss_is_an_error() -> Result<()> {
    // [2] against the [2, 1] loss of softmax cross-entropy would broadcast to [2, 2].
    let pred = nd::array(&[[1.0, 2.0], [3.0, 5.0]])?;
    let label = nd::array(&[0.0, 1.0])?;
    let sw = nd::array(&[1.0, 2.0])?;
    let err = SoftmaxCrossEntropyLoss::new()
        .forward_weighted(&pred, &label, &sw)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sample_weight") && err.contains("[2, 1]"),
        "{err}"
    );
    Ok(())
}

#[test]
fn l1_is_absolute_error_per_sample() -> Result<()> {
    let label = nd::array(&[[2.0, 0.0], [3.0, 1.0]])?;
    close(&L1Loss::new().forward(&pred_2x2(), &label)?, &[1.5, 2.0]);
    let sw = nd::array(&[[1.0], [3.0]])?;
    let loss = L1Loss::new()
        .with_weight(2.0)
        .forward_weighted(&pred_2x2(), &label, &sw)?;
    close(&loss, &[3.0, 12.0]);
    Ok(())
}

#[test]
fn l1_converts_integer_labels() -> Result<()> {
    let pred = nd::array(&[1.5, -1.0])?;
    let label = NDArray::from_vec(vec![1i64, 1], [2])?;
    close(&L1Loss::new().forward(&pred, &label)?, &[0.5, 2.0]);
    Ok(())
}

#[test]
fn huber_switches_at_rho() -> Result<()> {
    // |d| = 0.5 (quadratic: 0.5²/2 = 0.125) and 3 (linear: 3 - 0.5 = 2.5) with rho = 1.
    let pred = nd::array(&[[0.5, 3.0]])?;
    let label = nd::array(&[[0.0, 0.0]])?;
    close(&HuberLoss::new().forward(&pred, &label)?, &[1.3125]);
    // rho = 2: 0.5²/4 = 0.0625 and 3 - 1 = 2.
    let loss = HuberLoss::new().rho(2.0).forward(&pred, &label)?;
    close(&loss, &[1.03125]);
    let err = HuberLoss::new()
        .rho(0.0)
        .forward(&pred, &label)
        .unwrap_err();
    assert!(err.to_string().contains("rho"), "{err}");
    Ok(())
}

#[test]
fn hinge_is_relu_of_margin_minus_agreement() -> Result<()> {
    let pred = nd::array(&[[0.3, -2.0], [2.0, -0.5]])?;
    let label = nd::array(&[[1.0, -1.0], [-1.0, -1.0]])?;
    // row 0: relu(1 - 0.3) = 0.7, relu(1 - 2) = 0; row 1: relu(1 + 2) = 3, relu(1 - 0.5) = 0.5
    close(&HingeLoss::new().forward(&pred, &label)?, &[0.35, 1.75]);
    // margin 2: [1.7, 0] and [4, 1.5]
    close(
        &HingeLoss::new().margin(2.0).forward(&pred, &label)?,
        &[0.85, 2.75],
    );
    Ok(())
}

fn log_softmax_row(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

#[test]
fn softmax_cross_entropy_sparse_labels() -> Result<()> {
    let rows = [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]];
    let pred = nd::array(&rows)?;
    let label = nd::array(&[0.0, 2.0])?;
    let want = [-log_softmax_row(&rows[0])[0], -log_softmax_row(&rows[1])[2]];
    // want[0] = log(e + e² + e³) - 1 = 2.40760596, want[1] = ln 3
    assert!((want[0] - 2.407_605_964_4).abs() < 1e-9);
    let loss = SoftmaxCrossEntropyLoss::new().forward(&pred, &label)?;
    assert_eq!(loss.shape().dims(), &[2]);
    close(&loss, &want);
    // A [batch, 1] label and integer labels work the same.
    let label_col = nd::array(&[[0.0], [2.0]])?;
    close(
        &SoftmaxCrossEntropyLoss::new().forward(&pred, &label_col)?,
        &want,
    );
    let label_int = NDArray::from_vec(vec![0i64, 2], [2])?;
    close(
        &SoftmaxCrossEntropyLoss::new().forward(&pred, &label_int)?,
        &want,
    );
    // Weights: [batch, 1] sample weight and the global weight.
    let sw = nd::array(&[[2.0], [0.0]])?;
    let loss = SoftmaxCrossEntropyLoss::new()
        .with_weight(0.5)
        .forward_weighted(&pred, &label, &sw)?;
    close(&loss, &[want[0], 0.0]);
    Ok(())
}

#[test]
fn softmax_cross_entropy_dense_labels_and_from_logits() -> Result<()> {
    let rows = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]];
    let pred = nd::array(&rows)?;
    let dist = [[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]];
    let label = nd::array(&dist)?;
    let want: Vec<f64> = rows
        .iter()
        .zip(&dist)
        .map(|(r, d)| {
            -log_softmax_row(r)
                .iter()
                .zip(d)
                .map(|(l, p)| l * p)
                .sum::<f64>()
        })
        .collect();
    let loss = SoftmaxCrossEntropyLoss::new()
        .sparse_label(false)
        .forward(&pred, &label)?;
    close(&loss, &want);
    // from_logits: pred is used as log-probabilities directly.
    let log_prob = pred.log_softmax()?;
    let loss = SoftmaxCrossEntropyLoss::new()
        .sparse_label(false)
        .from_logits(true)
        .forward(&log_prob, &label)?;
    close(&loss, &want);
    let loss = SoftmaxCrossEntropyLoss::new()
        .from_logits(true)
        .forward(&pred, &nd::array(&[1.0, 2.0])?)?;
    close(&loss, &[-2.0, -1.0]);
    Ok(())
}

#[test]
fn softmax_cross_entropy_along_axis_1_of_3d() -> Result<()> {
    // [1, 2, 2]: classes along axis 1, two positions; the loss averages the positions.
    let pred = nd::array(&[[[0.0, 1.0], [1.0, 1.0]]])?;
    let label = nd::array(&[[1.0, 0.0]])?;
    let loss = SoftmaxCrossEntropyLoss::new()
        .axis(1)
        .forward(&pred, &label)?;
    let p0 = -log_softmax_row(&[0.0, 1.0])[1];
    let p1 = -log_softmax_row(&[1.0, 1.0])[0];
    close(&loss, &[(p0 + p1) / 2.0]);
    Ok(())
}

#[test]
fn softmax_cross_entropy_bad_inputs() -> Result<()> {
    let pred = nd::array(&[[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])?;
    let err = SoftmaxCrossEntropyLoss::new()
        .forward(&pred, &nd::array(&[0.0, 1.0, 2.0])?)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SoftmaxCrossEntropyLoss") && err.contains("[3]"),
        "{err}"
    );
    let err = SoftmaxCrossEntropyLoss::new()
        .axis(2)
        .forward(&pred, &nd::array(&[0.0, 1.0])?)
        .unwrap_err();
    assert!(err.to_string().contains("axis"), "{err}");
    let err = SoftmaxCrossEntropyLoss::new()
        .forward(&nd::array(&1.0)?, &nd::array(&0.0)?)
        .unwrap_err();
    assert!(err.to_string().contains("batch axis"), "{err}");
    Ok(())
}

#[test]
fn softmax_cross_entropy_gradient_is_softmax_minus_one_hot() -> Result<()> {
    let rows = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]];
    let pred = nd::array(&rows)?;
    pred.attach_grad();
    let label = nd::array(&[2.0, 0.0])?;
    let loss = autograd::record(|| SoftmaxCrossEntropyLoss::new().forward(&pred, &label))?;
    loss.backward()?;
    let mut want = Vec::new();
    for (r, class) in rows.iter().zip([2, 0]) {
        for (c, l) in log_softmax_row(r).iter().enumerate() {
            want.push(l.exp() - if c == class { 1.0 } else { 0.0 });
        }
    }
    close(&pred.grad()?, &want);
    Ok(())
}

/// `log(1 + e^x) - x z` computed naively in f64 (exact enough for moderate `x`).
fn bce_logit(x: f64, z: f64) -> f64 {
    x.max(0.0) - x * z + (-x.abs()).exp().ln_1p()
}

#[test]
fn sigmoid_bce_from_scores() -> Result<()> {
    let pred = nd::array(&[[0.0, 2.0], [-1.0, 0.5]])?;
    let label = nd::array(&[[1.0, 0.0], [0.0, 1.0]])?;
    let want = [
        (bce_logit(0.0, 1.0) + bce_logit(2.0, 0.0)) / 2.0,
        (bce_logit(-1.0, 0.0) + bce_logit(0.5, 1.0)) / 2.0,
    ];
    // ln 2 and ln(1 + e²) average to 1.41327...
    assert!((want[0] - (2f64.ln() + (1.0 + 2f64.exp()).ln()) / 2.0).abs() < 1e-12);
    close(
        &SigmoidBinaryCrossEntropyLoss::new().forward(&pred, &label)?,
        &want,
    );
    Ok(())
}

#[test]
fn sigmoid_bce_is_stable_at_large_scores() -> Result<()> {
    let pred = nd::array(&[[100.0, -100.0, 100.0, -100.0]])?;
    let label = nd::array(&[[1.0, 0.0, 0.0, 1.0]])?;
    // Right answers cost e^-100 (zero in f32), wrong ones 100.
    let loss = SigmoidBinaryCrossEntropyLoss::new().forward(&pred, &label)?;
    close(&loss, &[50.0]);
    assert!(loss.to_vec_f64().iter().all(|v| v.is_finite()));
    Ok(())
}

#[test]
fn sigmoid_bce_from_probabilities() -> Result<()> {
    let pred = nd::array(&[[0.8, 0.25]])?;
    let label = nd::array(&[[1.0, 0.0]])?;
    let loss = SigmoidBinaryCrossEntropyLoss::new()
        .from_sigmoid(true)
        .forward(&pred, &label)?;
    close(&loss, &[-(0.8f64.ln() + 0.75f64.ln()) / 2.0]);
    // A probability of exactly 0 for a positive label is guarded by eps, not infinite.
    let loss = SigmoidBinaryCrossEntropyLoss::new()
        .from_sigmoid(true)
        .forward(&nd::array(&[0.0])?, &nd::array(&[1.0])?)?;
    assert!(loss.to_vec_f64()[0].is_finite() && loss.to_vec_f64()[0] > 20.0);
    Ok(())
}

#[test]
fn kl_div_from_log_probabilities() -> Result<()> {
    let q: [[f64; 2]; 2] = [[0.25, 0.75], [0.5, 0.5]];
    let p: [[f64; 2]; 2] = [[0.5, 0.5], [0.9, 0.1]];
    let log_q = nd::array(&q)?.log()?;
    let label = nd::array(&p)?;
    let want: Vec<f64> = p
        .iter()
        .zip(&q)
        .map(|(pr, qr)| {
            pr.iter()
                .zip(qr)
                .map(|(a, b)| a * ((a + 1e-12).ln() - b.ln()))
                .sum::<f64>()
                / 2.0
        })
        .collect();
    close(&KLDivLoss::new().forward(&log_q, &label)?, &want);
    // From scores: log_softmax is applied first.
    let scores = nd::array(&[[0.0, 3f64.ln()], [1.0, 1.0]])?;
    let loss = KLDivLoss::new()
        .from_logits(false)
        .forward(&scores, &label)?;
    close(&loss, &want);
    let err = KLDivLoss::new()
        .forward(&log_q, &nd::array(&[0.2, 0.3, 0.5])?)
        .unwrap_err();
    assert!(err.to_string().contains("KLDivLoss"), "{err}");
    Ok(())
}

#[test]
fn any_loss_behind_the_trait() -> Result<()> {
    let pred = nd::array(&[[0.0, 1.0]])?;
    let label = nd::array(&[[0.0, 1.0]])?;
    let losses: Vec<Box<dyn Loss>> = vec![
        Box::new(L2Loss::new()),
        Box::new(L1Loss::new()),
        Box::new(HuberLoss::new()),
    ];
    for l in &losses {
        close(&l.loss(&pred, &label, None)?, &[0.0]);
    }
    assert_eq!(losses[2].name(), "HuberLoss");
    Ok(())
}

#[test]
fn sigmoid_bce_gradient_is_sigmoid_minus_label_even_at_large_scores() -> Result<()> {
    let xs: [f64; 4] = [100.0, -100.0, 0.5, -2.0];
    let zs = [1.0, 1.0, 0.0, 1.0];
    let pred = nd::array(&[xs])?;
    pred.attach_grad();
    let label = nd::array(&[zs])?;
    let loss = autograd::record(|| SigmoidBinaryCrossEntropyLoss::new().forward(&pred, &label))?;
    loss.backward()?;
    // d/dx of the per-sample mean over 4 elements: (sigmoid(x) - z) / 4.
    let want: Vec<f64> = xs
        .iter()
        .zip(zs)
        .map(|(x, z)| (1.0 / (1.0 + (-x).exp()) - z) / 4.0)
        .collect();
    close(&pred.grad()?, &want);
    Ok(())
}
