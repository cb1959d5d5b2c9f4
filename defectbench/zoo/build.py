"""`defectbench zoo build`: make every variant of a profile that is missing or stale, in order."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import platform
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectbench.data.fixture import Fixture, load_fixture
from defectbench.data.image_set import ImageSet
from defectbench.data.preprocess import Preprocess, preprocess_set
from defectbench.errors import ArtifactError, ConfigError, UnknownNameError
from defectbench.io import atomic_write_bytes, atomic_write_text, sha256_file
from defectbench.measure.compute import count_macs
from defectbench.measure.machine import cpu_identity
from defectbench.metrics.confusion import binary_report
from defectbench.metrics.operating_point import OperatingPoint, choose_operating_point
from defectbench.metrics.ranking import roc_auc
from defectbench.models.pretrained import create_model, weights_identity
from defectbench.runtime.predictor import defect_probability
from defectbench.train.allocator import retain_freed_memory
from defectbench.train.config import TrainConfig
from defectbench.train.fit import fit, predict_logits
from defectbench.zoo.profiles import DEFAULT_TARGET_RECALL, Profile
from defectbench.zoo.recipes import TrainedRecipe
from defectbench.zoo.store import ZooStore

MODEL_FILE = "model.pt"
TRAIN_STATE = "train_state.pt"
# Part of every variant key. Bump it when the build procedure changes what a recipe produces,
# so caches built by the old procedure show as stale and rebuild. 2: the global RNG is seeded
# before a trained model is created (its new head used to depend on what the process had
# built before it).
BUILD_PROCEDURE = 2


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("torch", "timm", "torchao", "torch-pruning", "onnx", "onnxscript", "onnxruntime",
                 "numpy"):
        out[dist] = "not installed"
        # the GPU build of ONNX Runtime is the same library under another distribution name
        for name in (dist, "onnxruntime-gpu") if dist == "onnxruntime" else (dist,):
            try:
                out[dist] = version(name)
                break
            except PackageNotFoundError:
                pass
    return out


# the libraries that can change what a variant of each kind is, beyond its parents
_KEY_LIBRARIES = {
    "trained": ("torch", "timm", "numpy"),
    # torch's dynamo exporter translates and optimises the graph through onnxscript
    "onnx": ("torch", "timm", "numpy", "onnx", "onnxscript"),
    "ort_int8": ("numpy", "onnx", "onnxruntime"),
    "pt2e_int8": ("torch", "timm", "numpy", "torchao"),
    "qat_pt2e": ("torch", "timm", "numpy", "torchao"),
    "pruned": ("torch", "timm", "numpy", "torch-pruning"),
}


def _key_versions(kind: str, versions: dict[str, str]) -> dict[str, str]:
    return {k: versions[k] for k in _KEY_LIBRARIES[kind]}


@dataclass
class BuildContext:
    """What every builder needs: the store, the verified fixture and per-build caches."""

    store: ZooStore
    profile: Profile
    fixture: Fixture
    versions: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)
    _arrays: dict[tuple, np.ndarray] = field(default_factory=dict)

    def subset(self, split: str) -> ImageSet:
        return profile_subset(self.fixture, self.profile, split)

    def arrays(self, split: str, preprocess: Preprocess) -> np.ndarray:
        key = (split, preprocess)
        if key not in self._arrays:
            self._arrays[key] = preprocess_set(self.subset(split), preprocess)
        return self._arrays[key]


def profile_subset(fixture: Fixture, profile: Profile, split: str) -> ImageSet:
    """`train` / `dev`, cut to the profile's size limit by a fixed stratified draw."""
    images = fixture.split(split)
    limit = {"train": profile.max_train_images, "dev": profile.max_dev_images}.get(split)
    if limit is None or limit >= len(images):
        return images
    rng = np.random.default_rng(profile.seed)
    picked = []
    for label in (0, 1):  # keep the class ratio, so both classes are always present
        idx = np.flatnonzero(images.labels == label)
        share = round(limit * len(idx) / len(images))
        # at least two of each class (dev AUROC needs both), never more than the class has
        size = min(max(share, 2), len(idx))
        picked.extend(rng.choice(idx, size=size, replace=False).tolist())
    return images.subset(sorted(picked))


def variant_key(
    name: str,
    recipe: Any,
    parent_keys: Iterable[str],
    fixture: Fixture,
    versions: dict[str, str],
    target_recall: float = DEFAULT_TARGET_RECALL,
) -> str:
    recipe_dict = recipe.to_dict()
    payload = {
        "name": name,
        "recipe": recipe_dict,
        "parents": list(parent_keys),
        "fixture": [fixture.content_sha256, fixture.split_sha256, fixture.defect_threshold],
        "versions": _key_versions(recipe_dict["kind"], versions),
        "procedure": BUILD_PROCEDURE,
    }
    if target_recall != DEFAULT_TARGET_RECALL:
        # the manifest's dev operating point (what the gates run at) is chosen for it; named
        # only when not the default, so keys made before it was part of them still hold
        payload["target_recall"] = target_recall
    if isinstance(recipe, TrainedRecipe) and recipe.model.weights is not None:
        # the file's bytes, not where it lies: moved, it is the same model; changed, another
        payload["recipe"]["model"]["weights"] = f"sha256:{_file_sha256(recipe.model.weights)}"
        payload["weights"] = "local_file"
    elif isinstance(recipe, TrainedRecipe) and recipe.model.pretrained:
        # another weights package version, or the hub instead of the package, is another model
        payload["weights"] = weights_identity(recipe.model.arch)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: str) -> str:
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ConfigError(
            f"teacher weights file {path} cannot be read ({exc.strerror or exc}); the zoo's "
            "keys name its bytes, so it is needed to build the zoo and to use it"
        ) from None
    return _cached_sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    # every Catalog computes the keys; a ViT-B checkpoint is hundreds of MB
    return sha256_file(path)


def _build_model(recipe: TrainedRecipe, pretrained: bool | None = None):
    spec = recipe.model
    pretrained = spec.pretrained if pretrained is None else pretrained
    return create_model(
        spec.arch,
        2,
        pretrained=pretrained,
        weights=spec.weights if pretrained else None,
        **dict(spec.timm_kwargs),
    )


def load_trained_model(
    store: ZooStore, name: str, recipe: TrainedRecipe, key: str | None = None
) -> torch.nn.Module:
    """The fine-tuned model of a built variant, after its artifact hash was checked."""
    path = store.artifact_path(name, store.verify(name, key), MODEL_FILE)
    model, _ = _build_model(recipe, pretrained=False)  # weights come from the zoo file below
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def evaluate_on_dev(ctx: BuildContext, probs: np.ndarray) -> dict[str, Any]:
    """Dev metrics at 0.5 and the operating point tuned on dev for the profile's target recall."""
    dev = ctx.subset("dev")
    point = choose_operating_point(
        f"dev_recall_{ctx.profile.target_recall:.2f}",
        dev.labels,
        probs,
        ctx.profile.target_recall,
        chosen_on="dev",
    )
    fixed = OperatingPoint("p0.5", 0.5, None, chosen_on="fixed")
    groups = {"cell_type": dev.metadata["cell_type"]}
    return {
        "auroc": roc_auc(dev.labels, probs),
        "operating_points": [point.to_dict(), fixed.to_dict()],
        "at": {
            op.name: binary_report(dev.labels, probs, op.threshold, groups=groups)
            for op in (point, fixed)
        },
    }


def teacher_logits(ctx: BuildContext, teacher: str, recipes: dict[str, Any]) -> np.ndarray:
    """The frozen teacher's logits on the (unaugmented) train set, computed once and cached."""
    key = ctx.keys[teacher]
    n = len(ctx.subset("train"))
    # named by the teacher's weights, not its key: a teacher rebuilt under the same key may
    # have other weights, and its students must distil from those
    weights = ctx.store.verify(teacher, key)["artifacts"][MODEL_FILE]["sha256"]
    path = ctx.store.cache_dir() / f"teacher_logits-{weights[:16]}-{n}.npy"
    # its sha256 beside it, written after it: a flipped byte in plausible logits would pass
    # any shape or finiteness check and be distilled from
    checksum = path.with_name(path.name + ".sha256")
    if path.is_file():
        try:
            data = path.read_bytes()
            recorded = checksum.read_text().strip() if checksum.is_file() else None
            if recorded != hashlib.sha256(data).hexdigest():
                raise ValueError("its bytes do not match the sha256 recorded beside it"
                                 if recorded else f"no {checksum.name} beside it")
            cached = np.load(io.BytesIO(data), allow_pickle=False)
            if cached.shape == (n, 2) and np.isfinite(cached).all():
                return cached
            problem = f"shape {cached.shape}, expected ({n}, 2), or non-finite values"
        except (ValueError, OSError, EOFError) as exc:
            problem = str(exc) or type(exc).__name__
        # a damaged cache is reported and recomputed, never used
        warnings.warn(f"teacher-logit cache {path} is unusable ({problem}); recomputing it",
                      stacklevel=2)
    model = load_trained_model(ctx.store, teacher, recipes[teacher], key)
    pre = Preprocess.for_model(model, recipes[teacher].model.img_size)
    logits = predict_logits(model, ctx.arrays("train", pre))
    buffer = io.BytesIO()
    np.save(buffer, logits, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_text(checksum, hashlib.sha256(buffer.getvalue()).hexdigest() + "\n")
    return logits


def lineage_key(ctx: BuildContext, name: str, recipe: Any) -> str:
    """What a resumable training state must have been made under: the variant's key; for a
    variant trained from parents (a student's teacher, a pruned model's source), their
    artifacts' hashes, so a half-finished run never resumes against a rebuilt parent; and the
    processor and thread count (`built_on`), since one seeded recipe trains to other weights
    on another CPU model or thread count, and epochs of two would make a model of neither."""
    lineage = json.dumps([ctx.keys[name], ctx.store.parent_artifacts(recipe.parents),
                          built_on()], sort_keys=True)
    return hashlib.sha256(lineage.encode()).hexdigest()


def built_on() -> dict[str, Any]:
    """The machine settings a trained model's bytes depend on (not part of the zoo key: a zoo
    built elsewhere stays usable)."""
    return {**cpu_identity(), "torch_threads": torch.get_num_threads()}


def annotated_probability(train: ImageSet, config: TrainConfig, name: str) -> np.ndarray | None:
    if config.targets != "annotator_probability":
        return None
    if "probability" not in train.metadata:
        raise ConfigError(
            f"{name} trains on annotated defect probabilities, but this dataset has none (only "
            f"ELPV carries them); use targets='labels' in its recipe"
        )
    return np.asarray(train.metadata["probability"], dtype=np.float64)


def build_trained(
    ctx: BuildContext, name: str, recipe: TrainedRecipe, recipes: dict[str, Any]
) -> dict[str, Any]:
    # the fresh classifier head (and a from-scratch model's every weight) is drawn from the
    # global RNG: seed it, so a recipe gives the same model whatever the process built before
    torch.manual_seed(recipe.train.seed)
    model, provenance = _build_model(recipe)
    pre = Preprocess.for_model(model, recipe.model.img_size)
    train, dev = ctx.subset("train"), ctx.subset("dev")
    soft_targets = teacher_logits(ctx, recipe.distill.teacher, recipes) if recipe.distill else None
    result = fit(
        model,
        ctx.arrays("train", pre),
        train.labels,
        ctx.arrays("dev", pre),
        dev.labels,
        recipe.train,
        distill=recipe.distill,
        teacher_logits=soft_targets,
        checkpoint_path=ctx.store.variant_dir(name) / TRAIN_STATE,
        checkpoint_key=lineage_key(ctx, name, recipe),
        train_probability=annotated_probability(train, recipe.train, name),
        description=name,
    )
    # the probability every later scoring uses (the suite's predictors): the operating point's
    # threshold is one dev cell's score, and that cell must score the same again to count
    dev_probs = defect_probability(predict_logits(model, ctx.arrays("dev", pre)))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    artifacts = {MODEL_FILE: ctx.store.write_artifact(name, MODEL_FILE, buffer.getvalue())}
    return {
        "weights": provenance.to_dict(),
        "preprocess": pre.to_dict(),
        "fit": result.to_dict(),
        "train_images": len(train),
        "dev_images": len(dev),
        "dev": evaluate_on_dev(ctx, dev_probs),
        "artifacts": artifacts,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": count_macs(model, recipe.model.img_size),
    }


def builders() -> dict[type, Callable[..., dict[str, Any]]]:
    from defectbench.zoo.derived import BUILDERS as DERIVED_BUILDERS

    return {TrainedRecipe: build_trained, **DERIVED_BUILDERS}


def select_variants(recipes: dict[str, Any], patterns: Iterable[str] | None) -> list[str]:
    from defectbench.zoo.registry import match_variants, suggest_variant

    names = sorted(recipes)
    if not patterns:
        return names
    chosen, unmatched = match_variants(names, patterns)
    if unmatched:
        hints = {p: close for p in unmatched if (close := suggest_variant(p, names))}
        # a likely intent says more than a wall of every name the profile has
        meant = "; ".join(f"for {p!r} did you mean {c!r}?" for p, c in hints.items())
        raise UnknownNameError(
            f"no variant matches {unmatched!r}"
            + (f"; {meant} `defectbench zoo list` shows all" if hints else
               "; the variants are: " + ", ".join(names))
        )
    return chosen


def build_order(recipes: dict[str, Any], wanted: Iterable[str]) -> list[str]:
    """The wanted variants and everything they depend on, parents first."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise ConfigError(
                f"recipe cycle: {' -> '.join(chain + (name,))}; a variant cannot be made from "
                "itself, directly or through its parents: change one recipe's parent"
            )
        if name not in recipes:
            raise UnknownNameError(f"recipe depends on unknown variant {name!r}")
        for parent in recipes[name].parents:
            visit(parent, chain + (name,))
        order.append(name)

    for name in sorted(wanted):
        visit(name, ())
    return order


def compute_keys(
    recipes: dict[str, Any],
    fixture: Fixture,
    versions: dict[str, str],
    target_recall: float = DEFAULT_TARGET_RECALL,
) -> dict[str, str]:
    keys: dict[str, str] = {}
    for name in build_order(recipes, recipes):
        keys[name] = variant_key(
            name, recipes[name], [keys[p] for p in recipes[name].parents], fixture, versions,
            target_recall,
        )
    return keys


def variants_to_build(
    profile: Profile, root: Path, patterns: Iterable[str] | None = None
) -> list[str]:
    """What `build_zoo(profile, root, patterns)` may build, in build order: the selected
    variants and parents that are missing, stale or damaged, and every descendant of those
    (a rebuilt parent can change its children; `build_zoo` skips the ones still current).
    Empty when the zoo is ready."""
    from defectbench.zoo.registry import all_recipes

    fixture = load_fixture()
    recipes = all_recipes(profile)
    keys = compute_keys(recipes, fixture, library_versions(), profile.target_recall)
    store = ZooStore(root, profile.name, profile.zoo_folder)
    wanted = select_variants(recipes, patterns)
    rebuilt: list[str] = []
    for name in build_order(recipes, wanted):
        # a rebuilt parent can come out with other bytes (another CPU, another thread count),
        # and then its children are stale: name them too, so a build of this list leaves
        # none of them behind (`build_zoo` skips those still current when it gets to them)
        if not store.is_current(name, keys[name]) or set(recipes[name].parents) & set(rebuilt):
            rebuilt.append(name)
    return rebuilt


def _why_not_current(store: ZooStore, name: str, key: str) -> str:
    try:
        manifest = store.read_manifest(name)
        if manifest is None:
            return "not built"
        if manifest["key"] != key:
            return "stale (built from another recipe, data fixture or library version)"
        if problem := store.lineage_problem(name, manifest):
            return f"stale ({problem})"
    except ArtifactError:
        return "damaged (its manifest or a parent's is corrupt)"
    return "damaged (an artifact is missing or does not match its sha256)"


def build_zoo(
    profile: Profile,
    root: Path,
    patterns: Iterable[str] | None = None,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Build what is missing or stale; return the manifests of the selected variants."""
    from defectbench.zoo.registry import all_recipes

    fixture = load_fixture()
    versions = library_versions()
    recipes = all_recipes(profile)
    ctx = BuildContext(ZooStore(root, profile.name, profile.zoo_folder), profile, fixture,
                      versions)
    ctx.keys = compute_keys(recipes, fixture, versions, profile.target_recall)
    wanted = select_variants(recipes, patterns)
    manifests = {}
    # steps reuse freed activation memory instead of faulting fresh pages in each time
    order = build_order(recipes, wanted)
    with ctx.store.build_lock(log) as unlocked, retain_freed_memory():
        if unlocked:
            missing = [n for n in order if not ctx.store.is_current(n, ctx.keys[n])]
            if missing:
                # refused before training, not after an epoch when the first write fails
                raise ArtifactError(
                    f"cannot build {', '.join(missing[:3])}"
                    f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''} into "
                    f"{ctx.store.directory}: it is not writable ({unlocked}); set "
                    "DEFECTBENCH_ZOO to a writable folder (or pass --zoo to `defectbench zoo`, "
                    "--zoo-dir to the suite), or build there with write access"
                )
        else:
            if newer := [n for n in order if ctx.store.written_by_newer(n)]:
                # rebuilt here, it would be rebuilt again by the newer checkout sharing the zoo
                raise ArtifactError(
                    f"{ctx.store.manifest_path(newer[0])} was written by a newer defectbench "
                    f"(manifest_format {ctx.store.written_by_newer(newer[0])}); upgrade "
                    "defectbench, or give this checkout a zoo of its own (--zoo or "
                    "DEFECTBENCH_ZOO) instead of building over the newer one's variants")
            # no other build can be writing now: every temporary file is a killed build's
            for name in (None, *order):
                for leftover in ctx.store.remove_leftovers(name, older_than_s=0):
                    log(f"{name or ctx.store.cache_dir().name}: removed {leftover}, left by an "
                        "interrupted build")
        for name in order:
            key = ctx.keys[name]
            if ctx.store.is_current(name, key):
                manifests[name] = ctx.store.verify(name, key)
                # a build killed between committing the manifest and deleting its resumable
                # state leaves hundreds of MB that nothing would ever read
                if not unlocked and (ctx.store.variant_dir(name) / TRAIN_STATE).exists():
                    (ctx.store.variant_dir(name) / TRAIN_STATE).unlink()
                    log(f"{name}: removed {TRAIN_STATE}, left by a build interrupted after "
                        "its manifest was written")
                continue
            if ctx.store.manifest_path(name).exists():
                # a rebuild can take an hour: say which of the reasons it is
                log(f"{name}: {_why_not_current(ctx.store, name, key)}, rebuilding")
            log(f"building {name} ({profile.name})")
            recipe = recipes[name]
            started = time.perf_counter()
            body = builders()[type(recipe)](ctx, name, recipe, recipes)
            manifest = {
                "name": name,
                "profile": profile.name,
                "key": key,
                "recipe": recipe.to_dict(),
                "parents": {p: ctx.keys[p] for p in recipe.parents},
                "parent_artifacts": ctx.store.parent_artifacts(recipe.parents),
                "fixture": {
                    "content_sha256": fixture.content_sha256,
                    "split_sha256": fixture.split_sha256,
                    "defect_threshold": fixture.defect_threshold,
                },
                "versions": versions,
                "built_on": built_on(),
                # with the time an interrupted build had spent training before this process
                "build_seconds": time.perf_counter() - started
                + (body.get("fit") or {}).get("seconds_before_resume", 0.0),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **body,
            }
            ctx.store.commit(manifest)
            (ctx.store.variant_dir(name) / TRAIN_STATE).unlink(missing_ok=True)
            manifests[name] = manifest
            fit = body.get("fit") or {}
            resumed = fit.get("resumed_from_epoch", 0)
            trained = len(fit.get("history") or ())
            log(f"built {name} in {manifest['build_seconds']:.0f} s"
                + ("" if not resumed
                   else " (resumed after its last epoch)" if resumed >= trained
                   else f" (resumed at epoch {resumed + 1})"))
    return {n: manifests[n] for n in wanted}
