"""`defectbench zoo build | list | show`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from defectbench.zoo.profiles import PROFILES, get_profile
from defectbench.zoo.store import ZooStore, default_zoo_root


def _profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=os.environ.get("DEFECTBENCH_PROFILE", "quick"),
                   choices=sorted(PROFILES), help="default: $DEFECTBENCH_PROFILE or quick")
    p.add_argument("--zoo", type=Path, default=None,
                   help="zoo directory (default: $DEFECTBENCH_ZOO or ~/.cache/defectbench/zoo)")


def _cmd_build(args: argparse.Namespace) -> int:
    import torch

    from defectbench.zoo.build import build_zoo

    if args.threads:
        torch.set_num_threads(args.threads)
    manifests = build_zoo(get_profile(args.profile), args.zoo or default_zoo_root(),
                          args.variants or None)
    print(f"{len(manifests)} variants ready in {(args.zoo or default_zoo_root()) / args.profile}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from defectbench.zoo.registry import list_variants

    store = ZooStore(args.zoo or default_zoo_root(), args.profile)
    built = set(store.built_names())
    for name in list_variants(args.profile):
        print(f"{name:50s} {'built' if name in built else '-'}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from defectbench.zoo.registry import get_recipe

    recipe = get_recipe(args.name, args.profile)
    store = ZooStore(args.zoo or default_zoo_root(), args.profile)
    manifest = store.read_manifest(args.name)
    print(json.dumps(manifest or {"name": args.name, "built": False, "recipe": recipe.to_dict()},
                     indent=2))
    return 0


def add_zoo_commands(sub) -> None:
    zoo = sub.add_parser("zoo", help="build and inspect the model variants")
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    build = zsub.add_parser("build", help="build missing or stale variants (resumes)")
    _profile_arg(build)
    build.add_argument("--variants", nargs="*", help="glob patterns (default: all)")
    build.add_argument("--threads", type=int, default=None, help="torch/ORT threads")
    build.set_defaults(func=_cmd_build)
    lst = zsub.add_parser("list", help="all variant names of a profile, sorted")
    _profile_arg(lst)
    lst.set_defaults(func=_cmd_list)
    show = zsub.add_parser("show", help="a variant's manifest (recipe, metrics, provenance)")
    show.add_argument("name")
    _profile_arg(show)
    show.set_defaults(func=_cmd_show)
