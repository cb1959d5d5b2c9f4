"""Isolated (fresh-process) batch-32 memory of every artifact in two suite runs.

    python docs/results/quick-run3/isolated_memory.py docs/results/quick-run2/quick-cpu.json \
        docs/results/quick-run3/quick-cpu.json > docs/results/quick-run3/isolated-memory.txt

The isolated probe is a process of its own that never calls `build_zoo`, so the allocator
change of quick-run3 cannot reach it; this checks that its figures stayed where they were
(the same artifacts, byte for byte). Prints per artifact the load and peak-delta MiB of both
runs and the median and range of the differences.
"""

import json
import statistics
import sys
from pathlib import Path


def isolated(path: Path) -> dict:
    out = {}
    for bench in json.loads(path.read_text())["benchmarks"]:
        info = bench["extra_info"]
        iso = info.get("memory", {}).get("isolated")
        if iso and not info.get("latency_only"):
            out[info["variant"], info["precision"]] = iso
    return out


def main(old_json: Path, new_json: Path) -> None:
    old, new = isolated(old_json), isolated(new_json)
    print(f"OLD: {old_json}\nNEW: {new_json}")
    print(f"{'artifact':52s} {'load OLD':>9s} {'NEW':>7s} {'peak delta OLD':>15s} {'NEW':>7s}")
    diffs = {"load_mb": [], "peak_delta_mb": []}
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        for field in diffs:
            diffs[field].append(b[field] - a[field])
        print(f"{key[0] + ' ' + key[1]:52s} {a['load_mb']:9.1f} {b['load_mb']:7.1f} "
              f"{a['peak_delta_mb']:15.1f} {b['peak_delta_mb']:7.1f}")
    for field, values in diffs.items():
        print(f"{field}: NEW - OLD over {len(values)} artifacts: median "
              f"{statistics.median(values):+.1f} MiB, "
              f"range {min(values):+.1f} .. {max(values):+.1f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: isolated_memory.py OLD_SUITE_JSON NEW_SUITE_JSON")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
