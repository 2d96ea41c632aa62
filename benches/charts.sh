#!/usr/bin/env bash
# Draws BENCHMARKS.md's charts (benches/charts/*.svg) from an e2e.sh results file, with
# matplotlib from PyPI in a virtual environment under target/.
#   benches/charts.sh                          # the run BENCHMARKS.md's tables show
#   benches/charts.sh target/e2e-results.tsv   # a new run
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/charts-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import matplotlib" 2>/dev/null \
    || "$venv/bin/pip" install -q --disable-pip-version-check "matplotlib==3.11.2"
"$venv/bin/python" benches/charts.py "$@"
ls -l benches/charts/*.svg
