#!/usr/bin/env python3
"""Prints the comparison table from the JSON lines of compare.rs and mxnet_compare.py.

Usage: benches/compare_table.py [--json] FILE... (or the lines on standard input)

Reads every `"suite": "compare"` line (other lines are ignored), groups them by thread
count and prints, per thread count, one Markdown table: kiln eager, kiln hybridized, MXNet
imperative and MXNet hybridized, then two ratios, both as speedups of hybridized kiln (above
1: hybridized kiln is faster, whatever the unit):

- `hyb/eager`: hybridized kiln against eager kiln;
- `hyb/MXNet hyb`: hybridized kiln against hybridized MXNet.

When a benchmark was measured several times (several runs fed in, e.g. by
`mxnet_compare.sh --repeat N`), the n-th line of a measurement belongs to run n: a value
is the median over runs, and a ratio is computed within each run (kiln and MXNet of the
same run) and reported as the median, with the range over runs in brackets. After each table
come the issue's targets with the measured figures. With --json, one JSON line per table row
follows instead of Markdown.
"""

import json
import statistics
import sys
from collections import defaultdict

COLUMNS = [("kiln", "eager"), ("kiln", "hybridized"), ("mxnet", "imperative"),
           ("mxnet", "hybridized")]
LOWER_IS_BETTER = {"us", "ms"}
TITLES = {
    ("train", "linear_regression"): "train linear regression",
    ("train", "softmax_regression"): "train softmax regression",
    ("train", "mlp"): "train MLP",
    ("train", "lenet"): "train LeNet",
    ("inference", "mlp"): "inference MLP",
    ("inference", "lenet"): "inference LeNet",
    ("chain", "f32"): "tanh(x*2+1)*sigmoid(x), 16M f32",
    ("trace_compile", "lenet"): "trace+compile LeNet train graph",
}
ORDER = ["train", "inference", "chain", "copy", "trace_compile"]


def load(paths):
    lines = []
    streams = [open(p) for p in paths] if paths else [sys.stdin]
    for f in streams:
        for raw in f:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            try:
                r = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if r.get("suite") == "compare":
                lines.append(r)
    return lines


def speedup(kiln, other, unit):
    if kiln is None or other is None or kiln <= 0 or other <= 0:
        return None
    return other / kiln if unit in LOWER_IS_BETTER else kiln / other


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "GB/s":
        return f"{v:.2f}"
    if unit == "ms":
        return f"{v:.1f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def fmt_ratio(rs):
    rs = [r for r in rs if r is not None]
    if not rs:
        return "–", None
    m = statistics.median(rs)
    if len(rs) == 1:
        return f"{m:.2f}×", m
    return f"{m:.2f}× [{min(rs):.2f}–{max(rs):.2f}]", m


def table(rows, threads, as_json):
    # (bench, model, batch) -> (framework, mode) -> [value per run]
    runs = defaultdict(lambda: defaultdict(list))
    units = {}
    for r in rows:
        key = (r["bench"], r["model"], r["batch"])
        runs[key][(r["framework"], r["mode"])].append(r["value"])
        units[key] = r["unit"]

    def order(key):
        bench, model, batch = key
        models = ["linear_regression", "softmax_regression", "mlp", "lenet", "f32"]
        return (ORDER.index(bench) if bench in ORDER else 99,
                models.index(model) if model in models else 99, batch)

    out = []
    if not as_json:
        out.append(f"threads: {threads}\n")
        out.append("| benchmark | batch | unit | kiln eager | kiln hybridized | MXNet imperative "
                   "| MXNet hybridized | hyb/eager | hyb/MXNet hyb |")
        out.append("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for key in sorted(runs, key=order):
        bench, model, batch = key
        unit = units[key]
        cols = runs[key]
        if bench == "copy":
            # The copy figures sit in the eager / imperative columns.
            cols = {("kiln", "eager"): cols.get(("kiln", "ndarray"), []),
                    ("kiln", "memcpy"): cols.get(("kiln", "memcpy"), []),
                    ("mxnet", "imperative"): cols.get(("mxnet", "ndarray"), [])}
        med = {c: (statistics.median(v) if v else None) for c, v in cols.items()}
        hyb = cols.get(("kiln", "hybridized"), [])
        vs_eager = [speedup(h, e, unit) for h, e in zip(hyb, cols.get(("kiln", "eager"), []))]
        vs_mx = [speedup(h, m, unit) for h, m in zip(hyb, cols.get(("mxnet", "hybridized"), []))]
        (re, me), (rm, mm) = fmt_ratio(vs_eager), fmt_ratio(vs_mx)
        title = TITLES.get((bench, model), f"{bench} {model}")
        if bench == "copy":
            title = "copy (NDArray copy; memcpy {})".format(
                fmt(med.get(("kiln", "memcpy")), unit))
        summary[key] = {"unit": unit, **{f"{f}_{m}": v for (f, m), v in med.items()},
                        "hyb_over_eager": me, "hyb_over_mxnet_hyb": mm}
        if as_json:
            out.append(json.dumps({"bench": bench, "model": model, "batch": batch,
                                   "threads": threads, **summary[key]}))
        else:
            vals = [fmt(med.get(c), unit) for c in COLUMNS]
            out.append(f"| {title} | {batch} | {unit} | " + " | ".join(vals)
                       + f" | {re} | {rm} |")
    if not as_json:
        out.append("")
        out.extend(targets(summary))
    return out


def targets(summary):
    """The issue's targets, with the measured figures."""
    lines = []
    for key, s in summary.items():
        bench, model, batch = key
        if bench == "train" and model in ("mlp", "lenet") and s["hyb_over_eager"] is not None:
            ok = "met" if s["hyb_over_eager"] >= 1.5 else "not met"
            lines.append(f"- {model} training step, batch {batch}: hybridized kiln "
                         f"{s['hyb_over_eager']:.2f}× eager (target ≥ 1.5×: {ok})")
    for key, s in summary.items():
        bench, model, batch = key
        if bench in ("train", "inference") and s["hyb_over_mxnet_hyb"] is not None:
            goal = 10.0 if model == "linear_regression" else 1.0
            ok = "met" if s["hyb_over_mxnet_hyb"] >= goal else "not met"
            lines.append(f"- {bench} {model}, batch {batch}: {s['hyb_over_mxnet_hyb']:.2f}× "
                         f"MXNet hybridized (target ≥ {goal:g}×: {ok})")
    chain = next((s for k, s in summary.items() if k[0] == "chain"), None)
    copy = next((s for k, s in summary.items() if k[0] == "copy"), None)
    if chain and copy and chain.get("kiln_hybridized"):
        for name, col in (("memcpy", "kiln_memcpy"), ("NDArray copy", "kiln_eager")):
            if copy.get(col):
                frac = chain["kiln_hybridized"] / copy[col]
                ok = "met" if frac >= 0.7 else "not met"
                lines.append(f"- fused chain: {chain['kiln_hybridized']:.2f} GB/s = "
                             f"{100 * frac:.0f}% of the {name} bandwidth ({copy[col]:.2f} GB/s; "
                             f"target ≥ 70%: {ok})")
    tc = next((s for k, s in summary.items() if k[0] == "trace_compile"), None)
    if tc and tc.get("kiln_hybridized") is not None:
        ok = "met" if tc["kiln_hybridized"] < 200 else "not met"
        lines.append(f"- LeNet training graph traced and compiled in "
                     f"{tc['kiln_hybridized']:.1f} ms (target < 200 ms: {ok})")
    return lines


def main():
    args = sys.argv[1:]
    as_json = "--json" in args
    paths = [a for a in args if a != "--json"]
    rows = load(paths)
    if not rows:
        print("compare_table: no compare lines found", file=sys.stderr)
        return 1
    by_threads = defaultdict(list)
    for r in rows:
        by_threads[r.get("threads")].append(r)
    first = True
    for threads in sorted(by_threads, key=lambda t: (t is None, t)):
        if not first and not as_json:
            print()
        first = False
        print("\n".join(table(by_threads[threads], threads, as_json)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
