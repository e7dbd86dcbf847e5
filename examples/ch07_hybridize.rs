//! Chapter 7, "Fast & flexible: combining imperative & symbolic nets with HybridBlocks": the
//! notebook's `HybridSequential` MLP (512 inputs, 256-128-2) run imperatively and
//! hybridized (the same output), the two timed over 1,000 calls, the traced graph printed
//! (the notebook prints the symbol and its JSON), the model exported and imported again
//! with the same predictions, and a custom `HybridBlock` that shows when its forward runs on
//! real arrays and when on symbolic ones.
//!
//! `cargo run --release --example ch07_hybridize`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::gluon::init::Uniform;
use kiln::gluon::name::{name_scope, unique_prefix};
use kiln::gluon::nn::{ActivationKind, Dense, HybridSequential};
use kiln::gluon::{Block, HybridBlock};
use kiln::hybrid::hybridize::{self, HybridState};
use kiln::hybrid::SymbolBlock;
use kiln::prelude::*;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The notebook's number of timed calls.
pub const CALLS: usize = 1000;
/// Timed calls under `--quick`.
pub const QUICK_CALLS: usize = 100;

/// What the run showed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `net(x)` before hybridizing.
    pub imperative: Vec<f32>,
    /// `net(x)` after hybridizing (the notebook: identical).
    pub hybridized: Vec<f32>,
    /// Seconds for the timed calls before and after hybridizing.
    pub seconds: (f64, f64),
    /// Seconds of the first hybridized call (trace and compile, then run).
    pub first_call: f64,
    /// The traced graph's text form.
    pub graph_text: String,
    /// Largest |model - imported| over the exported model's outputs.
    pub import_max_abs_diff: f64,
    /// What the custom block's forward printed, call by call.
    pub custom_log: Vec<String>,
}

/// The notebook's `get_net()`: Dense(256, relu), Dense(128, relu), Dense(2), initialized with
/// gluon's default `Uniform(0.07)`; the input width is learnt at the first call.
pub fn get_net() -> Fallible<HybridSequential> {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Dense::new(256).activation(ActivationKind::Relu));
        net.add(Dense::new(128).activation(ActivationKind::Relu));
        net.add(Dense::new(2));
    });
    net.initialize(Arc::new(Uniform::default()), Context::cpu())?;
    Ok(net)
}

/// The notebook's `bench`: `calls` calls of `net(x)`; returns the seconds.
fn bench(net: &dyn Block, x: &NDArray, calls: usize) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..calls {
        net.forward(x)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The notebook's `Net(gluon.HybridBlock)`: three dense layers with ReLU between them,
/// written once in `hybrid_forward`, which notes whether it runs on real or symbolic arrays.
pub struct Net {
    prefix: String,
    fc1: Dense,
    fc2: Dense,
    fc3: Dense,
    hybrid: HybridState,
    log: Mutex<Vec<String>>,
}

impl Net {
    /// A new `netN_` block with its layers named under it.
    pub fn new() -> Net {
        let prefix = unique_prefix("net");
        let (fc1, fc2, fc3) = name_scope(&prefix, || {
            (Dense::new(256), Dense::new(128), Dense::new(2))
        });
        Net {
            prefix,
            fc1,
            fc2,
            fc3,
            hybrid: HybridState::default(),
            log: Mutex::new(Vec::new()),
        }
    }

    /// What `hybrid_forward` noted since the last call of this method.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Block for Net {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }

    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        f(&self.fc1);
        f(&self.fc2);
        f(&self.fc3);
    }
}

impl HybridBlock for Net {
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        let kind = if x.is_symbolic() {
            "symbolic NDArray (the forward is being traced into a graph)"
        } else {
            "NDArray (the ops run now)"
        };
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("type(x): {kind}"));
        let x = self.fc1.forward(x)?.relu()?;
        let x = self.fc2.forward(&x)?.relu()?;
        self.fc3.forward(&x)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }

    fn visit_hybrid_children(&self, f: &mut dyn FnMut(&dyn HybridBlock)) {
        f(&self.fc1);
        f(&self.fc2);
        f(&self.fc3);
    }
}

/// Runs the notebook, printing to `out`.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let calls = if opts.quick { QUICK_CALLS } else { CALLS };

    writeln!(
        out,
        "== HybridSequential: the same net, imperative and hybridized"
    )?;
    let x = nd::random::normal(0.0, 1.0, [1, 512])?;
    let net = get_net()?;
    let imperative = net.forward(&x)?;
    writeln!(out, "=== net(x) ===\n{imperative}")?;
    net.hybridize();
    let hybridized = net.forward(&x)?;
    writeln!(out, "=== net(x) after hybridize() ===\n{hybridized}")?;
    let (imperative, hybridized) = (imperative.to_vec::<f32>()?, hybridized.to_vec::<f32>()?);
    writeln!(
        out,
        "identical: {}",
        if imperative == hybridized {
            "yes"
        } else {
            "no"
        }
    )?;

    writeln!(
        out,
        "\n== Speed: {calls} calls of net(x) on one 512-wide sample"
    )?;
    let net = get_net()?;
    net.forward(&x)?; // the deferred input width, as the notebook's first print does
    let before = bench(&net, &x, calls)?;
    writeln!(out, "Before hybridizing: {before:.4} sec")?;
    net.hybridize();
    let start = Instant::now();
    net.forward(&x)?;
    let first_call = start.elapsed().as_secs_f64();
    let after = bench(&net, &x, calls)?;
    writeln!(
        out,
        "After hybridizing: {after:.4} sec (the first call, which traced and compiled the graph: {:.2} ms)",
        first_call * 1e3
    )?;
    writeln!(out, "Speedup: {:.2}x", before / after)?;

    writeln!(out, "\n== The traced graph (the notebook's symbol)")?;
    let graph = net
        .hybrid_state()
        .last_graph()
        .ok_or("the hybridized net has no traced graph")?;
    let graph_text = graph.to_text();
    write!(out, "{graph_text}")?;
    let json = graph.to_json();
    let first_lines: Vec<&str> = json.lines().take(12).collect();
    writeln!(
        out,
        "Its JSON form ({} bytes; `tojson()` in the notebook), the first lines:\n{}\n...",
        json.len(),
        first_lines.join("\n")
    )?;

    writeln!(out, "\n== export and import")?;
    let (graph_path, params_path) = net.export(&opts.out_file("my_model")?)?;
    writeln!(
        out,
        "net.export wrote {} and {}",
        graph_path.display(),
        params_path.display()
    )?;
    let imported = SymbolBlock::imports(&graph_path, &["data"], &params_path, Context::cpu())?;
    let want = net.forward(&x)?.to_vec::<f32>()?;
    let got = imported.forward(&x)?.to_vec::<f32>()?;
    let import_max_abs_diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    writeln!(
        out,
        "SymbolBlock::imports: {got:?} (the model: {want:?}), max abs diff {import_max_abs_diff:e}"
    )?;
    if import_max_abs_diff != 0.0 {
        return Err("the imported model does not predict what the model predicts".into());
    }

    writeln!(out, "\n== A custom HybridBlock")?;
    let custom = Net::new();
    custom.initialize(Arc::new(Uniform::default()), Context::cpu())?;
    let mut custom_log = Vec::new();
    let mut call = |title: &str, out: &mut dyn Write| -> Fallible<()> {
        writeln!(out, "=== {title} ===")?;
        custom.forward(&x)?;
        for line in custom.take_log() {
            writeln!(out, "{line}")?;
            custom_log.push(format!("{title}: {line}"));
        }
        Ok(())
    };
    call("1st forward", out)?;
    call("2nd forward", out)?;
    custom.hybridize();
    writeln!(out, "(hybridize())")?;
    call("1st forward", out)?;
    call("2nd forward", out)?;
    writeln!(
        out,
        "Nothing printed on the 2nd hybridized forward: the cached graph ran, not the Rust code \
         ({} trace, {} cached call).",
        custom.cache_stats().traces,
        custom.cache_stats().hits
    )?;

    Ok(Summary {
        imperative,
        hybridized,
        seconds: (before, after),
        first_call,
        graph_text,
        import_max_abs_diff,
        custom_log,
    })
}

fn main() {
    common::main_with(run);
}
