//! The `kiln` binary on MXNet models (`tests/fixtures/mxnet`, exported by MXNet 1.9.1):
//! `run` matches MXNet's outputs, `show`/`passes` accept symbol files, `convert` writes
//! kiln's format; bad input names and shapes are clear errors.

use kiln::cli::npy;
use kiln::ir::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mxnet")
        .join(name)
        .display()
        .to_string()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "kiln failed:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_close(got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape());
    let d = got
        .to_f64_vec()
        .iter()
        .zip(want.to_f64_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d <= 1e-4, "max difference {d}");
}

#[test]
fn run_an_mxnet_model_on_npy_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("y.npy");
    let o = kiln(&[
        "run",
        &fixture("mlp-symbol.json"),
        "--params",
        &fixture("mlp-0000.params"),
        "--input",
        &format!("data={}", fixture("mlp-input0.npy")),
        "--output",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    assert_close(
        &npy::read(&out).unwrap(),
        &npy::read(fixture("mlp-output0.npy")).unwrap(),
    );
}

#[test]
fn run_writes_every_output_with_default_params() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("outs");
    // The .params file is found beside the symbol; the interpreter backend.
    let o = kiln(&[
        "run",
        &fixture("scalar_ops-symbol.json"),
        "--input",
        &format!("data0={}", fixture("scalar_ops-input0.npy")),
        "--input",
        &format!("data1={}", fixture("scalar_ops-input1.npy")),
        "--output-dir",
        dir.to_str().unwrap(),
        "--backend",
        "interp",
    ]);
    ok(&o);
    for i in 0..6 {
        assert_close(
            &npy::read(dir.join(format!("output{i}.npy"))).unwrap(),
            &npy::read(fixture(&format!("scalar_ops-output{i}.npy"))).unwrap(),
        );
    }
}

#[test]
fn show_and_passes_accept_symbol_files() {
    let o = kiln(&[
        "show",
        &fixture("lenet-symbol.json"),
        "--shape",
        "data=2,1,14,14",
    ]);
    ok(&o);
    let s = text(&o.stdout);
    assert!(s.contains("convolution"), "{s}");
    assert!(s.contains("batch_norm"), "{s}");
    assert!(s.contains("data: f32[2,1,14,14]"), "{s}");

    let o = kiln(&[
        "passes",
        &fixture("lenet-symbol.json"),
        "--shape",
        "data=2,1,14,14",
        "--inference",
        "--stats",
    ]);
    ok(&o);
    assert!(text(&o.stdout).contains("return"), "{}", text(&o.stdout));
}

#[test]
fn convert_writes_kilns_format() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("lstm");
    let o = kiln(&[
        "convert",
        &fixture("lstm-symbol.json"),
        "--shape",
        "data=5,2,4",
        "--out",
        prefix.to_str().unwrap(),
    ]);
    ok(&o);
    let graph = tmp.path().join("lstm-graph.json");
    assert!(graph.exists() && tmp.path().join("lstm.safetensors").exists());
    let out = tmp.path().join("y.npy");
    let o = kiln(&[
        "run",
        graph.to_str().unwrap(),
        "--input",
        &format!("data={}", fixture("lstm-input0.npy")),
        "--output",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    assert_close(
        &npy::read(&out).unwrap(),
        &npy::read(fixture("lstm-output0.npy")).unwrap(),
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                fixture("mlp-symbol.json"),
                "--input".into(),
                format!("nope={}", fixture("mlp-input0.npy")),
            ],
            "the symbol has no input \"nope\"",
        ),
        (
            vec![
                "run".into(),
                fixture("lenet-symbol.json"),
                "--input".into(),
                format!("data={}", fixture("mlp-input0.npy")),
            ],
            "Convolution",
        ),
        (
            vec!["show".into(), fixture("mlp-symbol.json")],
            "--shape NAME=",
        ),
        (
            vec![
                "show".into(),
                fixture("mlp-symbol.json"),
                "--shape".into(),
                "data=3,8".into(),
                "--params".into(),
                fixture("lenet-0000.params"),
            ],
            "missing from the parameters",
        ),
        (
            vec![
                "convert".into(),
                fixture("manifest.json"),
                "--out".into(),
                "x".into(),
            ],
            "not an MXNet symbol file",
        ),
    ];
    for (args, want) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = kiln(&refs);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = text(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err} (wanted {want:?})");
    }
}
