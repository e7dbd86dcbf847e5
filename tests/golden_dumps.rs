//! Golden dumps: the optimized graphs of the chapter models (softmax regression, MLP, LeNet,
//! the batch-normalized CNN), in the IR's text form, as the default pipelines leave them
//! (fusion included): `tests/golden/<model>.<graph>.txt` for the `inference` graph and the
//! training `forward` and `backward` graphs.
//!
//! A refactor of the passes must not change these graphs without a reviewed update. When a
//! change is intended, regenerate the files and review the diff:
//!
//! ```text
//! KILN_BLESS=1 cargo test --test golden_dumps
//! git diff tests/golden
//! ```
//!
//! With `KILN_BLESS=1` the test writes the files instead of comparing (and passes).

#[path = "golden/models.rs"]
mod models;

use kiln::passes::Pipeline;
use models::{optimize, trace, MODELS};
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bless() -> bool {
    std::env::var("KILN_BLESS").is_ok_and(|v| v == "1")
}

/// Compares `text` with the golden file `name` (or writes it under `KILN_BLESS=1`); returns
/// a description of the mismatch.
fn check(name: &str, text: &str) -> Option<String> {
    let path = golden_dir().join(name);
    if bless() {
        std::fs::write(&path, text).expect("write the golden file");
        return None;
    }
    let want = match std::fs::read_to_string(&path) {
        Ok(w) => w,
        Err(e) => {
            return Some(format!(
                "{}: {e} (run with KILN_BLESS=1 to create it)",
                path.display()
            ))
        }
    };
    if want == text {
        return None;
    }
    let first = want
        .lines()
        .zip(text.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(want.lines().count().min(text.lines().count()));
    Some(format!(
        "{name} differs from the golden file at line {}:\n  golden: {:?}\n  now:    {:?}\n\
         (KILN_BLESS=1 cargo test --test golden_dumps rewrites it; review the diff)",
        first + 1,
        want.lines().nth(first).unwrap_or("<end>"),
        text.lines().nth(first).unwrap_or("<end>"),
    ))
}

fn check_model(index: usize) {
    let model = &MODELS[index];
    let c = trace(model).expect("the model traces");
    let mut failures = Vec::new();
    for (graph, g, pipeline) in [
        ("inference", &c.inference, Pipeline::Inference),
        ("forward", &c.forward, Pipeline::Training),
        ("backward", &c.backward, Pipeline::Training),
    ] {
        let optimized = optimize(g, pipeline, true).expect("the pipeline runs");
        let name = format!("{}.{graph}.txt", model.name);
        failures.extend(check(&name, &optimized.to_text()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn softmax_regression_graphs_match_the_golden_dumps() {
    check_model(0);
}

#[test]
fn mlp_graphs_match_the_golden_dumps() {
    check_model(1);
}

#[test]
fn lenet_graphs_match_the_golden_dumps() {
    check_model(2);
}

#[test]
fn bn_cnn_graphs_match_the_golden_dumps() {
    check_model(3);
}
