#!/usr/bin/env bash
# Regenerates the MXNet fixtures in tests/fixtures/mxnet/ with real Apache MXNet 1.9.1.
#
# Usage: scripts/mxnet/make_fixtures.sh [OUT_DIR]
#
# Creates (once) a Python virtual environment with mxnet==1.9.1 and numpy==1.23.5 and runs
# make_fixtures.py in it. MXNet 1.9.1 ships wheels for CPython up to 3.11 on x86-64 Linux.
# The environment lives in target/mxnet-venv (ignored by git); set KILN_MXNET_VENV to use
# another place, PYTHON to pick the interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/tests/fixtures/mxnet}"
venv="${KILN_MXNET_VENV:-$root/target/mxnet-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --upgrade pip
    # numpy first: mxnet 1.9.1 declares numpy<2 but pip may otherwise pick a build it cannot use.
    "$venv/bin/python" -m pip install "numpy==1.23.5"
    "$venv/bin/python" -m pip install "mxnet==1.9.1"
fi

mkdir -p "$out"
"$venv/bin/python" "$here/make_fixtures.py" "$out"
echo "fixtures written to $out"
du -sh "$out"
