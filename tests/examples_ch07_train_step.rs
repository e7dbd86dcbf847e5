//! `examples/ch07_train_step.rs` runs end to end under `--quick`: the book's linear regression
//! trained eagerly, hybridized and as a compiled `TrainStep` from the same weights on the same
//! batches learns the same weights, and the MLP's compiled step agrees with its eager step.
//! Timings are printed, never asserted.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/ch07_train_step.rs"]
mod ch07_train_step;

#[test]
fn the_three_ways_learn_the_same_linear_regression() {
    let opts = ch07_train_step::common::Options {
        out: tempfile::tempdir().unwrap().keep(),
        ..ch07_train_step::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ch07_train_step::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // All three learn the true weights [2, -3.4] and bias 4.2 (noise 0.01).
    for w in &s.learned {
        assert!((w[0] - 2.0).abs() < 0.02, "{w:?}\n{text}");
        assert!((w[1] + 3.4).abs() < 0.02, "{w:?}\n{text}");
        assert!((w[2] - 4.2).abs() < 0.02, "{w:?}\n{text}");
    }
    // ... and the same weights: 500 SGD steps apart only by rounding.
    for w in &s.learned[1..] {
        for (a, b) in w.iter().zip(&s.learned[0]) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{:?}\n{text}",
                s.learned
            );
        }
    }
    for l in s.final_loss {
        assert!(l < 1e-3, "{:?}\n{text}", s.final_loss);
    }
    // Forward, loss, backward and update: a handful of kernels.
    assert!(s.kernels >= 3 && s.kernels <= 40, "{}\n{text}", s.kernels);
    // The compiled MLP step stays as close to eager as the hybridized loop does.
    assert!(
        s.mlp_rel_err[1] <= 1e-4_f64.max(10.0 * s.mlp_rel_err[0]),
        "{:?}\n{text}",
        s.mlp_rel_err
    );
    for t in [s.linear, s.mlp] {
        for us in [t.eager_us, t.hybridized_us, t.train_step_us] {
            assert!(us.is_finite() && us > 0.0, "{t:?}");
        }
    }
    assert!(text.contains("TrainStep"), "{text}");
}
