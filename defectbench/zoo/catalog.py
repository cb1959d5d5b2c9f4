"""The read side of the zoo: manifests, preprocessing and predictors for built variants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectbench.data.fixture import Fixture, load_fixture
from defectbench.data.preprocess import Preprocess, PreprocessedRows
from defectbench.errors import ArtifactError, UnknownNameError
from defectbench.metrics.operating_point import OperatingPoint
from defectbench.zoo.build import compute_keys, library_versions, load_trained_model
from defectbench.zoo.profiles import Profile, get_profile
from defectbench.zoo.recipes import TrainedRecipe
from defectbench.zoo.registry import all_recipes, suggest_variant
from defectbench.zoo.store import ZooStore


class Catalog:
    """Variants of one profile: what can run where, and the runnable artifact itself."""

    def __init__(self, root: Path, profile: Profile | str, fixture: Fixture | None = None) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.store = ZooStore(root, self.profile.name, self.profile.zoo_folder)
        self.fixture = fixture or load_fixture()
        self.recipes = all_recipes(self.profile)
        self.keys = compute_keys(self.recipes, self.fixture, library_versions(),
                                 self.profile.target_recall)

    @property
    def names(self) -> list[str]:
        return sorted(self.recipes)

    def recipe(self, name: str) -> Any:
        self._require_known(name)
        return self.recipes[name]

    def _key(self, name: str) -> str:
        self._require_known(name)
        return self.keys[name]

    def _require_known(self, name: str) -> None:
        """Every per-variant method starts here, so a misspelt name is an UnknownNameError
        with a suggestion, not a bare KeyError from the keys or recipes dict."""
        if name in self.recipes:
            return
        close = suggest_variant(name, self.recipes) if isinstance(name, str) else None
        hint = f"did you mean {close!r}? " if close else ""
        raise UnknownNameError(
            f"unknown variant {name!r} in profile {self.profile.name!r}; {hint}"
            f"{self.list_command()} shows all {len(self.recipes)}"
        )

    def list_command(self) -> str:
        """The `zoo list` command that lists this profile's variants, for messages. Another
        teacher's zoo needs the --teacher options it was built with: without them `zoo list`
        shows the default teacher's variants (another teacher name, another folder). No
        --zoo: the names do not depend on the folder."""
        profile = self.profile
        return f"`defectbench zoo list --profile {profile.name}{profile.teacher_options()}`"

    def manifest(self, name: str) -> dict[str, Any]:
        """A built variant's manifest, checked for what the read side uses (preprocessing and
        the dev operating points), so a hand-edited or truncated one is reported, not a
        KeyError deep in a benchmark."""
        manifest = self.store.verify(name, self._key(name))
        if problem := _read_side_problem(manifest):
            path = self.store.manifest_path(name)
            raise ArtifactError(
                f"manifest {path} {problem}; delete {path.parent} and run "
                f"{self.store.rebuild_command(name)} to rebuild it"
            )
        return manifest

    def verify_loadable(self, name: str) -> dict[str, Any]:
        """`store.verify`, and what loading the variant reads besides: every file its loader
        opens is listed (so hash-checked), and a variant rebuilt at load from its parent's
        weights (PT2E, QAT) has that parent intact too. `zoo list` called such a variant
        `built` while its load would fail."""
        from defectbench.zoo.derived import load_requirements

        manifest = self.store.verify(name, self._key(name))
        files, parent = load_requirements(self.recipe(name))
        for filename in files:
            self.store.artifact_path(name, manifest, filename)
        if parent is not None:
            try:
                self.verify_loadable(parent)
            except ArtifactError as exc:
                raise ArtifactError(
                    f"variant {name!r} is rebuilt at load from {parent!r}, which cannot be "
                    f"loaded: {exc}"
                ) from exc
        return manifest

    def preprocess(self, name: str) -> Preprocess:
        return Preprocess(**self.manifest(name)["preprocess"])

    def input_shape(self, name: str) -> tuple[int, int, int]:
        """(channels, height, width) of the images `name` was built and scored on: what its
        Preprocess makes (always 3 channels, grayscale repeated). An eager CNN takes a batch
        of any size and computes another function on it than the one its dev threshold was
        chosen for; its predictor is given this shape to refuse such a batch instead."""
        size = self.preprocess(name).size
        return (3, size, size)

    def precisions(self, name: str, device: str) -> tuple[str, ...]:
        return tuple(self.recipe(name).precisions.get(device, ()))

    def unavailable_reason(self, name: str, precision: str, device: str) -> str | None:
        """Why this host cannot run `name` at `precision` on `device`, with the fix; None if it
        can. Covers the runtime's own needs (TensorRT and CUDA providers in ONNX Runtime);
        whether CUDA exists at all is the `gpu` marker's business."""
        if getattr(self.recipe(name), "runtime", None) != "onnxruntime":
            return None
        from defectbench.runtime.predictor import execution_unavailable_reason, ort_execution

        return execution_unavailable_reason(ort_execution(precision, device).providers)

    def predictor(self, name: str, precision: str, device: str):
        """The runnable artifact behind the one predict interface."""
        recipe = self.recipe(name)
        if precision not in self.precisions(name, device):
            raise UnknownNameError(
                f"variant {name!r} has no {precision} build for {device}; it offers "
                f"{', '.join(self.precisions(name, device)) or 'nothing'} there"
            )
        if isinstance(recipe, TrainedRecipe):
            from defectbench.runtime.predictor import TorchPredictor

            input_shape = self.input_shape(name)
            model = load_trained_model(self.store, name, recipe, self._key(name))
            return TorchPredictor(
                model, device=device, precision=precision, input_shape=input_shape, name=name
            )
        from defectbench.zoo.derived import open_derived_predictor

        return open_derived_predictor(self, name, precision, device)

    def dev_rows(self, name: str) -> PreprocessedRows:
        """The profile's `dev` images, preprocessed for `name` row by row on demand.

        Not cached: PT2E and QAT variants rebuild at load from a few `dev` rows, and their
        load is what the memory benchmarks measure, so only those rows are ever decoded and
        nothing outlives the load (holding all of `dev` added ~300 MiB at 260 px)."""
        from defectbench.zoo.build import profile_subset

        return PreprocessedRows(
            profile_subset(self.fixture, self.profile, "dev"), self.preprocess(name)
        )

    def size_mb(self, name: str) -> float:
        manifest = self.manifest(name)
        if "size_bytes" in manifest:  # rebuilt at load (PT2E, QAT): its graph's tensors
            return manifest["size_bytes"] / 2**20
        return sum(a["bytes"] for a in manifest.get("artifacts", {}).values()) / 2**20


def _read_side_problem(manifest: dict[str, Any]) -> str | None:
    """What a manifest lacks that predicting and gating need, or None."""
    preprocess = manifest.get("preprocess")
    if not isinstance(preprocess, dict):
        return "has no `preprocess` object"
    try:
        Preprocess(**preprocess)
    except (TypeError, ValueError) as exc:  # ValueError covers ConfigError and float("a")
        return f"has an invalid `preprocess` ({exc})"
    dev = manifest.get("dev")
    points = dev.get("operating_points") if isinstance(dev, dict) else None
    if not isinstance(points, list) or not points:
        return "has no `dev.operating_points` list"
    for point in points:
        try:
            OperatingPoint.from_dict(point)
        except (TypeError, ValueError) as exc:
            return f"has an invalid dev operating point {point!r} ({exc})"
    return None
