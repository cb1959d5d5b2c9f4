"""Re-judge a committed suite JSON's recall-drop bounds with the current interval.

    python docs/results/rejudge_drop_bounds.py RESULTS.json [RESULTS.json ...]

Suite runs before 2026-11-23 bounded the paired recall drop with a conditional interval that
cannot exceed (new misses + new catches) / n_defective, so a variant that only loses catches
got its observed drop as its "95% upper bound" (defectbench/metrics/paired.py says why and
what replaced it). Every quality case in the JSON keeps its counts (new misses, new catches,
defective cells, confidence), so the corrected bound follows from the JSON alone, without
rerunning anything. Prints, per case, the old and the corrected one-sided upper bound and each
budget judged on it (old verdict -> corrected verdict), then the cases whose overall verdict
changes.

Committed output: `drop-bounds-rejudged.txt` (full runs 3, 1 and 2, the quick run, the
224-px quick run and the two 192-px noise runs: every committed run that stored the old bound).
"""

import json
import sys

from defectbench.metrics.paired import drop_interval


def rejudge(path):
    data = json.loads(open(path).read())
    rows, flipped = [], []
    for bench in data["benchmarks"]:
        quality = bench.get("extra_info", {}).get("quality")
        if not quality or "new_misses" not in quality:
            continue  # latency-only cases and the reference itself
        b, c = quality["new_misses"], quality["new_catches"]
        n = quality["n_defective"]
        verdicts = quality["verdicts"]
        confidence = next((v["confidence"] for v in verdicts if v["metric"] == "recall_drop"),
                          0.95)
        corrected = drop_interval(b, c, n, confidence, "upper")[1]
        old_pass = all(v["passed"] for v in verdicts)
        new_pass = True
        changes = []
        for v in verdicts:
            passed = v["passed"]
            if v["metric"] == "recall_drop" and v["judged_on"] == "upper_bound" and not v["group"]:
                passed = corrected <= v["limit"]  # as the gate: budgets.py
                changes.append(f"{v['budget']} (<= {v['limit']}): "
                               f"{'pass' if v['passed'] else 'FAIL'} -> "
                               f"{'pass' if passed else 'FAIL'}")
            new_pass = new_pass and passed
        case = bench["name"].split("[", 1)[1].rstrip("]")
        rows.append(f"{case:55s} b={b:3d} c={c:3d} n={n} drop {quality['recall_drop']:+.3f} "
                    f"upper {quality['recall_drop_upper']:.3f} -> {corrected:.3f}  "
                    + "; ".join(changes))
        if old_pass != new_pass:
            flipped.append(f"{case}: {'pass' if old_pass else 'FAIL'} -> "
                           f"{'pass' if new_pass else 'FAIL'}")
    print(f"== {path}: {len(rows)} gated cases")
    print("\n".join(rows))
    print(f"overall verdicts that change: {len(flipped)}")
    print("\n".join(flipped) if flipped else "(none)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for json_path in sys.argv[1:]:
        rejudge(json_path)
