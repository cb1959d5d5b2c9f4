"""The evidence behind the `specificity-above-chance` floor (0.30) in fixtures/budgets.toml.

    python docs/results/specificity_floor.py > docs/results/specificity-floor.txt

1. The lowest specificity of any quality entry in the committed runs (docs/results/**/*.json),
   which were judged before the floor existed: the floor changes none of their verdicts if
   every one is above 0.30.
2. What a variant whose scores are noise reaches: its threshold chosen on dev (394 cells, 123
   defective, as the fixture) for 90% recall from its own scores, its specificity on val's 450
   good cells; 5,000 seeded draws.
"""

import json
from pathlib import Path

import numpy as np

from defectbench.metrics import threshold_for_recall

RESULTS = Path(__file__).resolve().parent
FLOOR = 0.30


def committed_minimum() -> None:
    entries = []
    for path in sorted(RESULTS.glob("**/*.json")):
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("defectbench"), dict):
            continue
        for q in data["defectbench"].get("quality") or []:
            if q.get("specificity") is not None:
                entries.append((q["specificity"], path.relative_to(RESULTS), q["variant"],
                                q["precision"], q["device"]))
    lowest = min(entries)
    print(f"committed quality entries with a specificity: {len(entries)}")
    print(f"lowest: {lowest[0]:.4f} ({lowest[2]} {lowest[3]} {lowest[4]}, {lowest[1]})")
    print(f"entries below the floor {FLOOR}: {sum(e[0] < FLOOR for e in entries)}")


def chance_variants(draws: int = 5000) -> None:
    rng = np.random.default_rng(0)
    dev_labels = np.r_[np.ones(123, dtype=int), np.zeros(271, dtype=int)]
    specificity = np.empty(draws)
    for i in range(draws):
        threshold = threshold_for_recall(dev_labels, rng.random(dev_labels.size), 0.90)
        specificity[i] = np.mean(rng.random(450) < threshold)
    p50, p90, p99, p999 = np.percentile(specificity, [50, 90, 99, 99.9])
    print(f"\nnoise variants, {draws} draws: val specificity median {p50:.4f}, 90th percentile "
          f"{p90:.4f}, 99th {p99:.4f}, 99.9th {p999:.4f}, max {specificity.max():.4f}")
    print(f"draws at or above the floor {FLOOR}: {int((specificity >= FLOOR).sum())}")


if __name__ == "__main__":
    committed_minimum()
    chance_variants()
