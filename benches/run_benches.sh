#!/usr/bin/env bash
# Runs `cargo bench --bench cpu_kernels` with numpy available for the baseline figures:
# creates a virtual environment under target/bench-venv (once), installs numpy into it, and
# puts its python first on PATH. Runs twice: with all cores, then with RAYON_NUM_THREADS=1
# (numpy then gets OPENBLAS_NUM_THREADS=1 too), because on a shared machine a busy core can
# make multithreaded figures, OpenBLAS's especially, meaningless. Extra arguments go to the
# benchmark (names to select: gemm, conv, elementwise, dispatch). Without arguments it then runs
# the eager training benchmark (train_throughput) too; benches/mxnet_compare.sh --train-only runs
# that one next to MXNet.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import numpy" 2>/dev/null; then
    "$venv/bin/pip" install --quiet numpy
fi
export PATH="$PWD/$venv/bin:$PATH"
cargo bench --bench cpu_kernels -- "$@"
RAYON_NUM_THREADS=1 cargo bench --bench cpu_kernels -- "$@"
if [ $# -eq 0 ]; then
    cargo bench --bench train_throughput
fi
