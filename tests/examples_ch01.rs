//! The chapter-1 examples run end to end with `--quick` and compute the notebooks' values.
//!
//! Each example keeps its logic in `run(&Options, &mut dyn Write)`, so the examples are
//! included here as modules and run in-process. Each example declares the shared
//! `examples/common` module itself, so it is compiled once per example here.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/ch01_ndarray.rs"]
mod ch01_ndarray;

#[allow(dead_code)]
#[path = "../examples/ch01_autograd.rs"]
mod ch01_autograd;

#[allow(dead_code)]
#[path = "../examples/ch01_linear_algebra.rs"]
mod ch01_linear_algebra;

#[allow(dead_code)]
#[path = "../examples/ch01_probability.rs"]
mod ch01_probability;

use kiln::prelude::*;

fn values(a: &NDArray) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn assert_close(actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= tol, "{actual:?} vs {expected:?}");
    }
}

#[test]
fn ndarray_tour() {
    let mut out = Vec::new();
    let s = ch01_ndarray::run(&ch01_ndarray::common::Options::quick(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("<NDArray 3x4 @cpu(0)>"), "{text}");
    assert!(text.contains("y.shape = [3, 4]\ny.size = 12"), "{text}");

    // nd.dot(ones(3, 4), y.T): every row holds y's row sums.
    assert_eq!(s.dot.shape().dims(), &[3, 3]);
    let sums = &s.y_row_sums;
    let expected: Vec<f32> = (0..3).flat_map(|_| sums.iter().copied()).collect();
    assert_close(&values(&s.dot), &expected, 1e-5);

    let x = values(&s.x_after_writes);
    assert_eq!(s.x_after_writes.shape().dims(), &[3, 4]);
    assert_eq!(
        (x[5], x[6]),
        (5.0, 5.0),
        "x[1:2,1:3] = 5 overwrote x[1,2] = 9"
    );
    assert!(x[4] != 5.0 && x[7] != 5.0);

    assert_eq!(
        values(&s.broadcast_row),
        vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        values(&s.broadcast_col),
        vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]
    );
    assert_eq!(s.kept_storage, [true, true, true]);
    assert!(text.contains("y = y + x: same storage as before? false"));
    assert!(text.contains("z.copy(): same storage as z? false"));
}

#[test]
fn linear_algebra_values() {
    let mut out = Vec::new();
    let s =
        ch01_linear_algebra::run(&ch01_linear_algebra::common::Options::quick(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(s.scalar_ops, [5.0, 6.0, 1.5, 9.0]);
    assert_eq!(s.a23, 11.0);
    assert_eq!(s.sum_mean, [190.0, 9.5]);
    assert_eq!(s.dot_uv, 30.0);
    // Row i of arange(20).reshape(5, 4) is 4i + [0, 1, 2, 3]; u = [1, 2, 4, 8].
    assert_eq!(values(&s.a_dot_u), vec![34.0, 94.0, 154.0, 214.0, 274.0]);
    assert_eq!(s.ones_dot.shape().dims(), &[3, 5]);
    assert_eq!(values(&s.ones_dot), vec![4.0; 15]);
    assert_close(&s.norms, &[85f32.sqrt(), 15.0], 1e-5);
    assert!(text.contains("[[4. 4. 4. 4. 4.]"), "{text}");
    assert!(text.contains("X.shape = [2, 3, 4]"), "{text}");
}

#[test]
fn probability_quick_run() {
    let opts = ch01_probability::common::Options::quick();
    let mut out = Vec::new();
    let s = ch01_probability::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();

    assert_eq!(s.rolls, 1000);
    assert_eq!(s.totals.iter().sum::<f32>(), 1000.0);
    // Each face's count is Binomial(1000, 1/6): mean 166.7, sd 11.8.
    assert!(
        s.totals.iter().all(|&t| (110.0..=225.0).contains(&t)),
        "{:?}",
        s.totals
    );

    // The priors are (count + 1) / (n + 10) over the training labels used.
    let train = kiln::frontend::data::mnist::load_mnist(opts.mnist_dir(), true).unwrap();
    let labels = &train.labels.as_slice::<u8>().unwrap()[..s.mnist_sizes.0];
    let mut counts = [1.0f32; 10];
    for &l in labels {
        counts[l as usize] += 1.0;
    }
    let expected: Vec<f32> = counts
        .iter()
        .map(|c| c / (labels.len() + 10) as f32)
        .collect();
    assert_close(&s.priors, &expected, 1e-6);
    assert!(
        s.accuracy > 0.75 && s.accuracy < 0.95,
        "accuracy {}",
        s.accuracy
    );

    assert!((s.heads - 0.35).abs() < 0.02, "heads {}", s.heads);
    assert!((s.clt_mean - 0.9).abs() < 0.02, "mean {}", s.clt_mean);
    assert!(text.contains("mean 0.9, variance 0.49"), "{text}");
    assert!(
        text.contains("P(HIV | one positive test) = 0.131"),
        "{text}"
    );
    assert!(
        text.contains("P(HIV | two positive tests) = 0.831"),
        "{text}"
    );
    assert!(text.contains("sum(p) * 0.01 = 1.0000"), "{text}");
}

#[test]
fn naive_bayes_priors_match_the_book() {
    // The notebook's `py` over all 60,000 training labels, as printed by MXNet.
    let book = [
        0.09871688, 0.11236461, 0.09930012, 0.10218297, 0.09736711, 0.09035161, 0.09863356,
        0.10441593, 0.09751708, 0.09915014,
    ];
    let data = ch01_probability::common::Options::default().data;
    let train = kiln::frontend::data::mnist::load_mnist(data.join("mnist"), true).unwrap();
    let labels = NDArray::from_tensor(train.labels, Context::cpu())
        .astype(DType::F32)
        .unwrap();
    let ycount = ch01_probability::label_counts(&labels).unwrap();
    assert_eq!(
        values(&ycount),
        vec![5924.0, 6743.0, 5959.0, 6132.0, 5843.0, 5422.0, 5919.0, 6266.0, 5852.0, 5950.0]
    );
    let py = ch01_probability::class_priors(&ycount).unwrap();
    assert_close(&values(&py), &book, 1e-7);
}

#[test]
fn autograd_gradients() {
    let mut out = Vec::new();
    let s = ch01_autograd::run(&ch01_autograd::common::Options::quick(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // z = 2 x²: dz/dx = 4x at x = [[1, 2], [3, 4]].
    assert_eq!(values(&s.grad), vec![4.0, 8.0, 12.0, 16.0]);
    assert!(text.contains("[[ 4.  8.]\n [12. 16.]]"), "{text}");
    // With a head gradient, each entry is scaled by it.
    assert_close(&values(&s.head_grad), &[40.0, 8.0, 1.2, 0.16], 1e-6);

    // Control flow: b = a · 2^n with n the first doubling that makes ‖b‖ >= 1000, and
    // c = b when sum(b) > 0, else 100 b. c is linear in a, so a.grad = head · c / a.
    let (a, c) = (values(&s.a), values(&s.c));
    let positive = c.iter().sum::<f32>() > 0.0;
    let b: Vec<f32> = c
        .iter()
        .map(|v| if positive { *v } else { v / 100.0 })
        .collect();
    let factor = b[0] / a[0];
    assert_eq!(
        factor.log2().fract(),
        0.0,
        "b / a = {factor} is not a power of 2"
    );
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(norm(&b) >= 1000.0 && norm(&b) / 2.0 < 1000.0, "b = {b:?}");
    let k = if positive { factor } else { 100.0 * factor };
    let expected: Vec<f32> = [0.01f32, 1.0, 0.1].iter().map(|h| h * k).collect();
    assert_close(&values(&s.a_grad), &expected, 1e-6 * k.abs());
}

#[test]
fn examples_reject_unknown_arguments() {
    use ch01_ndarray::common::Options;
    let parsed = Options::parse(["--quick".to_string(), "--data".into(), "/tmp/d".into()]);
    assert_eq!(
        parsed,
        Ok(Options {
            quick: true,
            data: "/tmp/d".into(),
            ..Options::default()
        })
    );
    let parsed =
        Options::parse(["--epochs", "3", "--out=/tmp/o", "--data", "/d"].map(String::from))
            .unwrap();
    assert_eq!(parsed.epochs, Some(3));
    assert_eq!(parsed.out, std::path::PathBuf::from("/tmp/o"));
    assert_eq!(parsed.epochs_or(10, 1), 3);
    assert_eq!(Options::default().epochs_or(10, 1), 10);
    assert_eq!(Options::quick().epochs_or(10, 1), 1);
    for bad in [["--epochs", "0"], ["--epochs", "x"]] {
        assert!(Options::parse(bad.map(String::from))
            .unwrap_err()
            .contains("--epochs needs a positive whole number"));
    }
    assert!(Options::parse(["--out".to_string()]).is_err());
    assert_eq!(
        Options::parse(["--data=/x".to_string()]).map(|o| o.data),
        Ok("/x".into())
    );
    assert!(Options::parse(["--fast".to_string()])
        .unwrap_err()
        .contains("unknown argument `--fast`"));
    assert!(Options::parse(["--data".to_string()]).is_err());
    // --data may name the data folder or the MNIST folder inside it.
    let data = Options::default().data;
    let via_parent = Options {
        quick: true,
        data: data.clone(),
        ..Options::default()
    };
    let direct = Options {
        quick: true,
        data: data.join("mnist"),
        ..Options::default()
    };
    assert_eq!(via_parent.mnist_dir(), data.join("mnist"));
    assert_eq!(direct.mnist_dir(), data.join("mnist"));
}
