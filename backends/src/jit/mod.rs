//! The Cranelift backend: fused kernels JIT-compiled to native code.
//!
//! [`JitBackend`] implements [`Kernels`]. An [`Op::Fused`] node whose kernel it can compile
//! runs as one native function; every other op, and every kernel it cannot compile, runs
//! through [`CpuBackend`] (a fused kernel op by op with [`FusedKernel::eval`]), so any graph
//! runs and results match the interpreter's semantics.
//!
//! What compiles:
//! - **Elementwise** kernels: any chain of `Unary`/`Binary`/`Scalar`/`Where`/`Clip`/`Cast`
//!   ops with broadcasting inputs. The output is iterated as `[outer.., rows, inner]`:
//!   dimensions are collapsed as far as every input's strides allow, each input is contiguous
//!   or one repeated value along `inner` (compiled in), and moves by a runtime row stride
//!   along `rows` (0 for a row-broadcast input such as a bias); the driver walks the outer
//!   dimensions with precomputed strides and the kernel bumps pointers (no per-element index
//!   arithmetic). An all-f32 kernel's inner loop runs in f32x4 with a scalar tail; `a*b+c`
//!   becomes a fused multiply-add when the host has FMA. Kernels with f64 or i32 values
//!   (casts between f32/f64/i32, integer arithmetic, comparisons and `where` on any of them)
//!   run a scalar loop with the interpreter's exact semantics; other dtypes (i64, u8, bool)
//!   and ops without an exact lowering (integer division, f64 transcendentals) run op by op.
//! - **Reductions over any axis set** — `sum`, `mean`, `prod`, `max`, `min`, `norm`, and
//!   `argmax`/`argmin` over one axis or the flattened array — with their elementwise
//!   prologue compiled into the same loop and their elementwise epilogue run as a second
//!   compiled pass over the (small) result. Inner reductions fold rows with four f32x4
//!   accumulators; reductions that keep the contiguous axis (e.g. `sum(axis=0)`, batch-norm
//!   statistics over `(0, 2, 3)` walk `[N, C, HW]` rows) add whole rows into the output in
//!   vectors. See [`reduce`] for the walk and [`codegen`] for the summation order. Bare
//!   `Reduce`/`ArgReduce` nodes (not fused because their result has several users, such as
//!   batch norm's mean) compile the same way through [`Kernels::execute`].
//! - **Softmax**, **log-softmax** along the last axis and **softmax cross-entropy**, each one
//!   kernel with its prologue.
//! - **Epilogue** kernels: the GEMM/convolution (`body[0]`) runs on [`CpuBackend`], then the
//!   elementwise remainder runs as one compiled pass over its result.
//!
//! Numerics (f32, against [`kiln_ir::interp`]): arithmetic, comparisons, `where`, `clip`,
//! `relu`, `maximum`/`minimum` (with the interpreter's NaN rules) are bitwise equal when FMA
//! contraction is off; with it, `a*b+c` differs by at most 1 ulp of the product (relative
//! error ≤ 1.2e-7 away from cancellation). Transcendentals carry [`crate::clif_math`]'s
//! stated error. Reductions accumulate in f32 in a different order than the interpreter's f64
//! sum, so they agree within `n · 2^-24 · Σ|x|` (tests use relative 1e-5 on well-conditioned
//! data).
//!
//! Compiled functions are cached by the kernel's *shape-free* structure (the program, the
//! per-input inner-loop modes and the kernel variant): element counts and strides are runtime
//! arguments, so a re-trace with a new batch size compiles nothing new. [`JitStats`] counts
//! compilations, cache hits and compile time; [`JitBackend::records`] lists every compiled
//! kernel with its compile time.
//!
//! Large kernels split their rows across rayon's pool once they have at least
//! [`JitOptions::parallel_min_elems`] elements; small ones run inline on the caller.
//!
//! Dumps: `KILN_DUMP=clif` prints the Cranelift IR of every compiled kernel to stderr,
//! `KILN_DUMP=asm` (or `clif,asm`) also the disassembly, and `KILN_DUMP_DIR=dir` writes each
//! kernel's IR to `dir/kernel-N.clif`. `KILN_JIT_FMA=0` turns FMA contraction off.
//!
//! Memory: each backend instance owns one `JITModule`; Cranelift frees JIT code only per
//! module, so compiled code lives as long as the backend (the process-wide
//! [`JitBackend::global`] never frees it; a dropped instance frees its module).

mod codegen;
mod emit;
mod program;
mod reduce;

use crate::{CpuBackend, Kernels};
use codegen::{Body, Comb, Mode};
use cranelift_codegen::ir::UserFuncName;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use kiln_ir::shape::normalize_axis;
use kiln_ir::{
    ArgReduceOp, DType, Error, FusedArg, FusedInst, FusedKernel, FusedKind, Op, ReduceOp, Result,
    Tensor, TensorView,
};
use program::Program;
use rayon::prelude::*;
use reduce::{FoldKind, RedLayout};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The machine signature of every kernel (see [`codegen`]).
type KernelFn =
    unsafe extern "C" fn(usize, usize, *const *const f32, *const isize, *mut f32, isize, *mut f32);

/// Settings of a [`JitBackend`].
#[derive(Clone, Debug)]
pub struct JitOptions {
    /// Contract `a*b ± c` into fused multiply-adds (only used where the host has FMA).
    pub fma: bool,
    /// Print each kernel's Cranelift IR to stderr.
    pub dump_clif: bool,
    /// Print each kernel's disassembly to stderr.
    pub dump_asm: bool,
    /// Write each kernel's IR to `kernel-N.clif` in this directory.
    pub dump_dir: Option<PathBuf>,
    /// Kernels with at least this many elements split their rows across threads.
    pub parallel_min_elems: usize,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            fma: true,
            dump_clif: false,
            dump_asm: false,
            dump_dir: None,
            parallel_min_elems: 1 << 16,
        }
    }
}

impl JitOptions {
    /// The defaults, adjusted by `KILN_DUMP` (`clif`, `asm`), `KILN_DUMP_DIR` and
    /// `KILN_JIT_FMA=0`.
    pub fn from_env() -> Self {
        let mut o = JitOptions::default();
        if let Ok(d) = std::env::var("KILN_DUMP") {
            for part in d.split(',') {
                match part.trim() {
                    "clif" => o.dump_clif = true,
                    "asm" | "disasm" => o.dump_asm = true,
                    _ => {}
                }
            }
        }
        if let Ok(dir) = std::env::var("KILN_DUMP_DIR") {
            if !dir.is_empty() {
                o.dump_dir = Some(PathBuf::from(dir));
            }
        }
        if std::env::var("KILN_JIT_FMA").is_ok_and(|v| v == "0") {
            o.fma = false;
        }
        o
    }
}

/// Counters of a [`JitBackend`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Native functions compiled.
    pub kernels_compiled: usize,
    /// Fused-kernel runs that found their function already compiled.
    pub cache_hits: usize,
    /// Total time spent compiling (IR building, Cranelift, linking).
    pub compile_time: Duration,
    /// Fused-kernel runs that executed natively.
    pub native_runs: usize,
    /// Fused-kernel runs that fell back to running op by op.
    pub fallback_runs: usize,
}

/// One compiled kernel.
#[derive(Clone, Debug)]
pub struct KernelRecord {
    /// Sequence number (the `N` of `kernel-N.clif`).
    pub id: usize,
    /// `map`, `reduce` or `softmax`.
    pub variant: &'static str,
    /// The cache key (the shape-free program and the inputs' inner-loop modes).
    pub key: String,
    /// Time from IR building to a callable function.
    pub compile_time: Duration,
    /// Bytes of machine code.
    pub code_bytes: usize,
}

/// The JIT module and what was compiled into it.
struct State {
    module: JITModule,
    /// Compiled functions by key; `None` records a kernel that has no lowering.
    cache: HashMap<String, Option<KernelFn>>,
    stats: JitStats,
    records: Vec<KernelRecord>,
}

// SAFETY: `JITModule` holds raw pointers to the code and data memory it owns; nothing in it is
// tied to the creating thread, and all access goes through the `Mutex` in `JitBackend`.
unsafe impl Send for State {}

/// The Cranelift backend (see the module documentation).
pub struct JitBackend {
    state: Option<Mutex<State>>,
    opts: JitOptions,
    host_fma: bool,
}

impl std::fmt::Debug for JitBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitBackend")
            .field("native", &self.state.is_some())
            .field("opts", &self.opts)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for JitBackend {
    fn default() -> Self {
        JitBackend::new()
    }
}

impl Drop for JitBackend {
    fn drop(&mut self) {
        if let Some(m) = self.state.take() {
            if let Ok(s) = m.into_inner() {
                // SAFETY: function pointers into this module are only called from `&self`
                // methods, none of which can run any more: the backend is being dropped.
                unsafe { s.module.free_memory() };
            }
        }
    }
}

fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn jit_error(what: impl std::fmt::Display) -> Error {
    Error::invalid("fused", format!("cranelift: {what}"))
}

impl JitBackend {
    /// A backend with options from the environment ([`JitOptions::from_env`]). Where
    /// Cranelift does not support the host, every op runs on [`CpuBackend`].
    pub fn new() -> Self {
        JitBackend::with_options(JitOptions::from_env())
    }

    /// A backend with explicit options.
    pub fn with_options(opts: JitOptions) -> Self {
        let state = Self::make_module().ok().map(|module| {
            Mutex::new(State {
                module,
                cache: HashMap::new(),
                stats: JitStats::default(),
                records: Vec::new(),
            })
        });
        JitBackend {
            state,
            opts,
            host_fma: host_has_fma(),
        }
    }

    /// The process-wide backend the graph executor uses (created on first use).
    pub fn global() -> &'static JitBackend {
        static GLOBAL: OnceLock<JitBackend> = OnceLock::new();
        GLOBAL.get_or_init(JitBackend::new)
    }

    fn make_module() -> Result<JITModule> {
        let mut fb = settings::builder();
        let set = |fb: &mut settings::Builder, k: &str, v: &str| {
            fb.set(k, v)
                .map_err(|e| jit_error(format!("setting {k}: {e}")))
        };
        set(&mut fb, "opt_level", "speed")?;
        // The verifier costs 40-60% of compile time; keep it for debug builds.
        set(
            &mut fb,
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        set(&mut fb, "is_pic", "false")?;
        set(&mut fb, "use_colocated_libcalls", "false")?;
        let isa = cranelift_native::builder()
            .map_err(jit_error)?
            .finish(settings::Flags::new(fb))
            .map_err(jit_error)?;
        Ok(JITModule::new(JITBuilder::with_isa(
            isa,
            default_libcall_names(),
        )))
    }

    /// True when the host is supported (otherwise everything runs on [`CpuBackend`]).
    pub fn is_native(&self) -> bool {
        self.state.is_some()
    }

    /// The counters so far.
    pub fn stats(&self) -> JitStats {
        self.with_state(|s| s.stats).unwrap_or_default()
    }

    /// Every kernel compiled so far, in order.
    pub fn records(&self) -> Vec<KernelRecord> {
        self.with_state(|s| s.records.clone()).unwrap_or_default()
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let m = self.state.as_ref()?;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut g))
    }

    /// Whether `kernel` would run natively on `inputs` (compiling it if needed).
    pub fn compiles(&self, kernel: &FusedKernel, inputs: &[TensorView<'_>]) -> bool {
        self.plan(kernel, inputs).is_some()
    }

    /// A one-instruction kernel for a bare f32 reduction (the graph runs a reduction whose
    /// result has several users, such as batch-norm's mean, unfused), so that it compiles
    /// like a fused one; `None` to run it on [`CpuBackend`].
    fn single_op_kernel(&self, op: &Op, inputs: &[TensorView<'_>]) -> Option<FusedKernel> {
        self.state.as_ref()?;
        let [x] = inputs else { return None };
        if x.dtype() != DType::F32 {
            return None;
        }
        // A bare sum/mean/max that keeps the last axis (a bias gradient's `sum(axis=0)`)
        // runs on the CPU kernels: measured in release on [4096, 1024], they read 14.9 GB/s
        // against the compiled column fold's 9.8 (which still pays off inside a fused kernel,
        // where it saves the prologue's round trip through memory).
        if let Op::Reduce {
            f: ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max,
            axes: Some(axes),
            ..
        } = op
        {
            let rank = x.shape.rank();
            let last = rank.checked_sub(1)?;
            let reduces_last = axes
                .iter()
                .any(|&a| normalize_axis(a, rank, "reduce").ok() == Some(last));
            if !reduces_last && x.shape[last] > 1 {
                return None;
            }
        }
        let ty = kiln_ir::infer::infer(op, &[x.ty()]).ok()?;
        FusedKernel::new(
            vec![x.ty()],
            vec![FusedInst::new(op.clone(), vec![FusedArg::Input(0)], ty)],
            0,
        )
        .ok()
    }

    /// Runs a fused kernel: natively when it compiles, otherwise op by op on [`CpuBackend`].
    pub fn run_fused(&self, kernel: &FusedKernel, inputs: &[TensorView<'_>]) -> Result<Tensor> {
        if let Some(plan) = self.plan(kernel, inputs) {
            if let Some(t) = self.run_plan(&plan, kernel, inputs)? {
                self.with_state(|s| s.stats.native_runs += 1);
                return Ok(t);
            }
        }
        self.with_state(|s| s.stats.fallback_runs += 1);
        kernel.eval(inputs, &mut |op, ins| CpuBackend.execute(op, ins))
    }

    /// Looks `key` up in the cache, compiling `body` on a miss.
    fn function(
        &self,
        key: String,
        variant: &'static str,
        body: &Body,
        modes: &[Mode],
    ) -> Option<KernelFn> {
        let m = self.state.as_ref()?;
        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&f) = st.cache.get(&key) {
            if f.is_some() {
                st.stats.cache_hits += 1;
            }
            return f;
        }
        let t0 = Instant::now();
        let compiled = self.compile(&mut st, body, modes);
        let dt = t0.elapsed();
        let f = compiled.map(|(f, bytes)| {
            let id = st.records.len();
            st.stats.kernels_compiled += 1;
            st.stats.compile_time += dt;
            st.records.push(KernelRecord {
                id,
                variant,
                key: key.clone(),
                compile_time: dt,
                code_bytes: bytes,
            });
            f
        });
        st.cache.insert(key, f);
        f
    }

    fn compile(&self, st: &mut State, body: &Body, modes: &[Mode]) -> Option<(KernelFn, usize)> {
        let module = &mut st.module;
        let config = module.target_config();
        let ptr = config.pointer_type();
        let sig = codegen::signature(module.target_config().default_call_conv, ptr);
        let n = st.records.len();
        let name = format!("kiln_kernel_{n}");
        let id = module.declare_function(&name, Linkage::Local, &sig).ok()?;
        let mut ctx = module.make_context();
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let mut fctx = cranelift_frontend::FunctionBuilderContext::new();
        {
            let mut b = cranelift_frontend::FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let fma = self.opts.fma && self.host_fma;
            codegen::build(&mut b, body, modes, modes.len(), fma)?;
            b.finalize(config);
        }
        let text = (self.opts.dump_clif || self.opts.dump_dir.is_some())
            .then(|| ctx.func.display().to_string());
        if let Some(t) = &text {
            if self.opts.dump_clif {
                eprintln!("; kiln kernel {n}\n{t}");
            }
            if let Some(dir) = &self.opts.dump_dir {
                // A dump is a debugging aid: failing to write one must not fail the run.
                let _ = std::fs::create_dir_all(dir)
                    .and_then(|_| std::fs::write(dir.join(format!("kernel-{n}.clif")), t));
            }
        }
        ctx.set_disasm(self.opts.dump_asm);
        if let Err(e) = module.define_function(id, &mut ctx) {
            if self.opts.dump_clif {
                eprintln!("; kiln kernel {n} failed to compile: {e:?}");
            }
            module.clear_context(&mut ctx);
            return None;
        }
        let bytes = ctx
            .compiled_code()
            .map(|c| c.code_buffer().len())
            .unwrap_or(0);
        if self.opts.dump_asm {
            if let Some(asm) = ctx.compiled_code().and_then(|c| c.vcode.clone()) {
                eprintln!("; kiln kernel {n} disassembly\n{asm}");
            }
        }
        module.clear_context(&mut ctx);
        module.finalize_definitions().ok()?;
        let p = module.get_finalized_function(id);
        // SAFETY: `p` is the entry of a function just compiled with `codegen::signature`: six
        // pointer-sized integer arguments, no return value, the platform's default calling
        // convention, which is `KernelFn`'s `extern "C"` ABI.
        let f: KernelFn = unsafe { std::mem::transmute::<*const u8, KernelFn>(p) };
        Some((f, bytes))
    }
}

impl Kernels for JitBackend {
    fn name(&self) -> &'static str {
        "cranelift"
    }
    fn execute(&self, op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor> {
        match op {
            Op::Fused { kernel } => self.run_fused(kernel, inputs),
            Op::Reduce { .. } | Op::ArgReduce { .. } => match self.single_op_kernel(op, inputs) {
                Some(k) => self.run_fused(&k, inputs),
                None => CpuBackend.execute(op, inputs),
            },
            _ => CpuBackend.execute(op, inputs),
        }
    }

    /// Fused kernels build their result in `out`'s allocation when it fits (through the CPU
    /// backend's recycling); other ops go to [`CpuBackend::execute_into`].
    fn execute_into(&self, op: &Op, inputs: &[TensorView<'_>], out: Tensor) -> Result<Tensor> {
        match op {
            Op::Fused { kernel } => crate::cpu::offering(out, || self.run_fused(kernel, inputs)),
            _ => CpuBackend.execute_into(op, inputs, out),
        }
    }

    /// Elementwise fused kernels that compile run natively over `buf` (the generated loop
    /// reads position `i` of every input before writing position `i`); other ops go to
    /// [`CpuBackend`]'s in-place forms.
    fn execute_overwriting(
        &self,
        op: &Op,
        others: &[TensorView<'_>],
        target: usize,
        buf: Tensor,
    ) -> Result<Tensor> {
        let Op::Fused { kernel } = op else {
            return CpuBackend.execute_overwriting(op, others, target, buf);
        };
        let full = crate::with_target(others, target, &buf);
        let plan = self.plan(kernel, &full);
        drop(full);
        match plan {
            Some(plan) => self.run_plan_overwriting(&plan, kernel, others, target, buf),
            None => {
                let full = crate::with_target(others, target, &buf);
                self.run_fused(kernel, &full)
            }
        }
    }

    /// Fused kernels are planned once (the compiled function looked up, the loop layout
    /// worked out) when this is the global backend; other ops have nothing to prepare.
    fn prepare(
        &self,
        op: &Op,
        inputs: &[TensorView<'_>],
    ) -> Option<std::sync::Arc<dyn crate::PreparedKernel>> {
        let Op::Fused { kernel } = op else {
            return None;
        };
        let backend = JitBackend::global();
        if !std::ptr::eq(self, backend) {
            return None;
        }
        let plan = backend.plan(kernel, inputs)?;
        Some(std::sync::Arc::new(PreparedFused {
            backend,
            kernel: (**kernel).clone(),
            plan,
        }))
    }
}

// ----- prepared and in-place runs (the executor's seam) ------------------------------------

/// A fused kernel planned once for one set of input types.
struct PreparedFused {
    backend: &'static JitBackend,
    kernel: FusedKernel,
    plan: Plan,
}

impl std::fmt::Debug for PreparedFused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.plan {
            Plan::Map { .. } => "map",
            Plan::Reduce { .. } => "reduce",
            Plan::Epilogue { .. } => "epilogue",
            Plan::Fold { .. } => "fold",
        };
        write!(
            f,
            "PreparedFused({kind}, {} inputs)",
            self.kernel.inputs.len()
        )
    }
}

impl crate::PreparedKernel for PreparedFused {
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Tensor> {
        let b = self.backend;
        if let Some(t) = b.run_plan(&self.plan, &self.kernel, inputs)? {
            b.with_state(|s| s.stats.native_runs += 1);
            return Ok(t);
        }
        b.with_state(|s| s.stats.fallback_runs += 1);
        self.kernel
            .eval(inputs, &mut |op, ins| CpuBackend.execute(op, ins))
    }

    fn run_into(&self, inputs: &[TensorView<'_>], out: Tensor) -> Result<Tensor> {
        crate::cpu::offering(out, || self.run(inputs))
    }

    fn run_overwriting(
        &self,
        others: &[TensorView<'_>],
        target: usize,
        buf: Tensor,
    ) -> Result<Tensor> {
        self.backend
            .run_plan_overwriting(&self.plan, &self.kernel, others, target, buf)
    }
}

impl JitBackend {
    /// Runs `plan` with `buf` as input `target`, writing the result over `buf` when the plan
    /// is one elementwise pass that reads `buf` element by element; otherwise into a fresh
    /// allocation.
    fn run_plan_overwriting(
        &self,
        plan: &Plan,
        kernel: &FusedKernel,
        others: &[TensorView<'_>],
        target: usize,
        mut buf: Tensor,
    ) -> Result<Tensor> {
        let out_n = kernel.output_type().shape.numel();
        if let Plan::Map { f, layout } = plan {
            let contig = layout.modes.get(target) == Some(&Mode::Contig);
            let fits = buf.ty() == *kernel.output_type() && buf.storage().len() == out_n;
            let mut ptrs: Vec<*const f32> = Vec::with_capacity(others.len() + 1);
            for v in others {
                match v.data {
                    kiln_ir::DataRef::F32(s) => ptrs.push(s.as_ptr()),
                    _ => break,
                }
            }
            if contig && fits && ptrs.len() == others.len() && target <= others.len() {
                if let kiln_ir::Storage::F32(v) = buf.storage_mut() {
                    let out = v.as_mut_ptr();
                    ptrs.insert(target, out as *const f32);
                    // SAFETY: every pointer addresses a whole input of the kernel's types
                    // (the plan was made for them), `out` addresses `out_n` f32 of `buf`,
                    // which nothing else references while we hold it; the target input is
                    // read contiguously, position `i` before position `i` is written.
                    unsafe { self.map_to(*f, layout, &ptrs, out, out_n) };
                    self.with_state(|s| s.stats.native_runs += 1);
                    return Ok(buf);
                }
            }
        }
        let full = crate::with_target(others, target, &buf);
        if let Some(t) = self.run_plan(plan, kernel, &full)? {
            self.with_state(|s| s.stats.native_runs += 1);
            return Ok(t);
        }
        self.with_state(|s| s.stats.fallback_runs += 1);
        kernel.eval(&full, &mut |op, ins| CpuBackend.execute(op, ins))
    }
}

// ----- planning ----------------------------------------------------------------------------

/// How a kernel's iteration space maps onto the native function's `[outer.., rows, inner]`.
#[derive(Clone, Debug)]
struct Layout {
    /// Collapsed outer dimensions; the last one is the native function's row loop.
    outer: Vec<usize>,
    /// Per input, its stride in elements along each outer dimension.
    strides: Vec<Vec<isize>>,
    inner: usize,
    modes: Vec<Mode>,
    /// Per input, its element size in bytes.
    sizes: Vec<usize>,
    /// The output's element size in bytes.
    out_size: usize,
}

impl Layout {
    /// The layout of iterating `dims` with inputs of `shapes` broadcast to it. With
    /// `keep_inner` the last axis stays the inner loop on its own (reductions along it);
    /// otherwise it may absorb outer axes. `None` when a shape does not broadcast.
    /// Inputs given as `None` are not read: they get stride 0 and [`Mode::Splat`].
    fn new(dims: &[usize], shapes: &[Option<&[usize]>], keep_inner: bool) -> Option<Layout> {
        let r = dims.len();
        let mut full: Vec<Vec<isize>> = Vec::with_capacity(shapes.len());
        for s in shapes {
            let Some(s) = *s else {
                full.push(vec![0; r]);
                continue;
            };
            if s.len() > r {
                return None;
            }
            let padded: Vec<usize> = std::iter::repeat_n(1, r - s.len())
                .chain(s.iter().copied())
                .collect();
            let mut st = vec![0isize; r];
            let mut acc = 1isize;
            for a in (0..r).rev() {
                if padded[a] != dims[a] && padded[a] != 1 {
                    return None;
                }
                st[a] = if padded[a] == 1 { 0 } else { acc };
                acc = acc.checked_mul(padded[a] as isize)?;
            }
            full.push(st);
        }
        let split = if keep_inner { r.saturating_sub(1) } else { r };
        // Collapse the outer axes (size-1 axes dropped).
        let mut od: Vec<usize> = Vec::new();
        let mut os: Vec<Vec<isize>> = vec![Vec::new(); shapes.len()];
        for a in 0..split {
            if dims[a] == 1 {
                continue;
            }
            let merge = !od.is_empty()
                && full
                    .iter()
                    .enumerate()
                    .all(|(k, st)| os[k].last().copied() == Some(st[a] * dims[a] as isize));
            if merge {
                let last = od.len() - 1;
                od[last] *= dims[a];
                for (k, st) in full.iter().enumerate() {
                    os[k][last] = st[a];
                }
            } else {
                od.push(dims[a]);
                for (k, st) in full.iter().enumerate() {
                    os[k].push(st[a]);
                }
            }
        }
        let (inner, modes) = if keep_inner {
            let inner = if r == 0 { 1 } else { dims[r - 1] };
            let modes = full
                .iter()
                .map(|st| {
                    if r > 0 && st[r - 1] == 1 && inner != 1 {
                        Mode::Contig
                    } else {
                        Mode::Splat
                    }
                })
                .collect();
            (inner, modes)
        } else if let Some(inner) = od.pop() {
            let mut modes = Vec::with_capacity(shapes.len());
            for s in os.iter_mut() {
                modes.push(match s.pop() {
                    Some(1) => Mode::Contig,
                    Some(0) => Mode::Splat,
                    _ => return None,
                });
            }
            (inner, modes)
        } else {
            (1, vec![Mode::Splat; shapes.len()])
        };
        if od.is_empty() {
            od.push(1);
            for s in os.iter_mut() {
                s.push(0);
            }
        }
        Some(Layout {
            outer: od,
            strides: os,
            inner,
            modes,
            sizes: vec![4; shapes.len()],
            out_size: 4,
        })
    }

    /// Splits a single long row into `[n / block, block]` rows plus a remainder, so that it
    /// can be spread over threads. Returns the remainder's length.
    fn split_row(&mut self, block: usize) -> usize {
        if self.outer != [1] || self.inner < 2 * block {
            return 0;
        }
        let rows = self.inner / block;
        let rem = self.inner % block;
        self.outer = vec![rows];
        for (k, s) in self.strides.iter_mut().enumerate() {
            s[0] = if self.modes[k] == Mode::Contig {
                block as isize
            } else {
                0
            };
        }
        self.inner = block;
        rem
    }
}

/// What to run for one fused-kernel call.
enum Plan {
    /// One elementwise pass over the output.
    Map { f: KernelFn, layout: Layout },
    /// A reduction (or softmax) pass, then optionally an elementwise epilogue over its result
    /// (reading the reduction's result as an extra input after the kernel's own).
    Reduce {
        f: KernelFn,
        layout: Layout,
        /// Output elements per row (1 for a reduction, `inner` for softmax).
        per_row: usize,
        /// The reduction's output shape.
        dims: Vec<usize>,
        epilogue: Option<(KernelFn, Layout)>,
    },
    /// `body[0]` on the CPU backend, then a compiled elementwise pass.
    Epilogue { f: KernelFn, layout: Layout },
    /// A reduction over any axes (or an argmax/argmin), then optionally an elementwise
    /// epilogue over its result.
    Fold {
        f: KernelFn,
        layout: RedLayout,
        /// The output's starting value (the fold's identity; 0 for an index).
        init: f32,
        /// Argmax/argmin over a non-contiguous axis: the running best values start here.
        aux: Option<f32>,
        post: Post,
        /// Elements folded into each output.
        count: usize,
        n_out: usize,
        x_numel: usize,
        epilogue: Option<(KernelFn, Layout)>,
    },
}

/// What happens to a fold's result before the epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Post {
    None,
    /// Divide by the count (in f64, rounded once, as the interpreter's mean).
    Mean,
    /// Square root (the L2 norm).
    Sqrt,
}

/// The index of a kernel's single `ArgReduce`, when every other instruction is elementwise,
/// those after it have its output shape, and no other reduction-like op is present.
fn arg_reduction(kernel: &FusedKernel) -> Option<usize> {
    let mut found = None;
    for (j, inst) in kernel.body.iter().enumerate() {
        match inst.op {
            Op::ArgReduce { .. } if found.is_none() => found = Some(j),
            _ if inst.op.is_elementwise() => {}
            _ => return None,
        }
    }
    let r = found?;
    let shape = &kernel.body[r].ty.shape;
    kernel.body[r + 1..]
        .iter()
        .all(|i| &i.ty.shape == shape)
        .then_some(r)
}

/// The shapes of the inputs `prog` reads (`None` for the others).
fn used_shapes<'a>(prog: &Program, shapes: &[&'a [usize]]) -> Vec<Option<&'a [usize]>> {
    let used = prog.inputs();
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| used.contains(&i).then_some(*s))
        .collect()
}

fn modes_key(modes: &[Mode]) -> String {
    modes
        .iter()
        .map(|m| if *m == Mode::Contig { 'c' } else { 's' })
        .collect()
}

impl JitBackend {
    /// Compiles (or finds) what runs `kernel` on inputs of these shapes; `None` to fall back.
    fn plan(&self, kernel: &FusedKernel, inputs: &[TensorView<'_>]) -> Option<Plan> {
        self.state.as_ref()?;
        if inputs.len() != kernel.inputs.len()
            || !program::SUPPORTED.contains(&kernel.output_type().dtype)
            // Multi-output kernels are not lowered yet: `execute_fused` runs their slices.
            || kernel.is_multi_output()
            || inputs
                .iter()
                .zip(&kernel.inputs)
                .any(|(v, t)| v.ty() != *t || v.data.len() != t.shape.numel())
        {
            return None;
        }
        let shapes: Vec<&[usize]> = kernel.inputs.iter().map(|t| t.shape.dims()).collect();
        let out_dims = kernel.output_type().shape.dims().to_vec();
        match kernel.kind() {
            FusedKind::Elementwise => {
                let prog = Program::from_kernel(kernel, kernel.output, &HashMap::new())?;
                let (f, layout) = self.map_fn(&prog, &out_dims, &shapes)?;
                Some(Plan::Map { f, layout })
            }
            _ if kernel.output_type().dtype != DType::F32 => None,
            FusedKind::Reduction => self.plan_reduction(kernel, &shapes, &out_dims),
            // Argmax/argmin with elementwise producers and consumers.
            FusedKind::Generic if arg_reduction(kernel).is_some() => {
                self.plan_fold(kernel, arg_reduction(kernel)?, &shapes, &out_dims)
            }
            FusedKind::Epilogue => {
                let head = kernel.body.first()?;
                if head.ty.dtype != DType::F32 || kernel.output == 0 {
                    return None;
                }
                let extra = HashMap::from([(0, kernel.inputs.len())]);
                let prog = Program::from_kernel(kernel, kernel.output, &extra)?;
                let mut sh = shapes.clone();
                sh.push(head.ty.shape.dims());
                let (f, layout) = self.map_fn(&prog, &out_dims, &sh)?;
                Some(Plan::Epilogue { f, layout })
            }
            FusedKind::Generic => None,
        }
    }

    /// The compiled elementwise function of `prog` over `dims`, with its layout.
    fn map_fn(
        &self,
        prog: &Program,
        dims: &[usize],
        shapes: &[&[usize]],
    ) -> Option<(KernelFn, Layout)> {
        let mut layout = Layout::new(dims, &used_shapes(prog, shapes), false)?;
        for (n, t) in prog.nodes.iter().zip(&prog.types) {
            if let program::Node::Input(i) = *n {
                *layout.sizes.get_mut(i)? = t.size_of();
            }
        }
        layout.out_size = prog.out_type().size_of();
        let key = format!("map|{}|{prog:?}", modes_key(&layout.modes));
        let f = self.function(key, "map", &Body::Map(prog.clone()), &layout.modes)?;
        Some((f, layout))
    }

    /// Plans a `Reduce`/`ArgReduce` at body index `ri` (see [`reduce`]).
    fn plan_fold(
        &self,
        kernel: &FusedKernel,
        ri: usize,
        shapes: &[&[usize]],
        out_dims: &[usize],
    ) -> Option<Plan> {
        let inst = kernel.body.get(ri)?;
        let arg = inst.args.first()?;
        let x_ty = match *arg {
            FusedArg::Input(i) => kernel.inputs.get(i)?,
            FusedArg::Value(j) => &kernel.body.get(j)?.ty,
        };
        if x_ty.dtype != DType::F32 || inst.ty.dtype != DType::F32 {
            return None;
        }
        let x_dims = x_ty.shape.dims();
        let rank = x_dims.len();
        let mut flags = vec![false; rank];
        let mut set = |axis: isize| -> Option<()> {
            let a = normalize_axis(axis, rank, "fused").ok()?;
            // A repeated axis is an error in inference; never compile one.
            (!std::mem::replace(&mut flags[a], true)).then_some(())
        };
        let (kind, post, variant) = match &inst.op {
            Op::Reduce { f, axes, .. } => {
                match axes {
                    None => (0..rank).try_for_each(|a| set(a as isize))?,
                    Some(axes) => axes.iter().try_for_each(|&a| set(a))?,
                }
                let (comb, post) = match f {
                    ReduceOp::Sum => (Comb::Add, Post::None),
                    ReduceOp::Mean => (Comb::Add, Post::Mean),
                    ReduceOp::Norm => (Comb::Add, Post::Sqrt),
                    ReduceOp::Prod => (Comb::Mul, Post::None),
                    ReduceOp::Max => (Comb::Max, Post::None),
                    ReduceOp::Min => (Comb::Min, Post::None),
                };
                (FoldKind::Comb(comb), post, "reduce")
            }
            Op::ArgReduce { f, axis, .. } => {
                match axis {
                    None => (0..rank).try_for_each(|a| set(a as isize))?,
                    Some(a) => set(*a)?,
                }
                let max = *f == ArgReduceOp::Argmax;
                (FoldKind::Arg { max }, Post::None, "argreduce")
            }
            _ => return None,
        };
        let mut prog = match *arg {
            FusedArg::Value(j) => Program::from_kernel(kernel, j, &HashMap::new())?,
            FusedArg::Input(i) => Program::input_only(i),
        };
        if post == Post::Sqrt {
            prog.push_square();
        }
        let layout = RedLayout::new(x_dims, &flags, &used_shapes(&prog, shapes))?;
        if matches!(kind, FoldKind::Arg { .. }) && layout.reduced_groups > 1 {
            // The flattened index over several strided groups: not lowered.
            return None;
        }
        let body = layout.body(kind, prog);
        let key = format!("{variant}|{}|{body:?}", modes_key(&layout.modes));
        let f = self.function(key, variant, &body, &layout.modes)?;
        let count: usize = x_dims
            .iter()
            .zip(&flags)
            .filter(|(_, r)| **r)
            .map(|(d, _)| *d)
            .product();
        let (init, aux) = match kind {
            FoldKind::Comb(c) => (c.identity(), None),
            FoldKind::Arg { max } => {
                let worst = if max {
                    f32::NEG_INFINITY
                } else {
                    f32::INFINITY
                };
                (0.0, (!layout.inner_reduced).then_some(worst))
            }
        };
        let epilogue = self.reduction_epilogue(kernel, ri, shapes, out_dims)?;
        Some(Plan::Fold {
            f,
            layout,
            init,
            aux,
            post,
            count,
            n_out: inst.ty.shape.numel(),
            x_numel: x_ty.shape.numel(),
            epilogue,
        })
    }

    fn plan_reduction(
        &self,
        kernel: &FusedKernel,
        shapes: &[&[usize]],
        out_dims: &[usize],
    ) -> Option<Plan> {
        let ri = kernel.reduction()?;
        let inst = kernel.body.get(ri)?;
        let arg = inst.args.first()?;
        let x_ty = match *arg {
            FusedArg::Input(i) => kernel.inputs.get(i)?,
            FusedArg::Value(j) => &kernel.body.get(j)?.ty,
        };
        if x_ty.dtype != DType::F32 || inst.ty.dtype != DType::F32 {
            return None;
        }
        let x_dims = x_ty.shape.dims();
        let rank = x_dims.len();
        if rank == 0 {
            return None;
        }
        let last = |axis: isize| normalize_axis(axis, rank, "fused").ok() == Some(rank - 1);
        if matches!(inst.op, Op::Reduce { .. } | Op::ArgReduce { .. }) {
            return self.plan_fold(kernel, ri, shapes, out_dims);
        }
        let (variant, body_of): (&'static str, Box<dyn Fn(Program) -> Body>) = match &inst.op {
            Op::Softmax { axis } if last(*axis) => (
                "softmax",
                Box::new(|prog| Body::Softmax { log: false, prog }),
            ),
            Op::LogSoftmax { axis } if last(*axis) => (
                "softmax",
                Box::new(|prog| Body::Softmax { log: true, prog }),
            ),
            // The body is filled in below, once the labels' input is known.
            Op::SoftmaxCrossEntropy => ("xent", Box::new(Body::Map)),
            _ => return None,
        };
        let prog = match *arg {
            FusedArg::Value(j) => Program::from_kernel(kernel, j, &HashMap::new())?,
            // The reduction reads an input directly: a program of one load.
            FusedArg::Input(i) => Program::input_only(i),
        };
        let mut used = used_shapes(&prog, shapes);
        // Cross-entropy labels: one f32 per row, seen as `[N, 1]` (splatted along the row).
        let label_shape = [x_dims[0], 1];
        let (variant, body_of) = match (variant, inst.args.get(1)) {
            ("xent", Some(&FusedArg::Input(l))) => {
                if rank != 2 || kernel.inputs.get(l)?.dtype != DType::F32 || used.get(l)?.is_some()
                {
                    return None;
                }
                used[l] = Some(&label_shape[..]);
                let b: Box<dyn Fn(Program) -> Body> =
                    Box::new(move |prog| Body::SoftmaxXent { label: l, prog });
                ("xent", b)
            }
            ("xent", _) => return None,
            _ => (variant, body_of),
        };
        let layout = Layout::new(x_dims, &used, true)?;
        let body = body_of(prog);
        let key = format!("{variant}|{}|{body:?}", modes_key(&layout.modes));
        let f = self.function(key, variant, &body, &layout.modes)?;
        let per_row = if variant == "softmax" {
            layout.inner
        } else {
            1
        };
        let epilogue = self.reduction_epilogue(kernel, ri, shapes, out_dims)?;
        Some(Plan::Reduce {
            f,
            layout,
            per_row,
            dims: inst.ty.shape.dims().to_vec(),
            epilogue,
        })
    }

    /// Runs a plan; `Ok(None)` when the data cannot be handed to native code (it then falls
    /// back).
    fn run_plan(
        &self,
        plan: &Plan,
        kernel: &FusedKernel,
        inputs: &[TensorView<'_>],
    ) -> Result<Option<Tensor>> {
        use kiln_ir::DataRef as D;
        // Kernels take untyped element pointers (the program knows each input's dtype).
        let ptrs: Vec<*const f32> = inputs
            .iter()
            .map(|v| match v.data {
                D::F32(s) => s.as_ptr(),
                D::F64(s) => s.as_ptr().cast(),
                D::I32(s) => s.as_ptr().cast(),
                D::I64(s) => s.as_ptr().cast(),
                D::U8(s) => s.as_ptr().cast(),
                D::Bool(s) => s.as_ptr().cast(),
            })
            .collect();
        let mut ptrs = ptrs;
        let out_ty = kernel.output_type();
        let out_dims = out_ty.shape.dims().to_vec();
        let out_n = out_ty.shape.numel();
        match plan {
            Plan::Map { f, layout } if out_ty.dtype != DType::F32 => {
                let mut st = kiln_ir::Storage::zeros(out_ty.dtype, out_n);
                let p: *mut f32 = match &mut st {
                    kiln_ir::Storage::F64(v) => v.as_mut_ptr().cast(),
                    kiln_ir::Storage::I32(v) => v.as_mut_ptr().cast(),
                    _ => return Ok(None),
                };
                if out_n > 0 {
                    self.map_into(*f, layout, &ptrs, p, out_n);
                }
                Ok(Some(Tensor::new(out_dims, st)?))
            }
            Plan::Map { f, layout } => {
                let out = self.map(*f, layout, &ptrs, out_n);
                Ok(Some(Tensor::from_vec(out, out_dims)?))
            }
            Plan::Epilogue { f, layout } => {
                let head = &kernel.body[0];
                let args: Vec<TensorView<'_>> = head
                    .args
                    .iter()
                    .map(|a| match *a {
                        FusedArg::Input(i) => inputs.get(i).cloned(),
                        FusedArg::Value(_) => None,
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        jit_error("an epilogue kernel's first op must read kernel inputs")
                    })?;
                let t = CpuBackend.execute(&head.op, &args)?;
                let s = match t.storage().as_ref() {
                    kiln_ir::DataRef::F32(s) => s,
                    _ => return Ok(None),
                };
                ptrs.push(s.as_ptr());
                let out = self.map(*f, layout, &ptrs, out_n);
                Ok(Some(Tensor::from_vec(out, out_dims)?))
            }
            Plan::Fold {
                f,
                layout,
                init,
                aux,
                post,
                count,
                n_out,
                x_numel,
                epilogue,
            } => {
                let mut red = vec![*init; *n_out];
                let mut scratch = aux.map(|w| vec![w; *n_out]);
                if *n_out > 0 && *x_numel > 0 {
                    let aux_ptr = scratch
                        .as_mut()
                        .map_or(std::ptr::null_mut(), |v| v.as_mut_ptr());
                    let parallel = *x_numel >= self.opts.parallel_min_elems;
                    // SAFETY: `ptrs` are the kernel inputs, whose shapes (checked against the
                    // kernel's input types in `plan`) built `layout`; `red` and `scratch`
                    // have the reduction's output size.
                    unsafe {
                        reduce::drive(*f, layout, &ptrs, red.as_mut_ptr(), aux_ptr, parallel)
                    };
                }
                match post {
                    Post::None => {}
                    Post::Mean => {
                        let c = *count as f64;
                        red.iter_mut().for_each(|v| *v = (*v as f64 / c) as f32);
                    }
                    Post::Sqrt => red.iter_mut().for_each(|v| *v = v.sqrt()),
                }
                match epilogue {
                    None => Ok(Some(Tensor::from_vec(red, out_dims)?)),
                    Some((g, l2)) => {
                        ptrs.push(red.as_ptr());
                        let out = self.map(*g, l2, &ptrs, out_n);
                        Ok(Some(Tensor::from_vec(out, out_dims)?))
                    }
                }
            }
            Plan::Reduce {
                f,
                layout,
                per_row,
                dims,
                epilogue,
            } => {
                let n: usize = dims.iter().product();
                let mut red = crate::cpu::zeros::<f32>(n);
                if n > 0 {
                    self.drive(*f, layout, &ptrs, red.as_mut_ptr(), *per_row);
                }
                match epilogue {
                    None => Ok(Some(Tensor::from_vec(red, out_dims)?)),
                    Some((g, l2)) => {
                        ptrs.push(red.as_ptr());
                        let out = self.map(*g, l2, &ptrs, out_n);
                        Ok(Some(Tensor::from_vec(out, out_dims)?))
                    }
                }
            }
        }
    }

    /// The compiled elementwise epilogue of a reduction kernel whose reduction is body value
    /// `ri`: reads the kernel's inputs and the reduction's result (as one extra input after
    /// them). `Some(None)` when the reduction is the kernel's output; `None` when the
    /// epilogue does not compile.
    fn reduction_epilogue(
        &self,
        kernel: &FusedKernel,
        ri: usize,
        shapes: &[&[usize]],
        out_dims: &[usize],
    ) -> Option<Option<(KernelFn, Layout)>> {
        if kernel.output == ri {
            return Some(None);
        }
        let extra = HashMap::from([(ri, kernel.inputs.len())]);
        let prog = Program::from_kernel(kernel, kernel.output, &extra)?;
        let mut sh = shapes.to_vec();
        sh.push(kernel.body[ri].ty.shape.dims());
        Some(Some(self.map_fn(&prog, out_dims, &sh)?))
    }

    /// Runs an elementwise function into a fresh output of `n` elements.
    fn map(&self, f: KernelFn, layout: &Layout, ptrs: &[*const f32], n: usize) -> Vec<f32> {
        let mut out = crate::cpu::zeros::<f32>(n);
        // SAFETY: `out` holds `n` elements; the inputs are the caller's.
        unsafe { self.map_to(f, layout, ptrs, out.as_mut_ptr(), n) };
        out
    }

    /// Runs an elementwise function into `out`.
    ///
    /// # Safety
    /// `out` must be valid for writing `n` f32 and `ptrs` must address inputs laid out as
    /// `layout` describes; an input may be `out` itself only if it is read contiguously.
    unsafe fn map_to(
        &self,
        f: KernelFn,
        layout: &Layout,
        ptrs: &[*const f32],
        out: *mut f32,
        n: usize,
    ) {
        if n == 0 {
            return;
        }
        self.map_into(f, layout, ptrs, out, n);
    }

    /// Runs an elementwise function into `out`: `n > 0` elements of the layout's output
    /// size.
    fn map_into(&self, f: KernelFn, layout: &Layout, ptrs: &[*const f32], out: *mut f32, n: usize) {
        let mut l = layout.clone();
        let block = 1 << 14;
        let rem = l.split_row(block);
        let main = n - rem;
        self.drive(f, &l, ptrs, out, l.inner);
        if rem > 0 {
            // The remainder of a split row: one row of `rem` elements.
            let tail: Vec<*const f32> = ptrs
                .iter()
                .zip(layout.modes.iter().zip(&layout.sizes))
                .map(|(&p, (m, &size))| {
                    if *m == Mode::Contig {
                        p.cast::<u8>().wrapping_add(main * size).cast()
                    } else {
                        p
                    }
                })
                .collect();
            let zero = vec![0isize; tail.len()];
            // SAFETY: the remainder covers elements [main, n) of the output and of every
            // contiguous input (each has n elements: the layout checked that it spans the
            // whole iteration space), and element 0 of every splatted input.
            unsafe {
                f(
                    1,
                    rem,
                    tail.as_ptr(),
                    zero.as_ptr(),
                    out.cast::<u8>().add(main * layout.out_size).cast(),
                    0,
                    std::ptr::null_mut(),
                );
            }
        }
    }

    /// Calls `f` over the whole outer space of `layout`, in parallel when it is large.
    /// `out` has `per_row` elements per outer position.
    fn drive(
        &self,
        f: KernelFn,
        layout: &Layout,
        ptrs: &[*const f32],
        out: *mut f32,
        per_row: usize,
    ) {
        let total: usize = layout.outer.iter().product();
        if total == 0 {
            return;
        }
        let elems = total.saturating_mul(layout.inner.max(1));
        let threads = crate::cpu::threads();
        let bases: Vec<usize> = ptrs.iter().map(|&p| p as usize).collect();
        let out_addr = out as usize;
        let run = |start: usize, end: usize| {
            // SAFETY: `[start, end)` is a range of outer positions within `total`; `segment`
            // only hands `f` row pointers computed from the layout's strides, which stay
            // inside each input (the layout was built from the inputs' shapes, which match
            // their data lengths) and the output's rows [start, end).
            unsafe { segment(f, layout, &bases, out_addr, per_row, start, end) }
        };
        if elems >= self.opts.parallel_min_elems && threads > 1 && total > 1 {
            let chunks = (threads * 4).min(total);
            let per = total.div_ceil(chunks);
            (0..chunks).into_par_iter().for_each(|c| {
                let s = c * per;
                let e = ((c + 1) * per).min(total);
                if s < e {
                    run(s, e);
                }
            });
        } else {
            run(0, total);
        }
    }
}

impl Program {
    /// Squares the program's result (the L2 norm folds squares).
    fn push_square(&mut self) {
        let out = self.out;
        self.uses[out] += 1;
        self.nodes
            .push(program::Node::Unary(kiln_ir::UnaryOp::Square, out));
        self.types.push(self.types[out]);
        self.uses.push(0);
        self.out = self.nodes.len() - 1;
    }

    /// The program that returns kernel input `i` unchanged.
    fn input_only(i: usize) -> Program {
        Program {
            nodes: vec![program::Node::Input(i)],
            types: vec![DType::F32],
            out: 0,
            uses: vec![0],
        }
    }
}

/// Calls `f` for the outer positions `[start, end)` of `layout`, one call per run of
/// positions sharing their higher indices.
///
/// # Safety
/// `bases` must point to inputs laid out as `layout` describes and `out` to an output of
/// `per_row` f32 per outer position.
unsafe fn segment(
    f: KernelFn,
    layout: &Layout,
    bases: &[usize],
    out: usize,
    per_row: usize,
    start: usize,
    end: usize,
) {
    let k = layout.outer.len();
    let rows = layout.outer[k - 1];
    let row_bytes: Vec<isize> = layout
        .strides
        .iter()
        .zip(&layout.sizes)
        .map(|(s, &size)| s[k - 1] * size as isize)
        .collect();
    let mut ptrs: Vec<*const f32> = vec![std::ptr::null(); bases.len()];
    let mut idx = start;
    while idx < end {
        let hi = idx / rows;
        let r0 = idx % rows;
        let cnt = (rows - r0).min(end - idx);
        // Element offset of each input at outer position (hi.., r0).
        for (p, (base, st)) in ptrs.iter_mut().zip(bases.iter().zip(&layout.strides)) {
            let mut off = r0 as isize * st[k - 1];
            let mut h = hi;
            for a in (0..k - 1).rev() {
                let d = layout.outer[a];
                off += (h % d) as isize * st[a];
                h /= d;
            }
            *p = (*base as *const f32).wrapping_offset(off);
        }
        let o: *mut f32 = (out as *mut u8)
            .wrapping_add(idx * per_row * layout.out_size)
            .cast();
        // SAFETY: the caller's contract; rows [idx, idx + cnt) are in range.
        unsafe {
            f(
                cnt,
                layout.inner,
                ptrs.as_ptr(),
                row_bytes.as_ptr(),
                o,
                (per_row * layout.out_size) as isize,
                std::ptr::null_mut(),
            )
        };
        idx += cnt;
    }
}
