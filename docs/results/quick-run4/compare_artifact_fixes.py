"""quick-run3 against quick-run4: what the 2026-11-30 artifact fixes changed, case by case.

    python docs/results/quick-run4/compare_artifact_fixes.py docs/results/quick-run3 \
        docs/results/quick-run4 > docs/results/quick-run4/compare.txt

quick-run4's zoo is a copy of quick-run3's in which only the re-keyed variants were rebuilt
(ORT static INT8: float classifier output; PT2E: unused float weights dropped; QAT: the same,
and observers frozen while dev is scored). Prints, for the variants whose key changed: the
dev operating threshold, val recall / specificity / verdict, size and isolated RAM at batch 32,
OLD then NEW; then whether every other quality case has the same confusion counts (it must:
same artifacts, same code path for them); then compiled variants' latency at each batch size,
whose graphs became static per batch size.
"""

import json
import statistics
import sys
from pathlib import Path


def load(folder: Path):
    data = json.loads((folder / "quick-cpu.json").read_text())
    quality = {(q["variant"], q["precision"]): q for q in data["defectbench"]["quality"]}
    bench = {(e["variant"], e["precision"], e["batch"]): e
             for e in (b["extra_info"] for b in data["benchmarks"]) if not e.get("latency_only")}
    # a variant rebuilt in the NEW zoo has another creation time (`zoo list --json` has no key)
    created = {row["name"]: row.get("created") for row in
               json.loads((folder / "quick-zoo.json").read_text())}
    return quality, bench, created


def isolated_mb(bench, variant, precision):
    for (v, p, _), info in bench.items():
        isolated = info.get("memory", {}).get("isolated")
        if v == variant and p == precision and isolated:
            return isolated["peak_delta_mb"]
    return None


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main(old_dir: Path, new_dir: Path) -> None:
    old_q, old_b, old_created = load(old_dir)
    new_q, new_b, new_created = load(new_dir)
    rekeyed = sorted(n for n in new_created if old_created.get(n) != new_created[n])
    print(f"OLD: {old_dir}\nNEW: {new_dir}")
    print(f"variants rebuilt in NEW ({len(rekeyed)}): {', '.join(rekeyed)}\n")
    header = ("variant", "threshold", "recall", "spec.", "gate", "size MB", "RAM b32 MB")
    print(f"{header[0]:44s} {'':3s} {header[1]:>9s} {header[2]:>6s} {header[3]:>6s} "
          f"{header[4]:>5s} {header[5]:>7s} {header[6]:>10s}")
    for (variant, precision) in sorted(new_q):
        if variant not in rekeyed:
            continue
        for label, quality, bench in (("OLD", old_q, old_b), ("NEW", new_q, new_b)):
            q = quality.get((variant, precision))
            if q is None:
                print(f"{variant:44s} {label}  (not run)")
                continue
            print(f"{variant + '-' + precision:44s} {label} "
                  f"{q['operating_point']['threshold']:9.5f} {q['recall']:6.3f} "
                  f"{q['specificity']:6.3f} {'pass' if q['passed'] else 'FAIL':>5s} "
                  f"{fmt(q.get('size_mb'), '7.2f')} "
                  f"{fmt(isolated_mb(bench, variant, precision), '10.1f')}")
    same = [k for k in new_q if k[0] not in rekeyed and k in old_q]
    differ = [f"{v}-{p}" for v, p in same if old_q[v, p]["counts"] != new_q[v, p]["counts"]]
    print(f"\nother quality cases: {len(same)}; confusion counts differ: "
          f"{', '.join(differ) or 'none'}")
    failing = sorted(f"{v}-{p}" for (v, p), q in new_q.items() if not q["passed"])
    print(f"failing in NEW ({len(failing)}): {', '.join(failing)}")
    print("\ncompiled (PT2E, QAT) latency p50 ms, OLD -> NEW (NEW/OLD)")
    for key in sorted(k for k in new_b if new_b[k]["runtime"] == "torch_compile"):
        if key in old_b:
            old_ms = old_b[key]["latency_ms"]["p50"]
            new_ms = new_b[key]["latency_ms"]["p50"]
            print(f"  {key[0] + '-b' + str(key[2]):44s} {old_ms:8.2f} -> {new_ms:8.2f} "
                  f"({new_ms / old_ms:.2f})")
    ratios = [new_b[k]["latency_ms"]["p50"] / old_b[k]["latency_ms"]["p50"]
              for k in new_b if k in old_b and k[0] not in rekeyed]
    print(f"\nunchanged variants' latency NEW/OLD, median over {len(ratios)} cases: "
          f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] "
          "(this machine's run-to-run noise)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: compare_artifact_fixes.py OLD_RESULTS_DIR NEW_RESULTS_DIR")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
