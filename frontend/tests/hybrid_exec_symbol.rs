//! Export and import: `export` writes a graph and its parameters, `SymbolBlock::imports`
//! runs them with no model code, gives gradients and can be fine-tuned with a `Trainer`;
//! corrupt, future-version and unknown-op files are clear errors.

use kiln_frontend::gluon::trainer::Trainer;
use kiln_frontend::gluon::{serialize, Block, Parameter, ParameterDict};
use kiln_frontend::hybrid::{export, BackendChoice, CachedGraph, HybridizeOptions, SymbolBlock};
use kiln_frontend::ndarray::apply;
use kiln_frontend::{autograd, nd, Context, GradReq, NDArray, Result};
use kiln_ir::{DType, Graph, Op, ReduceOp, TensorType, UnaryOp};
use std::path::Path;

fn param(name: &str, shape: &[usize], seed: usize) -> Parameter {
    let n: usize = shape.iter().product();
    let p = Parameter::new(name, shape.to_vec());
    let v: Vec<f32> = (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * 0.5)
        .collect();
    p.set_data(&NDArray::from_vec(v, shape.to_vec()).unwrap())
        .unwrap();
    p
}

/// `dense(relu(dense(x)))` on `[batch, 6]` inputs, 4 classes; returns the graph and params.
fn mlp(batch: usize) -> (Graph, ParameterDict) {
    let ps = [
        param("net0_dense0_weight", &[8, 6], 1),
        param("net0_dense0_bias", &[8], 2),
        param("net0_dense1_weight", &[4, 8], 3),
        param("net0_dense1_bias", &[4], 4),
    ];
    let mut g = Graph::new();
    let x = g
        .add_input("data", TensorType::new([batch, 6], DType::F32))
        .unwrap();
    let ids: Vec<_> = ps
        .iter()
        .map(|p| {
            g.add_param(p.name(), TensorType::new(p.shape(), DType::F32))
                .unwrap()
        })
        .collect();
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: false,
    };
    let h = g.add_op(fc.clone(), &[x, ids[0], ids[1]]).unwrap();
    let h = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[h]).unwrap();
    let y = g.add_op(fc, &[h, ids[2], ids[3]]).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let mut d = ParameterDict::new();
    for p in ps {
        d.insert(p).unwrap();
    }
    (g, d)
}

fn inputs(batch: usize) -> NDArray {
    let v: Vec<f32> = (0..batch * 6)
        .map(|i| ((i % 11) as f32 - 5.0) / 4.0)
        .collect();
    NDArray::from_vec(v, [batch, 6]).unwrap()
}

fn bits(a: &NDArray) -> Vec<u32> {
    a.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// Tests that draw from the global random generator hold this, so that one test reseeding
/// it does not change what another draws (tests run on parallel threads).
fn global_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn mean_loss(logits: &NDArray, labels: &NDArray) -> Result<NDArray> {
    apply(
        Op::Reduce {
            f: ReduceOp::Mean,
            axes: None,
            keepdims: false,
        },
        &[&apply(Op::SoftmaxCrossEntropy, &[logits, labels])?],
    )
}

#[test]
fn export_then_imports_runs_the_same_forward() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let (g, params) = mlp(5);
    let x = inputs(5);
    let reference = CachedGraph::new(
        g.clone(),
        vec!["data".into()],
        1,
        vec![],
        0,
        &HybridizeOptions::default(),
    )?
    .call(&[&x], &params)?;

    let prefix = dir.path().join("mlp");
    let (gf, pf) = export(&prefix, &g, &params)?;
    assert_eq!(gf, dir.path().join("mlp-graph.json"));
    assert_eq!(pf, dir.path().join("mlp.safetensors"));
    let text = std::fs::read_to_string(&gf).unwrap();
    assert!(text.contains("\"format\": \"kiln-graph\""));
    assert!(text.contains("\"version\": 1"));
    // The parameter file holds exactly the graph's parameters, by full name, in order.
    let stored: Vec<String> = serialize::load(&pf)?.into_iter().map(|(n, _)| n).collect();
    assert_eq!(stored, params.names());

    for backend in [BackendChoice::Cpu, BackendChoice::Interpreter] {
        let net = SymbolBlock::imports_with(
            &gf,
            &["data"],
            &pf,
            Context::cpu(),
            &HybridizeOptions {
                backend,
                ..Default::default()
            },
        )?;
        assert_eq!(net.input_names(), ["data"]);
        assert_eq!(net.collect_params()?.names(), params.names());
        let out = net.forward(&x)?;
        if backend == BackendChoice::Cpu {
            assert_eq!(bits(&out), bits(&reference[0]));
        } else {
            let (a, b) = (out.to_vec_f64(), reference[0].to_vec_f64());
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5));
        }
    }

    // Re-exporting the imported block gives the same files' contents.
    let net = SymbolBlock::imports(&gf, &["data"], &pf, Context::cpu())?;
    let (gf2, _) = net.export(dir.path().join("again"))?;
    assert_eq!(std::fs::read_to_string(gf2).unwrap(), text);
    Ok(())
}

#[test]
fn imported_block_fine_tunes_with_a_trainer() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let (g, params) = mlp(8);
    let (gf, pf) = export(&dir.path().join("m"), &g, &params)?;
    let net = SymbolBlock::imports(&gf, &["data"], &pf, Context::cpu())?;
    let x = inputs(8);
    let labels = nd::array(&[0.0f32, 1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 0.0])?;
    let block_params = net.collect_params()?;
    for p in block_params.iter() {
        assert_eq!(p.grad_req(), GradReq::Write);
    }
    let before = block_params
        .get("net0_dense0_weight")
        .unwrap()
        .data()?
        .copy()?;
    let mut trainer = Trainer::new(&block_params, "sgd", [("learning_rate", 0.5)])?;

    let first = autograd::pause(|| mean_loss(&net.forward(&x)?, &labels))?.as_scalar_f64()?;
    let mut last = first;
    for _ in 0..10 {
        let loss = autograd::record(|| mean_loss(&net.forward(&x)?, &labels))?;
        loss.backward()?;
        trainer.step(1)?;
        last = loss.as_scalar_f64()?;
    }
    let after_loss = autograd::pause(|| mean_loss(&net.forward(&x)?, &labels))?.as_scalar_f64()?;
    let after = block_params.get("net0_dense0_weight").unwrap().data()?;
    assert_ne!(bits(&before), bits(&after), "the weights changed");
    assert!(
        after_loss < first * 0.8,
        "loss {first} -> {after_loss} (last step {last})"
    );
    // The exported originals are untouched: imports copies the values.
    assert_eq!(
        bits(&params.get("net0_dense0_weight").unwrap().data()?),
        bits(&before)
    );
    assert_eq!(net.cached_graph().backward_plans(), 1);
    Ok(())
}

#[test]
fn imported_gradients_match_the_original_graph() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let (g, params) = mlp(3);
    let (gf, pf) = export(&dir.path().join("m"), &g, &params)?;
    let net = SymbolBlock::imports(&gf, &["data"], &pf, Context::cpu())?;
    let labels = nd::array(&[1.0f32, 0.0, 3.0])?;
    let x = inputs(3);
    let cached = CachedGraph::new(
        g,
        vec!["data".into()],
        1,
        vec![],
        0,
        &HybridizeOptions::default(),
    )?;
    autograd::record(|| mean_loss(&cached.call(&[&x], &params)?[0], &labels))?.backward()?;
    autograd::record(|| mean_loss(&net.forward(&x)?, &labels))?.backward()?;
    let imported = net.collect_params()?;
    for p in params.iter() {
        let q = imported.get(&p.name()).unwrap();
        assert_eq!(bits(&p.grad()?), bits(&q.grad()?), "{}", p.name());
    }
    Ok(())
}

#[test]
fn normalization_statistics_import_without_gradients() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Graph::new();
    let x = g.add_input("data", TensorType::new([2, 3], DType::F32))?;
    let names = [
        "bn0_gamma",
        "bn0_beta",
        "bn0_running_mean",
        "bn0_running_var",
    ];
    let mut ids = vec![x];
    let mut params = ParameterDict::new();
    for (i, n) in names.iter().enumerate() {
        ids.push(g.add_param(*n, TensorType::new([3], DType::F32))?);
        let p = param(n, &[3], i);
        if n.ends_with("var") {
            p.data()?.assign(&nd::array(&[1.0f32, 2.0, 0.5])?)?;
        }
        params.insert(p)?;
    }
    let y = g.add_op(
        Op::BatchNorm {
            eps: 1e-5,
            axis: 1,
            use_batch_stats: false,
        },
        &ids,
    )?;
    g.set_outputs(vec![y])?;
    let (gf, pf) = export(&dir.path().join("bn"), &g, &params)?;
    let net = SymbolBlock::imports(&gf, &["data"], &pf, Context::cpu())?;
    let reqs: Vec<GradReq> = net.collect_params()?.iter().map(|p| p.grad_req()).collect();
    assert_eq!(
        reqs,
        vec![GradReq::Write, GradReq::Write, GradReq::Null, GradReq::Null]
    );
    let xv = NDArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
    let want = apply(
        Op::BatchNorm {
            eps: 1e-5,
            axis: 1,
            use_batch_stats: false,
        },
        &[
            &xv,
            &params.get("bn0_gamma").unwrap().data()?,
            &params.get("bn0_beta").unwrap().data()?,
            &params.get("bn0_running_mean").unwrap().data()?,
            &params.get("bn0_running_var").unwrap().data()?,
        ],
    )?;
    assert_eq!(bits(&net.forward(&xv)?), bits(&want));
    Ok(())
}

#[test]
fn imported_dropout_draws_fresh_seeds_like_eager() -> Result<()> {
    let _rng = global_rng();
    let dir = tempfile::tempdir().unwrap();
    let mut g = Graph::new();
    let x = g.add_input("data", TensorType::new([64], DType::F32))?;
    let y = g.add_op(Op::Dropout { p: 0.5, seed: 0 }, &[x])?;
    g.set_outputs(vec![y])?;
    let (gf, pf) = export(&dir.path().join("drop"), &g, &ParameterDict::new())?;
    let net = SymbolBlock::imports(&gf, &["data"], &pf, Context::cpu())?;
    assert_eq!(net.cached_graph().seed_slots(), 1);
    let xv = nd::ones([64])?;
    kiln_frontend::random::seed(99);
    let a = net.forward(&xv)?;
    let b = net.forward(&xv)?;
    kiln_frontend::random::seed(99);
    let want = apply(
        Op::Dropout {
            p: 0.5,
            seed: kiln_frontend::random::next_seed(),
        },
        &[&xv],
    )?;
    assert_eq!(bits(&a), bits(&want));
    assert_ne!(bits(&a), bits(&b));
    Ok(())
}

// ----- errors -----------------------------------------------------------------------------

fn exported(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (g, params) = mlp(2);
    export(&dir.join("m"), &g, &params).unwrap()
}

fn imports(gf: &Path, pf: &Path) -> Result<SymbolBlock> {
    SymbolBlock::imports(gf, &["data"], pf, Context::cpu())
}

#[test]
fn corrupt_future_and_unknown_op_graph_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (gf, pf) = exported(dir.path());
    let text = std::fs::read_to_string(&gf).unwrap();
    let bad = dir.path().join("bad-graph.json");

    // Truncated mid-file.
    std::fs::write(&bad, &text[..text.len() / 2]).unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(
        e.contains("bad-graph.json") && e.contains("truncated"),
        "{e}"
    );

    // Not JSON at all.
    std::fs::write(&bad, b"\x00\x01garbage").unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(
        e.contains("bad-graph.json") && e.contains("graph JSON"),
        "{e}"
    );

    // Another format.
    std::fs::write(&bad, text.replace("kiln-graph", "onnx")).unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(
        e.contains("format is \"onnx\", expected \"kiln-graph\""),
        "{e}"
    );

    // A newer version.
    std::fs::write(&bad, text.replace("\"version\": 1", "\"version\": 7")).unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(
        e.contains("version 7 is newer than this kiln reads (version 1)"),
        "{e}"
    );

    // An op this kiln does not have.
    assert!(text.contains("\"f\":\"relu\""));
    std::fs::write(&bad, text.replace("\"f\":\"relu\"", "\"f\":\"gelu_v9\"")).unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(
        e.contains("node 6: unknown attribute value `gelu_v9` (the file may have been written by a newer kiln)"),
        "{e}"
    );
    std::fs::write(
        &bad,
        text.replace("\"op\":\"fully_connected\"", "\"op\":\"flash_attention\""),
    )
    .unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(
        e.contains(
            "node 5: unknown op `flash_attention` (the file may have been written by a newer kiln)"
        ),
        "{e}"
    );
    assert!(!e.contains("convolution"), "no list of every op: {e}");

    // A type that does not re-infer.
    std::fs::write(&bad, text.replace("[2,4]", "[2,5]")).unwrap();
    let e = err_text(imports(&bad, &pf));
    assert!(e.contains("bad-graph.json"), "{e}");

    // Missing file.
    let e = err_text(imports(&dir.path().join("nope-graph.json"), &pf));
    assert!(e.contains("nope-graph.json"), "{e}");
}

#[test]
fn parameter_files_that_do_not_fit_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let (gf, pf) = exported(dir.path());
    let bad = dir.path().join("bad.safetensors");

    // Corrupt bytes.
    let bytes = std::fs::read(&pf).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let e = err_text(imports(&gf, &bad));
    assert!(e.contains("not a valid safetensors file"), "{e}");

    // Missing, wrong-shaped and unexpected parameters, all listed at once.
    let (_, params) = mlp(2);
    let mut arrays: Vec<(String, NDArray)> = params
        .iter()
        .filter(|p| p.name() != "net0_dense1_bias")
        .map(|p| (p.name(), p.data().unwrap()))
        .collect();
    arrays[0].1 = nd::zeros([8, 5])?;
    arrays.push(("stray_weight".into(), nd::zeros([2])?));
    serialize::save_map(&bad, &arrays)?;
    let e = err_text(imports(&gf, &bad));
    assert!(e.contains("3 problems"), "{e}");
    assert!(e.contains("missing: net0_dense1_bias (f32[4])"), "{e}");
    assert!(
        e.contains(
            "wrong type: net0_dense0_weight: the file has f32[8,5], the graph uses f32[8,6]"
        ),
        "{e}"
    );
    assert!(e.contains("unexpected: stray_weight"), "{e}");

    // Input names that are not the graph's.
    let e = err_text(SymbolBlock::imports(&gf, &["x"], &pf, Context::cpu()));
    assert!(e.contains("\"x\" is not an input of the graph"), "{e}");
    Ok(())
}

#[test]
fn export_and_symbol_block_check_their_parameters() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let (g, params) = mlp(2);
    let mut partial = ParameterDict::new();
    partial.insert(params.get("net0_dense0_weight").unwrap().clone())?;
    partial.insert(Parameter::new("net0_dense0_bias", [8]))?;
    let e = err_text(export(&dir.path().join("m"), &g, &partial));
    assert!(
        e.contains("net0_dense0_bias") && e.contains("not initialized"),
        "{e}"
    );
    assert!(
        e.contains("net0_dense1_weight (f32[4,8]) is not among the given parameters"),
        "{e}"
    );
    assert!(!dir.path().join("m-graph.json").exists(), "nothing written");

    let e = err_text(SymbolBlock::new(g.clone(), &["data"], partial));
    assert!(
        e.contains("net0_dense1_weight (f32[4,8]) is missing"),
        "{e}"
    );

    // forward needs one input and one output.
    let mut two = g.clone();
    let out = two.outputs()[0];
    two.set_outputs(vec![out, out])?;
    let net = SymbolBlock::new(two, &["data"], params)?;
    let e = err_text(net.forward(&inputs(2)));
    assert!(
        e.contains("returns 2 output(s): use SymbolBlock::call"),
        "{e}"
    );
    assert_eq!(net.call(&[&inputs(2)])?.len(), 2);
    Ok(())
}

#[test]
fn an_imported_block_inside_a_hybridized_model_joins_its_trace() -> Result<()> {
    use kiln_frontend::gluon::init::Xavier;
    use kiln_frontend::gluon::nn::{Dense, HybridSequential};
    use kiln_frontend::gluon::HybridBlock;
    use std::sync::Arc;

    let _rng = global_rng();
    let dir = tempfile::tempdir().unwrap();
    let (gf, pf) = exported(dir.path());
    let net = HybridSequential::new();
    net.add(imports(&gf, &pf)?);
    net.add(Dense::new(2).in_units(4));
    net.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    let x = inputs(2);
    let labels = nd::array(&[0.0f32, 1.0])?;
    let params = net.collect_params()?;
    assert_eq!(params.len(), 6);

    // Imperative: the SymbolBlock runs its compiled graph, one tape node.
    let loss = autograd::record(|| mean_loss(&net.forward(&x)?, &labels))?;
    loss.backward()?;
    let want: Vec<NDArray> = params
        .iter()
        .map(|p| p.grad()?.copy())
        .collect::<Result<_>>()?;

    // Hybridized: the whole model is traced, the imported graph's ops inline.
    net.hybridize();
    let loss_h = autograd::record(|| mean_loss(&net.forward(&x)?, &labels))?;
    loss_h.backward()?;
    assert_eq!(net.cache_stats().traces, 1);
    let traced = net.hybrid_state().last_graph().expect("a traced graph");
    let fcs = traced
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(traced.op(id), Ok(Some(Op::FullyConnected { .. }))))
        .count();
    assert_eq!(
        fcs, 3,
        "two imported dense layers and the new one:\n{traced}"
    );
    let rel = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-3);
    assert!(rel(loss_h.as_scalar_f64()?, loss.as_scalar_f64()?));
    for (p, w) in params.iter().zip(&want) {
        let g = p.grad()?.to_vec_f64();
        for (a, b) in g.iter().zip(w.to_vec_f64()) {
            assert!(rel(*a, b), "{}: {a} vs {b}", p.name());
        }
    }
    Ok(())
}
