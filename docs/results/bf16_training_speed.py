"""Training-step time in float32 and in bf16 autocast, per zoo model at its quick size.

    python docs/results/bf16_training_speed.py > docs/results/bf16-training-speed.txt

One step = forward, float32 loss, backward and AdamW update on a batch of 32 at the quick
profile's input size, as `defectbench.train.fit` runs it. The two precisions are timed in
alternating blocks in one process, so machine noise lands on both; the ratio is the figure.
Freed memory is retained (`retain_freed_memory`), as in a zoo build, so page faults do not
swamp the arithmetic. Run on an otherwise idle machine.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from defectbench.measure.machine import cpu_identity
from defectbench.models.pretrained import create_model
from defectbench.train.allocator import retain_freed_memory
from defectbench.train.fit import cpu_has_native_bf16
from defectbench.zoo.profiles import get_profile

BATCH, BLOCKS, STEPS_PER_BLOCK = 32, 4, 3


def step_seconds(model, optimizer, x, y, bf16: bool) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def quick_zoo_models() -> list[tuple[str, int, dict]]:
    """(architecture, input size, timm kwargs) of the zoo's trained models, quick profile."""
    quick = get_profile("quick")
    return [("tf_efficientnet_lite2", quick.teacher_size, {}),
            ("tf_efficientnet_lite0", quick.cnn_size, {}),
            ("vit_tiny_patch16_224", quick.vit_size, {"img_size": quick.vit_size})]


def main() -> None:
    torch.manual_seed(0)
    models = quick_zoo_models()
    print(f"cpu: {cpu_identity()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"native bf16 (oneDNN): {cpu_has_native_bf16()}")
    print(f"batch {BATCH}; median of {BLOCKS} alternating blocks of {STEPS_PER_BLOCK} steps each")
    print(f"{'model':24} {'size':>4} {'fp32 s/step':>12} {'bf16 s/step':>12} {'speedup':>8}")
    for arch, size, kwargs in models:
        with retain_freed_memory():
            time_one(arch, size, kwargs)


def time_one(arch: str, size: int, kwargs: dict) -> None:
    """Print fp32 and bf16 step times of one model, starting from the weights its recipe does
    (the EfficientNets' ImageNet checkpoints, the ViT from scratch)."""
    model, _ = create_model(arch, 2, pretrained=not arch.startswith("vit"), **kwargs)
    model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(BATCH, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (BATCH,))
    for bf16 in (False, True):  # warm-up: oneDNN picks and caches kernels per dtype
        step_seconds(model, optimizer, x, y, bf16)
    times = {False: [], True: []}
    for _ in range(BLOCKS):
        for bf16 in (False, True):
            times[bf16] += [step_seconds(model, optimizer, x, y, bf16)
                            for _ in range(STEPS_PER_BLOCK)]
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    print(f"{arch:24} {size:>4} {fp32:>12.3f} {bf16:>12.3f} {fp32 / bf16:>7.2f}x")


if __name__ == "__main__":
    main()
