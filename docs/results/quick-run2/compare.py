"""The quick profile rebuilt from nothing and re-run at a later commit, against the committed run.

    python docs/results/quick-run2/compare.py

The committed quick run (`docs/results/quick-*`, commit 0ac339d) and this one (this folder,
`OUT=docs/results/quick-run2 bash docs/results/run_quick.sh`) built the same recipes with the
same seeds on the same kind of machine. Prints: build time; variants whose dev metrics differ
(a build that does not reproduce); quality cases whose confusion counts, new misses or verdict
differ; and the in-process memory `delta_mb` of every case by runtime and batch size, before
and after the quality pass got an instance of its own (the committed run scored `val` through
the timed instance at batch 32 first, so ONNX Runtime's b8/b32 cases read 0).
"""

import json
import re
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
OLD_DIR, NEW_DIR = HERE.parent, HERE


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
    text = (folder / "quick-zoo-build.txt").read_text()
    minutes, seconds = re.search(r"^real\s+(\d+)m([\d.]+)s", text, re.M).groups()
    return int(minutes) + float(seconds) / 60


TRAINED = ("tf_efficientnet_lite2.teacher", "tf_efficientnet_lite0.base",
           "tf_efficientnet_lite0.kd", "vit_tiny_patch16_224.base", "vit_tiny_patch16_224.kd")


def trained_minutes(folder):
    """Teacher and the four students: what zoo I's 30-minute budget covers."""
    text = (folder / "quick-zoo-build.txt").read_text()
    seconds = {m[1]: int(m[2]) for m in re.finditer(r"^built (\S+) in (\d+) s", text, re.M)}
    return sum(seconds[n] for n in TRAINED) / 60, seconds[TRAINED[0]]


def main():
    old_cpu, new_cpu = cpu(OLD_DIR), cpu(NEW_DIR)
    for label, info in (("committed", old_cpu), ("this run", new_cpu)):
        print(f"{label}: {info['brand_raw']}, family {info['family']} model {info['model']} "
              f"stepping {info['stepping']}, {len(info['flags'])} CPU flags")
    print("flags only the committed run's CPU had:",
          " ".join(sorted(set(old_cpu["flags"]) - set(new_cpu["flags"]))) or "none")
    old_zoo, new_zoo = zoo(OLD_DIR), zoo(NEW_DIR)
    print(f"zoo build wall time: committed {wall_minutes(OLD_DIR):.1f} min, "
          f"this run {wall_minutes(NEW_DIR):.1f} min")
    (old_min, old_t), (new_min, new_t) = trained_minutes(OLD_DIR), trained_minutes(NEW_DIR)
    print(f"teacher and four students: committed {old_min:.1f} min (teacher {old_t} s), "
          f"this run {new_min:.1f} min (teacher {new_t} s)")
    keys = ("dev_auroc", "dev_accuracy_at_0.5", "dev_operating_point")
    differ = [n for n in old_zoo if n in new_zoo and any(
        old_zoo[n].get(k) != new_zoo[n].get(k) for k in keys)]
    print(f"variants: committed {len(old_zoo)}, this run {len(new_zoo)}; dev metrics differ:",
          ", ".join(differ) or "none")
    old_q, old_b, _ = suite(OLD_DIR)
    new_q, new_b, targets = suite(NEW_DIR)
    changed = [f"{v}-{p}" for (v, p) in sorted(old_q) if (v, p) in new_q and any(
        old_q[v, p][k] != new_q[v, p][k] for k in ("counts", "new_misses", "passed"))]
    print(f"quality cases: committed {len(old_q)}, this run {len(new_q)}; counts, new misses "
          "or verdict differ:", ", ".join(changed) or "none")
    for label, quality in (("committed", old_q), ("this run", new_q)):
        teacher = quality["tf_efficientnet_lite2.teacher", "fp32"]
        correct = round(teacher["at_0.5"]["accuracy"] * teacher["n"])
        print(f"teacher, {label}: val accuracy at 0.5 {correct}/{teacher['n']} "
              f"({teacher['at_0.5']['accuracy']:.1%}); at the dev operating point recall "
              f"{teacher['recall']:.3f} [{teacher['recall_interval'][0]:.3f}, "
              f"{teacher['recall_interval'][1]:.3f}], FNR upper bound {teacher['fnr_upper']:.3f}")
    failing = sorted(f"{v}-{p}" for (v, p), q in new_q.items() if not q["passed"])
    print(f"failing in this run ({len(failing)}):", ", ".join(failing))
    for target in targets:
        print(f"speed target {target['name']}: {target.get('ratio', float('nan')):.2f}x "
              f"(min {target['min_ratio']}), passed {target.get('passed')}")
    print("\nin-process first-call memory delta_mb, median over cases [cases at 0 MB / cases]")
    print(f"{'runtime':14s} {'batch':>5s} {'committed':>22s} {'this run':>22s}")
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
    main()
