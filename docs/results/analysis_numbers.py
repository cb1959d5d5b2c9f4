"""Print every number docs/analysis.md cites, from the committed results JSON.

    python docs/results/analysis_numbers.py docs/results/full-cpu.json
    python docs/results/analysis_numbers.py docs/results/quick-cpu.json
    python docs/results/analysis_numbers.py docs/results/noise/quick-192px-run2.json \
        docs/results/noise/quick-192px-run1.json

The second file, when given, is an earlier run of the same suite on the same zoo and machine;
the script then prints the run-to-run spread of p50 latency over the cases both runs timed.

Recall-drop upper bounds are recomputed from each case's counts with the current interval
(Tango's score bound); runs before 2026-11-23 stored a conditional bound, printed beside it
(`rejudge_drop_bounds.py` says why).
"""

import json
import statistics
import sys

from defectbench.metrics.paired import drop_interval

TEACHER = "tf_efficientnet_lite2.teacher"


def corrected_drop_upper(quality):
    confidence = next((v["confidence"] for v in quality.get("verdicts", [])
                       if v["metric"] == "recall_drop"), 0.95)
    return drop_interval(quality["new_misses"], quality["new_catches"],
                         quality["n_defective"], confidence, "upper")[1]


def load(path):
    data = json.load(open(path))
    bench = {}
    for b in data["benchmarks"]:
        i = b["extra_info"]
        bench[(i["variant"], i["precision"], i["batch"])] = i
    quality = {(q["variant"], q["precision"]): q for q in data["defectbench"]["quality"]}
    return data, bench, quality


def main(path, earlier=None):
    data, bench, quality = load(path)
    print("machine:", data["machine_info"]["cpu"].get("brand_raw"),
          {k: v for k, v in data["machine_info"]["cpu_flags"].items() if v},
          "threads", data["machine_info"]["torch_threads"])
    print("speed targets:", [(t["name"], round(t["ratio"], 2)) for t in
                             data["defectbench"]["speed_targets"] if t.get("measured")])
    # the FP32 eager teacher at its native 260 px: the trained teacher itself where it runs at
    # 260 px (full profile), else the untrained architecture from the survey (quick profile)
    base = bench[(TEACHER, "fp32", 1)]
    if base.get("img_size") != 260:  # (quick-cpu.json predates the img_size field)
        base = bench[("survey.tf_efficientnet_lite2", "fp32", 1)]
    print(f"baseline: {base['variant']} FP32 eager at {base['img_size']} px b1 p50 "
          f"{base['latency_ms']['p50']:.2f} ms = {base['throughput_ips']:.1f} img/s")
    print("\nquality at the gated operating point (val), plus accuracy at 0.5:")
    for (v, p), q in sorted(quality.items()):
        plain = q.get("at_0.5", {})
        print(f"  {v:45s} {p:5s} recall {q['recall']:.3f} [{q['recall_interval'][0]:.3f}, "
              f"{q['recall_interval'][1]:.3f}] fnr_up {q['fnr_upper']:.3f} spec "
              f"{q['specificity']:.3f} drop {q['recall_drop']:+.3f} "
              f"(up {corrected_drop_upper(q):+.3f}, "
              f"run's conditional {q['recall_drop_upper']:+.3f})"
              f" miss+{q['new_misses']}/catch+{q['new_catches']} "
              f"acc@0.5 {plain.get('accuracy', float('nan')):.3f} "
              f"mcnemar_p {q.get('mcnemar_p') or float('nan'):.3f} "
              f"{'PASS' if q['passed'] else 'FAIL'} "
              + ",".join(v["budget"] for v in q.get("verdicts", []) if not v["passed"]))
    print("\nlatency (p50 ms), b1 throughput speedup over the 260-px FP32 eager baseline:")
    by_batch_then_p50 = sorted(bench.items(),
                               key=lambda kv: (kv[0][2], kv[1]["latency_ms"]["p50"]))
    for (v, p, b), i in by_batch_then_p50:
        q = quality.get((v, p))
        sp = i["throughput_ips"] / base["throughput_ips"] if b == 1 else None
        mem = i["memory"]
        print(f"  b{b:<3d} {v:45s} {p:5s} p50 {i['latency_ms']['p50']:8.2f} p90 "
              f"{i['latency_ms']['p90']:8.2f} img/s {i['throughput_ips']:8.1f} "
              f"vs-teacher {i.get('speedup_vs_reference') or 0:5.2f}x "
              f"{'vs-260px ' + format(sp, '.1f') + 'x' if sp else ''} "
              f"size {i.get('size_mb') or 0:.1f} MB "
              f"load +{mem.get('load_delta_mb') or 0:.0f} MB first-call +{mem['delta_mb']:.0f} MB "
              + (f"own RAM load {mem['isolated']['load_mb']:.0f} MB peak "
                 f"{mem['isolated']['peak_delta_mb']:.0f} MB " if "isolated" in mem else "")
              + f"{'' if q is None else ('PASS' if q['passed'] else 'FAIL')}")
    if earlier:
        _, old, _ = load(earlier)
        ratios = [bench[k]["latency_ms"]["p50"] / old[k]["latency_ms"]["p50"]
                  for k in bench if k in old and not k[0].startswith("survey.")]
        rel = sorted(abs(r - 1) for r in ratios)
        q = statistics.quantiles(rel, n=20)
        print(f"\nrun-to-run p50 change over {len(rel)} cases: "
              f"median {statistics.median(rel):.1%}, "
              f"90th percentile {q[17]:.1%}, 95th {q[18]:.1%}, max {rel[-1]:.1%}")
        # the same comparison for the within-run ratio to the FP32 teacher (same device, batch)
        ratios = [bench[k]["speedup_vs_reference"] / old[k]["speedup_vs_reference"]
                  for k in bench if k in old and not k[0].startswith("survey.")
                  and not k[0] == TEACHER]
        rel = sorted(abs(r - 1) for r in ratios)
        q = statistics.quantiles(rel, n=20)
        print(f"run-to-run change of speedup vs the FP32 teacher over {len(rel)} cases: median "
              f"{statistics.median(rel):.1%}, 90th percentile {q[17]:.1%}, 95th {q[18]:.1%}, "
              f"max {rel[-1]:.1%}")
        worst = sorted(((bench[k]["latency_ms"]["p50"] / old[k]["latency_ms"]["p50"], k)
                        for k in bench if k in old), reverse=True)[:5]
        print("largest p50 increases run1 -> run2:",
              [(f"{r:.2f}x", f"{k[0]}-{k[1]}-b{k[2]}") for r, k in worst])


if __name__ == "__main__":
    if not 1 <= len(sys.argv) - 1 <= 2 or any(a.startswith("-") for a in sys.argv[1:]):
        sys.exit(__doc__)
    main(*sys.argv[1:])
