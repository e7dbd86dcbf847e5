//! Evaluation metrics on hand-made batches.

use kiln_frontend::gluon::metric::{
    Accuracy, CrossEntropy, EvalMetric, Loss, TopKAccuracy, MAE, MSE, RMSE,
};
use kiln_frontend::{nd, NDArray, Result};

fn assert_value(metric: &dyn EvalMetric, name: &str, want: f64) {
    let (n, v) = metric.get();
    assert_eq!(n, name);
    assert!((v - want).abs() < 1e-12, "{name}: got {v}, want {want}");
}

fn assert_empty(metric: &dyn EvalMetric) {
    assert!(metric.get().1.is_nan(), "{:?} should be NaN", metric.get());
}

#[test]
fn accuracy_of_scores_accumulates_and_resets() -> Result<()> {
    let mut acc = Accuracy::new();
    assert_empty(&acc);
    let pred = nd::array(&[
        [0.1, 0.7, 0.2],
        [0.5, 0.3, 0.2],
        [0.0, 0.1, 0.9],
        [0.4, 0.4, 0.2],
    ])?;
    // argmax: 1, 0, 2, 0 (first on ties)
    let label = nd::array(&[1.0, 1.0, 2.0, 0.0])?;
    acc.update(&[&label], &[&pred])?;
    assert_value(&acc, "accuracy", 0.75);
    // Second batch: 1 of 2 right; 4 of 6 overall.
    let pred2 = nd::array(&[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])?;
    let label2 = nd::array(&[[0.0], [1.0]])?;
    acc.update_one(&label2, &pred2)?;
    assert_value(&acc, "accuracy", 4.0 / 6.0);
    acc.reset();
    assert_empty(&acc);
    Ok(())
}

#[test]
fn accuracy_of_class_predictions_and_other_axis() -> Result<()> {
    // Same shape as the label: classes already (truncated to integers).
    let mut acc = Accuracy::new();
    let pred = NDArray::from_vec(vec![1i64, 2, 0], [3])?;
    let label = nd::array(&[1.0, 2.0, 2.0])?;
    acc.update(&[&label], &[&pred])?;
    assert_value(&acc, "accuracy", 2.0 / 3.0);
    // Classes along axis 0 of a [classes, batch] prediction.
    let mut acc = Accuracy::with_axis(0);
    let pred = nd::array(&[[0.9, 0.1], [0.1, 0.9]])?;
    acc.update(&[&nd::array(&[0.0, 0.0])?], &[&pred])?;
    assert_value(&acc, "accuracy", 0.5);
    Ok(())
}

#[test]
fn accuracy_bad_input() -> Result<()> {
    let mut acc = Accuracy::new();
    let pred = nd::array(&[[0.1, 0.9], [0.8, 0.2]])?;
    let label = nd::array(&[1.0, 0.0])?;
    let err = acc
        .update(&[&label, &label], &[&pred])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("accuracy") && err.contains("2 label") && err.contains("1 prediction"),
        "{err}"
    );
    let long = nd::array(&[1.0, 0.0, 1.0])?;
    let err = acc.update(&[&long], &[&pred]).unwrap_err().to_string();
    assert!(err.contains("[3]") && err.contains("[2, 2]"), "{err}");
    let err = Accuracy::with_axis(3)
        .update(&[&long], &[&pred])
        .unwrap_err();
    assert!(err.to_string().contains("axis"), "{err}");
    // A failed update leaves the metric untouched, even when an earlier pair was fine.
    assert!(acc.update(&[&label, &long], &[&pred, &pred]).is_err());
    assert_empty(&acc);
    Ok(())
}

#[test]
fn top_k_accuracy() -> Result<()> {
    let mut top2 = TopKAccuracy::new(2);
    assert_empty(&top2);
    let pred = nd::array(&[
        [0.1, 0.5, 0.4, 0.0],
        [0.3, 0.2, 0.1, 0.4],
        [0.25, 0.25, 0.25, 0.25],
        [0.25, 0.25, 0.25, 0.25],
    ])?;
    // Row 0: label 2 is second. Row 1: label 1 is third. Rows 2 and 3: ties rank by index,
    // so label 1 is second and label 3 fourth.
    let label = nd::array(&[2.0, 1.0, 1.0, 3.0])?;
    top2.update(&[&label], &[&pred])?;
    assert_value(&top2, "top_k_accuracy_2", 0.5);
    // A k beyond the number of classes counts every sample.
    let mut top9 = TopKAccuracy::new(9);
    top9.update(&[&label], &[&pred])?;
    assert_value(&top9, "top_k_accuracy_9", 1.0);
    // Accumulation: one more right sample of one.
    top2.update(
        &[&nd::array(&[0.0])?],
        &[&nd::array(&[[0.9, 0.1, 0.0, 0.0]])?],
    )?;
    assert_value(&top2, "top_k_accuracy_2", 3.0 / 5.0);
    top2.reset();
    assert_empty(&top2);
    Ok(())
}

#[test]
fn top_k_accuracy_bad_input() -> Result<()> {
    let pred = nd::array(&[[0.1, 0.9]])?;
    let err = TopKAccuracy::new(0)
        .update(&[&nd::array(&[1.0])?], &[&pred])
        .unwrap_err();
    assert!(err.to_string().contains("top_k"), "{err}");
    let err = TopKAccuracy::new(1)
        .update(&[&nd::array(&[1.0])?], &[&nd::array(&[0.1, 0.9])?])
        .unwrap_err();
    assert!(err.to_string().contains("[batch, classes]"), "{err}");
    let err = TopKAccuracy::new(1)
        .update(&[&nd::array(&[1.0, 0.0])?], &[&pred])
        .unwrap_err();
    assert!(err.to_string().contains("one class per row"), "{err}");
    Ok(())
}

#[test]
fn regression_metrics_average_per_batch_errors() -> Result<()> {
    let label = nd::array(&[1.0, 2.0, 3.0, 4.0])?;
    // A [4, 1] pred pairs with a [4] label (MXNet reshapes 1-D arrays to [n, 1]).
    let pred = nd::array(&[[1.0], [4.0], [2.0], [4.0]])?;
    // errors 0, -2, 1, 0: |.| mean 0.75, squared mean 1.25
    let (mut mae, mut mse, mut rmse) = (MAE::new(), MSE::new(), RMSE::new());
    for m in [&mut mae as &mut dyn EvalMetric, &mut mse, &mut rmse] {
        assert_empty(m);
        m.update(&[&label], &[&pred])?;
    }
    assert_value(&mae, "mae", 0.75);
    assert_value(&mse, "mse", 1.25);
    assert_value(&rmse, "rmse", 1.25f64.sqrt());
    // Second batch of two: errors 3, 3 (mean |e| 3, mean e² 9); each batch counts once.
    let label2 = nd::array(&[0.0, 0.0])?;
    let pred2 = nd::array(&[3.0, -3.0])?;
    for m in [&mut mae as &mut dyn EvalMetric, &mut mse, &mut rmse] {
        m.update(&[&label2], &[&pred2])?;
    }
    assert_value(&mae, "mae", (0.75 + 3.0) / 2.0);
    assert_value(&mse, "mse", (1.25 + 9.0) / 2.0);
    assert_value(&rmse, "rmse", (1.25f64.sqrt() + 3.0) / 2.0);
    mse.reset();
    assert_empty(&mse);
    Ok(())
}

#[test]
fn regression_metrics_bad_input() -> Result<()> {
    let mut mse = MSE::new();
    let err = mse
        .update(
            &[&nd::array(&[1.0, 2.0])?],
            &[&nd::array(&[1.0, 2.0, 3.0])?],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mse") && err.contains("[2]") && err.contains("[3]"),
        "{err}"
    );
    let err = MAE::new()
        .update(&[], &[&nd::array(&[1.0])?])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0 label") && err.contains("1 prediction"),
        "{err}"
    );
    let empty = nd::zeros([0])?;
    assert!(RMSE::new().update(&[&empty], &[&empty]).is_err());
    assert_empty(&mse);
    Ok(())
}

#[test]
fn cross_entropy_of_probabilities() -> Result<()> {
    let mut ce = CrossEntropy::new();
    assert_empty(&ce);
    let pred = nd::array(&[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])?;
    let label = nd::array(&[0.0, 2.0])?;
    ce.update(&[&label], &[&pred])?;
    let p0 = 0.5f32 as f64;
    let p1 = 0.8f32 as f64;
    let first = -(p0 + 1e-12).ln() - (p1 + 1e-12).ln();
    assert_value(&ce, "cross-entropy", first / 2.0);
    // Accumulates per sample: one more sample with p = 0.25.
    ce.update(&[&nd::array(&[1.0])?], &[&nd::array(&[[0.5, 0.25, 0.25]])?])?;
    assert_value(&ce, "cross-entropy", (first - (0.25f64 + 1e-12).ln()) / 3.0);
    ce.reset();
    assert_empty(&ce);
    Ok(())
}

#[test]
fn cross_entropy_bad_input() -> Result<()> {
    let pred = nd::array(&[[0.5, 0.5]])?;
    let mut ce = CrossEntropy::new();
    let err = ce
        .update(&[&nd::array(&[2.0])?], &[&pred])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cross-entropy") && err.contains("[0, 2)"),
        "{err}"
    );
    let err = ce.update(&[&nd::array(&[-1.0])?], &[&pred]).unwrap_err();
    assert!(err.to_string().contains("not a class index"), "{err}");
    let err = ce
        .update(&[&nd::array(&[0.0, 1.0])?], &[&pred])
        .unwrap_err();
    assert!(err.to_string().contains("one class per row"), "{err}");
    assert_empty(&ce);
    Ok(())
}

#[test]
fn loss_metric_averages_every_element() -> Result<()> {
    let mut loss = Loss::new();
    assert_empty(&loss);
    loss.update(&[], &[&nd::array(&[1.0, 2.0, 3.0])?])?;
    assert_value(&loss, "loss", 2.0);
    loss.update(&[], &[&nd::array(&[[6.0]])?, &nd::array(&[8.0])?])?;
    assert_value(&loss, "loss", 4.0);
    loss.reset();
    assert_empty(&loss);
    Ok(())
}
