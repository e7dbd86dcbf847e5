//! Tracing on its own: a forward run on symbolic arrays records a graph whose parameters are
//! bound inputs, whose random ops carry seed placeholders and whose in-place parameter writes
//! are state updates; running that graph on the reference interpreter (`Graph::run`) gives
//! the eager results. Value reads inside a trace are clear errors.

use kiln_frontend::gluon::init::{Initializer, Normal, Zero};
use kiln_frontend::gluon::nn::{BatchNorm, Dense, Dropout};
use kiln_frontend::gluon::{Block, ParameterDict};
use kiln_frontend::hybrid::trace::{is_tracing, trace, Traced};
use kiln_frontend::{autograd, nd, Context, DType, NDArray, Result};
use kiln_ir::graph::NodeKind;
use kiln_ir::{Tensor, TensorType};
use std::sync::Arc;

/// The tests of this file share the global random generator: they run one at a time so that
/// seeding it makes their draws repeat.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn normal() -> Arc<dyn Initializer> {
    Arc::new(Normal::new(0.5))
}

fn input(seed: u64, shape: &[usize]) -> Result<NDArray> {
    kiln_frontend::random::seed(seed);
    nd::random::normal(0.0, 1.0, shape.to_vec())
}

/// Traces `block.forward` for inputs shaped like `x`.
fn trace_block(block: &dyn Block, x: &NDArray) -> Result<Traced> {
    let params = block.collect_params()?;
    trace(&[x.ty()], x.context(), &params, |xs| {
        Ok(vec![block.forward(&xs[0])?])
    })
}

/// Runs a traced graph on the interpreter, binding `x` as `data` and parameters by name.
fn run(t: &Traced, x: &NDArray, params: &ParameterDict) -> Result<Vec<Tensor>> {
    let mut owned: Vec<(String, Tensor)> = vec![(t.input_names[0].clone(), x.to_tensor())];
    for (name, _) in t.graph.params() {
        let p = params
            .get(name)
            .expect("every parameter node names a parameter");
        owned.push((name.to_string(), p.data()?.to_tensor()));
    }
    let views: Vec<(&str, kiln_ir::TensorView<'_>)> =
        owned.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    t.graph.run(&views)
}

fn assert_close(got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1.0);
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

#[test]
fn dense_parameters_become_named_param_nodes_not_constants() -> Result<()> {
    let _serial = serial();
    let dense = Dense::new(3).in_units(4);
    dense.initialize(normal(), Context::cpu())?;
    let x = input(1, &[2, 4])?;
    let t = trace_block(&dense, &x)?;
    let params: Vec<&str> = t.graph.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(params, vec!["dense0_weight", "dense0_bias"]);
    assert_eq!(t.input_names, vec!["data"]);
    assert_eq!((t.num_user_outputs, t.seed_slots), (1, 0));
    assert!(t.state_updates.is_empty());
    let consts = t
        .graph
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(t.graph.node(id).map(|n| &n.kind), Ok(NodeKind::Const(_))))
        .count();
    assert_eq!(consts, 0, "no weight may be baked in:\n{}", t.graph);
    assert!(!is_tracing());

    let all = dense.collect_params()?;
    let got = run(&t, &x, &all)?;
    let want = dense.forward(&x)?;
    // The interpreter sums in another order than the CPU GEMM: close, not bitwise.
    assert_close(&got[0].to_f64_vec(), &want.to_vec_f64(), 1e-6);

    // New weights: the same graph, no new trace, follows them.
    dense.weight().set_data(&nd::ones([3, 4])?)?;
    let got = run(&t, &x, &all)?;
    assert_close(&got[0].to_f64_vec(), &dense.forward(&x)?.to_vec_f64(), 1e-6);
    Ok(())
}

#[test]
fn symbolic_arrays_know_shape_dtype_and_print_without_values() -> Result<()> {
    let _serial = serial();
    let ty = TensorType::new([2, 3], DType::F32);
    let t = trace(&[ty], Context::cpu(), &ParameterDict::new(), |xs| {
        let x = &xs[0];
        assert!(x.is_symbolic());
        let y = x.sum_axes(&[1], false)?;
        assert_eq!(y.shape().dims(), &[2]);
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(format!("{y}"), "<symbolic NDArray 2 f32 @cpu(0)>");
        // Shape-dependent control flow traces fine.
        let z = if x.shape().dims()[1] == 3 {
            y.mul_scalar(2.0)?
        } else {
            y
        };
        Ok(vec![z])
    })?;
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
    let out = t.graph.run(&[("data", x.view())])?;
    assert_eq!(out[0].to_f64_vec(), vec![12.0, 30.0]);
    Ok(())
}

/// A value reader run inside a trace.
type Reader = Box<dyn Fn(&NDArray) -> Result<()>>;

#[test]
fn reading_values_while_tracing_is_a_clear_error() -> Result<()> {
    let _serial = serial();
    let ty = TensorType::new([2], DType::F32);
    let none = ParameterDict::new();
    let readers: Vec<(&str, Reader)> = vec![
        ("to_vec", Box::new(|x| x.to_vec::<f32>().map(|_| ()))),
        (
            "as_scalar",
            Box::new(|x| x.sum()?.as_scalar::<f32>().map(|_| ())),
        ),
        (
            "with_view",
            Box::new(|x| {
                x.with_view(|v| v.shape.numel())?;
                Ok(())
            }),
        ),
        (
            "to_vec_f64",
            Box::new(|x| {
                x.to_vec_f64();
                Ok(())
            }),
        ),
        (
            "to_tensor",
            Box::new(|x| {
                x.to_tensor();
                Ok(())
            }),
        ),
    ];
    for (op, read) in readers {
        let err = trace(std::slice::from_ref(&ty), Context::cpu(), &none, |xs| {
            read(&xs[0])?;
            Ok(vec![xs[0].clone()])
        })
        .expect_err("a value read must fail the trace");
        let msg = err.to_string();
        assert!(
            msg.contains("cannot read values while tracing"),
            "{op}: {msg}"
        );
        assert!(msg.contains(op), "{op}: {msg}");
        assert!(msg.contains("ops"), "says what to use instead: {msg}");
        assert!(!is_tracing(), "the flag is cleared after a failed trace");
    }
    // Eager mode is untouched afterwards.
    assert_eq!(nd::array(&[1.0f32, 2.0])?.to_vec::<f32>()?, vec![1.0, 2.0]);
    Ok(())
}

#[test]
fn in_place_writes_other_than_parameter_updates_are_errors() -> Result<()> {
    let _serial = serial();
    let ty = TensorType::new([2], DType::F32);
    let none = ParameterDict::new();
    let buffer = nd::zeros([2])?;
    let err = trace(std::slice::from_ref(&ty), Context::cpu(), &none, |xs| {
        buffer.assign(&xs[0])?;
        Ok(vec![xs[0].clone()])
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("only a block's parameters"),
        "{err}"
    );
    let err = trace(std::slice::from_ref(&ty), Context::cpu(), &none, |xs| {
        let y = xs[0].relu()?;
        y.add_scalar_assign_(1.0)?;
        Ok(vec![y])
    })
    .unwrap_err();
    assert!(err.to_string().contains("compute a new array"), "{err}");
    let err = trace(&[ty], Context::cpu(), &none, |xs| {
        let y = xs[0].relu()?;
        y.set(&[kiln_frontend::SliceArg::Index(0)], 1.0)?;
        Ok(vec![y])
    })
    .unwrap_err();
    assert!(err.to_string().contains("indexed in-place writes"), "{err}");
    assert_eq!(
        buffer.to_vec::<f32>()?,
        vec![0.0, 0.0],
        "nothing was written"
    );
    Ok(())
}

#[test]
fn symbolic_values_do_not_outlive_their_trace() -> Result<()> {
    let _serial = serial();
    let ty = TensorType::new([2], DType::F32);
    let mut kept = None;
    trace(&[ty], Context::cpu(), &ParameterDict::new(), |xs| {
        kept = Some(xs[0].clone());
        Ok(vec![xs[0].relu()?])
    })?;
    let kept = kept.expect("kept");
    let err = kept.relu().unwrap_err();
    assert!(err.to_string().contains("trace that has ended"), "{err}");
    assert!(kept.to_vec::<f32>().is_err());
    Ok(())
}

#[test]
fn random_ops_get_seed_slots_and_tracing_draws_no_seed() -> Result<()> {
    let _serial = serial();
    let ty = TensorType::new([4, 5], DType::F32);
    kiln_frontend::random::seed(9);
    let t = autograd::train_mode(|| {
        trace(&[ty], Context::cpu(), &ParameterDict::new(), |xs| {
            let a = xs[0].dropout(0.5)?;
            let b = nd::random::uniform(0.0, 1.0, [4, 5])?;
            Ok(vec![a.add(&b)?.dropout(0.3)?])
        })
    })?;
    assert_eq!(t.seed_slots, 3);
    let mut seeds: Vec<u64> = t
        .graph
        .topo_order()
        .into_iter()
        .filter_map(|id| match t.graph.op(id).ok().flatten() {
            Some(kiln_ir::Op::Dropout { seed, .. }) => Some(*seed),
            Some(kiln_ir::Op::RandomUniform { seed, .. }) => Some(*seed),
            _ => None,
        })
        .collect();
    seeds.sort_unstable();
    assert_eq!(seeds, vec![0, 1, 2]);
    // The generator did not move while tracing.
    let after = kiln_frontend::random::next_seed();
    kiln_frontend::random::seed(9);
    assert_eq!(after, kiln_frontend::random::next_seed());

    // Predict mode: dropout is the identity and leaves no random op.
    let ty = TensorType::new([4, 5], DType::F32);
    let drop = Dropout::new(0.5)?;
    let t = trace(&[ty], Context::cpu(), &ParameterDict::new(), |xs| {
        Ok(vec![drop.forward(&xs[0])?])
    })?;
    assert_eq!(t.seed_slots, 0);
    assert_eq!(
        t.graph.outputs(),
        &[t.graph.input_id("data").expect("data")]
    );
    Ok(())
}

#[test]
fn batchnorm_running_statistics_become_state_updates() -> Result<()> {
    let _serial = serial();
    let bn = BatchNorm::new().in_channels(3);
    bn.initialize(Arc::new(Zero), Context::cpu())?;
    let x = input(3, &[4, 3, 2])?;
    let t = autograd::train_mode(|| trace_block(&bn, &x))?;
    let names: Vec<&str> = t.state_updates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["batchnorm0_running_mean", "batchnorm0_running_var"]
    );
    assert_eq!(t.num_user_outputs, 1);
    assert_eq!(t.graph.outputs().len(), 3);
    // Tracing wrote nothing.
    assert_eq!(bn.running_mean().data()?.to_vec_f64(), vec![0.0; 3]);

    let params = bn.collect_params()?;
    let got = run(&t, &x, &params)?;
    let want = autograd::train_mode(|| bn.forward(&x))?;
    assert_close(&got[0].to_f64_vec(), &want.to_vec_f64(), 1e-6);
    let mean = bn.running_mean().data()?.to_vec_f64();
    let var = bn.running_var().data()?.to_vec_f64();
    assert_close(&got[t.state_updates[0].1].to_f64_vec(), &mean, 1e-6);
    assert_close(&got[t.state_updates[1].1].to_f64_vec(), &var, 1e-6);
    assert!(mean.iter().any(|m| *m != 0.0));

    // Predict mode: no state updates.
    let t = autograd::predict_mode(|| trace_block(&bn, &x))?;
    assert!(t.state_updates.is_empty());
    Ok(())
}

#[test]
fn concrete_arrays_met_while_tracing_become_constants_once() -> Result<()> {
    let _serial = serial();
    let c = nd::array(&[1.0f32, 10.0])?;
    let ty = TensorType::new([2], DType::F32);
    let t = trace(&[ty], Context::cpu(), &ParameterDict::new(), |xs| {
        Ok(vec![xs[0].mul(&c)?.add(&c)?])
    })?;
    let consts = t
        .graph
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(t.graph.node(id).map(|n| &n.kind), Ok(NodeKind::Const(_))))
        .count();
    assert_eq!(consts, 1);
    let x = Tensor::from_vec(vec![2.0f32, 3.0], [2])?;
    let out = t.graph.run(&[("data", x.view())])?;
    assert_eq!(out[0].to_f64_vec(), vec![3.0, 40.0]);
    Ok(())
}

#[test]
fn a_trace_cannot_start_inside_a_trace() -> Result<()> {
    let _serial = serial();
    let ty = TensorType::new([2], DType::F32);
    let none = ParameterDict::new();
    let err = trace(std::slice::from_ref(&ty), Context::cpu(), &none, |xs| {
        trace(std::slice::from_ref(&ty), Context::cpu(), &none, |ys| {
            Ok(vec![ys[0].clone()])
        })?;
        Ok(vec![xs[0].clone()])
    })
    .unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    assert!(!is_tracing());
    Ok(())
}
