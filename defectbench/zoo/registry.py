"""The variant registry: every variant of a profile by its dotted name, sorted."""

from __future__ import annotations

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
    import difflib

    close = difflib.get_close_matches(name, recipes, n=1) or [
        n for n in recipes if n.endswith(name) or name in n
    ][:1]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(f"unknown variant {name!r}{hint}; `defectbench zoo list` shows all")


def match_variants(names: Iterable[str], patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """The names any glob matches (in the given order), and the globs that match none: a
    misspelt pattern beside good ones would otherwise select less without a word."""
    names, patterns = list(names), list(patterns)
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    return chosen, unmatched
