//! The pass manager: an ordered pipeline of switchable passes, with statistics, a verifier
//! between passes, and dumps of the graph after each pass.
//!
//! The default pipelines ([`Pipeline`]):
//!
//! ```text
//! training:   simplify -> fold -> cse -> dce -> fuse -> plan_memory
//! inference:  dropout -> bn_fold -> simplify -> fold -> cse -> dce -> fuse -> plan_memory
//! ```
//!
//! Shape/dtype inference runs when each node is built, and the verifier ([`crate::verify()`])
//! runs it again over the whole graph before the first pass and after each pass (always in
//! debug builds and tests; in release builds when [`PassManager::set_verify`] or
//! `KILN_VERIFY=1` asks). `KILN_PASSES=-fuse` turns fusion off (every op then stays its own
//! kernel). `plan_memory` ([`crate::memory`]) leaves the graph as it is and puts its plan in
//! the statistics and the dumps (`NN-plan_memory.plan.txt`).
//!
//! `dropout` is not optional: an inference graph with dropout left in computes the wrong
//! function, so `KILN_PASSES=none` keeps it (naming it, `-dropout`, turns it off).
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType, UnaryOp};
//! use kiln_passes::{PassManager, Pipeline};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([8], DType::F32))?;
//! let a = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
//! let b = g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x])?;
//! let y = g.add_op(Op::Binary { f: BinaryOp::Add }, &[a, b])?;
//! g.set_outputs(vec![y])?;
//!
//! let mut pm = PassManager::new(Pipeline::Training);
//! pm.disable("simplify")?;
//! let stats = pm.run(&mut g)?;
//! assert_eq!(stats.get("cse").map(|s| (s.before.nodes, s.after.nodes)), Some((4, 3)));
//! assert!(stats.get("simplify").is_none());
//! println!("{stats}");
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::env::{EnvConfig, Switch};
use crate::stats::{GraphCost, PassStats, StatsTable};
use crate::verify::verify;
use crate::{ConstFold, Cse, Dce, FoldBatchNorm, Fuse, Pass, PlanMemory, RemoveDropout, Simplify};
use kiln_ir::{Error, Graph, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Pass names reserved for passes that do not exist yet; switching them is a no-op.
pub const RESERVED: [&str; 0] = [];

/// Which default pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Graphs that train (forward and backward): no inference-only rewrites.
    Training,
    /// Inference graphs: dropout removed, batch norm folded, then the training passes.
    Inference,
    /// No passes (add them with [`PassManager::push`]).
    Empty,
}

/// Where the graph is dumped after passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// Print the text form to stderr after these passes: `None` for none, `Some(vec![])`
    /// for every pass.
    pub stderr: Option<Vec<String>>,
    /// Write `NN-pass.txt` and `NN-pass.dot` here after every pass (`00-input` first).
    pub dir: Option<PathBuf>,
}

impl DumpOptions {
    fn prints(&self, pass: &str) -> bool {
        self.stderr
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.iter().any(|n| n == pass))
    }
}

struct Entry {
    pass: Box<dyn Pass>,
    enabled: bool,
}

/// Runs an ordered list of passes (see the module docs).
pub struct PassManager {
    entries: Vec<Entry>,
    verify: bool,
    dump: DumpOptions,
}

impl PassManager {
    /// A default pipeline, verification on in debug builds, no dumps. The environment is not
    /// read: call [`PassManager::apply_env`] for that.
    pub fn new(pipeline: Pipeline) -> Self {
        let passes: Vec<Box<dyn Pass>> = match pipeline {
            Pipeline::Training => vec![
                Box::new(Simplify::default()),
                Box::new(ConstFold::default()),
                Box::new(Cse),
                Box::new(Dce),
                Box::new(Fuse::default()),
                Box::new(PlanMemory),
            ],
            Pipeline::Inference => vec![
                Box::new(RemoveDropout),
                Box::new(FoldBatchNorm),
                Box::new(Simplify::default()),
                Box::new(ConstFold::default()),
                Box::new(Cse),
                Box::new(Dce),
                Box::new(Fuse::default()),
                Box::new(PlanMemory),
            ],
            Pipeline::Empty => Vec::new(),
        };
        PassManager {
            entries: passes
                .into_iter()
                .map(|pass| Entry {
                    pass,
                    enabled: true,
                })
                .collect(),
            verify: cfg!(debug_assertions),
            dump: DumpOptions::default(),
        }
    }

    /// A default pipeline configured from the process environment (see [`crate::env`]).
    pub fn from_env(pipeline: Pipeline) -> Result<Self> {
        let mut pm = PassManager::new(pipeline);
        pm.apply_env(&EnvConfig::from_env()?)?;
        Ok(pm)
    }

    /// Applies settings parsed from the environment: pass switches left to right, dumps,
    /// and the verifier (which `KILN_VERIFY=0` cannot turn off in debug builds).
    pub fn apply_env(&mut self, cfg: &EnvConfig) -> Result<()> {
        for s in &cfg.switches {
            match s {
                Switch::NoneOptional => self.disable_optional(),
                Switch::All => self.entries.iter_mut().for_each(|e| e.enabled = true),
                Switch::Off(n) => self.set_enabled(n, false)?,
                Switch::On(n) => self.set_enabled(n, true)?,
            }
        }
        if cfg.dump.is_some() {
            self.dump.stderr = cfg.dump.clone();
        }
        if cfg.dump_dir.is_some() {
            self.dump.dir = cfg.dump_dir.clone();
        }
        if let Some(v) = cfg.verify {
            self.set_verify(v || cfg!(debug_assertions));
        }
        Ok(())
    }

    /// Appends a pass (enabled). Errors if a pass of that name is already there.
    pub fn push(&mut self, pass: Box<dyn Pass>) -> Result<()> {
        if self.entries.iter().any(|e| e.pass.name() == pass.name()) {
            return Err(Error::Graph(format!(
                "pass manager: a pass named {:?} is already in the pipeline",
                pass.name()
            )));
        }
        self.entries.push(Entry {
            pass,
            enabled: true,
        });
        Ok(())
    }

    /// Switches pass `name` on or off. Unknown names are an error listing the known ones;
    /// the reserved names ([`RESERVED`]) are accepted and ignored.
    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> Result<()> {
        if RESERVED.contains(&name) {
            return Ok(());
        }
        match self.entries.iter_mut().find(|e| e.pass.name() == name) {
            Some(e) => {
                e.enabled = enabled;
                Ok(())
            }
            None => Err(Error::Graph(format!(
                "pass manager: no pass named {name:?} (passes: {})",
                self.pass_names().join(", ")
            ))),
        }
    }

    /// Turns pass `name` off.
    pub fn disable(&mut self, name: &str) -> Result<()> {
        self.set_enabled(name, false)
    }

    /// Turns pass `name` on.
    pub fn enable(&mut self, name: &str) -> Result<()> {
        self.set_enabled(name, true)
    }

    /// Turns every optional pass off (`KILN_PASSES=none`).
    pub fn disable_optional(&mut self) {
        for e in &mut self.entries {
            if e.pass.optional() {
                e.enabled = false;
            }
        }
    }

    /// The passes' names, in pipeline order.
    pub fn pass_names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.pass.name()).collect()
    }

    /// The names of the passes that will run, in order.
    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.entries
            .iter()
            .filter(|e| e.enabled)
            .map(|e| e.pass.name())
            .collect()
    }

    /// Verifies the graph before the first pass and after each pass (or not).
    pub fn set_verify(&mut self, on: bool) {
        self.verify = on;
    }

    /// Whether the verifier runs.
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// Sets where graphs are dumped.
    pub fn set_dump(&mut self, dump: DumpOptions) {
        self.dump = dump;
    }

    /// Runs the enabled passes in order on `graph`; returns one statistics row per pass.
    /// A pass that breaks an invariant is reported by name with the verifier's message.
    pub fn run(&self, graph: &mut Graph) -> Result<StatsTable> {
        if self.verify {
            verify(graph).map_err(|e| Error::Graph(format!("input graph: {e}")))?;
        }
        self.dump_after(0, "input", graph, &[])?;
        let mut table = StatsTable::default();
        for (i, e) in self.entries.iter().filter(|e| e.enabled).enumerate() {
            let name = e.pass.name();
            let before = GraphCost::of(graph);
            let start = Instant::now();
            let report = e
                .pass
                .run(graph)
                .map_err(|err| Error::Graph(format!("pass {name}: {err}")))?;
            let time = start.elapsed();
            if self.verify {
                verify(graph)
                    .map_err(|err| Error::Graph(format!("pass {name} broke the graph: {err}")))?;
            }
            self.dump_after(i + 1, name, graph, &report.artifacts)?;
            table.rows.push(PassStats {
                pass: name.to_string(),
                before,
                after: GraphCost::of(graph),
                firings: report.firings,
                time,
                memory: report.memory,
            });
        }
        Ok(table)
    }

    fn dump_after(
        &self,
        index: usize,
        name: &str,
        graph: &Graph,
        artifacts: &[(String, String)],
    ) -> Result<()> {
        if index > 0 && self.dump.prints(name) {
            eprintln!("--- after {name} ---\n{}", graph.to_text());
            for (suffix, text) in artifacts {
                eprintln!("--- {name} {suffix} ---\n{text}");
            }
        }
        if let Some(dir) = &self.dump.dir {
            write_dump(dir, index, name, graph, artifacts)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for PassManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassManager")
            .field("passes", &self.pass_names())
            .field("enabled", &self.enabled_names())
            .field("verify", &self.verify)
            .field("dump", &self.dump)
            .finish()
    }
}

fn write_dump(
    dir: &Path,
    index: usize,
    name: &str,
    graph: &Graph,
    artifacts: &[(String, String)],
) -> Result<()> {
    let io = |path: &Path, source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for (ext, body) in [("txt", graph.to_text()), ("dot", graph.to_dot())] {
        let path = dir.join(format!("{index:02}-{name}.{ext}"));
        std::fs::write(&path, body).map_err(|e| io(&path, e))?;
    }
    for (suffix, body) in artifacts {
        let path = dir.join(format!("{index:02}-{name}.{suffix}"));
        std::fs::write(&path, body).map_err(|e| io(&path, e))?;
    }
    Ok(())
}
