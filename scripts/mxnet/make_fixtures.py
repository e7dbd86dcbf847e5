"""Builds small MXNet 1.9.1 models, exports them with gluon and saves inputs and outputs.

Run through make_fixtures.sh (it creates the virtual environment). Writes into OUT_DIR:

  NAME-symbol.json, NAME-0000.params   gluon's export() of the hybridized block
  NAME-input{i}.npy                    the fixed inputs, in the order of the graph's inputs
  NAME-output{i}.npy                   MXNet's outputs on them, in the order of the heads
  manifest.json                        per model: input names, shapes and files; output files
  dtypes.params                        nd.save of one array per element type (V2 headers)
  npshape.params                       npx.save under NumPy shape semantics (V3 headers)

Everything is seeded, so a rerun reproduces the same files.
"""

import json
import os
import sys

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn, rnn

OUT = sys.argv[1] if len(sys.argv) > 1 else "."


def seed(s):
    mx.random.seed(s)
    np.random.seed(s)


def randomize_batchnorm(net, rng):
    """Gives BatchNorm layers non-trivial running statistics (fresh ones are 0 and 1)."""
    for name, p in net.collect_params().items():
        shape = p.shape
        if name.endswith("running_mean"):
            p.set_data(nd.array(rng.uniform(-0.5, 0.5, size=shape)))
        elif name.endswith("running_var"):
            p.set_data(nd.array(rng.uniform(0.5, 1.5, size=shape)))
        elif name.endswith("gamma"):
            p.set_data(nd.array(rng.uniform(0.5, 1.5, size=shape)))
        elif name.endswith("beta"):
            p.set_data(nd.array(rng.uniform(-0.2, 0.2, size=shape)))


def export(name, net, inputs, input_names):
    """Hybridizes, runs once, exports, and saves inputs/outputs; returns the manifest entry."""
    net.hybridize(static_alloc=False)
    outs = net(*[nd.array(x) for x in inputs])
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    prefix = os.path.join(OUT, name)
    net.export(prefix, epoch=0)
    entry = {"symbol": f"{name}-symbol.json", "params": f"{name}-0000.params",
             "inputs": [], "outputs": []}
    for i, (x, iname) in enumerate(zip(inputs, input_names)):
        f = f"{name}-input{i}.npy"
        np.save(os.path.join(OUT, f), x)
        entry["inputs"].append({"name": iname, "file": f, "shape": list(x.shape),
                                "dtype": str(x.dtype)})
    for i, o in enumerate(outs):
        f = f"{name}-output{i}.npy"
        a = o.asnumpy()
        np.save(os.path.join(OUT, f), a)
        entry["outputs"].append({"file": f, "shape": list(a.shape), "dtype": str(a.dtype)})
    # The exported pair must load back in MXNet and give the same outputs.
    sb = gluon.SymbolBlock.imports(prefix + "-symbol.json", input_names, prefix + "-0000.params")
    again = sb(*[nd.array(x) for x in inputs])
    if not isinstance(again, (list, tuple)):
        again = [again]
    for a, b in zip(outs, again):
        assert np.allclose(a.asnumpy(), b.asnumpy(), atol=1e-6), name
    return entry


def mlp(rng):
    seed(1)
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu", in_units=8),
            nn.Dense(8, activation="tanh", in_units=16),
            nn.Dense(4, in_units=8))
    net.initialize(mx.init.Xavier())
    x = rng.standard_normal((3, 8)).astype(np.float32)
    return export("mlp", net, [x], ["data"])


def lenet(rng):
    seed(2)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3, in_channels=1),
            nn.BatchNorm(in_channels=4),
            nn.Activation("relu"),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(6, kernel_size=3, padding=1, in_channels=4),
            nn.BatchNorm(in_channels=6),
            nn.Activation("sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Flatten(),
            nn.Dense(16, activation="relu", in_units=6 * 3 * 3),
            nn.Dropout(0.5),
            nn.Dense(10, in_units=16))
    net.initialize(mx.init.Xavier())
    randomize_batchnorm(net, rng)
    x = rng.standard_normal((2, 1, 14, 14)).astype(np.float32)
    return export("lenet", net, [x], ["data"])


class RNNHead(gluon.HybridBlock):
    """An RNN layer followed by a per-step Dense, as sequence models use it."""

    def __init__(self, layer, hidden, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.rnn = layer
            self.out = nn.Dense(3, flatten=False, in_units=hidden)

    def hybrid_forward(self, F, x):
        return self.out(self.rnn(x))


def rnn_model(name, rng, layer, hidden, layout="TNC"):
    seed(3)
    net = RNNHead(layer, hidden)
    net.initialize(mx.init.Xavier())
    # Xavier leaves the biases zero; give them values so the packing order matters.
    for pname, p in net.collect_params().items():
        if "bias" in pname:
            p.set_data(nd.array(rng.uniform(-0.3, 0.3, size=p.shape)))
    shape = (5, 2, 4) if layout == "TNC" else (2, 5, 4)
    x = rng.standard_normal(shape).astype(np.float32)
    return export(name, net, [x], ["data"])


class ScalarOps(gluon.HybridBlock):
    """Scalar, broadcast, comparison and shape ops, with several outputs."""

    def hybrid_forward(self, F, x, y):
        a = F.broadcast_add(x, y)                          # broadcast_add
        b = a * 2                                          # _mul_scalar
        c = 1 - b                                          # _rminus_scalar
        d = c / 3                                          # _div_scalar
        e = 2 / (F.abs(d) + 1)                             # abs, _plus_scalar, _rdiv_scalar
        f = e ** 2 - 0.5                                   # _power_scalar, _minus_scalar
        g = F.broadcast_greater(x, y) + (x < 0.25)         # broadcast_greater, _lesser_scalar
        h = F.clip(f, -0.3, 2.5)                           # clip
        w = F.where(x > 0, h, F.broadcast_mul(h, g - 2))   # where, _greater_scalar, broadcast_mul
        r1 = F.reshape(w, shape=(0, -1))                   # (2, 12): 0 copies, -1 infers
        r2 = F.reshape(w, shape=(-3, 0))                   # (6, 4): -3 merges two dims
        r3 = F.reshape(r2, shape=(-4, 2, -1, -2))          # (2, 3, 4): -4 splits, -2 copies rest
        t = F.transpose(r3, axes=(2, 0, 1))                # (4, 2, 3)
        s = F.slice_axis(w, axis=2, begin=1, end=3)        # (2, 3, 2)
        cat = F.concat(s, s * 0.5, F.maximum(s, d.slice_axis(axis=2, begin=0, end=2)), dim=2)
        m = F.mean(cat, axis=1, keepdims=True)             # (2, 1, 6)
        sm = F.softmax(cat, axis=-1)
        ls = F.log_softmax(F.sqrt(F.square(cat) + 1), axis=1)
        return m, sm, ls, t, r1 + F.exp(-F.relu(r1)), F.sum(F.sigmoid(r2), axis=0)


def scalar_ops(rng):
    seed(4)
    net = ScalarOps()
    net.initialize()
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = rng.standard_normal((1, 3, 1)).astype(np.float32)
    return export("scalar_ops", net, [x, y], ["data0", "data1"])


def dtypes_file():
    """One array per element type kiln reads, saved with nd.save (V2 headers)."""
    arrays = {
        "f32": nd.array(np.arange(6).reshape(2, 3) * 0.5 - 1, dtype="float32"),
        "f64": nd.array(np.arange(4) / 3.0, dtype="float64"),
        "f16": nd.array([1.0, -2.0, 0.5, 65504.0, 1.0 / 3.0], dtype="float16"),
        "u8": nd.array([0, 1, 127, 255], dtype="uint8"),
        "i32": nd.array([-2147483648, -1, 0, 2147483647], dtype="int32"),
        "i64": nd.array([-5, 7, 2 ** 40], dtype="int64"),
        "i8": nd.array([-128, -1, 0, 127], dtype="int8"),
    }
    nd.save(os.path.join(OUT, "dtypes.params"), arrays)


def npshape_file():
    """Arrays saved under NumPy shape semantics: V3 headers, a scalar and an empty array."""
    mx.npx.set_np()
    try:
        arrays = {
            "scalar": mx.np.array(2.5, dtype="float32"),
            "empty": mx.np.zeros((0, 3), dtype="float32"),
            "matrix": mx.np.array([[1, 2], [3, 4]], dtype="float32"),
        }
        mx.npx.save(os.path.join(OUT, "npshape.params"), arrays)
    finally:
        mx.npx.reset_np()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.RandomState(0)
    manifest = {"mxnet_version": mx.__version__, "numpy_version": np.__version__, "models": {}}
    manifest["models"]["mlp"] = mlp(rng)
    manifest["models"]["lenet"] = lenet(rng)
    manifest["models"]["lstm"] = rnn_model("lstm", rng, rnn.LSTM(8, input_size=4), 8)
    manifest["models"]["gru"] = rnn_model(
        "gru", rng, rnn.GRU(6, input_size=4, bidirectional=True, layout="NTC"), 12, "NTC")
    manifest["models"]["lstm2"] = rnn_model(
        "lstm2", rng, rnn.LSTM(5, num_layers=2, input_size=4), 5)
    manifest["models"]["scalar_ops"] = scalar_ops(rng)
    dtypes_file()
    npshape_file()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
