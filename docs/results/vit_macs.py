"""ViT-Tiny's MACs as the committed zoos recorded them and as `count_macs` counts them now.

    python docs/results/vit_macs.py > docs/results/vit-macs.txt

Until 2026-11-30 `count_macs` ran timm's fused attention, whose CPU kernel torch's
FlopCounterMode has no formula for, so the attention matmuls counted as nothing; it now counts
on SDPA's math backend. MACs do not depend on the weights, so an untrained model is counted.
"""

from __future__ import annotations

import json
from pathlib import Path

from defectbench.measure.compute import count_macs
from defectbench.models.pretrained import create_model

HERE = Path(__file__).parent
ZOOS = {"quick": HERE / "quick-zoo.json", "full": HERE / "full-zoo.json"}
SIZES = {"quick": 128, "full": 160}  # vit_size of the profiles those zoos were built with


def main() -> None:
    print(f"{'zoo':6} {'size':>4} {'recorded MACs':>14} {'counted now':>12} {'missing':>8}")
    for profile, path in ZOOS.items():
        rows = {r["name"]: r for r in json.loads(path.read_text())}
        recorded = rows["vit_tiny_patch16_224.kd"]["macs"]
        size = SIZES[profile]
        model, _ = create_model("vit_tiny_patch16_224", 2, pretrained=False, img_size=size)
        now = count_macs(model, size)
        print(f"{profile:6} {size:>4} {recorded:>14,} {now:>12,} {1 - recorded / now:>8.1%}")


if __name__ == "__main__":
    main()
