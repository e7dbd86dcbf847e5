#!/usr/bin/env python3
"""numpy baselines for benches/cpu_kernels.rs: prints one JSON object per line.

Usage: numpy_baseline.py ROUNDS
The thread count is whatever OPENBLAS_NUM_THREADS says (the bench sets it to kiln's).
Each figure is the best of ROUNDS timed repetitions.
"""
import json
import sys
import time

import numpy as np

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def best_seconds(fn, reps):
    """The best time of `reps` calls of fn, over ROUNDS rounds (per call)."""
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def gemm(m, k, n, reps):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    a @ b  # warm up (thread pool start, page faults)
    t = best_seconds(lambda: a @ b, reps)
    print(json.dumps({"bench": "gemm", "m": m, "k": k, "n": n, "gflops": 2.0 * m * k * n / t / 1e9}))


def elementwise(n):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    t = best_seconds(lambda: a * b, 1)
    print(json.dumps({"bench": "elementwise", "expr": "a*b", "n": n, "gbps": 12.0 * n / t / 1e9}))


gemm(1024, 1024, 1024, 3)
gemm(64, 784, 256, 50)
elementwise(16 << 20)
