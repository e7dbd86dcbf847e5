//! The pass pipeline on the chapter models' traced graphs, and what the memory plan saves
//! when the executor follows it. JSON lines.
//!
//! `cargo bench --bench passes [-- --quick]` traces one training step of
//! - `mlp`: `Dense(256, relu)-Dense(256, relu)-Dense(10)` on `[64, 784]`,
//! - `lenet`: `Conv2D(20, 5, relu)-MaxPool2D(2, 2)-Conv2D(50, 5, relu)-MaxPool2D(2, 2)-Flatten-
//!   Dense(512, relu)-Dense(10)` on `[64, 1, 28, 28]`,
//!
//! each followed by `SoftmaxCrossEntropyLoss`, differentiates it with respect to the
//! parameters (a forward graph that also returns the saved activations, and a backward
//! graph), and for each of the two graphs prints one line with the training pipeline's
//! median time per pass and in all, nodes and kernels before and after, and the memory plan
//! (planned peak bytes against one buffer per value):
//!
//! ```text
//! {"bench":"passes","model":"mlp","graph":"backward","pipeline_ms":...,"pass_ms":{...},"peak_bytes":...,...}
//! ```
//!
//! Then one line per model and executor setting runs the optimized forward and backward
//! graphs on the CPU backend as a training step, with buffer recycling off and on, counting
//! heap allocations and bytes per step (a counting global allocator) and timing the median
//! step; it checks that the gradients are bitwise the same either way:
//!
//! ```text
//! {"bench":"executor","model":"mlp","reuse":true,"allocs_per_step":...,"alloc_bytes_per_step":...,"ms_per_step":...}
//! ```
//!
//! Last, the hybridized training step on the Cranelift backend with each optional pass of
//! the training pipeline turned off in turn (`"off":"all"` is `KILN_PASSES=none`, `"none"`
//! the full pipeline): kernels of the forward and backward graphs, the median step time, and
//! the largest gradient difference from the full pipeline, relative to the gradient's
//! largest magnitude. The full pipeline runs first and again last, which shows the noise:
//!
//! ```text
//! {"bench":"pass_off","model":"mlp","off":"fuse","kernels_forward":...,"kernels_backward":...,"ms_per_step":...,"grad_rel_diff":...}
//! ```

use kiln::gluon::init::{FactorType, RandType, Xavier};
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::{ActivationKind, Conv2D, Dense, Flatten, MaxPool2D, Sequential};
use kiln::gluon::Block;
use kiln::hybrid::trace::trace;
use kiln::hybrid::{BackendChoice, Executor};
use kiln::ir::{Graph, Tensor, TensorType};
use kiln::passes::memory::plan;
use kiln::passes::{differentiate, PassManager, Pipeline};
use kiln::prelude::*;
use serde_json::{json, Map, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counts heap allocations (and their bytes) made through the global allocator.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 64;

fn build(model: &str) -> Sequential {
    let net = Sequential::new();
    net.name_scope(|| {
        if model == "mlp" {
            net.add(Dense::new(256).activation(ActivationKind::Relu));
            net.add(Dense::new(256).activation(ActivationKind::Relu));
            net.add(Dense::new(10));
        } else {
            net.add(Conv2D::new(20, 5).activation(ActivationKind::Relu));
            net.add(MaxPool2D::new(2).strides(2));
            net.add(Conv2D::new(50, 5).activation(ActivationKind::Relu));
            net.add(MaxPool2D::new(2).strides(2));
            net.add(Flatten::new());
            net.add(Dense::new(512).activation(ActivationKind::Relu));
            net.add(Dense::new(10));
        }
    });
    net
}

/// A model's traced training step, differentiated: (forward with saved values, number of
/// user outputs, backward, parameter values by name, a batch by input name).
struct Step {
    forward: Graph,
    num_outputs: usize,
    backward: Graph,
    seed_slots: usize,
    values: HashMap<String, Tensor>,
}

fn traced_step(model: &str) -> Result<Step> {
    kiln::random::seed(1);
    let net = build(model);
    net.initialize(
        Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24)),
        Context::cpu(),
    )?;
    let dims: Vec<usize> = if model == "mlp" {
        vec![BATCH, 784]
    } else {
        vec![BATCH, 1, 28, 28]
    };
    let x = nd::random::uniform(0.0, 1.0, dims.clone())?;
    let labels: Vec<f32> = (0..BATCH).map(|i| (i * 7 % 10) as f32).collect();
    let y = NDArray::from_tensor(Tensor::from_vec(labels, [BATCH])?, Context::cpu());
    net.forward(&x)?; // deferred initialization
    let params = net.collect_params()?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let traced = trace(&[x.ty(), y.ty()], Context::cpu(), &params, |xs| {
        Ok(vec![loss_fn.forward(&net.forward(&xs[0])?, &xs[1])?])
    })?;
    let mut values = HashMap::new();
    values.insert(traced.input_names[0].clone(), x.to_tensor());
    values.insert(traced.input_names[1].clone(), y.to_tensor());
    let wrt: Vec<String> = traced
        .graph
        .params()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    for name in &wrt {
        let p = params
            .get(name)
            .ok_or_else(|| Error::Graph(format!("no parameter {name}")))?;
        values.insert(name.clone(), p.data()?.to_tensor());
    }
    let wrt_refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let d = differentiate(&traced.graph, &wrt_refs)?;
    Ok(Step {
        forward: d.forward,
        num_outputs: d.num_outputs,
        backward: d.backward,
        seed_slots: traced.seed_slots,
        values,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the training pipeline `reps` times on copies of `g`; prints its line; returns the
/// optimized graph.
fn bench_pipeline(model: &str, which: &str, g: &Graph, reps: usize) -> Result<Graph> {
    let mut pm = PassManager::new(Pipeline::Training);
    pm.set_verify(false);
    let mut per_pass: Vec<(String, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    let mut out = g.clone();
    let mut stats = None;
    for _ in 0..reps {
        let mut h = g.clone();
        let t = Instant::now();
        let s = pm.run(&mut h)?;
        totals.push(t.elapsed().as_secs_f64() * 1e3);
        for r in &s.rows {
            match per_pass.iter_mut().find(|(n, _)| *n == r.pass) {
                Some((_, v)) => v.push(r.time.as_secs_f64() * 1e3),
                None => per_pass.push((r.pass.clone(), vec![r.time.as_secs_f64() * 1e3])),
            }
        }
        out = h;
        stats = Some(s);
    }
    let stats = stats.ok_or_else(|| Error::Graph("no pipeline run".into()))?;
    let (first, last) = match (stats.rows.first(), stats.rows.last()) {
        (Some(a), Some(b)) => (a.before, b.after),
        _ => return Err(Error::Graph("the pipeline ran no pass".into())),
    };
    let mut pass_ms = Map::new();
    for (n, v) in per_pass {
        pass_ms.insert(n, json!((median(v) * 1e4).round() / 1e4));
    }
    let p = plan(&out)?;
    println!(
        "{}",
        json!({
            "bench": "passes", "model": model, "graph": which,
            "pipeline_ms": (median(totals) * 1e4).round() / 1e4,
            "pass_ms": Value::Object(pass_ms),
            "nodes_before": first.nodes, "nodes_after": last.nodes,
            "kernels_before": first.kernels, "kernels_after": last.kernels,
            "peak_bytes": p.peak_bytes, "naive_bytes": p.naive_bytes,
            "live_bytes": p.live_bytes, "buffers": p.buffers.len(),
            "in_place": p.in_place.len(), "values": p.assignment.len(),
        })
    );
    Ok(out)
}

fn bind<'a>(
    exec: &Executor,
    values: &'a HashMap<String, Tensor>,
) -> Result<Vec<kiln::ir::TensorView<'a>>> {
    exec.bindings()
        .map(|(name, _)| {
            values
                .get(name)
                .map(Tensor::view)
                .ok_or_else(|| Error::Graph(format!("no value for binding {name}")))
        })
        .collect()
}

/// One training step through the executors: forward, then backward on the saved values and
/// a head gradient of ones. Returns the gradients.
fn train_step(fwd: &Executor, bwd: &Executor, step: &Step, seeds: &[u64]) -> Result<Vec<Tensor>> {
    let outs = fwd.run(&bind(fwd, &step.values)?, seeds)?;
    let mut values: HashMap<String, Tensor> = step.values.clone();
    for (i, t) in outs.into_iter().enumerate() {
        if i < step.num_outputs {
            let ty: TensorType = t.ty();
            values.insert(format!("head:{i}"), Tensor::full(ty.shape, ty.dtype, 1.0));
        } else {
            values.insert(format!("saved:{}", i - step.num_outputs), t);
        }
    }
    bwd.run(&bind(bwd, &values)?, seeds)
}

fn bench_executor(model: &str, step: &Step, steps: usize, rounds: usize) -> Result<()> {
    let seeds: Vec<u64> = (0..step.seed_slots as u64).collect();
    let mut reference: Option<Vec<Tensor>> = None;
    for reuse in [false, true] {
        let mut fwd = Executor::new(&step.forward, step.seed_slots, BackendChoice::Cpu)?;
        let mut bwd = Executor::new(&step.backward, step.seed_slots, BackendChoice::Cpu)?;
        fwd.set_buffer_reuse(reuse);
        bwd.set_buffer_reuse(reuse);
        let grads = train_step(&fwd, &bwd, step, &seeds)?;
        for _ in 0..2 {
            train_step(&fwd, &bwd, step, &seeds)?;
        }
        let a0 = ALLOCS.load(Ordering::Relaxed);
        let b0 = BYTES.load(Ordering::Relaxed);
        let mut secs = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..steps {
                train_step(&fwd, &bwd, step, &seeds)?;
            }
            secs.push(t.elapsed().as_secs_f64() / steps as f64);
        }
        let n = (steps * rounds) as f64;
        let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / n;
        let bytes = (BYTES.load(Ordering::Relaxed) - b0) as f64 / n;
        let identical = match &reference {
            None => {
                reference = Some(grads);
                true
            }
            Some(r) => r == &grads,
        };
        println!(
            "{}",
            json!({
                "bench": "executor", "model": model, "reuse": reuse,
                "buffers": fwd.num_buffers() + bwd.num_buffers(),
                "allocs_per_step": allocs.round(),
                "alloc_bytes_per_step": bytes.round(),
                "ms_per_step": (median(secs) * 1e7).round() / 1e4,
                "grads_identical_to_no_reuse": identical,
                "threads": kiln::backends::cpu::threads(),
            })
        );
    }
    Ok(())
}

/// `g` through the training pipeline with `off` disabled (`"none"`: nothing off; `"all"`:
/// every optional pass off).
fn optimized_without(g: &Graph, off: &str) -> Result<Graph> {
    let mut pm = PassManager::new(Pipeline::Training);
    pm.set_verify(false);
    match off {
        "none" => {}
        "all" => pm.disable_optional(),
        name => pm.disable(name)?,
    }
    let mut h = g.clone();
    pm.run(&mut h)?;
    Ok(h)
}

/// Op nodes of `g` (a fused node is one kernel).
fn kernels(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&id| matches!(g.op(id), Ok(Some(_))))
        .count()
}

/// The training step on Cranelift with each optional pass off in turn (see the module docs).
fn bench_pass_off(model: &str, raw: &Step, steps: usize, rounds: usize) -> Result<()> {
    let seeds: Vec<u64> = (0..raw.seed_slots as u64).collect();
    let names: Vec<String> = PassManager::new(Pipeline::Training)
        .pass_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut reference: Option<Vec<Tensor>> = None;
    // The full pipeline runs first and again last: the two show how noisy the machine is.
    for off in std::iter::once("none")
        .chain(names.iter().map(String::as_str))
        .chain(["all", "none"])
    {
        let step = Step {
            forward: optimized_without(&raw.forward, off)?,
            num_outputs: raw.num_outputs,
            backward: optimized_without(&raw.backward, off)?,
            seed_slots: raw.seed_slots,
            values: raw.values.clone(),
        };
        let fwd = Executor::new(&step.forward, step.seed_slots, BackendChoice::Cranelift)?;
        let bwd = Executor::new(&step.backward, step.seed_slots, BackendChoice::Cranelift)?;
        let grads = train_step(&fwd, &bwd, &step, &seeds)?;
        for _ in 0..3 {
            train_step(&fwd, &bwd, &step, &seeds)?;
        }
        let mut secs = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..steps {
                train_step(&fwd, &bwd, &step, &seeds)?;
            }
            secs.push(t.elapsed().as_secs_f64() / steps as f64);
        }
        let diff = match &reference {
            None => {
                reference = Some(grads);
                0.0
            }
            Some(r) => r
                .iter()
                .zip(&grads)
                .map(|(a, b)| {
                    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
                    let scale = a.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
                    a.iter()
                        .zip(&b)
                        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale))
                })
                .fold(0.0, f64::max),
        };
        println!(
            "{}",
            json!({
                "bench": "pass_off", "model": model, "off": off, "backend": "cranelift",
                "kernels_forward": kernels(&step.forward),
                "kernels_backward": kernels(&step.backward),
                "ms_per_step": (median(secs) * 1e7).round() / 1e4,
                "grad_rel_diff": diff,
            })
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 20 };
    for model in ["mlp", "lenet"] {
        let mut step = traced_step(model)?;
        let raw = Step {
            forward: step.forward.clone(),
            num_outputs: step.num_outputs,
            backward: step.backward.clone(),
            seed_slots: step.seed_slots,
            values: step.values.clone(),
        };
        step.forward = bench_pipeline(model, "forward", &step.forward, reps)?;
        step.backward = bench_pipeline(model, "backward", &step.backward, reps)?;
        let (steps, rounds) = match (model, quick) {
            ("mlp", true) => (10, 3),
            (_, true) => (3, 3),
            ("mlp", false) => (50, 5),
            _ => (5, 5),
        };
        bench_executor(model, &step, steps, rounds)?;
        bench_pass_off(model, &raw, steps, rounds)?;
    }
    Ok(())
}
