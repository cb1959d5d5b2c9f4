"""The variant registry: every variant of a profile by its dotted name, sorted."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from typing import Any

from defectbench.errors import UnknownNameError
from defectbench.zoo.profiles import Profile, derived_recipes, get_profile


def all_recipes(profile: Profile | str) -> dict[str, Any]:
    """Every variant of the profile by name, sorted: trained ones and their derivatives."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    trained = profile.trained_recipes()
    return dict(sorted({**trained, **derived_recipes(profile, trained)}.items()))


def list_variants(profile: Profile | str = "quick") -> list[str]:
    return sorted(all_recipes(profile))


def get_recipe(name: str, profile: Profile | str = "quick") -> Any:
    recipes = all_recipes(profile)
    if name in recipes:
        return recipes[name]
    if not name.strip():
        raise UnknownNameError("no variant name given; `defectbench zoo list` shows all")
    close = suggest_variant(name, recipes)
    hint = f"; did you mean {close!r}?" if close else ";"
    raise UnknownNameError(f"unknown variant {name!r}{hint} `defectbench zoo list` shows all")


def suggest_variant(pattern: str, names: Iterable[str]) -> str | None:
    """The name (for a glob, the glob) `pattern` was most likely meant to be, or None."""
    if not pattern.strip():
        return None
    # names are lower case: a shift key held is no typo
    lower = pattern.lower()
    by_lower = {n.lower(): n for n in sorted(names)}
    if any(c in pattern for c in "*?["):
        # a glob: in the names' case, or matched anywhere in a name (`lite0.kd*` for
        # `tf_efficientnet_lite0.kd*`)
        for candidate in (lower, f"*{lower}"):
            if any(fnmatch.fnmatchcase(n, candidate) for n in by_lower):
                return candidate
        return None
    if lower in by_lower:
        return by_lower[lower]
    if close := difflib.get_close_matches(lower, by_lower, n=1):
        return by_lower[close[0]]
    # a name without its architecture prefix (`lite0.kd`, `teacher.onnx`)
    for fits in (lambda n: n.endswith(lower), lambda n: lower in n):
        if found := [n for n in by_lower if fits(n)]:
            return by_lower[found[0]]
    return None


def match_variants(names: Iterable[str], patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """The names any glob matches (in the given order), and the globs that match none: a
    misspelt pattern beside good ones would otherwise select less without a word."""
    names, patterns = list(names), list(patterns)
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    return chosen, unmatched
