"""How much a dynamic INT8 artifact's scores depend on the other images of their call.

ONNX Runtime's dynamic INT8 (`*.int8_ort_dyn`) quantizes activations with one scale per call,
so the committed runs, which scored dev (the threshold) and val (the gate) in calls of 32,
scored each image together with its neighbours. This scores the artifact of a built zoo on
dev and val in calls of 32 (as committed), of 32 in a shuffled order, and of 1 (as the zoo
and suite now do), and counts decisions that change at the manifest's dev threshold.

    python docs/results/dynamic_int8_batch.py /root/zoo-run4 > docs/results/dynamic-int8-batch.txt
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from defectbench.data.fixture import load_fixture
from defectbench.data.preprocess import Preprocess, preprocess_set
from defectbench.runtime.predictor import OrtPredictor

VARIANT = "vit_tiny_patch16_224.kd.int8_ort_dyn"


def score(predictor, x: np.ndarray, batch: int, order: np.ndarray) -> np.ndarray:
    """Scores of every row of `x`, computed in calls of `batch` rows taken in `order`."""
    out = np.empty(len(x), np.float32)
    for i in range(0, len(x), batch):
        rows = order[i : i + batch]
        out[rows] = predictor.predict_proba(x[rows])
    return out


def main(zoo: Path) -> None:
    torch.set_num_threads(2)
    folder = zoo / "quick" / VARIANT
    manifest = json.loads((folder / "manifest.json").read_text())
    model = folder / "model.onnx"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    if sha != manifest["artifacts"]["model.onnx"]["sha256"]:
        sys.exit(f"{model} does not match its manifest's sha256")
    point = next(p for p in manifest["dev"]["operating_points"] if p["name"].startswith("dev_"))
    threshold = point["threshold"]
    predictor = OrtPredictor(model, intra_op_threads=2)
    fixture = load_fixture()
    print(f"artifact {model} sha256 {sha[:16]}; dev threshold {threshold:.6f} ({point['name']})")
    for split in ("dev", "val"):
        images = fixture.split(split)
        x = preprocess_set(images, Preprocess(**manifest["preprocess"]))
        defective = images.labels.astype(bool)

        in_order = np.arange(len(x))
        b32 = score(predictor, x, 32, in_order)
        runs = {"calls of 32, shuffled": score(predictor, x, 32,
                                               np.random.default_rng(1).permutation(len(x))),
                "one image per call": score(predictor, x, 1, in_order)}
        print(f"\n{split}: {len(x)} images, {int(defective.sum())} defective")
        print(f"  calls of 32 (as committed): recall {np.mean(b32[defective] >= threshold):.4f}, "
              f"flagged {int((b32 >= threshold).sum())}")
        for name, s in runs.items():
            flips = int(((s >= threshold) != (b32 >= threshold)).sum())
            flipped_defective = int(((s >= threshold) != (b32 >= threshold))[defective].sum())
            print(f"  {name}: max |score change| {np.abs(s - b32).max():.5f}, decisions changed "
                  f"{flips} ({flipped_defective} defective), recall "
                  f"{np.mean(s[defective] >= threshold):.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
