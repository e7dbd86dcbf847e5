//! The remaining chapter-2 examples run end to end with `--quick` (logistic regression on
//! Adult, the two regularization notebooks, the perceptron and the covariate-shift demo),
//! and the LIBSVM reader they use rejects malformed input with clear errors.
//!
//! Each example keeps its logic in `run(&Options, &mut dyn Write)`, so the examples are
//! included here as modules and run in-process. kiln's random generator is process-wide,
//! so tests running in parallel draw from it in an unpredictable order: the thresholds leave
//! room for that rather than relying on exact seeded values.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/ch02_logistic_regression_gluon.rs"]
mod ch02_logistic_regression_gluon;

#[allow(dead_code)]
#[path = "../examples/ch02_regularization_scratch.rs"]
mod ch02_regularization_scratch;

#[allow(dead_code)]
#[path = "../examples/ch02_regularization_gluon.rs"]
mod ch02_regularization_gluon;

#[allow(dead_code)]
#[path = "../examples/ch02_perceptron.rs"]
mod ch02_perceptron;

#[allow(dead_code)]
#[path = "../examples/ch02_environment.rs"]
mod ch02_environment;

use ch02_logistic_regression_gluon::common::libsvm::{self, LibSvmError};
use kiln::prelude::*;

/// The quick options, reading the data shipped with this package.
macro_rules! quick {
    ($ex:ident) => {
        $ex::common::Options {
            data: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data"),
            ..$ex::common::Options::quick()
        }
    };
}

fn parse_err(text: &str) -> String {
    match libsvm::parse(text, 4, "t.svm") {
        Ok(v) => panic!("expected an error for {text:?}, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn libsvm_parses_rows_into_dense_features() {
    let text = "# comment\n+1 1:1 3:0.5\n\n-1 2:1 4:-2\n-1\n";
    let d = libsvm::parse(text, 4, "t.svm").unwrap();
    assert_eq!(d.rows, 3);
    assert_eq!(d.num_features, 4);
    assert_eq!(d.labels, vec![1.0, -1.0, -1.0]);
    assert_eq!(
        d.features,
        vec![1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert!((d.rate_of(1.0) - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn libsvm_rejects_bad_lines_naming_the_line() {
    let e = parse_err("+1 1:1\nabc 1:1\n");
    assert_eq!(e, "t.svm line 2: label `abc` is not a number");
    let e = parse_err("+1 1:1 2\n");
    assert!(
        e.contains("line 1") && e.contains("`2` is not `index:value`"),
        "{e}"
    );
    let e = parse_err("+1 0:1\n");
    assert!(e.contains("index 0") && e.contains("outside 1..=4"), "{e}");
    let e = parse_err("+1 5:1\n");
    assert!(e.contains("index 5") && e.contains("outside 1..=4"), "{e}");
    let e = parse_err("+1 x:1\n");
    assert!(e.contains("`x`") && e.contains("not a whole number"), "{e}");
    let e = parse_err("+1 3:1 2:1\n");
    assert!(e.contains("does not follow 3"), "{e}");
    let e = parse_err("+1 2:1 2:1\n");
    assert!(e.contains("does not follow 2"), "{e}");
    let e = parse_err("+1 2:nan\n");
    assert!(e.contains("not a finite number"), "{e}");
    let e = parse_err("+1 2:\n");
    assert!(e.contains("not a finite number"), "{e}");
    let e = parse_err("inf 2:1\n");
    assert!(e.contains("label `inf`"), "{e}");
    assert!(parse_err("\n# only a comment\n").contains("no data rows"));
    assert!(matches!(
        libsvm::parse("+1 1:1", 0, "t"),
        Err(LibSvmError::Limit(_))
    ));
}

#[test]
fn libsvm_reads_plain_and_gzipped_files() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let text = "+1 1:1 2:1\n-1 3:1\n";
    std::fs::write(dir.path().join("plain.svm"), text).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    std::fs::write(dir.path().join("zipped.svm.gz"), enc.finish().unwrap()).unwrap();
    let plain = libsvm::read(&dir.path().join("plain.svm"), 3).unwrap();
    let zipped = libsvm::read_in(dir.path(), "zipped.svm", 3).unwrap();
    assert_eq!(plain, zipped);
    assert_eq!(plain.features, vec![1.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    // Errors name the file; a corrupt gzip stream is an error, not a panic.
    let missing = libsvm::read(&dir.path().join("nope.svm"), 3).unwrap_err();
    assert!(matches!(missing, LibSvmError::Io { .. }));
    assert!(missing.to_string().contains("nope.svm"), "{missing}");
    std::fs::write(dir.path().join("bad.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    assert!(libsvm::read(&dir.path().join("bad.gz"), 3).is_err());
    std::fs::write(dir.path().join("bad.svm"), "+1 1:1\n-1 4:1\n").unwrap();
    let e = libsvm::read(&dir.path().join("bad.svm"), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.svm line 2") && e.contains("index 4"), "{e}");
}

#[test]
fn logistic_regression_classifies_adult_incomes() {
    use ch02_logistic_regression_gluon as ex;
    let mut out = Vec::new();
    let s = ex::run(&quick!(ex), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Xtrain shape (12000, 123), Xtest shape (1605, 123)"),
        "{text}"
    );
    assert_eq!(s.test_shape, (1605, 123));
    // The book's test positive rate: 395 of 1605.
    assert!((s.positive_rates.1 - 395.0 / 1605.0).abs() < 1e-6, "{s:?}");
    assert!((0.2..0.3).contains(&s.positive_rates.0), "{s:?}");
    assert_eq!(s.epoch_losses.len(), ex::QUICK_EPOCHS);
    let per_sample: Vec<f64> = s.epoch_losses.iter().map(|l| l / 12000.0).collect();
    assert!(
        per_sample.last().unwrap() < &(per_sample[0] * 0.9),
        "{per_sample:?}"
    );
    // Guessing "<= 50K" everywhere scores 0.754.
    assert!(s.accuracy > 0.77, "{s:?}");
    assert_eq!(s.correct as f64 / 1605.0, s.accuracy);
    assert!(text.contains(&format!("Accuracy: {:.4} ({}/1605)", s.accuracy, s.correct)));
}

#[test]
fn logistic_regression_log_loss_matches_the_book_formula() {
    use ch02_logistic_regression_gluon as ex;
    let z = nd::array(&[[-3.0f32], [0.0], [2.0]]).unwrap();
    let y = nd::array(&[[0.0f32], [1.0], [1.0]]).unwrap();
    let got = ex::log_loss(&z, &y).unwrap().as_scalar::<f32>().unwrap() as f64;
    let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
    let expected = -((1.0 - sigma(-3.0)).ln() + sigma(0.0).ln() + sigma(2.0).ln());
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    // Where σ rounds to 1 in f32 the book's form would give inf; this one stays finite.
    let far = ex::log_loss(
        &nd::array(&[[40.0f32]]).unwrap(),
        &nd::array(&[[0.0f32]]).unwrap(),
    )
    .unwrap()
    .as_scalar::<f32>()
    .unwrap();
    assert!((far - 40.0).abs() < 1e-3, "{far}");
}

#[test]
fn logistic_regression_rejects_labels_other_than_plus_minus_one() {
    use ch02_logistic_regression_gluon as ex;
    let d = libsvm::parse("+1 1:1\n2 2:1\n", 2, "t").unwrap();
    let e = ex::to_dataset(&d, None).unwrap_err().to_string();
    assert!(e.contains("+1 or -1") && e.contains('2'), "{e}");
    // The first row alone is fine and maps +1 to 1.
    let ok = ex::to_dataset(&d, Some(1)).unwrap();
    assert_eq!(ok.label().to_vec::<f32>().unwrap(), vec![1.0]);
    // A hand-built split whose arrays disagree with its row count is an error, not a panic.
    let mut broken = d.clone();
    broken.features.pop();
    let e = ex::to_dataset(&broken, Some(1)).unwrap_err().to_string();
    assert!(
        e.contains("inconsistent") && e.contains("3 feature values"),
        "{e}"
    );
}

#[test]
fn regularization_scratch_l2_shrinks_the_weights() {
    use ch02_regularization_scratch as ex;
    let mut out = Vec::new();
    let s = ex::run(&quick!(ex), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(s.sizes, (1000, 1000));
    assert!(text.contains("Completed epoch 30. Train Loss:"), "{text}");
    assert!(text.contains("Completed epoch 3. Train Loss:"), "{text}");
    assert_eq!(s.runs.len(), 2);
    for run in &s.runs {
        let c = &run.curves;
        assert_eq!(c.len(), ex::QUICK_EPOCHS);
        assert!(c.train_loss[c.len() - 1] < c.train_loss[0] / 2.0, "{c:?}");
        let last = c.last().unwrap();
        assert!(last.train_acc > 0.6 && last.test_acc > 0.4, "{last:?}");
        // Fewer than 1,000 samples to fit: the training split scores better than the test.
        assert!(last.train_acc > last.test_acc, "{last:?}");
    }
    // N(0, 1) initial weights have a squared norm of about 7,850 (± 2%); the penalty pulls
    // it down by about 15% in the quick run's 30 epochs (to under 100 in the book's 1,000).
    assert_eq!(s.runs[1].l2_strength, ex::L2_STRENGTH);
    assert!(
        s.runs[1].squared_norm < s.runs[0].squared_norm * 0.93,
        "{} vs {}",
        s.runs[1].squared_norm,
        s.runs[0].squared_norm
    );
}

#[test]
fn regularization_scratch_penalty_is_the_sum_of_squares() {
    use ch02_regularization_scratch as ex;
    let a = nd::array(&[[1.0f32, -2.0]]).unwrap();
    let b = nd::array(&[3.0f32]).unwrap();
    let p = ex::l2_penalty(&[&a, &b]).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(p, vec![14.0]);
}

#[test]
fn regularization_gluon_learns_with_and_without_weight_decay() {
    use ch02_regularization_gluon as ex;
    let mut out = Vec::new();
    let s = ex::run(&quick!(ex), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    for line in [
        "--- wd = 0 ---",
        "--- wd = 0.001 ---",
        "Completed epoch 1. ",
        "Completed epoch 21. ",
        "Completed epoch 30. ",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_eq!(s.sizes, (1000, 1000));
    assert_eq!(s.runs[1].wd, ex::WEIGHT_DECAY);
    for run in &s.runs {
        let c = &run.curves;
        assert_eq!(c.len(), ex::QUICK_EPOCHS);
        assert!(c.train_loss[c.len() - 1] < c.train_loss[0] * 0.6, "{c:?}");
        let last = c.last().unwrap();
        assert!(last.train_acc > 0.75 && last.test_acc > 0.65, "{last:?}");
    }
    // `force_reinit`: the second run starts again from a random model, so its first epoch
    // is no better than the first run's first epoch was by much.
    assert!(s.runs[1].curves.test_acc[0] < s.runs[0].curves.test_acc[ex::QUICK_EPOCHS - 1]);
}

#[test]
fn perceptron_separates_the_data_within_novikoffs_bound() {
    use ch02_perceptron as ex;
    let mut out = Vec::new();
    let s = ex::run(&quick!(ex), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.matches("Encountered an error and updated parameters")
            .count(),
        s.first_pass_updates
    );
    assert!(s.first_pass_updates >= 1);
    assert_eq!(s.errors, 0, "{text}");
    assert!(s.total_updates as f64 <= s.bound, "{s:?}");
    assert!(s.passes < ex::MAX_PASSES);
    // The bias moves by ±1 per update from 0.
    assert_eq!(s.b.fract(), 0.0);
    // Smaller margins cost more updates.
    let u = &s.updates_by_margin;
    assert_eq!(u.len(), 17);
    let head = (u[0].1 + u[1].1 + u[2].1) / 3.0;
    let tail = (u[14].1 + u[15].1 + u[16].1) / 3.0;
    assert!(head > tail, "{u:?}");
}

#[test]
fn perceptron_updates_only_on_mistakes() {
    use ch02_perceptron as ex;
    let w = nd::zeros([2]).unwrap();
    let b = nd::zeros([1]).unwrap();
    let x = nd::array(&[1.0f32, 2.0]).unwrap();
    let y = nd::array(&[1.0f32]).unwrap();
    assert!(ex::perceptron(&w, &b, &x, &y).unwrap());
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![1.0]);
    assert!(!ex::perceptron(&w, &b, &x, &y).unwrap());
    let minus = nd::array(&[-1.0f32]).unwrap();
    assert!(ex::perceptron(&w, &b, &x, &minus).unwrap());
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![0.0]);
}

#[test]
fn perceptron_fake_data_respects_radius_and_margin() {
    use ch02_perceptron as ex;
    let d = ex::getfake(200, 2, 0.3).unwrap();
    let x = d.x.to_vec::<f32>().unwrap();
    let y = d.y.to_vec::<f32>().unwrap();
    let w = d.w.to_vec::<f32>().unwrap();
    assert!(((w[0] * w[0] + w[1] * w[1]).sqrt() - 1.0).abs() < 1e-5);
    for (i, &label) in y.iter().enumerate() {
        let (a, c) = (x[2 * i] as f64, x[2 * i + 1] as f64);
        assert!((a * a + c * c).sqrt() < ex::RADIUS);
        let margin = a * w[0] as f64 + c * w[1] as f64 + d.b;
        assert!(margin.abs() > 0.3 - 1e-5, "{margin}");
        assert_eq!(label, if margin > 0.0 { 1.0 } else { -1.0 });
    }
    assert!(ex::getfake(10, 2, -0.1).is_err());
    assert!(ex::getfake(0, 2, 0.1).is_err());
    assert!(ex::getfake(10, 2, 5.0).is_err());
}

#[test]
fn environment_importance_weighting_corrects_covariate_shift() {
    use ch02_environment as ex;
    let mut out = Vec::new();
    let s = ex::run(&quick!(ex), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("before the correction"), "{text}");
    // The source model is good at home and poor after the shift; the weighted one recovers
    // most of the gap to a model trained on labelled target data.
    assert!(s.plain.0 > 0.82 && s.plain.1 < 0.78, "{s:?}");
    assert!(s.weighted.1 > s.plain.1 + 0.08, "{s:?}");
    assert!(s.weighted.1 > s.oracle_target - 0.05, "{s:?}");
    // The domain classifier recovers the true (linear) log density ratio.
    let (a0, a1, c) = s.log_ratio;
    let (t0, t1, tc) = s.true_log_ratio;
    assert!(
        (a0 - t0).abs() < 0.3 && (a1 - t1).abs() < 0.3 && (c - tc).abs() < 0.3,
        "{s:?}"
    );
    assert!(
        s.effective_samples > 10.0 && s.effective_samples < 1000.0,
        "{s:?}"
    );
    // Concept shift: the old model fails the new rule; new labels fix it.
    assert!(s.concept.0 < 0.75 && s.concept.1 > 0.9, "{s:?}");
}
