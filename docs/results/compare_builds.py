"""Quality of two builds of the same profile, side by side: how much one build's draw decides.

    python docs/results/compare_builds.py docs/results/full-procedure2/full-cpu.json \
        docs/results/full-procedure1/full-cpu.json

    python docs/results/compare_builds.py docs/results/full-cpu.json \
        docs/results/full-procedure2/full-cpu.json

The two suite JSONs come from two zoos of one profile. `full-procedure2` against
`full-procedure1`: the same recipes and data, differing in the random init of each new
classifier head (build procedure 1 drew it from an unseeded global RNG, procedure 2 seeds it).
The top-level run against `full-procedure2`: the teacher trained on annotated probabilities
instead of binary labels, so every variant distilled from or derived from it differs too.
Prints, per (variant, precision)
judged in both: recall and specificity at the dev-chosen threshold, accuracy at 0.5 and the
gate verdict, then the spread of the recall and specificity changes and which verdicts flipped.
"""

import json
import statistics
import sys


def quality(path):
    data = json.load(open(path))
    return {(q["variant"], q["precision"]): q for q in data["defectbench"]["quality"]}


def main(new_path, old_path):
    new, old = quality(new_path), quality(old_path)
    both = sorted(set(new) & set(old))
    print(f"{'variant':45s} {'prec':5s} {'recall old -> new':>19s} {'spec old -> new':>17s} "
          f"{'acc@0.5 old -> new':>19s}  gate")
    d_recall, d_spec, flips = [], [], []
    for key in both:
        a, b = old[key], new[key]
        acc_a = a.get("at_0.5", {}).get("accuracy", float("nan"))
        acc_b = b.get("at_0.5", {}).get("accuracy", float("nan"))
        verdict = f"{'PASS' if a['passed'] else 'FAIL'} -> {'PASS' if b['passed'] else 'FAIL'}"
        print(f"{key[0]:45s} {key[1]:5s} {a['recall']:.3f} -> {b['recall']:.3f}    "
              f"{a['specificity']:.3f} -> {b['specificity']:.3f}  {acc_a:.3f} -> {acc_b:.3f}  "
              f"{verdict}")
        d_recall.append(abs(b["recall"] - a["recall"]))
        d_spec.append(abs(b["specificity"] - a["specificity"]))
        if a["passed"] != b["passed"]:
            flips.append(f"{key[0]}-{key[1]} ({verdict})")
    print(f"\n{len(both)} cases in both runs; |recall change| median "
          f"{statistics.median(d_recall):.3f}, max {max(d_recall):.3f}; |specificity change| "
          f"median {statistics.median(d_spec):.3f}, max {max(d_spec):.3f}")
    print(f"verdicts that flipped ({len(flips)}):", ", ".join(flips) or "none")
    print("only in the new run:", sorted(set(new) - set(old)) or "none")
    print("only in the old run:", sorted(set(old) - set(new)) or "none")


if __name__ == "__main__":
    main(*sys.argv[1:])
