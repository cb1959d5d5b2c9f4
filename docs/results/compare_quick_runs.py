"""Two runs of `run_quick.sh` (zoo built from nothing, suite, report) side by side.

    python docs/results/compare_quick_runs.py docs/results docs/results/quick-run2 \
        > docs/results/quick-run2/compare.txt
    python docs/results/compare_quick_runs.py docs/results/quick-run2 docs/results/quick-run3 \
        > docs/results/quick-run3/compare.txt

Prints, for the earlier run (OLD) and the later one (NEW): the CPU; build time, whole zoo and
teacher plus the four students (what zoo I's 30-minute budget covers), per trained model;
variants whose dev metrics differ (a build that does not reproduce); quality cases whose
confusion counts, new misses or verdict differ; the teacher's val figures; failing cases;
speed targets; and the in-process first-call memory `delta_mb` by runtime and batch size.
"""

import json
import re
import statistics
import sys
from pathlib import Path


def zoo(folder):
    return {row["name"]: row for row in json.loads((folder / "quick-zoo.json").read_text())}


def suite(folder):
    data = json.loads((folder / "quick-cpu.json").read_text())
    quality = {(q["variant"], q["precision"]): q for q in data["defectbench"]["quality"]}
    bench = {(e["variant"], e["precision"], e["batch"]): e
             for e in (b["extra_info"] for b in data["benchmarks"]) if not e.get("latency_only")}
    return quality, bench, data["defectbench"].get("speed_targets", [])


def cpu(folder):
    return json.loads((folder / "quick-cpu.json").read_text())["machine_info"]["cpu"]


def wall_minutes(folder):
    """The zoo build's wall time, or None where it was not timed on its own (quick-run5: the
    build ran inside the suite's first command)."""
    text = (folder / "quick-zoo-build.txt").read_text()
    found = re.search(r"^real\s+(\d+)m([\d.]+)s", text, re.M)
    return None if found is None else int(found[1]) + float(found[2]) / 60


TRAINED = ("tf_efficientnet_lite2.teacher", "tf_efficientnet_lite0.base",
           "tf_efficientnet_lite0.kd", "vit_tiny_patch16_224.base", "vit_tiny_patch16_224.kd")


def trained_seconds(folder):
    """Build seconds of the teacher and the four students: what zoo I's budget covers."""
    text = (folder / "quick-zoo-build.txt").read_text()
    seconds = {m[1]: int(m[2]) for m in re.finditer(r"^built (\S+) in (\d+) s", text, re.M)}
    return {n: seconds.get(n) for n in TRAINED}  # None: not built in that run (quick-run4)


def main(old_dir: Path, new_dir: Path):
    print(f"OLD: {old_dir}\nNEW: {new_dir}")
    old_cpu, new_cpu = cpu(old_dir), cpu(new_dir)
    for label, info in (("OLD", old_cpu), ("NEW", new_cpu)):
        print(f"{label}: {info['brand_raw']}, family {info['family']} model {info['model']} "
              f"stepping {info['stepping']}, {len(info['flags'])} CPU flags")
    print("flags only OLD's CPU had:",
          " ".join(sorted(set(old_cpu["flags"]) - set(new_cpu["flags"]))) or "none")
    old_zoo, new_zoo = zoo(old_dir), zoo(new_dir)
    def minutes(value):
        return "not timed on its own" if value is None else f"{value:.1f} min"

    def total(seconds):
        known = [s for s in seconds.values() if s is not None]
        return minutes(sum(known) / 60) if len(known) == len(seconds) else "not all built"

    print(f"zoo build wall time: OLD {minutes(wall_minutes(old_dir))}, "
          f"NEW {minutes(wall_minutes(new_dir))}")
    old_s, new_s = trained_seconds(old_dir), trained_seconds(new_dir)
    print(f"teacher and four students: OLD {total(old_s)}, NEW {total(new_s)}")
    for name in TRAINED:
        print(f"  {name:32s} OLD {old_s[name] if old_s[name] is not None else '-':>5} s, "
              f"NEW {new_s[name] if new_s[name] is not None else '-':>5} s")
    keys = ("dev_auroc", "dev_accuracy_at_0.5", "dev_operating_point")
    differ = [n for n in old_zoo if n in new_zoo and any(
        old_zoo[n].get(k) != new_zoo[n].get(k) for k in keys)]
    print(f"variants: OLD {len(old_zoo)}, NEW {len(new_zoo)}; dev metrics differ:",
          ", ".join(differ) or "none")
    old_q, old_b, _ = suite(old_dir)
    new_q, new_b, targets = suite(new_dir)
    changed = [f"{v}-{p}" for (v, p) in sorted(old_q) if (v, p) in new_q and any(
        old_q[v, p][k] != new_q[v, p][k] for k in ("counts", "new_misses", "passed"))]
    print(f"quality cases: OLD {len(old_q)}, NEW {len(new_q)}; counts, new misses "
          "or verdict differ:", ", ".join(changed) or "none")
    for label, quality in (("OLD", old_q), ("NEW", new_q)):
        teacher = quality["tf_efficientnet_lite2.teacher", "fp32"]
        correct = round(teacher["at_0.5"]["accuracy"] * teacher["n"])
        print(f"teacher, {label}: val accuracy at 0.5 {correct}/{teacher['n']} "
              f"({teacher['at_0.5']['accuracy']:.1%}); at the dev operating point recall "
              f"{teacher['recall']:.3f} [{teacher['recall_interval'][0]:.3f}, "
              f"{teacher['recall_interval'][1]:.3f}], FNR upper bound {teacher['fnr_upper']:.3f}")
    failing = sorted(f"{v}-{p}" for (v, p), q in new_q.items() if not q["passed"])
    print(f"failing in NEW ({len(failing)}):", ", ".join(failing))
    for target in targets:
        print(f"speed target {target['name']}: {target.get('ratio', float('nan')):.2f}x "
              f"(min {target['min_ratio']}), passed {target.get('passed')}")
    print("\nlatency, median over cases of NEW's median / OLD's median [min, max]")
    ratios = {}
    for key, info in new_b.items():
        if key in old_b:
            ratios.setdefault((info["runtime"], key[2]), []).append(
                info["latency_ms"]["p50"] / old_b[key]["latency_ms"]["p50"])
    for (runtime, batch), values in sorted(ratios.items()):
        print(f"{runtime:14s} b{batch:<3d} {statistics.median(values):6.2f} "
              f"[{min(values):.2f}, {max(values):.2f}] over {len(values)}")
    print("\nin-process first-call memory delta_mb, median over cases [cases at 0 MB / cases]")
    print(f"{'runtime':14s} {'batch':>5s} {'OLD':>22s} {'NEW':>22s}")
    cells = {}
    for which, bench in (("old", old_b), ("new", new_b)):
        for (_, _, batch), info in bench.items():
            cells.setdefault((info["runtime"], batch), {}).setdefault(which, []).append(
                info["memory"]["delta_mb"])
    for (runtime, batch), sides in sorted(cells.items()):
        text = []
        for which in ("old", "new"):
            values = sides.get(which, [])
            zeros = sum(1 for v in values if v == 0)
            text.append(f"{statistics.median(values):8.1f} [{zeros:2d}/{len(values):2d}]"
                        if values else "-")
        print(f"{runtime:14s} {batch:5d} {text[0]:>22s} {text[1]:>22s}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: compare_quick_runs.py OLD_RESULTS_DIR NEW_RESULTS_DIR")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
