//! The `kiln` binary: `show`, `passes` and `run` on small exported graphs, checked against
//! the reference interpreter; `.npy` round trips and error cases; usage errors.

use kiln::cli::npy;
use kiln::frontend::gluon::serialize;
use kiln::ir::{BinaryOp, DType, Graph, Op, Tensor, TensorType, UnaryOp};
use kiln::{Context, NDArray};
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

/// `y = relu(fc(x, w, b)) + exp(fc) + exp(fc)` (a duplicate for cse) and `fc` itself.
fn mlp_graph() -> Graph {
    let mut g = Graph::new();
    let x = g
        .add_input("x", TensorType::new([2, 3], DType::F32))
        .unwrap();
    let w = g
        .add_param("w", TensorType::new([4, 3], DType::F32))
        .unwrap();
    let b = g.add_param("b", TensorType::new([4], DType::F32)).unwrap();
    let fc = g
        .add_op(
            Op::FullyConnected {
                flatten: true,
                no_bias: false,
            },
            &[x, w, b],
        )
        .unwrap();
    let r = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[fc]).unwrap();
    let e1 = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[fc]).unwrap();
    let e2 = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[fc]).unwrap();
    let s = g.add_op(Op::Binary { f: BinaryOp::Add }, &[r, e1]).unwrap();
    let y = g.add_op(Op::Binary { f: BinaryOp::Add }, &[s, e2]).unwrap();
    g.set_outputs(vec![y, fc]).unwrap();
    g
}

fn w_value() -> Tensor {
    let v: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.1).collect();
    Tensor::from_vec(v, [4, 3]).unwrap()
}

fn b_value() -> Tensor {
    Tensor::from_vec(vec![0.1f32, -0.2, 0.3, 0.0], [4]).unwrap()
}

fn x_value() -> Tensor {
    Tensor::from_vec(vec![1.0f32, -2.0, 0.5, 0.25, 3.0, -1.0], [2, 3]).unwrap()
}

/// Writes `{dir}/mlp-graph.json` and `{dir}/mlp.safetensors`; returns the graph path.
fn export_mlp(dir: &Path) -> PathBuf {
    let graph = dir.join("mlp-graph.json");
    mlp_graph().save_json(&graph).unwrap();
    let params = [
        ("w", NDArray::from_tensor(w_value(), Context::cpu())),
        ("b", NDArray::from_tensor(b_value(), Context::cpu())),
    ];
    serialize::save_map(dir.join("mlp.safetensors"), &params).unwrap();
    graph
}

fn reference() -> Vec<Tensor> {
    let (x, w, b) = (x_value(), w_value(), b_value());
    mlp_graph()
        .run(&[("x", x.view()), ("w", w.view()), ("b", b.view())])
        .unwrap()
}

fn assert_close(got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.ty(), want.ty());
    for (a, b) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }
}

#[test]
fn show_prints_text_types_and_op_counts() {
    let dir = tempfile::tempdir().unwrap();
    let graph = export_mlp(dir.path());
    let dot = dir.path().join("g.dot");
    let out = kiln(&[
        "show",
        graph.to_str().unwrap(),
        "--dot",
        dot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("input \"x\" : f32[2,3]"), "{s}");
    assert!(s.contains("inputs (1):\n  x: f32[2,3]"), "{s}");
    assert!(s.contains("params (2):\n  w: f32[4,3]\n  b: f32[4]"), "{s}");
    assert!(s.contains("outputs (2):\n  0: f32[2,4]"), "{s}");
    assert!(
        s.contains("nodes: 9 (3 bindings, 0 constants, 6 ops)"),
        "{s}"
    );
    let counts: Vec<(String, usize)> = s
        .lines()
        .skip_while(|l| !l.starts_with("nodes:"))
        .skip(1)
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.first().map(|c| c.1), Some(2));
    assert_eq!(counts.iter().map(|c| c.1).sum::<usize>(), 6);
    assert_eq!(counts.len(), 4);
    let d = std::fs::read_to_string(dot).unwrap();
    assert!(d.starts_with("digraph"), "{d}");
}

#[test]
fn passes_prints_optimized_graph_stats_dumps_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let graph = export_mlp(dir.path());
    let dumps = dir.path().join("dumps");
    let json = dir.path().join("opt.json");
    let out = kiln(&[
        "passes",
        graph.to_str().unwrap(),
        "--stats",
        "--print-after",
        "cse",
        "--dot",
        dumps.to_str().unwrap(),
        "--output",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    // cse merged the two exps: 9 nodes -> 8.
    assert_eq!(s.matches("= exp(").count(), 1, "{s}");
    let cse_row = s.lines().find(|l| l.starts_with("cse ")).unwrap();
    assert!(cse_row.contains("9 -> 8"), "{cse_row}");
    assert!(text(&out.stderr).contains("--- after cse ---"));
    let mut files: Vec<String> = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dot"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "00-input.dot",
            "01-simplify.dot",
            "02-fold.dot",
            "03-cse.dot",
            "04-dce.dot",
            "05-fuse.dot",
            "06-plan_memory.dot"
        ]
    );
    // fuse made relu, exp and the two adds one kernel: x, w, b, fc, fused.
    let opt = Graph::load_json(&json).unwrap();
    assert_eq!(opt.len(), 5);
    let (x, w, b) = (x_value(), w_value(), b_value());
    let got = opt
        .run(&[("x", x.view()), ("w", w.view()), ("b", b.view())])
        .unwrap();
    for (g, r) in got.iter().zip(reference()) {
        assert_close(g, &r, 1e-6);
    }

    // With cse disabled the duplicate stays.
    let out = kiln(&["passes", graph.to_str().unwrap(), "--disable", "cse"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("= exp(").count(), 2);

    // Unknown pass names are errors naming the pass.
    let out = kiln(&["passes", graph.to_str().unwrap(), "--disable", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    let out = kiln(&["passes", graph.to_str().unwrap(), "--print-after", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such pass"));
}

#[test]
fn run_matches_the_interpreter_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let graph = export_mlp(dir.path());
    let xin = dir.path().join("x.npy");
    npy::write(&xin, &x_value()).unwrap();
    let want = reference();
    for backend in ["cpu", "interp"] {
        let out_file = dir.path().join(format!("y-{backend}.npy"));
        let input = format!("x={}", xin.display());
        let out = kiln(&[
            "run",
            graph.to_str().unwrap(),
            "--input",
            &input,
            "--output",
            out_file.to_str().unwrap(),
            "--backend",
            backend,
            "--repeat",
            "2",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_close(&npy::read(&out_file).unwrap(), &want[0], 1e-5);
    }
    // All outputs to a directory, explicit params, no passes, profile table.
    let outdir = dir.path().join("outs");
    let params = dir.path().join("mlp.safetensors");
    let input = format!("x={}", xin.display());
    let out = kiln(&[
        "run",
        graph.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "-i",
        &input,
        "--output-dir",
        outdir.to_str().unwrap(),
        "--passes",
        "none",
        "--profile",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (i, w) in want.iter().enumerate() {
        let got = npy::read(outdir.join(format!("output{i}.npy"))).unwrap();
        assert_close(&got, w, 1e-5);
    }
    let s = text(&out.stdout);
    let exp_row = s.lines().find(|l| l.starts_with("exp ")).unwrap();
    assert_eq!(exp_row.split_whitespace().nth(1), Some("2"), "{s}");
    assert!(s.lines().any(|l| l.starts_with("total")), "{s}");
}

#[test]
fn run_with_random_inputs_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let graph = export_mlp(dir.path());
    let run = |seed: &str, name: &str| {
        let f = dir.path().join(name);
        let out = kiln(&[
            "run",
            graph.to_str().unwrap(),
            "--random-inputs",
            "--seed",
            seed,
            "-o",
            f.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        npy::read(f).unwrap()
    };
    let a = run("3", "a.npy");
    assert_eq!(a, run("3", "b.npy"));
    assert_ne!(a, run("4", "c.npy"));
    assert_eq!(a.ty(), TensorType::new([2, 4], DType::F32));
}

#[test]
fn run_reports_bad_inputs_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let graph = export_mlp(dir.path());
    let g = graph.to_str().unwrap();
    let write = |name: &str, t: &Tensor| {
        let p = dir.path().join(name);
        npy::write(&p, t).unwrap();
        p.display().to_string()
    };
    let fail = |args: &[&str]| {
        let out = kiln(args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        text(&out.stderr)
    };
    let x = write("x.npy", &x_value());
    let e = fail(&["run", g, "--input", &format!("z={x}")]);
    assert!(
        e.contains("no input \"z\"") && e.contains("inputs: x"),
        "{e}"
    );
    let e = fail(&["run", g]);
    assert!(e.contains("missing input(s) x (f32[2,3])"), "{e}");
    let wrong = write("w.npy", &Tensor::zeros([3, 2], DType::F32));
    let e = fail(&["run", g, "--input", &format!("x={wrong}")]);
    assert!(
        e.contains("expects f32[2,3]") && e.contains("f32[3,2]"),
        "{e}"
    );
    let ints = write("i.npy", &Tensor::zeros([2, 3], DType::I32));
    let e = fail(&["run", g, "--input", &format!("x={ints}")]);
    assert!(e.contains("i32[2,3]"), "{e}");
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'").unwrap();
    let e = fail(&["run", g, "--input", &format!("x={}", bad.display())]);
    assert!(e.contains("npy") && e.contains("ends inside"), "{e}");
    let e = fail(&[
        "run",
        g,
        "--params",
        "/nonexistent/p.safetensors",
        "--random-inputs",
    ]);
    assert!(e.contains("p.safetensors"), "{e}");

    // An f64 array for an f32 input is converted (with a note), and gives the same result.
    let x64 = write("x64.npy", &x_value().cast(DType::F64));
    let y = dir.path().join("y.npy");
    let out = kiln(&[
        "run",
        g,
        "-i",
        &format!("x={x64}"),
        "-o",
        y.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("converting"));
    assert_close(&npy::read(&y).unwrap(), &reference()[0], 1e-5);
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["show"][..],
        &["run", "g.json", "--backend", "gpu"][..],
        &["run", "g.json", "--input", "novalue"][..],
        &["run", "g.json", "--repeat", "0"][..],
        &["run", "g.json", "-o", "a.npy", "--output-dir", "d"][..],
    ] {
        let out = kiln(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = text(&out.stderr);
        assert!(e.contains("Usage") || e.contains("--help"), "{args:?}: {e}");
    }
    let out = kiln(&["show", "/nonexistent/x-graph.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("x-graph.json"));
}

#[test]
fn npy_files_round_trip_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    for t in [
        Tensor::from_vec(vec![1.0f64, 2.0, -3.5], [3, 1]).unwrap(),
        Tensor::from_vec(vec![7i64, -8], [2]).unwrap(),
        Tensor::from_vec(vec![1u8, 2, 3, 4], [2, 2]).unwrap(),
    ] {
        let p = dir.path().join("t.npy");
        npy::write(&p, &t).unwrap();
        assert_eq!(npy::read(&p).unwrap(), t);
    }
    let e = npy::read(dir.path().join("missing.npy"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.npy"), "{e}");
}

#[test]
fn run_on_a_hybrid_export_matches_symbol_block() {
    use kiln::frontend::gluon::{Parameter, ParameterDict};
    use kiln::frontend::hybrid::{export, SymbolBlock};
    let dir = tempfile::tempdir().unwrap();
    let mut g = Graph::new();
    let x = g
        .add_input("data", TensorType::new([3, 5], DType::F32))
        .unwrap();
    let mut d = ParameterDict::new();
    let mut ids = Vec::new();
    for (i, (name, shape)) in [("d0_weight", vec![2, 5]), ("d0_bias", vec![2])]
        .into_iter()
        .enumerate()
    {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|k| ((k * 3 + i) % 7) as f32 * 0.2 - 0.5)
            .collect();
        let p = Parameter::new(name, shape.clone());
        p.set_data(&NDArray::from_vec(v, shape.clone()).unwrap())
            .unwrap();
        ids.push(
            g.add_param(name, TensorType::new(shape, DType::F32))
                .unwrap(),
        );
        d.insert(p).unwrap();
    }
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: false,
    };
    let h = g.add_op(fc, &[x, ids[0], ids[1]]).unwrap();
    let y = g.add_op(Op::Unary { f: UnaryOp::Tanh }, &[h]).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let (gf, pf) = export(&dir.path().join("net"), &g, &d).unwrap();

    let xv: Vec<f32> = (0..15).map(|i| (i as f32 - 7.0) / 5.0).collect();
    let xt = Tensor::from_vec(xv.clone(), [3, 5]).unwrap();
    let xin = dir.path().join("data.npy");
    npy::write(&xin, &xt).unwrap();
    let yout = dir.path().join("y.npy");
    let out = kiln(&[
        "run",
        gf.to_str().unwrap(),
        "--input",
        &format!("data={}", xin.display()),
        "-o",
        yout.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = npy::read(&yout).unwrap();

    let net = SymbolBlock::imports(&gf, &["data"], &pf, Context::cpu()).unwrap();
    let want = net
        .call(&[&NDArray::from_vec(xv, [3, 5]).unwrap()])
        .unwrap();
    assert_close(&got, &want[0].to_tensor(), 1e-5);
}
