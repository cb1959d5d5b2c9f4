"""What per-call weight conversion added to the BF16 latencies of runs before 2026-11-30.

    python docs/results/bf16_weight_cast.py > docs/results/bf16-weight-cast.txt

Until then `TorchPredictor` entered `torch.autocast` on every call with fp32 weights, so each
call converted every convolution and linear weight to bf16 again (autocast's cast cache lives
only as long as its context). Now those weights are cast once when the predictor is made
(`cast_autocast_weights`). Both forms compute the same logits bit for bit (checked below on
each batch); this times them in alternating blocks in one process, per zoo architecture at its
quick-profile size and the suite's batch sizes. Latency does not depend on the weights' values,
so the CNNs start from their ImageNet checkpoints and the ViT from scratch, as in the zoo.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from bf16_training_speed import quick_zoo_models  # a sibling script: sys.path[0] is this folder

from defectbench.measure.latency import alternating_blocks
from defectbench.measure.machine import cpu_identity
from defectbench.models.pretrained import create_model
from defectbench.runtime.predictor import TorchPredictor

BATCHES, BLOCKS, BLOCK_SECONDS = (1, 8, 32), 10, 1.0


def per_call_autocast(model: torch.nn.Module):
    """The predictor before the change: fp32 weights, autocast entered on every call."""
    model = model.eval().to(memory_format=torch.channels_last)

    def run(x: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(tensor).float().numpy()

    return run


def main() -> None:
    torch.manual_seed(0)
    models = quick_zoo_models()
    print(f"cpu: {cpu_identity()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"median ms per call over {BLOCKS} alternating blocks of {BLOCK_SECONDS:g} s each")
    print(f"{'model':24} {'size':>4} {'batch':>5} {'per-call cast':>14} {'cast once':>10} "
          f"{'ratio':>6} {'same logits':>11}")
    for arch, size, kwargs in models:
        model, _ = create_model(arch, 2, pretrained=not arch.startswith("vit"), **kwargs)
        old = per_call_autocast(copy.deepcopy(model))
        new = TorchPredictor(model, precision="bf16")
        rng = np.random.default_rng(0)
        for batch in BATCHES:
            x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            same = np.array_equal(old(x), new.predict_logits(x))
            before, after = alternating_blocks(
                lambda old=old, x=x: old(x), lambda new=new, x=x: new.predict_logits(x),
                BLOCKS, BLOCK_SECONDS,
            )
            print(f"{arch:24} {size:>4} {batch:>5} {before.p50:>14.2f} {after.p50:>10.2f} "
                  f"{before.p50 / after.p50:>6.2f} {str(same):>11}", flush=True)


if __name__ == "__main__":
    main()
