//! Eager-mode training throughput of the book's three MNIST models, one JSON line per model.
//!
//! `cargo bench --bench train_throughput [-- OPTIONS]` times full training steps — forward
//! under `autograd::record`, `SoftmaxCrossEntropyLoss`, `backward`, `Trainer::step` with plain
//! SGD (learning rate 0.1) — of the `kiln::models` builders (Xavier(2.24) initialization):
//! - `softmax`: softmax regression, `Dense(10)` on flat 784-pixel images;
//! - `mlp`: `Dense(256, relu)-Dense(256, relu)-Dense(10)`;
//! - `cnn`: the LeNet-style network of the book's cnn-gluon notebook,
//!   `Conv2D(20, 5, relu)-MaxPool2D(2, 2)-Conv2D(50, 5, relu)-MaxPool2D(2, 2)-Flatten-
//!   Dense(512, relu)-Dense(10)` on `[N, 1, 28, 28]` images,
//!
//! all at batch 64 on the first images of the shipped MNIST training split (scaled to [0, 1];
//! random images of the same shape when the files are missing), cycling through pre-made
//! batches so that data loading is not timed. Each model runs warm-up steps, then several
//! timed rounds; the line reports the median round:
//!
//! ```text
//! {"bench":"train","model":"mlp","batch":64,"samples_per_sec":...,"ms_per_step":...,...}
//! ```
//!
//! Options: `--quick` (few steps, one round: a smoke run), `--model NAME` (repeatable; default
//! all three), `--batch N`, `--rounds N`, `--data DIR` (MNIST files). Threads: rayon's pool,
//! `RAYON_NUM_THREADS`. `benches/mxnet_compare.sh` runs MXNet's imperative mode on the same
//! models and prints the ratios.

use kiln::gluon::data::Dataset;
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::nn::HybridSequential;
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// The models, by the names the JSON lines use.
const MODELS: [&str; 3] = ["softmax", "mlp", "cnn"];

/// Distinct batches cycled through (1024 images at batch 64).
const BATCHES: usize = 16;

struct Options {
    quick: bool,
    models: Vec<String>,
    batch: usize,
    rounds: Option<usize>,
    data: Option<PathBuf>,
}

fn parse_args() -> std::result::Result<Options, String> {
    let mut opts = Options {
        quick: false,
        models: Vec::new(),
        batch: 64,
        rounds: None,
        data: None,
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
            "--batch" => {
                opts.batch = value("--batch")?
                    .parse()
                    .map_err(|e| format!("--batch: {e}"))?;
                if opts.batch == 0 {
                    return Err("--batch must be at least 1".into());
                }
            }
            "--rounds" => {
                let r: usize = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
                opts.rounds = Some(r.max(1));
            }
            "--data" => opts.data = Some(PathBuf::from(value("--data")?)),
            // cargo bench passes --bench to every harness = false target.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown option {other:?}; options: --quick, --model NAME, --batch N, \
                     --rounds N, --data DIR"
                ))
            }
        }
    }
    if opts.models.is_empty() {
        opts.models = MODELS.iter().map(|m| m.to_string()).collect();
    }
    Ok(opts)
}

/// `BATCHES` batches of `batch` images (`[batch, 784]` or `[batch, 1, 28, 28]`) and labels,
/// and where they came from.
fn batches(opts: &Options, image: bool) -> Result<(Vec<(NDArray, NDArray)>, &'static str)> {
    let n = opts.batch * BATCHES;
    let dir = opts
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"));
    let (images, labels, source) = match kiln::gluon::data::vision::MNIST::new(&dir, true) {
        Ok(mnist) if mnist.arrays().len() >= n => {
            let arrays = mnist.arrays();
            let x = (arrays.data().slice_axis0(..n)?.astype(DType::F32)? / 255.0)?;
            let y = arrays.label().slice_axis0(..n)?.astype(DType::F32)?;
            (x, y, "mnist")
        }
        _ => {
            kiln::random::seed(7);
            let x = nd::random::uniform(0.0, 1.0, [n, 28, 28])?;
            let y = nd::random::uniform(0.0, 10.0, [n])?.floor()?;
            (x, y, "synthetic")
        }
    };
    let b = opts.batch as i64;
    let dims: Vec<i64> = if image {
        vec![n as i64, 1, 28, 28]
    } else {
        vec![n as i64, 784]
    };
    let images = images.reshape(&dims)?;
    let mut out = Vec::with_capacity(BATCHES);
    for i in 0..BATCHES {
        let r = (i as i64 * b) as usize..((i as i64 + 1) * b) as usize;
        out.push((
            images.slice_axis0(r.clone())?.copy()?,
            labels.slice_axis0(r)?.copy()?,
        ));
    }
    Ok((out, source))
}

/// The model (`kiln::models`), never hybridized here.
fn build(model: &str) -> Result<HybridSequential> {
    match model {
        "softmax" => kiln::models::softmax_regression(),
        "mlp" => kiln::models::mlp(),
        _ => kiln::models::lenet(),
    }
}

/// (warm-up steps, timed steps per round, rounds) for `model`.
fn schedule(model: &str, opts: &Options) -> (usize, usize, usize) {
    let (warm, steps) = match (model, opts.quick) {
        ("softmax", false) => (50, 400),
        ("mlp", false) => (20, 150),
        (_, false) => (5, 30),
        ("softmax", true) => (5, 40),
        ("mlp", true) => (3, 15),
        (_, true) => (1, 3),
    };
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 5 });
    (warm, steps, rounds)
}

fn bench(model: &str, opts: &Options) -> Result<String> {
    kiln::random::seed(1);
    let (data, source) = batches(opts, model == "cnn")?;
    let net = build(model)?;
    net.initialize(kiln::models::book_xavier(), Context::cpu())?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    // Deferred initialization: one forward pass gives every parameter its shape.
    net.forward(&data[0].0)?;
    let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.1)])?;
    let mut i = 0usize;
    let mut last_loss = 0.0;
    let mut step = |trainer: &mut Trainer| -> Result<()> {
        let (x, y) = &data[i % data.len()];
        i += 1;
        let loss = autograd::record(|| loss_fn.forward(&net.forward(x)?, y))?;
        loss.backward()?;
        trainer.step(opts.batch)?;
        last_loss = nd::mean(&loss)?.as_scalar_f64()?;
        Ok(())
    };
    let (warm, steps, rounds) = schedule(model, opts);
    for _ in 0..warm {
        step(&mut trainer)?;
    }
    let mut secs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..steps {
            step(&mut trainer)?;
        }
        secs.push(t.elapsed().as_secs_f64() / steps as f64);
    }
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    if !last_loss.is_finite() {
        return Err(Error::invalid(
            "train_throughput",
            format!("{model}: the loss diverged ({last_loss})"),
        ));
    }
    Ok(ordered_json(&[
        ("bench", json!("train")),
        ("framework", json!("kiln")),
        ("model", json!(model)),
        ("batch", json!(opts.batch)),
        ("samples_per_sec", json!(opts.batch as f64 / median)),
        ("ms_per_step", json!(median * 1e3)),
        ("best_ms_per_step", json!(secs[0] * 1e3)),
        ("steps", json!(steps)),
        ("rounds", json!(rounds)),
        ("threads", json!(kiln::backends::cpu::threads())),
        ("data", json!(source)),
        ("final_loss", json!(last_loss)),
    ]))
}

/// A JSON object with its keys in the given order (serde_json's map would sort them).
fn ordered_json(fields: &[(&str, serde_json::Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(*k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("train_throughput: {e}");
            std::process::exit(2);
        }
    };
    for model in &opts.models {
        match bench(model, &opts) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("train_throughput: {model}: {e}");
                std::process::exit(1);
            }
        }
    }
}
