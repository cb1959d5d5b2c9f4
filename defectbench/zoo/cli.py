"""`defectbench zoo build | list | show`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from defectbench.errors import ConfigError
from defectbench.io import expand_home
from defectbench.zoo.profiles import PROFILES, get_profile
from defectbench.zoo.store import default_zoo_root


def _profile_arg(p: argparse.ArgumentParser) -> None:
    # an empty variable counts as unset, as in the suite (shells export them empty)
    p.add_argument("--profile", default=os.environ.get("DEFECTBENCH_PROFILE") or "quick",
                   choices=sorted(PROFILES), help="default: $DEFECTBENCH_PROFILE or quick")
    p.add_argument("--zoo", default=None,
                   help="zoo directory (default: $DEFECTBENCH_ZOO, else "
                   "$XDG_CACHE_HOME/defectbench/zoo, else ~/.cache/defectbench/zoo)")
    p.add_argument("--teacher", default=None, metavar="ARCH",
                   help="the teacher's timm architecture (default: $DEFECTBENCH_TEACHER or "
                   "tf_efficientnet_lite2), e.g. vit_base_patch16_224 or convnext_base")
    p.add_argument("--teacher-weights", default=None, metavar="FILE",
                   help="its weights (.safetensors or torch state_dict; default: "
                   "$DEFECTBENCH_TEACHER_WEIGHTS, else an installed package, else the hub)")
    p.add_argument("--teacher-size", default=None, metavar="PIXELS",
                   help="size it is fine-tuned at (default: $DEFECTBENCH_TEACHER_SIZE, else the "
                   "profile's for the default teacher, else the architecture's own)")


def _export_teacher(args: argparse.Namespace) -> None:
    """Put the teacher options where every get_profile, here and in processes started from
    here, reads them."""
    from defectbench.zoo.profiles import TEACHER_ENV

    for option, env in (("teacher", "arch"), ("teacher_weights", "weights"),
                        ("teacher_size", "size")):
        value = getattr(args, option, None)
        if value is not None:
            if not value.strip():
                raise ConfigError(f"--{option.replace('_', '-')} is empty; give a value or "
                                  "leave the option out")
            # a build's processes resolve a relative path against their own working directory;
            # `--teacher-weights=~/x.pth` reaches here unexpanded (no shell expands after `=`)
            os.environ[TEACHER_ENV[env]] = (
                os.path.abspath(os.path.expanduser(value)) if option == "teacher_weights"
                else value)


# more would be a typo: torch starts every thread it is told to, and the build then stalls
# (100000 hung a 2-core machine); a count above the cores is still taken, to rebuild a zoo
# with the thread count another machine built it with (`built_on.torch_threads`)
MAX_THREADS = 1024


def _positive_int(text: str) -> int:
    # 0 would silently mean "the default" and a negative count fails deep inside torch
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a thread count; give a whole number from 1 to {MAX_THREADS} "
            f"(this machine has {os.cpu_count()} cores), or leave --threads out for torch's "
            "default")
    return value


def _zoo_root(args: argparse.Namespace) -> Path:
    """--zoo, else DEFECTBENCH_ZOO, else the cache folder; refused when it names a file."""
    if args.zoo is None:
        root, source = default_zoo_root(), "the zoo folder (DEFECTBENCH_ZOO, else the cache)"
    elif not str(args.zoo).strip():
        # Path("") is ".": a build would fill the working directory
        raise ConfigError("--zoo is empty; give a folder, or leave the option out for "
                          "DEFECTBENCH_ZOO or the cache folder")
    else:
        root, source = expand_home(args.zoo, "--zoo"), "--zoo"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{source} {root} is a file, not a folder; name a folder for the zoo")
    return root


def _cmd_build(args: argparse.Namespace) -> int:
    _export_teacher(args)
    import torch

    from defectbench.zoo.build import build_zoo

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    patterns = None  # all
    if args.variants is not None:
        # globs separated by spaces or, as the benchmark suite's --variants takes them, commas
        patterns = [p.strip() for arg in args.variants for p in arg.split(",") if p.strip()]
        if not patterns:  # an empty list would mean "all": hours of building for `full`
            raise ConfigError("--variants names no pattern; give globs such as "
                              "'tf_efficientnet_lite0.*', or leave the option out to build all")
    profile = get_profile(args.profile)
    root = _zoo_root(args)
    manifests = build_zoo(profile, root, patterns)
    # another teacher's zoo is a folder of its own (`quick@vit_base_patch16_224-224px-...`)
    print(f"{len(manifests)} variant{'s' * (len(manifests) != 1)} ready in "
          f"{root / profile.zoo_folder}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    _export_teacher(args)
    from defectbench.errors import ArtifactError
    from defectbench.zoo.catalog import Catalog

    catalog = Catalog(_zoo_root(args), args.profile)
    built = set(catalog.store.built_names())
    states = {}
    for name in catalog.names:
        try:
            manifest = catalog.store.read_manifest(name) if name in built else None
        except ArtifactError:  # one unreadable manifest must not hide the rest of the zoo
            # one a newer defectbench wrote is not damaged: this version cannot read it
            states[name] = ("newer" if catalog.store.written_by_newer(name) else "corrupt",
                            None)
            continue
        states[name] = (_state(catalog, name, manifest), manifest)
    if args.json:
        print(_strict_json([_summary(name, state, manifest)
                            for name, (state, manifest) in states.items()]))
    else:
        for name, (state, _) in states.items():
            print(f"{name:50s} {state}")
    # on stderr, so the list stays one line per variant for a pipe or a diff
    print(_zoo_footing(catalog.store, [s for s, _ in states.values()],
                       catalog.store.unknown_folders(catalog.names)), file=sys.stderr)
    if teacher := _teacher_footing(catalog.profile):
        print(teacher, file=sys.stderr)
    return 0


def _teacher_footing(profile) -> str:
    """Which teacher another teacher's zoo is of, and the file its weights start from: the
    folder's name holds only the file's stem."""
    if profile.zoo_folder == profile.name:
        return ""
    weights = (f"weights from {profile.teacher_weights}, keyed by its sha256"
               if profile.teacher_weights else "weights from an installed package or the hub")
    return (f"teacher: {profile.teacher} ({profile.teacher_arch} fine-tuned at "
            f"{profile.teacher_size} px; {weights})")


# folders named in full in the footer; more are counted
_NAMED_UNKNOWN = 3


def _zoo_footing(store, states: list[str], unknown: Sequence[str] = ()) -> str:
    """How much of the zoo is built, and where; for an empty one, what the folder holds: a
    misspelt --zoo or the wrong --profile otherwise shows as an unbuilt zoo, line by line.
    Then the folders there that are no variant of this profile (`unknown`): nothing reads
    them, and a renamed variant's old folder would otherwise hold its disk space unseen."""
    counts = {s: states.count(s) for s in ("built", "stale", "corrupt", "newer", "partial")
              if s in states}
    unusable = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "built")
    line = (f"{counts.get('built', 0)} of {len(states)} built in {store.directory}"
            + (f" ({unusable})" if unusable else ""))
    if counts.get("built", 0) != len(states):
        line += _unbuilt_footing(store, counts.get("partial", 0))
    if {"stale", "corrupt"} & set(counts):
        # the list has one word a variant; the reason is long, and `zoo show` has it
        line += "; `defectbench zoo show NAME`, with the options given here, says why"
    if unknown:
        shown = [n if n.isprintable() else ascii(n) for n in unknown[:_NAMED_UNKNOWN]]
        more = len(unknown) - len(shown)
        one = len(unknown) == 1
        line += (f"; {len(unknown)} folder{'' if one else 's'} there "
                 f"{'is no variant' if one else 'are no variants'} of this defectbench's "
                 f"{store.profile} profile (renamed or removed since, or misspelt): "
                 f"{', '.join(shown)}" + (f" and {more} more" if more else "")
                 + f"; nothing uses {'it' if one else 'them'} and "
                 f"{'it' if one else 'they'} can be deleted")
    return line


def _unbuilt_footing(store, partial: int) -> str:
    """Where the rest comes from: the command that builds it, and whether the folder is
    there at all."""
    line = ""
    if not store.directory.is_dir():
        try:
            others = sorted(p.name for p in store.root.iterdir()
                            if p.is_dir() and any(p.glob("*/manifest.json")))
        except OSError:  # no root, or one not readable: a hint is not worth an error
            others = []
        line += ("; that folder does not exist"
                 + (f" ({store.root} holds {', '.join(others)}: another --profile or "
                    "--teacher?)" if others else ""))
    line += f"; {store.rebuild_command()} builds the rest"
    if partial:
        line += (f"; {partial} partial: `zoo build` resumes "
                 f"{'it from its' if partial == 1 else 'them from their'} saved training state "
                 "(unopened here: one that proves damaged or another recipe's restarts)")
    return line


def _state(catalog, name: str, manifest: dict | None) -> str:
    """`built`, `stale`, `corrupt`, `partial` or `-`, as `zoo build` would judge it (`zoo
    list` adds `newer` for a manifest a newer defectbench wrote, which `zoo build` refuses to
    replace). Partial: no manifest, but the training state an interrupted build saved, which
    the next build resumes from; it is not read (a teacher's is hundreds of MB), so one saved
    under another key or damaged shows as partial too, and that build restarts it.
    Stale: built from another recipe, data fixture or library version, or from an earlier
    build of a parent. Corrupt: the manifest does not match its own checksum, an artifact is
    missing or its sha256 is not the manifest's (every artifact is hashed, as at load), the
    manifest lists not the file its loader reads, or the parent a PT2E or QAT variant is
    rebuilt from at load is itself corrupt. The next `zoo build` replaces all of them."""
    from defectbench.errors import ArtifactError
    from defectbench.zoo.build import TRAIN_STATE

    store, key = catalog.store, catalog.keys[name]
    if manifest is None:
        return "partial" if (store.variant_dir(name) / TRAIN_STATE).is_file() else "-"
    if manifest["key"] != key:
        return "stale"
    try:
        if store.lineage_problem(name, manifest):
            return "stale"
    except ArtifactError:  # a parent's manifest is corrupt: the build remakes parent and child
        return "stale"
    try:
        catalog.verify_loadable(name)
    except ArtifactError:
        return "corrupt"
    return "built"


def _summary(name: str, state: str, manifest: dict | None) -> dict:
    """What a results document cites about one variant: cost to build and dev quality."""
    if manifest is None:
        return {"name": name, "state": state, "built": False, "stale": False,
                "corrupt": state == "corrupt"}
    def table(owner: dict, key: str) -> dict:
        # a hand-edited or partial manifest lists with nulls where `zoo list` shows its state
        value = owner.get(key) if isinstance(owner, dict) else None
        return value if isinstance(value, dict) else {}

    dev, fit = table(manifest, "dev"), table(manifest, "fit")
    at = table(dev, "at")
    points = dev.get("operating_points")
    point = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else {}
    return {
        "name": name, "state": state, "built": state == "built", "stale": state == "stale",
        "corrupt": state == "corrupt",
        "kind": table(manifest, "recipe").get("kind"),
        "build_seconds": manifest.get("build_seconds"),
        "train_seconds": fit.get("train_seconds"),
        "best_epoch": fit.get("best_epoch"),
        "dev_auroc": dev.get("auroc"),
        "dev_operating_point": point,
        "dev_at_operating_point": _quality(table(at, str(point.get("name")))),
        "dev_accuracy_at_0.5": table(at, "p0.5").get("accuracy"),
        "params": manifest.get("params"), "macs": manifest.get("macs"),
        "weights": table(manifest, "weights").get("source"),
        "created": manifest.get("created"),
        "built_on": manifest.get("built_on"),
    }


def _quality(report: dict) -> dict:
    """Recall and FNR with their exact bounds beside the point values: on a dev set of a few
    hundred defective cells a recall alone cannot tell two variants apart."""
    def bound(key: str, side: str):
        value = report.get(key)
        return value.get(side) if isinstance(value, dict) else None

    return {"recall": report.get("recall"),
            "recall_lower": bound("recall_interval", "lower"),
            "recall_upper": bound("recall_interval", "upper"),
            "fnr": report.get("fnr"), "fnr_upper": bound("fnr_upper_bound", "upper"),
            "confidence": report.get("confidence"),
            "specificity": report.get("specificity"), "accuracy": report.get("accuracy"),
            "n_defective": report.get("n_defective")}


def _cmd_show(args: argparse.Namespace) -> int:
    _export_teacher(args)
    from defectbench.errors import ArtifactError
    from defectbench.zoo.catalog import Catalog
    from defectbench.zoo.registry import get_recipe

    recipe = get_recipe(args.name, args.profile)
    catalog = Catalog(_zoo_root(args), args.profile)
    manifest = catalog.store.read_manifest(args.name)
    if manifest is None:
        manifest = {"name": args.name, "built": False, "recipe": recipe.to_dict()}
    else:  # say whether this manifest is the variant the current recipe would build
        try:
            catalog.verify_loadable(args.name)
            manifest = {**manifest, "built": True, "current": True}
        except ArtifactError as err:
            manifest = {**manifest, "built": True, "current": False,
                        "why_not_current": str(err)}
    print(_strict_json(manifest))
    return 0


def _strict_json(value) -> str:
    """JSON any parser reads: a training epoch scored NaN is kept in the manifest, and
    Python's `NaN` is no JSON (JavaScript's, Go's and Rust's parsers refuse it); null as in
    the report's summary.json."""
    def finite(item):
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {k: finite(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(v) for v in item]
        return item

    return json.dumps(finite(value), indent=2, allow_nan=False)


def add_zoo_commands(sub) -> None:
    zoo = sub.add_parser("zoo", help="build and inspect the model variants")
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    build = zsub.add_parser("build", help="build missing or stale variants (resumes)")
    _profile_arg(build)
    build.add_argument("--variants", nargs="*",
                       help="glob patterns, space- or comma-separated (default: all)")
    build.add_argument("--threads", type=_positive_int, default=None,
                       help="torch/ORT threads (default: torch's; trained weights depend on it)")
    build.set_defaults(func=_cmd_build)
    lst = zsub.add_parser("list", help="all variant names of a profile, sorted")
    _profile_arg(lst)
    lst.add_argument("--json", action="store_true",
                     help="per variant: build time, dev metrics, params, MACs")
    lst.set_defaults(func=_cmd_list)
    show = zsub.add_parser("show", help="a variant's manifest (recipe, metrics, provenance)")
    show.add_argument("name")
    _profile_arg(show)
    show.set_defaults(func=_cmd_show)
