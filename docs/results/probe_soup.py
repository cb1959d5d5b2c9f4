"""A uniform weight soup of full-profile teachers, scored on `dev` and `val` at the 0.5 threshold.

    python docs/results/probe_soup.py ZOO_DIR:SEED [ZOO_DIR:SEED ...]

Each ZOO_DIR holds the full profile's teacher built with that SEED (the probes of
`probe_teacher.py`); its manifest and artifact hash are checked against the recipe before use.
The soup is the plain mean of every floating-point tensor of the members' state dicts (a
"uniform soup", Wortsman et al. 2022). Averaged weights no longer match any member's batch-norm
statistics, so the running mean and variance are re-estimated on the whole `train` split
(eval preprocessing, no augmentation, an exact average over all batches: momentum None), with
every other module in eval mode so dropout and stochastic depth do not enter the statistics.

Prints each member's dev metrics (from its manifest) and the soup's dev and val metrics at 0.5.

Committed output: `full-teacher-soup3.txt`, seeds 0, 1 and 2 of the full recipe.
"""

import dataclasses
import sys
import time

import numpy as np
import torch

from defectbench.data.preprocess import preprocess_set
from defectbench.metrics.confusion import binary_report
from defectbench.metrics.ranking import roc_auc
from defectbench.zoo.build import load_trained_model
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.profiles import TEACHER, get_profile


def uniform_soup(states):
    soup = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            soup[key] = sum(s[key] for s in states) / len(states)
        else:  # num_batches_tracked: re-estimated below anyway
            soup[key] = first.clone()
    return soup


@torch.no_grad()
def reestimate_batchnorm(model, arrays, batch_size=64):
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over every batch
        norm.train()
    for start in range(0, len(arrays), batch_size):
        model(torch.from_numpy(arrays[start:start + batch_size]))
    model.eval()
    return len(norms)


@torch.no_grad()
def probabilities(model, arrays, batch_size=64):
    out = []
    for start in range(0, len(arrays), batch_size):
        logits = model(torch.from_numpy(arrays[start:start + batch_size]))
        out.append(torch.softmax(logits, dim=1)[:, 1].numpy())
    return np.concatenate(out)


def main(members):
    torch.set_num_threads(2)
    base = get_profile("full")
    states, catalog = [], None
    for root, seed in members:
        catalog = Catalog(root, dataclasses.replace(base, seed=seed))
        manifest = catalog.manifest(TEACHER)
        print(f"member {root} seed {seed}: dev acc@0.5",
              manifest["dev"]["at"]["p0.5"]["accuracy"], "dev auroc", manifest["dev"]["auroc"])
        model = load_trained_model(catalog.store, TEACHER, catalog.recipe(TEACHER),
                                   catalog.keys[TEACHER])
        states.append(model.state_dict())
    start = time.time()
    model.load_state_dict(uniform_soup(states))
    preprocess = catalog.preprocess(TEACHER)
    fixture = catalog.fixture
    count = reestimate_batchnorm(model, preprocess_set(fixture.split("train"), preprocess))
    print(f"batch-norm layers re-estimated on train: {count} ({len(fixture.split('train'))} "
          f"images, {time.time() - start:.0f} s)")
    for split in ("dev", "val"):
        images = fixture.split(split)
        scores = probabilities(model, preprocess_set(images, preprocess))
        report = binary_report(images.labels, scores, 0.5)
        correct = round(report["accuracy"] * report["n"])
        print(f"soup {split} acc@0.5 {report['accuracy']} ({correct}/{report['n']}) auroc "
              f"{roc_auc(images.labels, scores)} recall {report['recall']} fnr {report['fnr']} "
              f"spec {report['specificity']} n_defective {report['n_defective']}")
        print(f"soup {split} recall 95% interval {report['recall_interval']}; "
              f"fnr 95% upper bound {report['fnr_upper_bound']}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main([(arg.rsplit(":", 1)[0], int(arg.rsplit(":", 1)[1])) for arg in sys.argv[1:]])
