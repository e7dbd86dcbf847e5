#!/usr/bin/env python3
"""MXNet's side of the comparison: benches/compare.rs's list in MXNet 1.9.1, imperative and hybridized.

Prints one JSON line per measurement, in the format of `cargo bench --bench compare`:

    {"suite": "compare", "framework": "mxnet", "mode": "hybridized", "bench": "train",
     "model": "mlp", "batch": 64, "value": ..., "unit": "samples/s", "us_per_call": ..., ...}

`mode` is `imperative` (plain gluon) or `hybridized`
(`net.hybridize(static_alloc=True, static_shape=True)`). The benchmarks, as in compare.rs:

- train: linear regression (Dense(1) on 2 features, L2Loss, SGD lr 0.03, batch 4, the
  notebook's synthetic data), softmax regression (batch 64), MLP 784-256-256-10 (batch 64 and
  256), LeNet of cnn-gluon (batch 64), SoftmaxCrossEntropyLoss and SGD lr 0.1; a step is
  forward under autograd.record(), the loss, backward(), trainer.step(batch) and
  loss.mean().asscalar() (which also waits for the asynchronous engine). MNIST models use the
  first batch*16 training images (random ones of the same shape when the files are missing).
- inference: a predict-mode forward of the MLP and LeNet at batch 1 and 64, waited for.
- chain: tanh(x*2+1)*sigmoid(x) on 16M float32 (4M with --quick) in GB/s (8 bytes per
  element), as NDArray ops and as a hybridized HybridLambda; copy: x.copy() (mode `ndarray`).
- trace_compile: the first LeNet training step after hybridize() minus a cached step, in ms,
  at batch 1 (measured first).

The two modes of a model start from the same weights and their rounds alternate; each line
reports the median round. Options: --quick, --only BENCH (repeatable), --rounds N, --data DIR.
Threads: MXNet's OpenMP pool, OMP_NUM_THREADS (set it before running).
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

BENCHES = ["train", "inference", "chain", "trace_compile"]
BATCHES = 16
NAMES = {"linreg": "linear_regression", "softmax": "softmax_regression", "mlp": "mlp",
         "lenet": "lenet"}


def read_idx(path):
    """An IDX file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem, stem.replace("-idx", ".idx", 1)):
        for ext in (".gz", ""):
            p = os.path.join(data_dir, name + ext)
            if os.path.isfile(p):
                return p
    return None


def input_shape(model, batch):
    if model == "linreg":
        return (batch, 2)
    if model == "lenet":
        return (batch, 1, 28, 28)
    return (batch, 784)


def batches(args, model, batch):
    n = batch * BATCHES
    rng = np.random.default_rng(7)
    source = "synthetic"
    if model == "linreg":
        x = rng.standard_normal((n, 2)).astype(np.float32)
        y = (x @ np.array([2.0, -3.4], dtype=np.float32) + 4.2
             + 0.01 * rng.standard_normal(n)).astype(np.float32)
    else:
        x = y = None
        imgs = find(args.data, "train-images-idx3-ubyte")
        labs = find(args.data, "train-labels-idx1-ubyte")
        if imgs and labs:
            xi, yi = read_idx(imgs), read_idx(labs)
            if len(xi) >= n:
                x = xi[:n].astype(np.float32) / 255.0
                y = yi[:n].astype(np.float32)
                source = "mnist"
        if x is None:
            x = rng.random((n, 28, 28), dtype=np.float32)
            y = np.floor(rng.random(n) * 10).astype(np.float32)
    x = x.reshape(input_shape(model, n))
    out = []
    for i in range(BATCHES):
        s = slice(i * batch, (i + 1) * batch)
        out.append((mx.nd.array(x[s]), mx.nd.array(y[s])))
    return out, source


def build(model):
    net = nn.HybridSequential()
    with net.name_scope():
        if model == "linreg":
            net.add(nn.Dense(1))
        elif model == "softmax":
            net.add(nn.Dense(10))
        elif model == "mlp":
            net.add(nn.Dense(256, activation="relu"))
            net.add(nn.Dense(256, activation="relu"))
            net.add(nn.Dense(10))
        else:
            net.add(nn.Conv2D(channels=20, kernel_size=5, activation="relu"))
            net.add(nn.MaxPool2D(pool_size=2, strides=2))
            net.add(nn.Conv2D(channels=50, kernel_size=5, activation="relu"))
            net.add(nn.MaxPool2D(pool_size=2, strides=2))
            net.add(nn.Flatten())
            net.add(nn.Dense(512, activation="relu"))
            net.add(nn.Dense(10))
    return net


def initializer(model):
    if model in ("linreg", "softmax"):
        return mx.init.Normal(1.0)
    return mx.init.Xavier(magnitude=2.24)


def pair(model, x):
    """An imperative and a hybridized copy of `model` with the same initial weights."""
    mx.random.seed(1)
    nets = []
    for _ in range(2):
        net = build(model)
        net.initialize(initializer(model), ctx=mx.cpu())
        net(x).wait_to_read()  # deferred initialization
        nets.append(net)
    imperative, hybrid = nets
    for a, b in zip(imperative.collect_params().values(), hybrid.collect_params().values()):
        b.set_data(a.data())
    hybrid.hybridize(static_alloc=True, static_shape=True)
    return imperative, hybrid


def per_call(calls, f):
    t = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - t) / calls


def interleaved(warm, rounds, calls, a, b):
    for _ in range(warm):
        a()
        b()
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(per_call(calls, a))
        tb.append(per_call(calls, b))
    return statistics.median_low(ta), statistics.median_low(tb)


def threads():
    return int(os.environ.get("OMP_NUM_THREADS", "0")) or None


def emit(mode, bench, model, batch, **fields):
    line = {"suite": "compare", "framework": "mxnet", "mode": mode, "bench": bench,
            "model": model, "batch": batch}
    line.update(fields)
    line["threads"] = threads()
    line["mxnet"] = mx.__version__
    print(json.dumps(line), flush=True)


class Trainee:
    def __init__(self, net, data, model, batch):
        self.net, self.data, self.batch = net, data, batch
        lr = 0.03 if model == "linreg" else 0.1
        self.loss_fn = gluon.loss.L2Loss() if model == "linreg" else \
            gluon.loss.SoftmaxCrossEntropyLoss()
        self.trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
        self.i = 0
        self.loss = 0.0

    def step(self):
        x, y = self.data[self.i % len(self.data)]
        self.i += 1
        with autograd.record():
            loss = self.loss_fn(self.net(x), y)
        loss.backward()
        self.trainer.step(self.batch)
        self.loss = loss.mean().asscalar()


def bench_train(args, model, batch):
    data, source = batches(args, model, batch)
    imperative, hybrid = pair(model, data[0][0])
    ti = Trainee(imperative, data, model, batch)
    th = Trainee(hybrid, data, model, batch)
    if args.quick:
        warm, calls = (1, 2) if model == "lenet" else (3, 10)
    else:
        warm, calls = {"linreg": (100, 500), "softmax": (50, 400), "mlp": (20, 100),
                       "lenet": (5, 15)}[model]
        if model == "mlp" and batch > 64:
            warm, calls = 5, 30
    a, b = interleaved(warm, args.rounds, calls, ti.step, th.step)
    for mode, secs, t in (("imperative", a, ti), ("hybridized", b, th)):
        emit(mode, "train", NAMES[model], batch, value=batch / secs, unit="samples/s",
             us_per_call=secs * 1e6, calls=calls, rounds=args.rounds, data=source,
             final_loss=float(t.loss))


def bench_inference(args, model, batch):
    rng = np.random.default_rng(7)
    x = mx.nd.array(rng.random(input_shape(model, batch), dtype=np.float32))
    imperative, hybrid = pair(model, x)
    if args.quick:
        warm, calls = 2, 10
    elif model == "lenet":
        warm, calls = (20, 200) if batch == 1 else (5, 20)
    else:
        warm, calls = (100, 2000) if batch == 1 else (20, 200)

    def run(net):
        return lambda: net(x).wait_to_read()

    a, b = interleaved(warm, args.rounds, calls, run(imperative), run(hybrid))
    for mode, secs in (("imperative", a), ("hybridized", b)):
        emit(mode, "inference", NAMES[model], batch, value=secs * 1e6, unit="us",
             us_per_call=secs * 1e6, calls=calls, rounds=args.rounds)


def chain(F, x):
    return F.tanh(x * 2 + 1) * F.sigmoid(x)


def bench_chain(args):
    n = (1 << 22) if args.quick else (1 << 24)
    x = mx.nd.array((np.arange(n) % 1000).astype(np.float32) * 0.004 - 2.0)
    hybrid = gluon.nn.HybridLambda(chain)
    hybrid.hybridize(static_alloc=True, static_shape=True)
    warm, calls = 2, (2 if args.quick else 5)
    a, b = interleaved(warm, args.rounds, calls,
                       lambda: chain(mx.nd, x).wait_to_read(),
                       lambda: hybrid(x).wait_to_read())
    c = statistics.median_low([per_call(calls, lambda: x.copy().wait_to_read())
                               for _ in range(args.rounds)])
    diff = float(mx.nd.max(mx.nd.abs(chain(mx.nd, x) - hybrid(x))).asscalar())
    for bench, mode, secs in (("chain", "imperative", a), ("chain", "hybridized", b),
                              ("copy", "ndarray", c)):
        extra = {"max_abs_diff_imperative_hybridized": diff} if bench == "chain" else {}
        emit(mode, bench, "f32", n, value=8 * n / secs / 1e9, unit="GB/s",
             us_per_call=secs * 1e6, calls=calls, rounds=args.rounds, **extra)


def bench_trace_compile(args):
    # Batch 1, as in compare.rs: the graph is the same at any batch, a short step keeps the
    # difference clear of noise.
    batch = 1
    data, _ = batches(args, "lenet", batch)
    _, net = pair("lenet", data[0][0])
    t = Trainee(net, data, "lenet", batch)
    first, cached = [], []
    for _ in range(max(args.rounds, 3)):
        # hybridize() drops the cached graph: the next call builds it again.
        net.hybridize(static_alloc=True, static_shape=True)
        first.append(per_call(1, t.step))
        cached.append(statistics.median_low([per_call(1, t.step) for _ in range(5)]))
    f, c = statistics.median_low(first), statistics.median_low(cached)
    emit("hybridized", "trace_compile", "lenet", batch, value=(f - c) * 1e3, unit="ms",
         first_step_ms=f * 1e3, cached_step_ms=c * 1e3)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", choices=BENCHES)
    p.add_argument("--rounds", type=int, default=0)
    p.add_argument("--data", default=os.path.join(here, "..", "data", "mnist"))
    args = p.parse_args()
    if args.rounds < 0:
        p.error("--rounds must be at least 1")
    args.rounds = args.rounds or (1 if args.quick else 5)
    only = args.only or BENCHES
    if "trace_compile" in only:
        bench_trace_compile(args)
    if "train" in only:
        for model, batch in (("linreg", 4), ("softmax", 64), ("mlp", 64), ("mlp", 256),
                             ("lenet", 64)):
            bench_train(args, model, batch)
    if "inference" in only:
        for model in ("mlp", "lenet"):
            for batch in (1, 64):
                bench_inference(args, model, batch)
    if "chain" in only:
        bench_chain(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
