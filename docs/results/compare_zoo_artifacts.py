"""Whether two zoo directories of one profile hold byte-identical artifacts, variant by variant.

    python docs/results/compare_zoo_artifacts.py ZOO_A ZOO_B quick

Reads each variant's manifest (its key, the sha256 of every artifact, the CPU it was built
on, when) from ZOO_A/PROFILE and ZOO_B/PROFILE; prints one line per variant and a count.
Made for docs/results/quick-run3/: the quick-run2 zoo (default allocator) against the
quick-run3 zoo (freed memory retained while building), both built on the same CPU model.
"""

import json
import sys
from pathlib import Path


def manifests(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/manifest.json"))}


def main(a_root: Path, b_root: Path) -> None:
    a, b = manifests(a_root), manifests(b_root)
    for label, side in (("A", a), ("B", b)):
        first = next(iter(side.values()))
        cpu = first.get("built_on", {})
        created = sorted(m["created"] for m in side.values())
        where = (f"family {cpu['family']} model {cpu['model']}, {cpu['torch_threads']} threads"
                 if cpu else "a CPU its manifests do not record (built before `built_on`)")
        print(f"{label}: {len(side)} variants, built {created[0]} .. {created[-1]} on {where}")
    identical = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name:45s} only in {'A' if name in a else 'B'}")
            continue
        same_key = a[name]["key"] == b[name]["key"]
        same_bytes = a[name]["artifacts"] == b[name]["artifacts"]
        identical += same_key and same_bytes
        print(f"{name:45s} key {'same' if same_key else 'DIFFERS'}, "
              f"artifacts {'identical' if same_bytes else 'DIFFER'}")
    print(f"{identical} of {len(set(a) | set(b))} variants: same key, byte-identical artifacts")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: compare_zoo_artifacts.py ZOO_A ZOO_B PROFILE")
    main(Path(sys.argv[1]) / sys.argv[3], Path(sys.argv[2]) / sys.argv[3])
