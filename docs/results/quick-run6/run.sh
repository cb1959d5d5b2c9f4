#!/usr/bin/env bash
# quick-run6: the README's first command, verbatim, on a fresh clone (commit 14204e4) with an
# empty cache directory, as a new user runs it: a new virtualenv, the install, then
# `pytest benchmarks --benchmark-json out.json`, which builds the quick zoo (in a process of
# its own) and runs the suite. Nothing else heavy ran beside it (file edits and short
# single-test runs only), unlike quick-run5.
set -uo pipefail
rm -rf /tmp/e2e /tmp/e2e-cache && git clone -q /work/main /tmp/e2e && cd /tmp/e2e
export XDG_CACHE_HOME=/tmp/e2e-cache PIP_CACHE_DIR=$HOME/.cache/pip
start=$(date +%s)
( python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest benchmarks --benchmark-json out.json ) > /tmp/e2e.log 2>&1
echo "rc=$? seconds=$(( $(date +%s) - start ))" >> /tmp/e2e.log
# then, from the repository root (results copied by hand):
#   cp /tmp/e2e/out.json docs/results/quick-run6/quick-cpu.json
#   (cd /tmp/e2e && . .venv/bin/activate && XDG_CACHE_HOME=/tmp/e2e-cache \
#       defectbench zoo list --profile quick --json) > docs/results/quick-run6/quick-zoo.json
#   grep -a -E "^(building|built|[0-9]+ variants ready)" /tmp/e2e.log, plus pytest's summary
#       line and rc -> quick-zoo-build.txt
#   python docs/results/compare_quick_runs.py docs/results/quick-run5 docs/results/quick-run6 \
#       > docs/results/quick-run6/compare.txt
#   python docs/results/compare_quick_runs.py docs/results docs/results/quick-run6 \
#       > docs/results/quick-run6/compare-first-quick-run.txt
#   defectbench report docs/results/quick-run6/quick-cpu.json --out docs/results/quick-run6/quick-cpu-report
