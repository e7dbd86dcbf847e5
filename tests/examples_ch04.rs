//! The chapter-4 examples (convolutional networks) run end to end with `--quick`: the
//! notebooks' shapes and deterministic values come out as in the book, the loss falls and
//! the trained networks beat chance on held-out data.
//!
//! Each example keeps its logic in `run(&Options, &mut dyn Write)`, so the examples are
//! included here as modules and run in-process. kiln's random generator is process-wide,
//! so tests running in parallel draw from it in an unpredictable order: the thresholds leave
//! room for that rather than relying on exact seeded values. Each test writes its plots to a
//! temporary folder of its own.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/ch04_cnn_scratch.rs"]
mod ch04_cnn_scratch;

#[allow(dead_code)]
#[path = "../examples/ch04_cnn_gluon.rs"]
mod ch04_cnn_gluon;

#[allow(dead_code)]
#[path = "../examples/ch04_deep_cnn_alexnet.rs"]
mod ch04_deep_cnn_alexnet;

#[allow(dead_code)]
#[path = "../examples/ch04_vgg.rs"]
mod ch04_vgg;

#[allow(dead_code)]
#[path = "../examples/ch04_batch_norm_scratch.rs"]
mod ch04_batch_norm_scratch;

#[allow(dead_code)]
#[path = "../examples/ch04_batch_norm_gluon.rs"]
mod ch04_batch_norm_gluon;

use std::path::{Path, PathBuf};

/// A fresh temporary folder for one test's plots.
fn temp_dir() -> PathBuf {
    tempfile::tempdir().unwrap().keep()
}

/// How many lines of a printed `Sequential` name a `layer` child (`  (3): Conv2D`).
fn count_layers(text: &str, layer: &str) -> usize {
    text.lines()
        .filter(|l| {
            let l = l.trim();
            l.starts_with('(') && l.ends_with(&format!("): {layer}"))
        })
        .count()
}

/// The example's loss-curve PNG exists where its output says, and is a real image.
fn assert_plot(text: &str, dir: &Path, name: &str) {
    let plot = dir.join(name);
    assert!(text.contains(&plot.display().to_string()), "{text}");
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 5_000, "{} bytes", png.len());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cnn_scratch_prints_the_books_shapes_and_learns() {
    use ch04_cnn_scratch as ex;
    let dir = temp_dir();
    let opts = ex::common::Options {
        out: dir.clone(),
        ..ex::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ex::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // The notebook's shapes: (64, 20, 26, 26) after the 3x3 convolution, (64, 20, 13, 13)
    // after pooling, [64 50 4 4] and [64 800] before the dense layers.
    assert_eq!(s.demo_shapes, (vec![64, 20, 26, 26], vec![64, 20, 13, 13]));
    let shapes: Vec<(&str, Vec<usize>)> = vec![
        ("h1_conv", vec![64, 20, 26, 26]),
        ("h1", vec![64, 20, 13, 13]),
        ("h2_conv", vec![64, 50, 9, 9]),
        ("h2", vec![64, 50, 4, 4]),
        ("Flat h2", vec![64, 800]),
        ("h3", vec![64, 128]),
        ("yhat_linear", vec![64, 10]),
    ];
    assert_eq!(s.net_shapes, shapes);
    assert!(text.contains("h2 shape: [64, 50, 4, 4]"), "{text}");
    assert!(text.contains("Flat h2 shape: [64, 800]"), "{text}");
    let (first, last) = s.first_last_loss;
    assert!(last < first * 0.8, "loss {first} -> {last}");
    assert!(s.initial_test_acc < 0.3, "{}", s.initial_test_acc);
    assert!(s.history[0].test_acc > 0.4, "{:?}", s.history);
    assert_plot(&text, &dir, "ch04_cnn_scratch_loss.png");
}

#[test]
fn cnn_gluon_learns_mnist() {
    use ch04_cnn_gluon as ex;
    let dir = temp_dir();
    let opts = ex::common::Options {
        out: dir.clone(),
        ..ex::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ex::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        s.layer_shapes,
        vec![
            vec![64, 20, 24, 24],
            vec![64, 20, 12, 12],
            vec![64, 50, 8, 8],
            vec![64, 50, 4, 4],
            vec![64, 800],
            vec![64, 512],
            vec![64, 10],
        ]
    );
    let (first, last) = s.first_last_loss;
    assert!(last < first / 2.0, "loss {first} -> {last}");
    assert!(s.initial_test_acc < 0.3, "{}", s.initial_test_acc);
    assert!(s.history[0].test_acc > 0.6, "{:?}", s.history);
    assert_plot(&text, &dir, "ch04_cnn_gluon_loss.png");
}

#[test]
fn alexnet_keeps_the_pattern_and_learns_fashion_mnist() {
    use ch04_deep_cnn_alexnet as ex;
    let dir = temp_dir();
    let opts = ex::common::Options {
        out: dir.clone(),
        ..ex::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ex::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Scaled for two CPU cores"), "{text}");
    assert!(text.contains("Fashion-MNIST"), "{text}");
    // Five convolutions, three poolings (28 -> 13 -> 6 -> 2), three dense layers.
    let [c1, c2, c3, c4, c5] = ex::CHANNELS;
    assert_eq!(
        s.layer_shapes,
        vec![
            vec![64, c1, 28, 28],
            vec![64, c1, 13, 13],
            vec![64, c2, 13, 13],
            vec![64, c2, 6, 6],
            vec![64, c3, 6, 6],
            vec![64, c4, 6, 6],
            vec![64, c5, 6, 6],
            vec![64, c5, 2, 2],
            vec![64, c5 * 4],
            vec![64, ex::DENSE],
            vec![64, ex::DENSE],
            vec![64, ex::DENSE],
            vec![64, ex::DENSE],
            vec![64, 10],
        ]
    );
    let (first, last) = s.first_last_loss;
    assert!(last < first * 0.9, "loss {first} -> {last}");
    assert!(s.history[0].test_acc > 0.2, "{:?}", s.history);
    assert_plot(&text, &dir, "ch04_deep_cnn_alexnet_loss.png");
}

#[test]
fn vgg_stacks_blocks_and_learns_mnist() {
    use ch04_vgg as ex;
    let dir = temp_dir();
    let opts = ex::common::Options {
        out: dir.clone(),
        ..ex::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ex::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Scaled for two CPU cores"), "{text}");
    assert_eq!(s.architecture, vec![(1, 8), (1, 16), (2, 32), (2, 64)]);
    assert_eq!(s.output_shape, vec![64, 10]);
    // Six 3x3 convolutions in four blocks, each block closed by a pooling.
    assert_eq!(count_layers(&text, "Conv2D"), 6, "{text}");
    assert_eq!(count_layers(&text, "MaxPool2D"), 4, "{text}");
    let (first, last) = s.first_last_loss;
    assert!(last < first * 0.9, "loss {first} -> {last}");
    assert!(s.history[0].test_acc > 0.2, "{:?}", s.history);
    assert_plot(&text, &dir, "ch04_vgg_loss.png");
}

#[test]
fn batch_norm_scratch_matches_the_book_and_learns() {
    use ch04_batch_norm_scratch as ex;
    let dir = temp_dir();
    let opts = ex::common::Options {
        out: dir.clone(),
        ..ex::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ex::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // The notebook's pure_batch_norm of [[1, 7], [5, 4], [6, 10]].
    let book = [
        -1.388_728_6,
        0.0,
        0.462_909_55,
        -1.224_743_8,
        0.925_819_1,
        1.224_743_8,
    ];
    for (a, e) in s.pure_2d.iter().zip(book) {
        assert!((a - e).abs() < 1e-4, "{:?}", s.pure_2d);
    }
    let (means, vars) = &s.pure_4d_stats;
    assert_eq!((means.len(), vars.len()), (3, 3));
    assert!(means.iter().all(|m| m.abs() < 1e-4), "{means:?}");
    assert!(vars.iter().all(|v| (v - 1.0).abs() < 1e-3), "{vars:?}");
    assert_eq!(s.bn1_moving_mean.len(), 20);
    assert!(s.bn1_moving_mean.iter().all(|m| m.is_finite()));
    let (first, last) = s.first_last_loss;
    assert!(last < first / 2.0, "loss {first} -> {last}");
    assert!(s.history[0].test_acc > 0.7, "{:?}", s.history);
    assert_plot(&text, &dir, "ch04_batch_norm_scratch_loss.png");
}

#[test]
fn batch_norm_scratch_rejects_other_ranks_and_needs_training_first() {
    use ch04_batch_norm_scratch as ex;
    use kiln::prelude::*;
    let x = nd::ones([2, 3, 4]).unwrap();
    let err = ex::pure_batch_norm(&x, &nd::ones([3]).unwrap(), &nd::zeros([3]).unwrap(), 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_norm") && err.contains("rank 3"),
        "{err}"
    );
    let moving = ex::MovingStats::default();
    let x = nd::array(&[[1.0f32, 2.0], [3.0, 6.0]]).unwrap();
    let (g, b) = (nd::ones([2]).unwrap(), nd::zeros([2]).unwrap());
    let err = ex::batch_norm(&x, &g, &b, &moving, "bn", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no moving statistics"), "{err}");
    // The first training call sets the moving statistics to the batch's; the next folds a
    // new batch in with momentum 0.9.
    ex::batch_norm(&x, &g, &b, &moving, "bn", true).unwrap();
    assert_eq!(moving.mean_of("bn").unwrap(), vec![2.0, 4.0]);
    let y = nd::array(&[[3.0f32, 4.0], [5.0, 8.0]]).unwrap();
    ex::batch_norm(&y, &g, &b, &moving, "bn", true).unwrap();
    let m = moving.mean_of("bn").unwrap();
    assert!(
        (m[0] - 2.2).abs() < 1e-6 && (m[1] - 4.2).abs() < 1e-6,
        "{m:?}"
    );
    // Testing normalizes with the moving statistics: mean 2.2, var 0.9 * 1 + 0.1 * 1 = 1.
    let t = ex::batch_norm(&x, &g, &b, &moving, "bn", false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        (t[0] - (1.0 - 2.2) / (1.0f32 + 1e-5).sqrt()).abs() < 1e-4,
        "{t:?}"
    );
}

#[test]
fn batch_norm_gluon_learns_mnist_and_keeps_running_stats() {
    use ch04_batch_norm_gluon as ex;
    let dir = temp_dir();
    let opts = ex::common::Options {
        out: dir.clone(),
        ..ex::common::Options::quick()
    };
    let mut out = Vec::new();
    let s = ex::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(count_layers(&text, "BatchNorm"), 3, "{text}");
    assert_eq!(count_layers(&text, "Conv2D"), 2, "{text}");
    // The running statistics moved from their initial zeros and ones while training.
    assert_eq!(s.bn0_running_mean.len(), 20);
    assert!(s.bn0_running_mean.iter().any(|m| m.abs() > 1e-3));
    assert!(s.bn0_running_var.iter().all(|v| *v > 0.0));
    assert!(s.bn0_running_var.iter().any(|v| (v - 1.0).abs() > 1e-3));
    let (first, last) = s.first_last_loss;
    assert!(last < first / 2.0, "loss {first} -> {last}");
    assert!(s.initial_test_acc < 0.3, "{}", s.initial_test_acc);
    assert!(s.history[0].test_acc > 0.7, "{:?}", s.history);
    assert_plot(&text, &dir, "ch04_batch_norm_gluon_loss.png");
}
