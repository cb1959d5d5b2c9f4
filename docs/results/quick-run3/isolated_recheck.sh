#!/usr/bin/env bash
# Are quick-run3's lower isolated-memory figures for torch artifacts (isolated-memory.txt) the
# code's doing? Measures three artifacts of the quick-run3 zoo at batch 32 with the isolated
# probe of commit b991dc1 (quick-run2's code) and of HEAD, one after the other, now.
# Usage, from the repository root in the project's virtualenv:
#   ZOO=/root/zoo-run3 bash docs/results/quick-run3/isolated_recheck.sh \
#       > docs/results/quick-run3/isolated-recheck.txt
set -euo pipefail
ZOO=${ZOO:-$HOME/.cache/defectbench/zoo}
OLD=$(mktemp -d)
git worktree add -q "$OLD/tree" b991dc1
trap 'git worktree remove --force "$OLD/tree"; rm -rf "$OLD"' EXIT
PROBE='
import sys
import defectbench
from defectbench.measure.isolated import IsolatedMemoryProbe
probe = IsolatedMemoryProbe(sys.argv[1], "quick")
for variant, precision in [("tf_efficientnet_lite0.kd", "fp32"),
                           ("vit_tiny_patch16_224.kd", "fp32"),
                           ("tf_efficientnet_lite0.kd.int8_ort", "int8")]:
    m = probe.measure(variant, precision, "cpu", 32, 2)
    print(f"{variant} {precision}: load {m.load_mb:.1f} MiB, peak delta {m.peak_delta_mb:.1f} MiB")
probe.close()
'
for tree in "$OLD/tree" "$PWD"; do
    echo "code: $(git -C "$tree" rev-parse --short HEAD) ($tree)"
    (cd "$tree" && PYTHONPATH="$tree" python -W ignore -c "$PROBE" "$ZOO")
done
