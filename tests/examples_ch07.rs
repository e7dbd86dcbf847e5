//! The hybridize examples run end to end under `--quick`: the tour (the README's first
//! command) trains the MLP imperatively and hybridized to the same accuracy, optimizes and
//! exports the graph and re-imports it with the same predictions; the chapter-7 notebook
//! gives identical imperative and hybridized outputs, prints the traced graph, imports its
//! export with the same predictions, and its custom `HybridBlock` runs the Rust forward only
//! while tracing. Timings are printed, never asserted.
//!
//! Each example keeps its logic in `run(&Options, &mut dyn Write)`, so the examples are
//! included here as modules and run in-process. kiln's random generator is process-wide, so
//! the two runs take a lock: each sees only its own draws.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/tour.rs"]
mod tour;

#[allow(dead_code)]
#[path = "../examples/ch07_hybridize.rs"]
mod ch07_hybridize;

use std::sync::Mutex;

static RNG: Mutex<()> = Mutex::new(());

/// `--quick` options of example module `$ex`, with output in a fresh temporary folder.
macro_rules! quick_opts {
    ($ex:ident) => {
        $ex::common::Options {
            out: tempfile::tempdir().unwrap().keep(),
            ..$ex::common::Options::quick()
        }
    };
}

#[test]
fn tour_trains_hybridizes_exports_and_imports() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let opts = quick_opts!(tour);
    let mut out = Vec::new();
    let s = tour::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();

    // Both epochs learn, and to the same accuracy: the same start, the same sample order and
    // the same gradients (within rounding).
    assert!(s.imperative.test_acc > 0.7, "{s:?}\n{text}");
    assert!(
        (s.imperative.test_acc - s.hybridized.test_acc).abs() <= 0.01,
        "{s:?}"
    );
    assert!(
        (s.imperative.loss - s.hybridized.loss).abs() <= 1e-3 * s.imperative.loss,
        "{s:?}"
    );
    assert!(s.speedup.is_finite() && s.speedup > 0.0, "{s:?}");
    // Traces: the training batch, the last smaller batch (4000 = 62 * 64 + 32) and the
    // scoring batch of 1000. Hits (counted right after training): the other 61 training
    // batches and the second of the two scoring batches.
    assert_eq!(s.traces_hits, (3, 61 + 1), "{s:?}");
    // The graph: input, 6 parameters and 3 dense layers with 2 ReLUs in some form.
    assert!(s.nodes.1 >= 10 && s.nodes.1 <= s.nodes.0, "{s:?}");
    assert!(s.kernels.1 >= 1 && s.kernels.1 <= s.kernels.0, "{s:?}");
    assert!(s.max_abs_diff <= tour::TOLERANCE, "{s:?}");
    assert_eq!(s.compared, 2000);

    for needle in [
        "imperative    ",
        "hybridized    ",
        "speedup       ",
        "Inference pass pipeline:",
        "The optimized graph:",
        "fully_connected",
        "differing predicted digits",
        "The imported model predicts what the model predicts.",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    assert!(opts.out.join("tour-mlp-graph.json").is_file());
    assert!(opts.out.join("tour-mlp.safetensors").is_file());
    std::fs::remove_dir_all(&opts.out).unwrap();
}

#[test]
fn ch07_hybridize_follows_the_notebook() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let opts = quick_opts!(ch07_hybridize);
    let mut out = Vec::new();
    let s = ch07_hybridize::run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();

    // The notebook: net(x) is the same before and after hybridize().
    assert_eq!(s.imperative.len(), 2);
    assert_eq!(s.imperative, s.hybridized);
    assert!(s.seconds.0 > 0.0 && s.seconds.1 > 0.0 && s.first_call > 0.0);
    // The graph holds the three dense layers and the data input.
    assert_eq!(
        s.graph_text.matches("fully_connected").count(),
        3,
        "{}",
        s.graph_text
    );
    assert!(s.graph_text.contains("data"), "{}", s.graph_text);
    assert_eq!(s.import_max_abs_diff, 0.0);
    // The custom block: the Rust forward runs on real arrays before hybridize(), on symbolic
    // ones once (the trace), and not at all on the cached 2nd call.
    let log = &s.custom_log;
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[0].starts_with("1st forward: type(x): NDArray"),
        "{log:?}"
    );
    assert!(
        log[1].starts_with("2nd forward: type(x): NDArray"),
        "{log:?}"
    );
    assert!(
        log[2].starts_with("1st forward: type(x): symbolic NDArray"),
        "{log:?}"
    );
    for needle in [
        "=== net(x) ===",
        "identical: yes",
        "Before hybridizing: ",
        "After hybridizing: ",
        "Speedup: ",
        "SymbolBlock::imports",
        "Nothing printed on the 2nd hybridized forward",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    assert!(opts.out.join("my_model-graph.json").is_file());
    std::fs::remove_dir_all(&opts.out).unwrap();
}
