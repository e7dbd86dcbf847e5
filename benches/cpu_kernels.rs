//! Throughput of kiln's CPU kernels, printed as one JSON object per line.
//!
//! `cargo bench --bench cpu_kernels` (or `benches/run_benches.sh`, which provides numpy):
//! - `gemm`: f32 GFLOP/s of `Op::Dot` through `CpuBackend::execute` (output allocation
//!   included) at 1024³ and at 64×784×256 (m×k×n), next to numpy's `a @ b` measured in the
//!   same run by `benches/numpy_baseline.py` with `OPENBLAS_NUM_THREADS` set to kiln's thread
//!   count (`numpy_gflops` is null when numpy is missing);
//! - `conv2d`: the two LeNet convolutions at batch 64, in GFLOP/s and images/s, and their
//!   backward ops (deconvolution, conv_grad_weight); `max_pool2d`: LeNet's first pooling;
//! - `elementwise`: GB/s of `a*b`, `(a*b)+a` as two Binary ops, `relu` and `exp` on 16M f32,
//!   next to a plain copy's GB/s (into a preallocated buffer, and `to_vec` which allocates);
//! - `dispatch`: ns per tiny op (`[1] + [1]`) through `CpuBackend::execute`, and through the
//!   interpreter.
//!
//! Every figure is the best of several rounds; kiln's GEMM rounds run before and after
//! numpy's (interleaved), and the best is kept. This machine is shared and noisy: compare the
//! ratios, not the absolute numbers.
//!
//! For the record, `gemm` 0.19 (x86-v4) against `matrixmultiply` 0.3.11 (feature
//! `threading`), measured with a separate scratch program on the 2-core AVX-512 build machine
//! (f32 GFLOP/s, best of 3×7 rounds, shared machine): one thread, 1024³ 161 vs 141 and
//! 64×784×256 144 vs 125; two threads (each crate's own threading) 1024³ 165 vs 142 and
//! 64×784×256 140 vs 112 — gemm stays ahead, so kiln uses it. kiln splits threaded products
//! itself (see `kiln_backends::cpu::gemm::matmul`), which beat gemm's own threading here.

use kiln::backends::cpu::threads;
use kiln::backends::{CpuBackend, Kernels};
use kiln::ir::{interp, BinaryOp, Op, Tensor, UnaryOp};
use serde_json::{json, Value};
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

/// Best seconds per call of `f` over `rounds` rounds of `reps` calls.
fn best<R>(rounds: usize, reps: usize, mut f: impl FnMut() -> R) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..reps {
            black_box(f());
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

/// Deterministic pseudo-random f32 values in [-1, 1).
fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed), shape).expect("shape matches data")
}

fn exec(op: &Op, inputs: &[&Tensor]) -> Tensor {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    CpuBackend.execute(op, &views).expect("benchmark op runs")
}

/// numpy's figures, one JSON object per line, or nothing when numpy is unavailable.
fn numpy_baseline(threads: usize) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/numpy_baseline.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("5")
        // Some machines tune OpenBLAS through these; they slow it down here.
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        Ok(o) => {
            eprintln!(
                "numpy baseline unavailable: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("numpy baseline unavailable: {e}");
            Vec::new()
        }
    }
}

fn numpy_figure(base: &[Value], bench: &str, key: &str, matches: impl Fn(&Value) -> bool) -> Value {
    base.iter()
        .find(|v| v["bench"] == bench && matches(v))
        .map_or(Value::Null, |v| v[key].clone())
}

fn ratio(ours: f64, theirs: &Value) -> Value {
    theirs.as_f64().map_or(Value::Null, |t| json!(ours / t))
}

fn gemm_gflops(m: usize, k: usize, n: usize, rounds: usize) -> f64 {
    let a = tensor(&[m, k], 1);
    let b = tensor(&[k, n], 2);
    let op = Op::Dot {
        transpose_a: false,
        transpose_b: false,
    };
    let flops = 2.0 * (m * k * n) as f64;
    let reps = (2e9 / flops).clamp(1.0, 200.0) as usize;
    exec(&op, &[&a, &b]);
    flops / best(rounds, reps, || exec(&op, &[&a, &b])) / 1e9
}

/// Runs the GEMM benchmark (with numpy's run in the middle) and returns numpy's figures.
fn bench_gemm(threads: usize) -> Vec<Value> {
    let shapes = [(1024, 1024, 1024), (64, 784, 256)];
    let before: Vec<f64> = shapes
        .iter()
        .map(|&(m, k, n)| gemm_gflops(m, k, n, 5))
        .collect();
    let base = numpy_baseline(threads);
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        let ours = before[i].max(gemm_gflops(m, k, n, 5));
        let np = numpy_figure(&base, "gemm", "gflops", |v| {
            v["m"] == m && v["k"] == k && v["n"] == n
        });
        println!(
            "{}",
            json!({"bench": "gemm", "dtype": "f32", "m": m, "k": k, "n": n, "threads": threads,
                   "gflops": ours, "numpy_gflops": np, "ratio": ratio(ours, &np)})
        );
    }
    base
}

fn bench_conv(threads: usize) {
    // (name, input [N, C, H, W], weight [O, C, K, K])
    let layers = [
        ("lenet_conv1", [64, 1, 28, 28], [20, 1, 5, 5]),
        ("lenet_conv2", [64, 20, 12, 12], [50, 20, 5, 5]),
    ];
    for (name, xs, ws) in layers {
        let x = tensor(&xs, 3);
        let w = tensor(&ws, 4);
        let b = tensor(&[ws[0]], 5);
        let op = Op::Convolution {
            stride: vec![1, 1],
            pad: vec![0, 0],
            dilation: vec![1, 1],
            groups: 1,
            no_bias: false,
        };
        let (oh, ow) = (xs[2] - ws[2] + 1, xs[3] - ws[3] + 1);
        let flops = 2.0 * (xs[0] * ws[0] * oh * ow * ws[1] * ws[2] * ws[3]) as f64;
        exec(&op, &[&x, &w, &b]);
        let t = best(7, 5, || exec(&op, &[&x, &w, &b]));
        println!(
            "{}",
            json!({"bench": "conv2d", "layer": name, "dtype": "f32", "input": xs, "weight": ws,
                   "threads": threads, "gflops": flops / t / 1e9, "images_per_s": xs[0] as f64 / t,
                   "ms": t * 1e3})
        );
        // The backward pass: gradients w.r.t. the input (deconvolution) and the weight.
        let dy = tensor(&[xs[0], ws[0], oh, ow], 6);
        let dx_op = Op::Deconvolution {
            stride: vec![1, 1],
            pad: vec![0, 0],
            dilation: vec![1, 1],
            output_padding: vec![0, 0],
            groups: 1,
            no_bias: true,
        };
        let dw_op = Op::ConvGradWeight {
            kernel: vec![ws[2], ws[3]],
            stride: vec![1, 1],
            pad: vec![0, 0],
            dilation: vec![1, 1],
            groups: 1,
        };
        let t_dx = best(7, 5, || exec(&dx_op, &[&dy, &w]));
        let t_dw = best(7, 5, || exec(&dw_op, &[&x, &dy]));
        println!(
            "{}",
            json!({"bench": "conv2d_backward", "layer": name, "dtype": "f32", "threads": threads,
                   "deconvolution_gflops": flops / t_dx / 1e9, "deconvolution_ms": t_dx * 1e3,
                   "conv_grad_weight_gflops": flops / t_dw / 1e9, "conv_grad_weight_ms": t_dw * 1e3})
        );
    }
    let x = tensor(&[64, 20, 24, 24], 7);
    let pool = Op::Pooling {
        kind: kiln::ir::PoolKind::Max,
        kernel: vec![2, 2],
        stride: vec![2, 2],
        pad: vec![0, 0],
        global: false,
        count_include_pad: true,
    };
    let t = best(7, 5, || exec(&pool, &[&x]));
    println!(
        "{}",
        json!({"bench": "max_pool2d", "input": [64, 20, 24, 24], "kernel": [2, 2], "dtype": "f32",
               "threads": threads, "ms": t * 1e3,
               "input_gbps": 4.0 * x.shape().numel() as f64 / t / 1e9})
    );
}

fn bench_elementwise(threads: usize, numpy: &[Value]) {
    let n = 16 << 20;
    let a = tensor(&[n], 6);
    let b = tensor(&[n], 7);
    let mul = Op::Binary { f: BinaryOp::Mul };
    let add = Op::Binary { f: BinaryOp::Add };
    let gb = |bytes_per_elem: f64, t: f64| bytes_per_elem * n as f64 / t / 1e9;
    let src = a.as_slice::<f32>().expect("f32 data");
    let mut dst = vec![0.0f32; n];
    let rounds = 5;
    let copy = best(rounds, 1, || {
        black_box(dst.as_mut_slice()).copy_from_slice(src)
    });
    let to_vec = best(rounds, 1, || src.to_vec());
    let t_mul = best(rounds, 1, || exec(&mul, &[&a, &b]));
    let t_fma = best(rounds, 1, || {
        let ab = exec(&mul, &[&a, &b]);
        exec(&add, &[&ab, &a])
    });
    let t_relu = best(rounds, 1, || exec(&Op::Unary { f: UnaryOp::Relu }, &[&a]));
    let t_exp = best(3, 1, || exec(&Op::Unary { f: UnaryOp::Exp }, &[&a]));
    let copy_gbps = gb(8.0, copy);
    let line = |expr: &str, gbps: f64, extra: Value| {
        let mut v = json!({"bench": "elementwise", "expr": expr, "dtype": "f32", "n": n,
                           "threads": threads, "gbps": gbps, "memcpy_gbps": copy_gbps,
                           "vs_memcpy": gbps / copy_gbps});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        println!("{v}");
    };
    println!(
        "{}",
        json!({"bench": "memcpy", "n": n, "dtype": "f32", "copy_into_gbps": copy_gbps,
               "to_vec_gbps": gb(8.0, to_vec)})
    );
    let np = numpy_figure(numpy, "elementwise", "gbps", |v| v["expr"] == "a*b");
    line(
        "a*b",
        gb(12.0, t_mul),
        json!({"numpy_gbps": np, "ratio": ratio(gb(12.0, t_mul), &np)}),
    );
    // Two ops, each reading two arrays and writing one: 24 bytes per element in all.
    line("a*b+a (two Binary ops)", gb(24.0, t_fma), json!({}));
    line("relu(a)", gb(8.0, t_relu), json!({}));
    line(
        "exp(a)",
        gb(8.0, t_exp),
        json!({"ns_per_elem": t_exp * 1e9 / n as f64}),
    );
}

fn bench_dispatch() {
    let a = Tensor::from_vec(vec![1.5f32], [1]).expect("one element");
    let b = Tensor::from_vec(vec![2.5f32], [1]).expect("one element");
    let op = Op::Binary { f: BinaryOp::Add };
    let (va, vb) = (a.view(), b.view());
    let inputs = [va, vb];
    let reps = 200_000;
    let t_cpu = best(7, reps, || CpuBackend.execute(&op, &inputs));
    let t_interp = best(7, reps / 4, || interp::eval(&op, &inputs));
    let neg = Op::Unary { f: UnaryOp::Neg };
    let t_unary = best(7, reps, || CpuBackend.execute(&neg, &inputs[..1]));
    println!(
        "{}",
        json!({"bench": "dispatch", "op": "add [1]+[1] f32", "cpu_ns": t_cpu * 1e9,
               "unary_neg_cpu_ns": t_unary * 1e9, "interp_ns": t_interp * 1e9})
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects benchmarks by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let threads = threads();
    let numpy = if run("gemm") || run("elementwise") {
        bench_gemm(threads)
    } else {
        Vec::new()
    };
    if run("conv") {
        bench_conv(threads);
    }
    if run("elementwise") {
        bench_elementwise(threads, &numpy);
    }
    if run("dispatch") {
        bench_dispatch();
    }
}
