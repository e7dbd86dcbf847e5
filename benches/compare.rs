//! kiln's side of the MXNet comparison: eager against hybridized (Cranelift) kiln on the
//! issue's benchmark list, one JSON line per measurement. `benches/mxnet_compare.py` measures
//! the same list in MXNet 1.9.1 (imperative and hybridized) and `benches/compare_table.py`
//! prints the table of ratios; `benches/mxnet_compare.sh` runs all three.
//!
//! `cargo bench --bench compare [-- OPTIONS]` measures:
//! - `train`: training steps per second of the book's linear regression (`Dense(1)` on 2
//!   features, `L2Loss`, batch 4), softmax regression (batch 64), MLP (batch 64 and 256) and
//!   LeNet (batch 64) with `SoftmaxCrossEntropyLoss`; one step is forward under
//!   `autograd::record`, the loss, `backward`, an SGD `Trainer::step` and reading the mean
//!   loss back as a number (what the book's training loops do). MNIST models use the first
//!   `batch * 16` images of the shipped training split (random images of the same shape when
//!   the files are missing), linear regression the notebook's synthetic data, cycled;
//! - `inference`: one predict-mode forward call of the MLP and LeNet at batch 1 and 64;
//! - `chain`: `tanh(x*2+1) * sigmoid(x)` on 16M f32 (4M with `--quick`) in GB/s, counting
//!   8 bytes per element (one read, one write): eager kiln runs five ops, hybridized kiln one
//!   compiled kernel; next to `copy`, a copy of the same array into a fresh allocation (as a
//!   kernel's output is), measured as NDArray `copy()` (mode `ndarray`) and as a plain
//!   `memcpy` into a new `Vec` (mode `memcpy`);
//! - `trace_compile` (measured first, before this process has compiled any kernel): the first
//!   LeNet training step after `hybridize()` (trace of forward and loss, differentiation, the
//!   pass pipelines, Cranelift compilation, one run) minus a cached step, in ms, at batch 1
//!   (the graph and its kernels are the same at every batch; a short step keeps the
//!   difference clear of noise). The line also gives the kernels compiled and Cranelift's
//!   share, and the same difference once the kernels are in the JIT cache (a re-trace).
//!
//! Eager and hybridized copies of a model start from the same weights and their timing
//! rounds alternate, so machine load hits both alike; each line reports the median round. A
//! line reads:
//!
//! ```text
//! {"suite":"compare","framework":"kiln","mode":"hybridized","bench":"train","model":"mlp",
//!  "batch":64,"value":...,"unit":"samples/s","us_per_call":...,"threads":1,...}
//! ```
//!
//! `mode` is `eager` or `hybridized` (Cranelift backend, `static_alloc` and `static_shape`).
//! Options: `--quick` (a smoke run), `--only BENCH` (repeatable: `train`, `inference`,
//! `chain`, `trace_compile`), `--rounds N`, `--data DIR`. Threads: `RAYON_NUM_THREADS`.

use kiln::gluon::loss::{L2Loss, SoftmaxCrossEntropyLoss};
use kiln::gluon::nn::HybridSequential;
use kiln::gluon::{Block, HybridBlock, Trainer};
use kiln::hybrid::hybridize::{self, HybridState};
use kiln::hybrid::{BackendChoice, HybridizeOptions};
use kiln::models::ChapterModel;
use kiln::prelude::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

const BENCHES: [&str; 4] = ["train", "inference", "chain", "trace_compile"];

/// Distinct batches cycled through by the training benchmarks.
const BATCHES: usize = 16;

struct Options {
    quick: bool,
    only: Vec<String>,
    rounds: Option<usize>,
    data: Option<PathBuf>,
}

impl Options {
    fn runs(&self, bench: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|b| b == bench)
    }

    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 1 } else { 5 })
    }
}

fn parse_args() -> std::result::Result<Options, String> {
    let mut opts = Options {
        quick: false,
        only: Vec::new(),
        rounds: None,
        data: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--only" => {
                let b = value("--only")?;
                if !BENCHES.contains(&b.as_str()) {
                    return Err(format!("unknown benchmark {b:?}; one of {BENCHES:?}"));
                }
                opts.only.push(b);
            }
            "--rounds" => {
                let r: usize = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
                if r == 0 {
                    return Err("--rounds must be at least 1".into());
                }
                opts.rounds = Some(r);
            }
            "--data" => opts.data = Some(PathBuf::from(value("--data")?)),
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown option {other:?}; options: --quick, --only BENCH, --rounds N, \
                     --data DIR"
                ))
            }
        }
    }
    Ok(opts)
}

/// The hybridize options of every hybridized model here (MXNet's
/// `hybridize(static_alloc=True, static_shape=True)`), on the Cranelift backend.
fn hybrid_options() -> HybridizeOptions {
    HybridizeOptions {
        backend: BackendChoice::Cranelift,
        static_alloc: true,
        static_shape: true,
    }
}

/// Prints one JSON object with its keys in the given order.
fn emit(fields: Vec<(&str, Value)>) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect();
    println!("{{{}}}", body.join(","));
}

/// The fields every line starts with.
fn head(mode: &str, bench: &str, model: &str, batch: usize) -> Vec<(&'static str, Value)> {
    vec![
        ("suite", json!("compare")),
        ("framework", json!("kiln")),
        ("mode", json!(mode)),
        ("bench", json!(bench)),
        ("model", json!(model)),
        ("batch", json!(batch)),
    ]
}

fn threads() -> (&'static str, Value) {
    ("threads", json!(kiln::backends::cpu::threads()))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Seconds per call of `f` over `calls` calls.
fn seconds_per_call(calls: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..calls {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

/// `warm` calls of each, then `rounds` alternating rounds of `calls` calls each; the median
/// seconds per call of `a` and of `b`.
fn interleaved(
    warm: usize,
    rounds: usize,
    calls: usize,
    a: &mut dyn FnMut() -> Result<()>,
    b: &mut dyn FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    for _ in 0..warm {
        a()?;
        b()?;
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ta.push(seconds_per_call(calls, a)?);
        tb.push(seconds_per_call(calls, b)?);
    }
    Ok((median(&mut ta), median(&mut tb)))
}

/// `BATCHES` training batches of `model` at `batch`, and where they came from.
fn batches(
    opts: &Options,
    model: ChapterModel,
    batch: usize,
) -> Result<(Vec<(NDArray, NDArray)>, &'static str)> {
    let n = batch * BATCHES;
    let (x, y, source) = if model == ChapterModel::LinearRegression {
        // The notebook's data: y = 2 x0 - 3.4 x1 + 4.2 + 0.01 noise.
        let x = nd::random::normal(0.0, 1.0, [n, 2])?;
        let w = NDArray::from_vec(vec![2.0f32, -3.4], [2, 1])?;
        let y = (nd::dot(&x, &w)?.reshape(&[-1])? + 4.2)?;
        let y = (&y + &(nd::random::normal(0.0, 1.0, [n])? * 0.01)?)?;
        (x, y, "synthetic")
    } else {
        let dir = opts
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"));
        match kiln::gluon::data::vision::MNIST::new(&dir, true) {
            Ok(mnist) if kiln::gluon::data::Dataset::len(&mnist) >= n => {
                let arrays = mnist.arrays();
                let x = (arrays.data().slice_axis0(..n)?.astype(DType::F32)? / 255.0)?;
                let y = arrays.label().slice_axis0(..n)?.astype(DType::F32)?;
                (x, y, "mnist")
            }
            _ => {
                let x = nd::random::uniform(0.0, 1.0, [n, 28, 28])?;
                let y = nd::random::uniform(0.0, 10.0, [n])?.floor()?;
                (x, y, "synthetic")
            }
        }
    };
    let dims: Vec<i64> = model.input_shape(n).iter().map(|&d| d as i64).collect();
    let x = x.reshape(&dims)?;
    let mut out = Vec::with_capacity(BATCHES);
    for i in 0..BATCHES {
        let r = i * batch..(i + 1) * batch;
        out.push((x.slice_axis0(r.clone())?.copy()?, y.slice_axis0(r)?.copy()?));
    }
    Ok((out, source))
}

/// Two copies of `model` with the same initial weights: one stays eager, the other is
/// hybridized. Shapes are settled by one eager call on `x`.
fn pair(model: ChapterModel, x: &NDArray) -> Result<(HybridSequential, HybridSequential)> {
    kiln::random::seed(1);
    let eager = model.build()?;
    let hybrid = model.build()?;
    for net in [&eager, &hybrid] {
        net.initialize(model.initializer(), Context::cpu())?;
        autograd::predict_mode(|| net.forward(x))?;
    }
    for (a, b) in eager
        .collect_params()?
        .iter()
        .zip(hybrid.collect_params()?.iter())
    {
        b.data()?.assign(&a.data()?)?;
    }
    hybrid.hybridize_with(hybrid_options());
    Ok((eager, hybrid))
}

/// A training loop over cycled batches.
struct Trainee<'a> {
    net: &'a HybridSequential,
    trainer: Trainer,
    data: &'a [(NDArray, NDArray)],
    regression: bool,
    batch: usize,
    i: usize,
    loss: f64,
}

impl<'a> Trainee<'a> {
    fn new(
        net: &'a HybridSequential,
        data: &'a [(NDArray, NDArray)],
        model: ChapterModel,
        batch: usize,
    ) -> Result<Trainee<'a>> {
        let regression = model == ChapterModel::LinearRegression;
        let lr = if regression { 0.03 } else { 0.1 };
        Ok(Trainee {
            net,
            trainer: Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", lr)])?,
            data,
            regression,
            batch,
            i: 0,
            loss: 0.0,
        })
    }

    fn step(&mut self) -> Result<()> {
        let (x, y) = &self.data[self.i % self.data.len()];
        self.i += 1;
        let loss = autograd::record(|| {
            let out = self.net.forward(x)?;
            if self.regression {
                L2Loss::new().forward(&out, y)
            } else {
                SoftmaxCrossEntropyLoss::new().forward(&out, y)
            }
        })?;
        loss.backward()?;
        self.trainer.step(self.batch)?;
        self.loss = nd::mean(&loss)?.as_scalar_f64()?;
        Ok(())
    }
}

fn bench_train(opts: &Options, model: ChapterModel, batch: usize) -> Result<()> {
    kiln::random::seed(7);
    let (data, source) = batches(opts, model, batch)?;
    let (eager, hybrid) = pair(model, &data[0].0)?;
    let mut te = Trainee::new(&eager, &data, model, batch)?;
    let mut th = Trainee::new(&hybrid, &data, model, batch)?;
    // Aim at ~0.2 s per round and mode on an idle machine.
    let (warm, calls) = match (model, opts.quick) {
        (ChapterModel::LinearRegression, false) => (200, 2000),
        (ChapterModel::SoftmaxRegression, false) => (50, 400),
        (ChapterModel::LeNet, false) => (5, 15),
        (_, false) if batch > 64 => (5, 30),
        (_, false) => (20, 100),
        (ChapterModel::LeNet, true) => (1, 2),
        (_, true) => (3, 10),
    };
    let (e, h) = interleaved(warm, opts.rounds(), calls, &mut || te.step(), &mut || {
        th.step()
    })?;
    for (mode, secs, t) in [("eager", e, &te), ("hybridized", h, &th)] {
        if !t.loss.is_finite() {
            return Err(Error::invalid(
                "compare bench",
                format!("{model} {mode}: the loss diverged ({})", t.loss),
            ));
        }
        let mut f = head(mode, "train", model.name(), batch);
        f.extend([
            ("value", json!(batch as f64 / secs)),
            ("unit", json!("samples/s")),
            ("us_per_call", json!(secs * 1e6)),
            ("calls", json!(calls)),
            ("rounds", json!(opts.rounds())),
            ("data", json!(source)),
            ("final_loss", json!(t.loss)),
            threads(),
        ]);
        emit(f);
    }
    Ok(())
}

fn bench_inference(opts: &Options, model: ChapterModel, batch: usize) -> Result<()> {
    kiln::random::seed(7);
    let x = nd::random::uniform(0.0, 1.0, model.input_shape(batch))?;
    let (eager, hybrid) = pair(model, &x)?;
    let (warm, calls) = match (model, batch, opts.quick) {
        (_, _, true) => (2, 10),
        (ChapterModel::LeNet, 1, false) => (20, 200),
        (ChapterModel::LeNet, _, false) => (5, 20),
        (_, 1, false) => (100, 2000),
        (_, _, false) => (20, 200),
    };
    let run = |net: &HybridSequential| -> Result<()> {
        autograd::predict_mode(|| net.forward(&x)).map(|_| ())
    };
    let (e, h) = interleaved(warm, opts.rounds(), calls, &mut || run(&eager), &mut || {
        run(&hybrid)
    })?;
    for (mode, secs) in [("eager", e), ("hybridized", h)] {
        let mut f = head(mode, "inference", model.name(), batch);
        f.extend([
            ("value", json!(secs * 1e6)),
            ("unit", json!("us")),
            ("us_per_call", json!(secs * 1e6)),
            ("calls", json!(calls)),
            ("rounds", json!(opts.rounds())),
            threads(),
        ]);
        emit(f);
    }
    Ok(())
}

/// `tanh(x*2+1) * sigmoid(x)` as a block, so that hybridize traces and compiles it.
#[derive(Default)]
struct Chain {
    hybrid: HybridState,
}

impl Block for Chain {
    fn prefix(&self) -> String {
        "chain0_".into()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }
}

impl HybridBlock for Chain {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        let t = ((x * 2.0)? + 1.0)?.tanh()?;
        &t * &x.sigmoid()?
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }
}

fn bench_chain(opts: &Options) -> Result<()> {
    let n = if opts.quick { 1 << 22 } else { 1 << 24 };
    let src: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.004 - 2.0).collect();
    let x = NDArray::from_vec(src.clone(), [n])?;
    let eager = Chain::default();
    let hybrid = Chain::default();
    hybrid.hybridize_with(hybrid_options());
    let (warm, calls) = (2, if opts.quick { 2 } else { 5 });
    let gb_s = |secs: f64| (8 * n) as f64 / secs / 1e9;
    let run = |c: &Chain| autograd::predict_mode(|| c.forward(&x)).map(|_| ());
    let (e, h) = interleaved(warm, opts.rounds(), calls, &mut || run(&eager), &mut || {
        run(&hybrid)
    })?;
    let max_diff = eager
        .forward(&x)?
        .to_vec::<f32>()?
        .iter()
        .zip(hybrid.forward(&x)?.to_vec::<f32>()?)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let (c, m) = interleaved(
        warm,
        opts.rounds(),
        calls,
        &mut || x.copy().map(|_| ()),
        &mut || {
            std::hint::black_box(src.to_vec());
            Ok(())
        },
    )?;
    for (bench, mode, secs) in [
        ("chain", "eager", e),
        ("chain", "hybridized", h),
        ("copy", "ndarray", c),
        ("copy", "memcpy", m),
    ] {
        let mut f = head(mode, bench, "f32", n);
        f.extend([
            ("value", json!(gb_s(secs))),
            ("unit", json!("GB/s")),
            ("us_per_call", json!(secs * 1e6)),
            ("calls", json!(calls)),
            ("rounds", json!(opts.rounds())),
        ]);
        if bench == "chain" {
            f.push(("max_abs_diff_eager_hybridized", json!(max_diff)));
        }
        f.push(threads());
        emit(f);
    }
    Ok(())
}

fn bench_trace_compile(opts: &Options) -> Result<()> {
    // Batch 1 keeps the step itself short, so that the difference is the trace and compile
    // time and not noise in a long step; the graph (and every kernel) is the same at any batch.
    let model = ChapterModel::LeNet;
    let batch = 1;
    kiln::random::seed(7);
    let (data, _) = batches(opts, model, batch)?;
    let (_, net) = pair(model, &data[0].0)?;
    let mut t = Trainee::new(&net, &data, model, batch)?;
    let jit = kiln::backends::jit::JitBackend::global();
    let (mut first, mut cached) = (Vec::new(), Vec::new());
    let mut cold = None;
    for round in 0..opts.rounds().max(3) + 1 {
        net.dehybridize();
        net.hybridize_with(hybrid_options());
        let before = jit.stats();
        let start = Instant::now();
        t.step()?;
        let f = start.elapsed().as_secs_f64();
        let after = jit.stats();
        let mut c = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            t.step()?;
            c.push(start.elapsed().as_secs_f64());
        }
        let c = median(&mut c);
        if round == 0 {
            // This process has compiled no kernel before: the first round pays for Cranelift.
            cold = Some((
                f,
                c,
                after.kernels_compiled - before.kernels_compiled,
                (after.compile_time - before.compile_time).as_secs_f64(),
            ));
        } else {
            first.push(f);
            cached.push(c);
        }
    }
    let (first, cached) = (median(&mut first), median(&mut cached));
    let (cold_first, cold_cached, kernels, compile) =
        cold.ok_or_else(|| Error::invalid("compare bench", "no trace_compile round ran"))?;
    let mut f = head("hybridized", "trace_compile", model.name(), batch);
    f.extend([
        ("value", json!((cold_first - cold_cached) * 1e3)),
        ("unit", json!("ms")),
        ("first_step_ms", json!(cold_first * 1e3)),
        ("cached_step_ms", json!(cold_cached * 1e3)),
        ("kernels_compiled", json!(kernels)),
        ("cranelift_compile_ms", json!(compile * 1e3)),
        ("warm_jit_cache_trace_ms", json!((first - cached) * 1e3)),
        ("traces", json!(net.cache_stats().traces)),
        threads(),
    ]);
    emit(f);
    Ok(())
}

fn run(opts: &Options) -> Result<()> {
    // First, while this process has compiled no kernel yet.
    if opts.runs("trace_compile") {
        bench_trace_compile(opts)?;
    }
    if opts.runs("train") {
        for (model, batch) in [
            (ChapterModel::LinearRegression, 4),
            (ChapterModel::SoftmaxRegression, 64),
            (ChapterModel::Mlp, 64),
            (ChapterModel::Mlp, 256),
            (ChapterModel::LeNet, 64),
        ] {
            bench_train(opts, model, batch)?;
        }
    }
    if opts.runs("inference") {
        for model in [ChapterModel::Mlp, ChapterModel::LeNet] {
            for batch in [1, 64] {
                bench_inference(opts, model, batch)?;
            }
        }
    }
    if opts.runs("chain") {
        bench_chain(opts)?;
    }
    Ok(())
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("compare bench: {e}");
        std::process::exit(1);
    }
}
