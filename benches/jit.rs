//! The Cranelift backend against eager CPU kernels, one JSON line per measurement.
//!
//! `cargo bench --bench jit [-- --quick]` measures:
//! - `chain`: `tanh(x*2+1) * sigmoid(x)` on 16M f32 (4M with `--quick`): the eager CPU backend
//!   op by op (five ops, five passes over memory) against one JIT-compiled fused kernel, in
//!   GB/s counting 8 bytes per element (one read, one write), next to a plain copy;
//! - `softmax`: softmax rows of `[4096, 1000]` (CPU kernel vs compiled kernel);
//! - `mlp_train`: the hybridized MLP training step (`Dense(256, relu)-Dense(256, relu)-
//!   Dense(10)`, batch 64, SGD) with the Cranelift backend and with the CPU backend, in
//!   samples/s;
//! - `compile`: compile time of each kernel compiled above.
//!
//! Every line reports the median of several rounds.

use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::{Block, HybridBlock, Trainer};
use kiln::hybrid::{BackendChoice, HybridizeOptions};
use kiln::prelude::*;
use kiln_backends::jit::{JitBackend, JitOptions};
use kiln_backends::{CpuBackend, Kernels};
use kiln_ir::{BinaryOp, FusedArg, FusedInst, FusedKernel, Op, Tensor, TensorType, UnaryOp};
use serde_json::json;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds per call of `f`, median over `rounds`.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(shape.to_vec(), kiln_ir::DType::F32)
}

fn inst(op: Op, args: Vec<FusedArg>, shape: &[usize]) -> FusedInst {
    FusedInst {
        op,
        args,
        ty: f32t(shape),
    }
}

fn chain_kernel(n: usize) -> (FusedKernel, Vec<Op>) {
    use FusedArg::{Input as I, Value as V};
    let s = &[n];
    let ops = vec![
        Op::Scalar {
            f: BinaryOp::Mul,
            scalar: 2.0,
            reverse: false,
        },
        Op::Scalar {
            f: BinaryOp::Add,
            scalar: 1.0,
            reverse: false,
        },
        Op::Unary { f: UnaryOp::Tanh },
        Op::Unary {
            f: UnaryOp::Sigmoid,
        },
        Op::Binary { f: BinaryOp::Mul },
    ];
    let body = vec![
        inst(ops[0].clone(), vec![I(0)], s),
        inst(ops[1].clone(), vec![V(0)], s),
        inst(ops[2].clone(), vec![V(1)], s),
        inst(ops[3].clone(), vec![I(0)], s),
        inst(ops[4].clone(), vec![V(2), V(3)], s),
    ];
    let k = FusedKernel::new(vec![f32t(s)], body, 4).expect("valid kernel");
    (k, ops)
}

fn bench_chain(jit: &JitBackend, n: usize, rounds: usize) {
    let x = Tensor::from_vec(
        (0..n)
            .map(|i| ((i % 1000) as f32) * 0.004 - 2.0)
            .collect::<Vec<f32>>(),
        [n],
    )
    .expect("tensor");
    let gb = |secs: f64| (8 * n) as f64 / secs / 1e9;
    let src = x.as_slice::<f32>().expect("f32");
    let copy = time(rounds, || {
        let v = src.to_vec();
        std::hint::black_box(&v);
    });
    let (k, ops) = chain_kernel(n);
    let eager = time(rounds, || {
        let a = CpuBackend.execute(&ops[0], &[x.view()]).expect("mul");
        let b = CpuBackend.execute(&ops[1], &[a.view()]).expect("add");
        let c = CpuBackend.execute(&ops[2], &[b.view()]).expect("tanh");
        let d = CpuBackend.execute(&ops[3], &[x.view()]).expect("sigmoid");
        std::hint::black_box(
            CpuBackend
                .execute(&ops[4], &[c.view(), d.view()])
                .expect("mul"),
        );
    });
    let native = jit.compiles(&k, &[x.view()]);
    let fused = Op::Fused {
        kernel: Box::new(k),
    };
    let jitted = time(rounds, || {
        std::hint::black_box(jit.execute(&fused, &[x.view()]).expect("jit"));
    });
    println!(
        "{}",
        json!({"bench": "chain", "elements": n, "copy_gb_s": gb(copy), "eager_cpu_gb_s": gb(eager),
               "jit_gb_s": gb(jitted), "jit_native": native, "speedup": eager / jitted,
               "jit_vs_copy": copy / jitted, "threads": kiln_backends::cpu::threads()})
    );
}

fn bench_softmax(jit: &JitBackend, rows: usize, cols: usize, rounds: usize) {
    let n = rows * cols;
    let x = Tensor::from_vec(
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0)
            .collect::<Vec<f32>>(),
        [rows, cols],
    )
    .expect("tensor");
    let op = Op::Softmax { axis: -1 };
    let cpu = time(rounds, || {
        std::hint::black_box(CpuBackend.execute(&op, &[x.view()]).expect("softmax"));
    });
    let k = FusedKernel::new(
        vec![f32t(&[rows, cols])],
        vec![inst(op.clone(), vec![FusedArg::Input(0)], &[rows, cols])],
        0,
    )
    .expect("kernel");
    let native = jit.compiles(&k, &[x.view()]);
    let fused = Op::Fused {
        kernel: Box::new(k),
    };
    let jitted = time(rounds, || {
        std::hint::black_box(jit.execute(&fused, &[x.view()]).expect("jit"));
    });
    let gb = |s: f64| (8 * n) as f64 / s / 1e9;
    println!(
        "{}",
        json!({"bench": "softmax", "rows": rows, "cols": cols, "cpu_gb_s": gb(cpu), "jit_gb_s": gb(jitted),
               "jit_native": native, "speedup": cpu / jitted})
    );
}

fn mlp_step_rate(backend: BackendChoice, steps: usize, rounds: usize) -> Result<f64> {
    kiln::random::seed(1);
    let batch = 64;
    let net = kiln::models::mlp()?;
    net.initialize(kiln::models::book_xavier(), Context::cpu())?;
    net.hybridize_with(HybridizeOptions {
        backend,
        static_alloc: true,
        static_shape: true,
    });
    let x = nd::random::uniform(0.0, 1.0, [batch, 784])?;
    let y = nd::random::uniform(0.0, 10.0, [batch])?.floor()?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    net.forward(&x)?;
    let mut trainer = Trainer::new(&net.collect_params()?, "sgd", [("learning_rate", 0.1)])?;
    let mut step = || -> Result<()> {
        let loss = autograd::record(|| loss_fn.forward(&net.forward(&x)?, &y))?;
        loss.backward()?;
        trainer.step(batch)
    };
    for _ in 0..5 {
        step()?;
    }
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        times.push(t.elapsed().as_secs_f64());
    }
    Ok((steps * batch) as f64 / median(times))
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let jit = JitBackend::with_options(JitOptions::from_env());
    let (n, rounds) = if quick { (1 << 22, 3) } else { (1 << 24, 7) };
    bench_chain(&jit, n, rounds);
    bench_softmax(&jit, if quick { 512 } else { 4096 }, 1000, rounds);
    let steps = if quick { 10 } else { 100 };
    let jit_rate = mlp_step_rate(BackendChoice::Cranelift, steps, rounds.min(5))?;
    let cpu_rate = mlp_step_rate(BackendChoice::Cpu, steps, rounds.min(5))?;
    println!(
        "{}",
        json!({"bench": "mlp_train", "batch": 64, "cranelift_samples_per_sec": jit_rate,
               "cpu_samples_per_sec": cpu_rate, "speedup": jit_rate / cpu_rate,
               "cranelift_kernels": JitBackend::global().stats().kernels_compiled})
    );
    for r in jit.records() {
        println!(
            "{}",
            json!({"bench": "compile", "kernel": r.id, "variant": r.variant,
                   "compile_us": r.compile_time.as_secs_f64() * 1e6, "code_bytes": r.code_bytes})
        );
    }
    Ok(())
}
