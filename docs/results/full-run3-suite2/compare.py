"""Run 3's suite against its rerun on the same zoo with the code of 2026-11-23 (this folder).

    python docs/results/full-run3-suite2/compare.py

Both suites scored the very same artifacts (run 3's full zoo, unchanged), so every quality
number must agree; what changed between them is how the suite measures: the recall-drop upper
bound (Tango's score bound instead of the conditional one), the round count (from a warm call
instead of the first), and the isolated-memory probe (ONNX Runtime imported before forking).
Prints: cases whose decisions, recall or verdict differ; whether each stored drop bound equals
the one `rejudge_drop_bounds.py` computed from run 3's counts; rounds per case before and after;
isolated RAM per artifact at batch 32 before and after, by runtime.
"""

import json
import statistics
from pathlib import Path

from defectbench.metrics.paired import drop_interval

HERE = Path(__file__).resolve().parent
OLD, NEW = HERE.parent / "full-cpu.json", HERE / "full-cpu.json"


def load(path):
    data = json.loads(path.read_text())
    quality = {(q["variant"], q["precision"]): q for q in data["defectbench"]["quality"]}
    bench = {(b["extra_info"]["variant"], b["extra_info"]["precision"], b["extra_info"]["batch"]):
             b["extra_info"] for b in data["benchmarks"]}
    return quality, bench


def main():
    old_q, old_b = load(OLD)
    new_q, new_b = load(NEW)
    print(f"quality cases: run 3 {len(old_q)}, rerun {len(new_q)}")
    differ = [k for k in old_q if k in new_q and (
        old_q[k]["counts"] != new_q[k]["counts"] or old_q[k]["passed"] != new_q[k]["passed"]
        or old_q[k]["new_misses"] != new_q[k]["new_misses"])]
    print("cases whose confusion counts, new misses or verdict differ:", differ or "none")
    failing = sorted(f"{v}-{p}" for (v, p), q in new_q.items() if not q["passed"])
    print(f"failing in the rerun ({len(failing)}):", ", ".join(failing))
    mismatched = []
    for key, q in new_q.items():
        confidence = next(v["confidence"] for v in q["verdicts"] if v["metric"] == "recall_drop")
        expected = drop_interval(old_q[key]["new_misses"], old_q[key]["new_catches"],
                                 old_q[key]["n_defective"], confidence, "upper")[1]
        if abs(q["recall_drop_upper"] - expected) > 1e-12:
            mismatched.append(key)
    print("stored drop bounds that differ from the re-judged ones:", mismatched or "none")
    rounds = [(old_b[k]["latency_ms"]["rounds"], new_b[k]["latency_ms"]["rounds"])
              for k in old_b if k in new_b and not old_b[k].get("latency_only")]
    few_old = sum(1 for o, _ in rounds if o < 100)
    few_new = sum(1 for _, n in rounds if n < 100)
    print(f"gated benchmark cases: {len(rounds)}; with under 100 timed rounds: run 3 {few_old}, "
          f"rerun {few_new}; median rounds {statistics.median(o for o, _ in rounds):.0f} -> "
          f"{statistics.median(n for _, n in rounds):.0f}")
    by_runtime = {}
    for key, info in new_b.items():
        iso_new = (info.get("memory") or {}).get("isolated")
        iso_old = (old_b.get(key, {}).get("memory") or {}).get("isolated")
        if iso_new and iso_old:
            by_runtime.setdefault(info["runtime"], []).append(
                (key, iso_old["peak_delta_mb"], iso_new["peak_delta_mb"]))
    for runtime, rows in sorted(by_runtime.items()):
        change = [n - o for _, o, n in rows]
        print(f"isolated RAM at batch 32, {runtime} ({len(rows)} artifacts): median change "
              f"{statistics.median(change):+.1f} MB (range {min(change):+.1f} to "
              f"{max(change):+.1f})")
        for (variant, precision, _), o, n in sorted(rows):
            print(f"    {variant:45s} {precision:5s} {o:7.1f} -> {n:7.1f} MB")


if __name__ == "__main__":
    main()
