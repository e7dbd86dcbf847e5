//! Imperative against hybridized execution of the book's MLP and LeNet, one JSON line per
//! measurement, both modes measured in the same run (rounds interleaved, so machine load
//! affects both alike).
//!
//! `cargo bench --bench hybridize [-- OPTIONS]` measures, per model:
//! - `train_step`: forward under `autograd::record`, `SoftmaxCrossEntropyLoss`, `backward`
//!   and an SGD `Trainer::step`, at batch 64;
//! - `inference`: a predict-mode forward at batch 1 and at batch 64;
//! - `trace_compile`: the first call of a freshly hybridized model for one signature (the
//!   trace, the compile and one run) against a cached call of the same signature; for
//!   training the first step also builds the backward graph.
//!
//! Models (`kiln::models`): `mlp` is `Dense(256, relu)-Dense(256, relu)-Dense(10)` on 784 inputs; `lenet` is
//! the book's cnn-gluon network, `Conv2D(20, 5, relu)-MaxPool2D(2, 2)-Conv2D(50, 5, relu)-
//! MaxPool2D(2, 2)-Flatten-Dense(512, relu)-Dense(10)` on `[N, 1, 28, 28]`. Inputs are
//! random images (the timings do not depend on the values). A line reads:
//!
//! ```text
//! {"bench":"hybridize","model":"mlp","what":"train_step","batch":64,"imperative_ms":...,
//!  "hybridized_ms":...,"speedup":...,"backend":"cpu","threads":2,...}
//! ```
//!
//! Options: `--quick` (a smoke run), `--model NAME` (repeatable; default both),
//! `--rounds N`. Threads: rayon's pool, `RAYON_NUM_THREADS`. Nothing is asserted.

use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::HybridSequential;
use kiln::gluon::{Block, HybridBlock, Trainer};
use kiln::hybrid::HybridizeOptions;
use kiln::prelude::*;
use serde_json::json;
use std::time::Instant;

const MODELS: [&str; 2] = ["mlp", "lenet"];

struct Options {
    quick: bool,
    models: Vec<String>,
    rounds: Option<usize>,
}

fn parse_args() -> std::result::Result<Options, String> {
    let mut opts = Options {
        quick: false,
        models: Vec::new(),
        rounds: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--model" => {
                let m = value("--model")?;
                if !MODELS.contains(&m.as_str()) {
                    return Err(format!("unknown model {m:?}; one of {MODELS:?}"));
                }
                opts.models.push(m);
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
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if opts.models.is_empty() {
        opts.models = MODELS.iter().map(|m| m.to_string()).collect();
    }
    Ok(opts)
}

fn build(model: &str) -> Result<HybridSequential> {
    let net = if model == "mlp" {
        kiln::models::mlp()?
    } else {
        kiln::models::lenet()?
    };
    kiln::random::seed(1);
    net.initialize(kiln::models::book_xavier(), Context::cpu())?;
    // Deferred shapes are settled by one imperative call.
    net.forward(&input(model, 1)?)?;
    Ok(net)
}

fn input(model: &str, batch: usize) -> Result<NDArray> {
    if model == "mlp" {
        nd::random::uniform(0.0, 1.0, [batch, 784])
    } else {
        nd::random::uniform(0.0, 1.0, [batch, 1, 28, 28])
    }
}

/// The median of `xs` (sorted in place).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// An imperative and a hybridized copy of one model (same weights) and a training step.
struct Pair {
    imperative: HybridSequential,
    hybridized: HybridSequential,
}

impl Pair {
    fn new(model: &str) -> Result<Pair> {
        let imperative = build(model)?;
        let hybridized = build(model)?;
        for (a, b) in imperative
            .collect_params()?
            .iter()
            .zip(hybridized.collect_params()?.iter())
        {
            b.data()?.assign(&a.data()?)?;
        }
        hybridized.hybridize();
        Ok(Pair {
            imperative,
            hybridized,
        })
    }
}

/// Runs `a` and `b` `steps` times each per round, alternating rounds; the median seconds per
/// call of each.
fn interleaved(
    rounds: usize,
    steps: usize,
    a: &mut dyn FnMut() -> Result<()>,
    b: &mut dyn FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ta.push(seconds_per_call(steps, a)?);
        tb.push(seconds_per_call(steps, b)?);
    }
    Ok((median(&mut ta), median(&mut tb)))
}

/// Seconds per call of `f` over `steps` calls.
fn seconds_per_call(steps: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..steps {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / steps as f64)
}

fn line(fields: &[(&str, serde_json::Value)]) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(*k)))
        .collect();
    println!("{{{}}}", body.join(","));
}

fn common(model: &str, what: &str) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("bench", json!("hybridize")),
        ("model", json!(model)),
        ("what", json!(what)),
    ]
}

fn env_fields() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("backend", json!(HybridizeOptions::default().backend.name())),
        ("threads", json!(kiln::backends::cpu::threads())),
    ]
}

fn bench(model: &str, opts: &Options) -> Result<()> {
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 5 });
    let lenet = model == "lenet";
    let (warm, train_steps, infer_steps) = match (lenet, opts.quick) {
        (false, false) => (10, 60, 200),
        (true, false) => (3, 12, 40),
        (_, true) => (1, 3, 5),
    };
    let pair = Pair::new(model)?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let x64 = input(model, 64)?;
    let y64 = nd::random::uniform(0.0, 10.0, [64])?.floor()?;
    let x1 = input(model, 1)?;

    // Training steps.
    let mut trainers = [
        Trainer::new(
            &pair.imperative.collect_params()?,
            "sgd",
            [("learning_rate", 0.01)],
        )?,
        Trainer::new(
            &pair.hybridized.collect_params()?,
            "sgd",
            [("learning_rate", 0.01)],
        )?,
    ];
    let step = |net: &HybridSequential, trainer: &mut Trainer| -> Result<()> {
        let loss = autograd::record(|| loss_fn.forward(&net.forward(&x64)?, &y64))?;
        loss.backward()?;
        trainer.step(64)
    };
    let [ti, th] = &mut trainers;
    for _ in 0..warm {
        step(&pair.imperative, ti)?;
        step(&pair.hybridized, th)?;
    }
    let (imp, hyb) = interleaved(
        rounds,
        train_steps,
        &mut || step(&pair.imperative, ti),
        &mut || step(&pair.hybridized, th),
    )?;
    let mut f = common(model, "train_step");
    f.extend([
        ("batch", json!(64)),
        ("imperative_ms", json!(imp * 1e3)),
        ("hybridized_ms", json!(hyb * 1e3)),
        ("speedup", json!(imp / hyb)),
        ("imperative_samples_per_sec", json!(64.0 / imp)),
        ("hybridized_samples_per_sec", json!(64.0 / hyb)),
        ("steps", json!(train_steps)),
        ("rounds", json!(rounds)),
    ]);
    f.extend(env_fields());
    line(&f);

    // Inference.
    for (batch, x) in [(1usize, &x1), (64, &x64)] {
        let steps = if batch == 1 {
            infer_steps * 4
        } else {
            infer_steps
        };
        let run = |net: &HybridSequential| -> Result<()> {
            autograd::predict_mode(|| net.forward(x)).map(|_| ())
        };
        for _ in 0..warm {
            run(&pair.imperative)?;
            run(&pair.hybridized)?;
        }
        let (imp, hyb) = interleaved(rounds, steps, &mut || run(&pair.imperative), &mut || {
            run(&pair.hybridized)
        })?;
        let mut f = common(model, "inference");
        f.extend([
            ("batch", json!(batch)),
            ("imperative_ms", json!(imp * 1e3)),
            ("hybridized_ms", json!(hyb * 1e3)),
            ("speedup", json!(imp / hyb)),
            ("calls", json!(steps)),
            ("rounds", json!(rounds)),
        ]);
        f.extend(env_fields());
        line(&f);
    }

    // Trace + compile: the first call after hybridize() against a cached call.
    let net = &pair.hybridized;
    let th = &mut trainers[1];
    let signatures: [(&str, usize); 3] = [("predict", 1), ("predict", 64), ("train", 64)];
    for (mode, batch) in signatures {
        let x = if batch == 1 { &x1 } else { &x64 };
        let call = |trainer: &mut Trainer| -> Result<()> {
            if mode == "train" {
                step(net, trainer)
            } else {
                autograd::predict_mode(|| net.forward(x)).map(|_| ())
            }
        };
        let (mut first, mut cached) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(3) {
            net.dehybridize();
            net.hybridize();
            let start = Instant::now();
            call(th)?;
            first.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            call(th)?;
            cached.push(start.elapsed().as_secs_f64());
        }
        let (first, cached) = (median(&mut first), median(&mut cached));
        let mut f = common(model, "trace_compile");
        f.extend([
            ("signature", json!(format!("{mode}, batch {batch}"))),
            ("first_call_ms", json!(first * 1e3)),
            ("cached_call_ms", json!(cached * 1e3)),
            ("trace_compile_ms", json!((first - cached) * 1e3)),
            ("traces", json!(net.cache_stats().traces)),
        ]);
        f.extend(env_fields());
        line(&f);
    }
    Ok(())
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hybridize bench: {e}");
            std::process::exit(2);
        }
    };
    for model in &opts.models {
        if let Err(e) = bench(model, &opts) {
            eprintln!("hybridize bench: {model}: {e}");
            std::process::exit(1);
        }
    }
}
