#!/usr/bin/env bash
# Eager training throughput of kiln against MXNet 1.9.1's imperative mode, same machine, same run.
#
# Usage: benches/mxnet_compare.sh [--threads N] [BENCH OPTIONS...]
#   --threads N   threads for both (MXNet's OMP_NUM_THREADS, kiln's RAYON_NUM_THREADS);
#                 default 1, MXNet's own default on small machines. On a busy machine more
#                 threads mostly measure the scheduler.
#   BENCH OPTIONS go to both benchmarks: --quick, --model NAME, --batch N, --rounds N, --data DIR.
#
# Creates a virtual environment under target/mxnet-venv (once) with mxnet==1.9.1 and
# numpy==1.23.5; when no numpy 1.23.5 wheel fits this python, it tries the newest numpy below
# 1.24 that mxnet 1.9.1 imports with (mxnet 1.9.1 uses np.bool, removed in numpy 1.24) and says
# so. Then runs benches/mxnet_train_throughput.py, then `cargo bench --bench train_throughput`,
# and prints one JSON line per model with both throughputs and kiln/MXNet.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --threads=*) threads="${1#--threads=}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

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

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "# MXNet $("$py" -c 'import mxnet; print(mxnet.__version__)') (numpy $numpy_version), imperative, OMP_NUM_THREADS=$threads" >&2
OMP_NUM_THREADS="$threads" "$py" benches/mxnet_train_throughput.py ${args[@]+"${args[@]}"} | tee "$out/mxnet.jsonl"
echo "# kiln eager, RAYON_NUM_THREADS=$threads" >&2
RAYON_NUM_THREADS="$threads" cargo bench --quiet --bench train_throughput -- ${args[@]+"${args[@]}"} | tee "$out/kiln.jsonl"

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
