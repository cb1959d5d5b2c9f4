#!/usr/bin/env bash
# quick-run4: quick-run3's zoo with the 2026-11-30 artifact fixes. Only the variants whose
# artifacts changed have new keys (ORT static INT8: float classifier output; PT2E and QAT:
# unused float weights dropped; QAT: observers frozen while dev is scored); `zoo build`
# rebuilds exactly those, then the suite and the
# report run as in run_quick.sh (BUILD=0). Run from the repository root, machine otherwise idle.
# (This run's build was started at commit 1417759 and stopped after 9 variants, a 10th
# started, when the QAT fix of 6905ab8 re-keyed the QAT variant: quick-zoo-build-part1.txt,
# quick-zoo-before-part1.json; this script was then run again at 04f9da4, which built the rest.)
set -euo pipefail
OUT=docs/results/quick-run4
ZOO=${DEFECTBENCH_ZOO:-/root/zoo-run4}   # a copy of quick-run3's zoo (cp -a /root/zoo-run3 ...)
defectbench zoo list --profile quick --zoo "$ZOO" --json > "$OUT/quick-zoo-before.json"
{ time defectbench zoo build --profile quick --zoo "$ZOO"; } > /tmp/quick-run4-build.log 2>&1
grep -a -E "^(building|built|real|user|sys)" /tmp/quick-run4-build.log > "$OUT/quick-zoo-build.txt"
defectbench zoo list --profile quick --zoo "$ZOO" --json > "$OUT/quick-zoo.json"
OUT=$OUT DEFECTBENCH_ZOO=$ZOO BUILD=0 bash docs/results/run_quick.sh
