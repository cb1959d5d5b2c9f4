#!/usr/bin/env bash
# Is the quick zoo's difference from the committed run the code or the machine?
# Builds tf_efficientnet_lite0.base with the code of the committed quick run (commit 0ac339d)
# on this machine and compares its weights with this run's build (HEAD's code, same machine,
# zoo in ~/.cache/defectbench/zoo) and its dev AUROC with the committed run's.
# Run from the repository root in the project's virtualenv after run_quick.sh.
set -euo pipefail
OLD_TREE=/tmp/wt-old OLD_ZOO=/tmp/zoo-old
rm -rf "$OLD_TREE" "$OLD_ZOO"
git worktree add -q "$OLD_TREE" 0ac339d
(cd "$OLD_TREE" && PYTHONPATH="$OLD_TREE" DEFECTBENCH_ZOO="$OLD_ZOO" python -c "
import sys; from defectbench.cli import main
sys.exit(main(['zoo', 'build', '--profile', 'quick', '--variants', 'tf_efficientnet_lite0.base']))
" > /dev/null 2>&1)
python - "$OLD_ZOO" <<'PY'
import json, sys
from pathlib import Path

name = "tf_efficientnet_lite0.base"
builds = {
    "code of 0ac339d, this machine": Path(sys.argv[1]) / "quick" / name / "manifest.json",
    "code of this run, this machine": Path.home() / ".cache/defectbench/zoo/quick" / name
    / "manifest.json",
}
for label, path in builds.items():
    m = json.loads(path.read_text())
    print(f"{label}: model.pt sha256 {m['artifacts']['model.pt']['sha256'][:16]}, "
          f"dev AUROC {m['dev']['auroc']:.6f}, best epoch {m['fit']['best_epoch']}")
committed = {r["name"]: r for r in json.loads(Path("docs/results/quick-zoo.json").read_text())}
print(f"committed quick run (code of 0ac339d, the earlier machine): dev AUROC "
      f"{committed[name]['dev_auroc']:.6f}, best epoch {committed[name]['best_epoch']}")
PY
git worktree remove --force "$OLD_TREE"
