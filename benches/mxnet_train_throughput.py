#!/usr/bin/env python3
"""MXNet's imperative (non-hybridized) training throughput on the models of train_throughput.rs.

Prints one JSON line per model, in the same format as `cargo bench --bench train_throughput`:

    {"bench": "train", "framework": "mxnet", "model": "mlp", "batch": 64,
     "samples_per_sec": ..., "ms_per_step": ..., ...}

Each step is what the Rust benchmark times: forward under `autograd.record()`,
`SoftmaxCrossEntropyLoss`, `backward()`, `Trainer.step(batch)` with plain SGD (learning rate
0.1), and reading the mean loss as a Python float (which also waits for MXNet's asynchronous
engine to finish the step). Models (gluon.nn, Xavier(magnitude=2.24) as in the book):
softmax regression Dense(10); the MLP Dense(256, relu)-Dense(256, relu)-Dense(10); the LeNet of
the book's cnn-gluon notebook. Data: the first batch*16 images of the MNIST training split
read from the IDX files (random images of the same shape when they are missing), cycled.

Options: --quick, --model NAME (repeatable), --batch N, --rounds N, --data DIR.
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

MODELS = ["softmax", "mlp", "cnn"]
BATCHES = 16


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


def batches(args, image):
    n = args.batch * BATCHES
    imgs = find(args.data, "train-images-idx3-ubyte")
    labs = find(args.data, "train-labels-idx1-ubyte")
    source = "synthetic"
    if imgs and labs:
        x = read_idx(imgs)
        y = read_idx(labs)
        if len(x) >= n:
            x = x[:n].astype(np.float32) / 255.0
            y = y[:n].astype(np.float32)
            source = "mnist"
    if source == "synthetic":
        rng = np.random.default_rng(7)
        x = rng.random((n, 28, 28), dtype=np.float32)
        y = np.floor(rng.random(n) * 10).astype(np.float32)
    x = x.reshape((n, 1, 28, 28) if image else (n, 784))
    out = []
    for i in range(BATCHES):
        s = slice(i * args.batch, (i + 1) * args.batch)
        out.append((mx.nd.array(x[s]), mx.nd.array(y[s])))
    return out, source


def build(model):
    net = nn.Sequential()
    with net.name_scope():
        if model == "softmax":
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


def schedule(model, args):
    full = {"softmax": (50, 400), "mlp": (20, 150), "cnn": (5, 30)}
    quick = {"softmax": (5, 40), "mlp": (3, 15), "cnn": (1, 3)}
    warm, steps = (quick if args.quick else full)[model]
    rounds = args.rounds or (1 if args.quick else 5)
    return warm, steps, rounds


def bench(model, args):
    mx.random.seed(1)
    data, source = batches(args, model == "cnn")
    net = build(model)
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=mx.cpu())
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    net(data[0][0])  # deferred initialization
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    state = {"i": 0, "loss": 0.0}

    def step():
        x, y = data[state["i"] % len(data)]
        state["i"] += 1
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(args.batch)
        state["loss"] = loss.mean().asscalar()

    warm, steps, rounds = schedule(model, args)
    for _ in range(warm):
        step()
    secs = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        secs.append((time.perf_counter() - t) / steps)
    median = statistics.median_low(secs)
    return {
        "bench": "train",
        "framework": "mxnet",
        "model": model,
        "batch": args.batch,
        "samples_per_sec": args.batch / median,
        "ms_per_step": median * 1e3,
        "best_ms_per_step": min(secs) * 1e3,
        "steps": steps,
        "rounds": rounds,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "data": source,
        "final_loss": float(state["loss"]),
        "mxnet": mx.__version__,
        "numpy": np.__version__,
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model", action="append", choices=MODELS)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=0)
    p.add_argument("--data", default=os.path.join(here, "..", "data", "mnist"))
    args = p.parse_args()
    if args.batch < 1:
        p.error("--batch must be at least 1")
    for model in args.model or MODELS:
        print(json.dumps(bench(model, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
