#!/usr/bin/env bash
# kiln (eager and hybridized on Cranelift) against MXNet 1.9.1 (imperative and hybridized), same
# machine, same run, then one table of ratios.
#
# Usage: benches/mxnet_compare.sh [--threads N[,M...]] [--repeat R] [--out DIR] [OPTIONS...]
#   --threads N,M  thread counts to run with, for both (MXNet's OMP_NUM_THREADS, kiln's
#                  RAYON_NUM_THREADS); default 1, MXNet's own default on small machines.
#   --repeat R     runs per thread count (default 1); the runs of kiln and MXNet alternate, and
#                  the table gives the median ratio with its range over the runs.
#   --out DIR      where the JSON lines are kept (default: a temporary directory, deleted).
#   --train-only   the older comparison instead: eager training throughput only
#                  (`cargo bench --bench train_throughput` against
#                  benches/mxnet_train_throughput.py), one ratio line per model.
#   OPTIONS go to both benchmarks: --quick, --only BENCH (train, inference, chain,
#   trace_compile), --rounds N, --data DIR (with --train-only: train_throughput's options).
#
# Creates a virtual environment under target/mxnet-venv (once) with mxnet==1.9.1 and
# numpy==1.23.5; when no numpy 1.23.5 wheel fits this python, it tries the newest numpy below
# 1.24 that mxnet 1.9.1 imports with (mxnet 1.9.1 uses np.bool, removed in numpy 1.24) and says
# so. kiln's side is `cargo bench --bench compare` (release), MXNet's benches/mxnet_compare.py;
# benches/compare_table.py prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=1
repeat=1
out=
train_only=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --threads=*) threads="${1#--threads=}"; shift ;;
        --repeat) repeat="$2"; shift 2 ;;
        --repeat=*) repeat="${1#--repeat=}"; shift ;;
        --out) out="$2"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        --train-only) train_only=1; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
case "$repeat" in ''|*[!0-9]*|0) echo "mxnet_compare: --repeat needs a positive number" >&2; exit 2 ;; esac

venv=target/mxnet-venv
py="$venv/bin/python"
if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
fi
if ! "$py" -c "import mxnet" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1 || true
    if ! "$venv/bin/pip" install --quiet "mxnet==1.9.1" "numpy==1.23.5"; then
        echo "mxnet_compare: numpy 1.23.5 did not install on $("$py" --version 2>&1);" \
             "trying the newest numpy < 1.24 with a wheel for it" >&2
        "$venv/bin/pip" install --quiet --only-binary=:all: "mxnet==1.9.1" "numpy<1.24"
    fi
fi
if ! "$py" -c "import mxnet" 2>/dev/null; then
    echo "mxnet_compare: mxnet 1.9.1 does not import in $venv:" >&2
    "$py" -c "import mxnet" >&2 || true
    exit 1
fi
numpy_version=$("$py" -c "import numpy; print(numpy.__version__)")
if [ "$numpy_version" != "1.23.5" ]; then
    echo "mxnet_compare: note: running with numpy $numpy_version, not 1.23.5" >&2
fi
mxnet_version=$("$py" -c 'import mxnet; print(mxnet.__version__)')

if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
else
    mkdir -p "$out"
fi

if [ "$train_only" = 1 ]; then
    t="${threads%%,*}"
    echo "# MXNet $mxnet_version (numpy $numpy_version), imperative, OMP_NUM_THREADS=$t" >&2
    OMP_NUM_THREADS="$t" "$py" benches/mxnet_train_throughput.py ${args[@]+"${args[@]}"} | tee "$out/mxnet.jsonl"
    echo "# kiln eager, RAYON_NUM_THREADS=$t" >&2
    RAYON_NUM_THREADS="$t" cargo bench --quiet --bench train_throughput -- ${args[@]+"${args[@]}"} | tee "$out/kiln.jsonl"
    "$py" - "$out/mxnet.jsonl" "$out/kiln.jsonl" <<'EOF'
import json, sys

def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[r["model"]] = r
    return rows

mxnet, kiln = load(sys.argv[1]), load(sys.argv[2])
for model, k in kiln.items():
    m = mxnet.get(model)
    if m is None:
        continue
    print(json.dumps({
        "bench": "train_ratio",
        "model": model,
        "batch": k["batch"],
        "kiln_samples_per_sec": round(k["samples_per_sec"], 1),
        "mxnet_samples_per_sec": round(m["samples_per_sec"], 1),
        "kiln_over_mxnet": round(k["samples_per_sec"] / m["samples_per_sec"], 3),
    }))
EOF
    exit 0
fi

# Build once, outside the timed runs.
cargo bench --quiet --bench compare --no-run >&2
for t in ${threads//,/ }; do
    for r in $(seq 1 "$repeat"); do
        echo "# run $r/$repeat, $t thread(s): MXNet $mxnet_version (numpy $numpy_version), imperative and hybridized" >&2
        OMP_NUM_THREADS="$t" "$py" benches/mxnet_compare.py ${args[@]+"${args[@]}"} > "$out/mxnet-t$t-r$r.jsonl"
        echo "# run $r/$repeat, $t thread(s): kiln eager and hybridized (Cranelift)" >&2
        RAYON_NUM_THREADS="$t" cargo bench --quiet --bench compare -- ${args[@]+"${args[@]}"} > "$out/kiln-t$t-r$r.jsonl"
    done
done
cat "$out"/mxnet-*.jsonl "$out"/kiln-*.jsonl
echo
"$py" benches/compare_table.py "$out"/mxnet-*.jsonl "$out"/kiln-*.jsonl
