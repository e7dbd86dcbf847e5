//! The `kiln` command-line tool for exported graphs (`{prefix}-graph.json` and
//! `{prefix}.safetensors`, as [`kiln_frontend::hybrid::export()`] writes them) and for
//! MXNet 1.x models (`NAME-symbol.json` and `NAME-0000.params`, recognized by content):
//!
//! - `kiln show GRAPH [--dot FILE]`: the graph's text form, its bindings and outputs with
//!   their types, and node counts by op;
//! - `kiln passes GRAPH [--inference] [--disable NAME]... [--print-after-all]
//!   [--print-after NAME]... [--dot DIR] [--stats] [--output FILE]`: runs the pass pipeline;
//! - `kiln run GRAPH [--params FILE] [--input NAME=FILE.npy]... [--output FILE.npy |
//!   --output-dir DIR] [--random-inputs] [--backend cpu|interp] [--repeat N] [--profile]`:
//!   runs the graph on `.npy` inputs (see [`npy`]) and writes its outputs as `.npy`;
//! - `kiln convert SYMBOL.json [--params FILE.params] [--shape NAME=D0,D1,...]... --out
//!   PREFIX`: converts an MXNet model to kiln's format (`PREFIX-graph.json`,
//!   `PREFIX.safetensors`).
//!
//! An MXNet symbol has no input shapes: `show`, `passes` and `convert` take them with
//! `--shape NAME=D0,D1,...` (float32; `NAME=D0,D1:int32` for another dtype), `run` from its
//! `.npy` inputs. Its parameters come from `--params` or the `NAME-0000.params` beside it.
//!
//! [`Cli`] is the parsed command line and [`execute`] runs it; the binary is a thin wrapper.

pub mod npy;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln_frontend::gluon::serialize;
use kiln_frontend::hybrid::executor::infer_seed_slots;
use kiln_frontend::hybrid::{BackendChoice, Executor};
use kiln_frontend::mxnet;
use kiln_ir::graph::NodeKind;
use kiln_ir::{DType, Error, Graph, Result, Storage, Tensor, TensorType, TensorView};
use kiln_passes::{DumpOptions, PassManager, Pipeline};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `kiln` command line.
#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Inspect, optimize and run exported kiln graphs"
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// A `kiln` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a graph: text form, inputs/params/outputs with types, node counts by op.
    Show(ShowArgs),
    /// Run the pass pipeline on a graph, printing the result and optionally dumps/statistics.
    Passes(PassesArgs),
    /// Run a graph on inputs from .npy files (or random ones) and write its outputs as .npy.
    Run(RunArgs),
    /// Convert an MXNet model (symbol JSON + .params) to kiln's graph + safetensors format.
    Convert(ConvertArgs),
}

/// How an MXNet symbol file is opened: its parameters and its inputs' shapes.
#[derive(Debug, Args, Default, Clone)]
pub struct MxnetArgs {
    /// An MXNet data input's shape: `NAME=D0,D1,...` (float32) or `NAME=D0,D1:DTYPE`
    /// (repeatable; only for MXNet symbol files).
    #[arg(long = "shape", value_name = "NAME=DIMS", value_parser = parse_shape)]
    pub shapes: Vec<(String, TensorType)>,
    /// The MXNet parameters (`.params`) of a symbol file; default: `NAME-0000.params` beside
    /// `NAME-symbol.json`.
    #[arg(long = "params", value_name = "FILE")]
    pub params: Option<PathBuf>,
}

/// Arguments of `kiln convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The MXNet symbol file (`NAME-symbol.json`).
    pub symbol: PathBuf,
    /// Parameters and input shapes.
    #[command(flatten)]
    pub mxnet: MxnetArgs,
    /// The output prefix: writes `PREFIX-graph.json` and `PREFIX.safetensors`.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

/// Arguments of `kiln show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The graph file (`{prefix}-graph.json`, or an MXNet `NAME-symbol.json`).
    pub graph: PathBuf,
    /// For an MXNet symbol: parameters and input shapes.
    #[command(flatten)]
    pub mxnet: MxnetArgs,
    /// Also write the graph in Graphviz DOT form to this file.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
}

/// Arguments of `kiln passes`.
#[derive(Debug, Args)]
pub struct PassesArgs {
    /// The graph file (`{prefix}-graph.json`, or an MXNet `NAME-symbol.json`).
    pub graph: PathBuf,
    /// For an MXNet symbol: parameters and input shapes.
    #[command(flatten)]
    pub mxnet: MxnetArgs,
    /// Use the inference pipeline (dropout removal, batch-norm folding) instead of training.
    #[arg(long)]
    pub inference: bool,
    /// Turn a pass off (repeatable).
    #[arg(long, value_name = "NAME")]
    pub disable: Vec<String>,
    /// Print the graph to stderr after every pass.
    #[arg(long)]
    pub print_after_all: bool,
    /// Print the graph to stderr after this pass (repeatable).
    #[arg(long, value_name = "NAME")]
    pub print_after: Vec<String>,
    /// Write numbered text and DOT files (`00-input.dot`, `01-simplify.dot`, ...) here.
    #[arg(long, value_name = "DIR")]
    pub dot: Option<PathBuf>,
    /// Print the per-pass statistics table.
    #[arg(long)]
    pub stats: bool,
    /// Write the optimized graph as JSON to this file.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The backend `kiln run` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The CPU kernels.
    Cpu,
    /// The reference interpreter.
    Interp,
}

impl Backend {
    fn choice(self) -> BackendChoice {
        match self {
            Backend::Cpu => BackendChoice::Cpu,
            Backend::Interp => BackendChoice::Interpreter,
        }
    }
}

/// Which passes `kiln run` applies before running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunPasses {
    /// No passes: the graph as stored.
    None,
    /// The training pipeline.
    Training,
    /// The inference pipeline.
    Inference,
}

/// Arguments of `kiln run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The graph file (`{prefix}-graph.json`, or an MXNet `NAME-symbol.json`).
    pub graph: PathBuf,
    /// The parameters (safetensors, or MXNet `.params` for a symbol file); default:
    /// `{prefix}.safetensors` (`NAME-0000.params`) beside the graph.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// An MXNet data input's shape, `NAME=D0,D1,...[:DTYPE]`, for inputs not given as .npy
    /// (with --random-inputs; repeatable).
    #[arg(long = "shape", value_name = "NAME=DIMS", value_parser = parse_shape)]
    pub shapes: Vec<(String, TensorType)>,
    /// An input: `NAME=FILE.npy` (repeatable).
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE", value_parser = parse_input)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Write the first output here (.npy).
    #[arg(long, short, value_name = "FILE", conflicts_with = "output_dir")]
    pub output: Option<PathBuf>,
    /// Write every output here as `output0.npy`, `output1.npy`, ...
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Fill inputs not given with random values (floats uniform in [-1, 1), integers in [0, 10)).
    #[arg(long)]
    pub random_inputs: bool,
    /// The seed of the random inputs and of the graph's random ops.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// The passes applied before running.
    #[arg(long, value_enum, default_value_t = RunPasses::Inference)]
    pub passes: RunPasses,
    /// Run this many times (the outputs of the last run are written); times are reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Time each kernel and print the total per op kind.
    #[arg(long)]
    pub profile: bool,
}

fn parse_input(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("expected NAME=FILE.npy, got {s:?}")),
    }
}

/// `NAME=D0,D1,...` or `NAME=D0,D1:DTYPE` (float32 by default; `NAME=` alone is a scalar).
fn parse_shape(s: &str) -> std::result::Result<(String, TensorType), String> {
    let (name, rest) = s
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("expected NAME=D0,D1,..., got {s:?}"))?;
    let (dims, dtype) = match rest.split_once(':') {
        Some((d, t)) => (
            d,
            parse_dtype(t).ok_or_else(|| format!("{s:?}: unknown dtype {t:?}"))?,
        ),
        None => (rest, DType::F32),
    };
    let dims = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("{s:?}: {d:?} is not a dimension"))
        })
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    Ok((name.to_string(), TensorType::new(dims, dtype)))
}

fn parse_dtype(t: &str) -> Option<DType> {
    Some(match t {
        "float32" | "f32" => DType::F32,
        "float64" | "f64" => DType::F64,
        "int32" | "i32" => DType::I32,
        "int64" | "i64" => DType::I64,
        "uint8" | "u8" => DType::U8,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// Runs a parsed command line, printing to stdout (results) and stderr (dumps, notes).
pub fn execute(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Show(a) => show(a),
        Command::Passes(a) => passes(a),
        Command::Run(a) => run(a),
        Command::Convert(a) => convert(a),
    }
}

/// The `.params` file of an MXNet symbol: the one given, or the one beside it.
fn mxnet_params_path(symbol: &Path, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    mxnet::default_params_path(symbol).ok_or_else(|| {
        Error::invalid(
            "kiln",
            format!(
                "{} is an MXNet symbol: give its parameters with --params FILE.params \
                 (no NAME-0000.params beside it)",
                symbol.display()
            ),
        )
    })
}

/// Loads and converts an MXNet model with the given input types; a data input without a
/// type is an error that lists the inputs the symbol has.
fn load_mxnet(
    symbol: &Path,
    params: Option<&Path>,
    shapes: &[(String, TensorType)],
) -> Result<mxnet::MxModel> {
    let sym = mxnet::Symbol::load(symbol)?;
    let params_path = mxnet_params_path(symbol, params)?;
    let values = mxnet::params::load_params(&params_path)?;
    let inputs: Vec<(&str, TensorType)> = shapes
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    mxnet::from_parts(&sym, &values, &inputs).map_err(|e| {
        let data: Vec<String> = sym
            .arg_nodes
            .iter()
            .map(|&i| &sym.nodes[i].name)
            .filter(|n| values.get(n).is_none() && shapes.iter().all(|(s, _)| s != *n))
            .cloned()
            .collect();
        match e {
            Error::Invalid { op, msg } if msg.contains("is neither a parameter") => Error::invalid(
                op,
                format!(
                    "{msg}\n  data inputs without a shape: {} (give --shape NAME=D0,D1,... for each)",
                    data.join(", ")
                ),
            ),
            other => other,
        }
    })
}

/// A kiln graph file, or an MXNet symbol converted with `m`'s parameters and shapes.
fn load_any(path: &Path, m: &MxnetArgs) -> Result<Graph> {
    if mxnet::symbol::is_symbol_file(path) {
        return Ok(load_mxnet(path, m.params.as_deref(), &m.shapes)?.graph);
    }
    if !m.shapes.is_empty() {
        return Err(Error::invalid(
            "kiln",
            format!(
                "--shape is for MXNet symbol files; {} is a kiln graph",
                path.display()
            ),
        ));
    }
    load_graph(path)
}

fn convert(a: &ConvertArgs) -> Result<()> {
    if !mxnet::symbol::is_symbol_file(&a.symbol) {
        // The loader says what is wrong (missing file, not JSON, no nodes...).
        let why = match mxnet::Symbol::load(&a.symbol) {
            Err(e) => format!(": {e}"),
            Ok(_) => String::new(),
        };
        return Err(Error::invalid(
            "kiln convert",
            format!("{} is not an MXNet symbol file{why}", a.symbol.display()),
        ));
    }
    let model = load_mxnet(&a.symbol, a.mxnet.params.as_deref(), &a.mxnet.shapes)?;
    let (g, p) = model.export(&a.out)?;
    print!("{}", summary(&model.graph)?);
    eprintln!("wrote {} and {}", g.display(), p.display());
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn load_graph(path: &Path) -> Result<Graph> {
    Graph::load_json(path).map_err(|e| match e {
        Error::Io { .. } => e,
        other => Error::Format(format!("{}: {other}", path.display())),
    })
}

/// A summary of a graph: bindings and outputs with their types, then node counts by op.
pub fn summary(g: &Graph) -> Result<String> {
    let mut s = String::new();
    let mut section = |title: &str, items: Vec<(&str, kiln_ir::NodeId)>| -> Result<()> {
        s.push_str(&format!("{title} ({}):\n", items.len()));
        for (name, id) in items {
            s.push_str(&format!("  {name}: {}\n", g.ty(id)?));
        }
        Ok(())
    };
    section("inputs", g.inputs())?;
    section("params", g.params())?;
    s.push_str(&format!("outputs ({}):\n", g.outputs().len()));
    for (i, &id) in g.outputs().iter().enumerate() {
        let what = g.node(id)?.kind.describe();
        s.push_str(&format!("  {i}: {} ({what})\n", g.ty(id)?));
    }
    let mut by_op: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut consts, mut ops) = (0, 0);
    for id in g.node_ids() {
        match &g.node(id)?.kind {
            NodeKind::Op(op) => {
                ops += 1;
                *by_op.entry(op.name()).or_default() += 1;
            }
            NodeKind::Const(_) => consts += 1,
            _ => {}
        }
    }
    s.push_str(&format!(
        "nodes: {} ({} bindings, {consts} constants, {ops} ops)\n",
        g.len(),
        g.bindings().len()
    ));
    let mut counts: Vec<(&str, usize)> = by_op.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (name, n) in counts {
        s.push_str(&format!("  {name:<24} {n}\n"));
    }
    Ok(s)
}

fn show(a: &ShowArgs) -> Result<()> {
    let g = load_any(&a.graph, &a.mxnet)?;
    print!("{}", g.to_text());
    if !g.to_text().ends_with('\n') {
        println!();
    }
    println!();
    print!("{}", summary(&g)?);
    if let Some(dot) = &a.dot {
        std::fs::write(dot, g.to_dot()).map_err(|e| io_err(dot, e))?;
        eprintln!("wrote {}", dot.display());
    }
    Ok(())
}

fn passes(a: &PassesArgs) -> Result<()> {
    let mut g = load_any(&a.graph, &a.mxnet)?;
    let mut pm = PassManager::new(if a.inference {
        Pipeline::Inference
    } else {
        Pipeline::Training
    });
    pm.set_verify(true);
    for name in &a.disable {
        pm.disable(name)?;
    }
    let known = pm.pass_names();
    for name in &a.print_after {
        if !known.contains(&name.as_str()) {
            return Err(Error::invalid(
                "kiln passes",
                format!(
                    "--print-after {name:?}: no such pass in this pipeline (passes: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let stderr = if a.print_after_all {
        Some(Vec::new())
    } else if a.print_after.is_empty() {
        None
    } else {
        Some(a.print_after.clone())
    };
    pm.set_dump(DumpOptions {
        stderr,
        dir: a.dot.clone(),
    });
    let stats = pm.run(&mut g)?;
    print!("{}", g.to_text());
    if a.stats {
        println!();
        print!("{stats}");
    }
    if let Some(out) = &a.output {
        g.save_json(out)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// A small deterministic generator (splitmix64) for `--random-inputs`.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random tensor of `ty`: floats uniform in [-1, 1), integers in [0, 10), bools fair.
pub fn random_tensor(ty: &TensorType, seed: u64) -> Tensor {
    let mut r = SplitMix(seed);
    let n = ty.shape.numel();
    let storage = match ty.dtype {
        DType::F32 => Storage::F32((0..n).map(|_| (r.unit() * 2.0 - 1.0) as f32).collect()),
        DType::F64 => Storage::F64((0..n).map(|_| r.unit() * 2.0 - 1.0).collect()),
        DType::I32 => Storage::I32((0..n).map(|_| (r.next() % 10) as i32).collect()),
        DType::I64 => Storage::I64((0..n).map(|_| (r.next() % 10) as i64).collect()),
        DType::U8 => Storage::U8((0..n).map(|_| (r.next() % 10) as u8).collect()),
        DType::Bool => Storage::Bool((0..n).map(|_| r.next() & 1 == 1).collect()),
    };
    Tensor::new(ty.shape.clone(), storage)
        .unwrap_or_else(|_| Tensor::zeros(ty.shape.clone(), ty.dtype))
}

fn default_params_path(graph: &Path) -> Option<PathBuf> {
    let name = graph.file_name()?.to_str()?;
    let prefix = name.strip_suffix("-graph.json")?;
    Some(graph.with_file_name(format!("{prefix}.safetensors")))
}

/// Loads the parameters the graph needs from a safetensors file, checking names and types.
fn load_params(g: &Graph, path: Option<&Path>) -> Result<HashMap<String, Tensor>> {
    let params = g.params();
    if params.is_empty() {
        return Ok(HashMap::new());
    }
    let Some(path) = path else {
        let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
        return Err(Error::invalid(
            "kiln run",
            format!(
                "the graph has {} parameters ({}) and no parameter file was given (--params FILE)",
                names.len(),
                names.join(", ")
            ),
        ));
    };
    let loaded: HashMap<String, Tensor> = serialize::load(path)?
        .into_iter()
        .map(|(n, a)| (n, a.to_tensor()))
        .collect();
    let mut problems = Vec::new();
    let mut out = HashMap::new();
    for (name, id) in params {
        let want = g.ty(id)?;
        match loaded.get(name) {
            None => problems.push(format!("{name} ({want}) is missing")),
            Some(t) if t.ty() != *want => problems.push(format!(
                "{name} is {} in the file, the graph needs {want}",
                t.ty()
            )),
            Some(t) => {
                out.insert(name.to_string(), t.clone());
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid(
            "kiln run",
            format!(
                "parameters from {}: {}",
                path.display(),
                problems.join("; ")
            ),
        ));
    }
    Ok(out)
}

/// Reads the inputs given on the command line, checking names, shapes and dtypes; fills the
/// rest with random values when asked.
fn load_inputs(g: &Graph, a: &RunArgs) -> Result<HashMap<String, Tensor>> {
    let inputs = g.inputs();
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for (name, file) in &a.inputs {
        let Some(&(_, id)) = inputs.iter().find(|(n, _)| n == name) else {
            return Err(Error::invalid(
                "kiln run",
                format!(
                    "--input {name}: the graph has no input {name:?} (its inputs: {})",
                    names.join(", ")
                ),
            ));
        };
        if out.contains_key(name) {
            return Err(Error::invalid(
                "kiln run",
                format!("--input {name} is given twice"),
            ));
        }
        let want = g.ty(id)?;
        let mut t = npy::read(file)?;
        if t.dtype() != want.dtype && t.dtype().is_float() && want.dtype.is_float() {
            eprintln!(
                "note: input {name}: converting {} from {} to {}",
                file.display(),
                t.dtype(),
                want.dtype
            );
            t = t.cast(want.dtype);
        }
        if t.ty() != *want {
            return Err(Error::shape(
                "kiln run",
                format!(
                    "input {name}: the graph expects {want}, {} holds {}",
                    file.display(),
                    t.ty()
                ),
            ));
        }
        out.insert(name.clone(), t);
    }
    let missing: Vec<(&str, kiln_ir::NodeId)> = inputs
        .iter()
        .copied()
        .filter(|(n, _)| !out.contains_key(*n))
        .collect();
    if !missing.is_empty() && !a.random_inputs {
        let list: Vec<String> = missing
            .iter()
            .map(|(n, id)| g.ty(*id).map(|t| format!("{n} ({t})")))
            .collect::<Result<_>>()?;
        return Err(Error::invalid(
            "kiln run",
            format!(
                "missing input(s) {}: give them with --input NAME=FILE.npy or use --random-inputs",
                list.join(", ")
            ),
        ));
    }
    for (i, (name, id)) in missing.into_iter().enumerate() {
        let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        out.insert(name.to_string(), random_tensor(g.ty(id)?, seed));
    }
    Ok(out)
}

/// Per-op-kind kernel time: calls and total duration.
#[derive(Debug, Default)]
struct Profile {
    by_op: HashMap<&'static str, (usize, Duration)>,
}

impl Profile {
    fn table(&self, runs: u32) -> String {
        let total: Duration = self.by_op.values().map(|(_, d)| *d).sum();
        let mut rows: Vec<(&str, usize, Duration)> =
            self.by_op.iter().map(|(k, (n, d))| (*k, *n, *d)).collect();
        rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
        let mut s = format!(
            "{:<24}  {:>7}  {:>12}  {:>12}  {:>6}\n",
            "op", "calls", "total ms", "per run ms", "%"
        );
        for (op, n, d) in rows {
            let ms = d.as_secs_f64() * 1e3;
            let pct = if total.is_zero() {
                0.0
            } else {
                100.0 * d.as_secs_f64() / total.as_secs_f64()
            };
            s.push_str(&format!(
                "{op:<24}  {n:>7}  {ms:>12.3}  {:>12.3}  {pct:>6.1}\n",
                ms / runs as f64
            ));
        }
        s.push_str(&format!(
            "{:<24}  {:>7}  {:>12.3}  {:>12.3}\n",
            "total",
            "",
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3 / runs as f64
        ));
        s
    }
}

/// The types of the `.npy` inputs, then `--shape` for the others.
fn run_input_types(a: &RunArgs) -> Result<Vec<(String, TensorType)>> {
    let mut types: Vec<(String, TensorType)> = Vec::new();
    for (name, file) in &a.inputs {
        if types.iter().any(|(n, _)| n == name) {
            return Err(Error::invalid(
                "kiln run",
                format!("--input {name} is given twice"),
            ));
        }
        types.push((name.clone(), npy::read(file)?.ty()));
    }
    for (name, ty) in &a.shapes {
        if !types.iter().any(|(n, _)| n == name) {
            types.push((name.clone(), ty.clone()));
        }
    }
    Ok(types)
}

fn run(a: &RunArgs) -> Result<()> {
    let (mut g, params) = if mxnet::symbol::is_symbol_file(&a.graph) {
        let model = load_mxnet(&a.graph, a.params.as_deref(), &run_input_types(a)?)?;
        (model.graph, model.params.into_iter().collect())
    } else {
        let g = load_graph(&a.graph)?;
        let params_path = a
            .params
            .clone()
            .or_else(|| default_params_path(&a.graph).filter(|p| p.exists()));
        let params = load_params(&g, params_path.as_deref())?;
        (g, params)
    };
    let inputs = load_inputs(&g, a)?;
    let pipeline = match a.passes {
        RunPasses::None => None,
        RunPasses::Training => Some(Pipeline::Training),
        RunPasses::Inference => Some(Pipeline::Inference),
    };
    if let Some(p) = pipeline {
        PassManager::new(p).run(&mut g)?;
    }
    let backend = a.backend.choice();
    let slots = infer_seed_slots(&g);
    let seeds: Vec<u64> = (0..slots as u64).map(|i| a.seed.wrapping_add(i)).collect();
    let exec = Executor::new(&g, slots, backend)?;
    let views: Vec<TensorView<'_>> = exec
        .bindings()
        .map(|(name, _)| {
            inputs
                .get(name)
                .or_else(|| params.get(name))
                .map(Tensor::view)
                .ok_or_else(|| Error::invalid("kiln run", format!("no value for {name:?}")))
        })
        .collect::<Result<_>>()?;
    let mut outputs = Vec::new();
    let mut times = Vec::with_capacity(a.repeat as usize);
    for _ in 0..a.repeat {
        let start = Instant::now();
        outputs = exec.run(&views, &seeds)?;
        times.push(start.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let best = times.iter().copied().min().unwrap_or_default();
    let mean = times.iter().sum::<Duration>() / a.repeat;
    eprintln!(
        "ran {} ops on the {} backend, {} time(s): best {:.3} ms, mean {:.3} ms",
        exec.num_ops(),
        backend.name(),
        a.repeat,
        ms(best),
        ms(mean)
    );

    if a.profile {
        let named: Vec<(&str, TensorView<'_>)> = g
            .inputs()
            .into_iter()
            .chain(g.params())
            .filter_map(|(n, _)| {
                inputs
                    .get(n)
                    .or_else(|| params.get(n))
                    .map(|t| (n, t.view()))
            })
            .collect();
        let kernels = backend.kernels();
        let mut prof = Profile::default();
        for _ in 0..a.repeat {
            g.run_with(&named, &mut |op, xs| {
                let start = Instant::now();
                let out = kernels.execute(op, xs);
                let e = prof.by_op.entry(op.name()).or_default();
                e.0 += 1;
                e.1 += start.elapsed();
                out
            })?;
        }
        println!(
            "kernel times on the {} backend over {} run(s):",
            backend.name(),
            a.repeat
        );
        print!("{}", prof.table(a.repeat));
    }

    if let Some(dir) = &a.output_dir {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        for (i, t) in outputs.iter().enumerate() {
            let path = dir.join(format!("output{i}.npy"));
            npy::write(&path, t)?;
            eprintln!("wrote {} ({})", path.display(), t.ty());
        }
    } else if let Some(path) = &a.output {
        let first = outputs
            .first()
            .ok_or_else(|| Error::invalid("kiln run", "the graph gave no outputs"))?;
        npy::write(path, first)?;
        eprintln!("wrote {} ({})", path.display(), first.ty());
    } else {
        for (i, t) in outputs.iter().enumerate() {
            println!("output {i}: {}", t.ty());
            println!("{}", preview(t));
        }
    }
    Ok(())
}

/// The first few values of a tensor, for printing.
fn preview(t: &Tensor) -> String {
    const SHOWN: usize = 16;
    let v = t.to_f64_vec();
    let mut parts: Vec<String> = v.iter().take(SHOWN).map(|x| format!("{x}")).collect();
    if v.len() > SHOWN {
        parts.push(format!("... ({} values)", v.len()));
    }
    format!("  [{}]", parts.join(", "))
}
