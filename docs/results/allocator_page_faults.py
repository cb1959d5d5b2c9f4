"""Training steps with glibc's default allocator limits and with freed memory retained.

    python docs/results/allocator_page_faults.py > docs/results/allocator-page-faults.txt

Each run is a fresh process (the allocator's state is per process) that takes STEPS training
steps of the quick teacher (tf_efficientnet_lite2, ImageNet weights from the installed
package, 260 px, batch 32, AdamW) on a fixed random batch, inside or outside
`defectbench.train.allocator.retain_freed_memory`, and reports wall seconds, minor page
faults, system CPU seconds and peak RSS. The two settings alternate, twice each, so machine
noise lands on both. Run on an otherwise idle machine.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import time

STEPS, ROUNDS = 20, 2


def one_run(retain: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from defectbench.models.pretrained import create_model
    from defectbench.train.allocator import retain_freed_memory

    torch.manual_seed(0)
    model, _ = create_model("tf_efficientnet_lite2", 2, pretrained=True)
    model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(32, 3, 260, 260).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (32,))
    with retain_freed_memory() if retain else contextlib.nullcontext():
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(STEPS):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "system_seconds": after.ru_stime - before.ru_stime,
        "peak_rss_mib": after.ru_maxrss / 1024,
    }


def main() -> None:
    import torch

    from defectbench.measure.machine import cpu_identity

    print(f"cpu: {cpu_identity()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{STEPS} steps of tf_efficientnet_lite2 at 260 px, batch 32, per fresh process")
    print(f"{'allocator':>10} {'seconds':>8} {'faults':>10} {'sys s':>7} {'peak RSS MiB':>13}")
    totals: dict[str, list[float]] = {"default": [], "retained": []}
    for _ in range(ROUNDS):
        for setting in ("default", "retained"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", setting],
                check=True, capture_output=True, text=True,
            ).stdout
            run = json.loads(out.strip().splitlines()[-1])
            totals[setting].append(run["seconds"])
            print(f"{setting:>10} {run['seconds']:>8.1f} {run['minor_faults']:>10,} "
                  f"{run['system_seconds']:>7.1f} {run['peak_rss_mib']:>13.0f}")
    default, retained = (sum(totals[s]) for s in ("default", "retained"))
    print(f"total seconds: default {default:.1f}, retained {retained:.1f} "
          f"({default / retained:.2f}x)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one_run(sys.argv[2] == "retained")))
    else:
        main()
