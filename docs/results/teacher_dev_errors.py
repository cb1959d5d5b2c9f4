"""Where a built teacher's errors on `dev` lie: by threshold and by annotated probability.

    python docs/results/teacher_dev_errors.py PROFILE ZOO_DIR [IMG_SIZE EPOCHS [SEED [EMA_DECAY]]]
        [FIELD=VALUE ...]

The arguments name a teacher the way `probe_teacher.py` does, which must have built it in
ZOO_DIR. Reads `dev` only (the split recipes are chosen on), so what it shows can steer the
next candidate without touching `val`.

Committed output:
- `full-teacher-batch16-dev-errors.txt`: `full ZOO 260 10 0 none teacher_batch_size=16`, the
  batch-16 candidate of `full-teacher-batch16.txt`.
"""

import sys

import numpy as np
from probe_teacher import parse_argv, probe_profile

from defectbench.data.preprocess import preprocess_set
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.profiles import TEACHER


def main(profile_name, root, *teacher, **fields):
    profile = probe_profile(profile_name, *teacher, **fields)
    catalog = Catalog(root, profile)
    dev = catalog.fixture.split("dev")
    scores = catalog.predictor(TEACHER, "fp32", "cpu").predict_proba(
        preprocess_set(dev, catalog.preprocess(TEACHER)))
    defective = np.asarray(dev.labels).astype(bool)
    annotated = np.asarray(dev.metadata["probability"], dtype=np.float64)
    print(f"dev: {len(defective)} cells, {defective.sum()} defective")
    for threshold in np.arange(0.20, 0.61, 0.05):
        called = scores >= threshold
        print(f"threshold {threshold:.2f}: correct {(called == defective).sum()} "
              f"missed defects {(~called & defective).sum()} false alarms "
              f"{(called & ~defective).sum()}")
    for level, name in ((0.0, "0"), (1 / 3, "1/3"), (2 / 3, "2/3"), (1.0, "1")):
        cells = np.isclose(annotated, level, atol=1e-3)
        wrong = ((scores[cells] >= 0.5) != defective[cells]).sum()
        print(f"annotated {name}: {cells.sum()} cells, mean score {scores[cells].mean():.3f}, "
              f"wrong at 0.5 {wrong}")
    edges = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        cells = (scores >= low) & ((scores < high) if high < 1 else (scores <= high))
        if cells.any():
            print(f"score in [{low}, {high}{']' if high == 1 else ')'}: {cells.sum()} cells, "
                  f"mean score {scores[cells].mean():.3f}, mean annotated probability "
                  f"{annotated[cells].mean():.3f}, defective {defective[cells].mean():.3f}")


if __name__ == "__main__":
    positional, settings = parse_argv(sys.argv[1:])
    main(*positional, **settings)
