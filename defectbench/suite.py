"""The benchmark suite's logic: which cases exist, how quality is judged, how speed is measured.

pytest wiring lives in `defectbench.plugin`; this module has no pytest dependency so it can be
unit-tested and reused.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectbench.budgets import (
    DEFAULT_CONFIDENCE,
    Budget,
    Evidence,
    check_budgets_apply,
    check_table_keys,
    judge_all,
    load_budgets,
    relative_to_cwd,
)
from defectbench.data.preprocess import Preprocess, preprocess_set
from defectbench.errors import ArtifactError, ConfigError
from defectbench.measure.compute import matmul_peak_gflops
from defectbench.measure.latency import LatencyStats, alternating_blocks
from defectbench.measure.memory import (
    MemoryMeasurement,
    cuda_allocated_mb,
    current_rss_mb,
    measure_peak,
)
from defectbench.metrics.confusion import binary_report
from defectbench.metrics.operating_point import OperatingPoint
from defectbench.metrics.paired import compare_recall, compare_recall_by_group
from defectbench.runtime.predictor import defect_probability
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.derived import scoring_batch
from defectbench.zoo.profiles import TEACHER
from defectbench.zoo.registry import match_variants

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DEFAULT_BATCHES = (1, 8, 32)
SCHEMA = 1


@dataclass(frozen=True, order=True)
class Case:
    """One (variant, precision, device[, batch]) combination; `batch` is None for quality cases."""

    variant: str
    precision: str
    device: str
    batch: int | None = None

    @property
    def id(self) -> str:
        parts = [self.variant, self.precision, self.device]
        if self.batch is not None:
            parts.append(f"b{self.batch}")
        return "-".join(parts)


@dataclass(frozen=True)
class Selection:
    """What the user asked for on the command line or in DEFECTBENCH_* variables."""

    variants: tuple[str, ...] = ("*",)
    precisions: tuple[str, ...] = PRECISIONS
    devices: tuple[str, ...] = DEVICES
    batches: tuple[int, ...] = DEFAULT_BATCHES

    def __post_init__(self) -> None:
        from defectbench.runtime.precision import resolve_device, resolve_precision

        object.__setattr__(self, "precisions", tuple(resolve_precision(p) for p in self.precisions))
        # aliases resolve to one name; a device named twice would run every case twice
        object.__setattr__(self, "devices",
                           tuple(dict.fromkeys(resolve_device(d) for d in self.devices)))
        for value in self.batches:
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"batch sizes must be positive integers, got {value!r}")


def parse_list(text: str, what: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(","))
    if not any(items):
        raise ConfigError(f"--{what} is empty; give a comma-separated list")
    if not all(items):
        # `1,,8` is a value lost in editing (1,32,8?), not a list of two: running the
        # remainder would drop it from the gate without a word
        raise ConfigError(
            f"--{what} {text!r} has an empty item; separate the values by single commas "
            f"with none left out, e.g. {','.join(t for t in items if t)}"
        )
    return items


def parse_batches(text: str) -> tuple[int, ...]:
    items = parse_list(text, "batch-sizes")
    # ASCII digits only: int() also reads '1_8' as 18 (a lost comma) and non-Latin digits
    wrong = [t for t in items if not (t.isascii() and t.isdigit())]
    if wrong:
        raise ConfigError(
            f"--batch-sizes {text!r} must be comma-separated positive integers, e.g. 1,8,32 "
            f"({wrong[0]!r} is not one)"
        )
    return tuple(sorted({int(t) for t in items}))


def select_names(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    chosen, unmatched = match_variants(names, patterns)
    if unmatched:
        raise ConfigError(
            f"--variants {','.join(unmatched)!r} matches no variant"
            + _variant_hint(unmatched[0], names)
            + f"; choose from: {', '.join(names)} (globs such as '*.kd*' select several)"
        )
    return chosen


def _variant_hint(pattern: str, names: list[str]) -> str:
    """'; did you mean ...' for a pattern that is a shortened or misspelt name: a name is
    matched whole, so 'lite0.kd' selects nothing where '*lite0.kd' would."""
    if any(c in pattern for c in "*?["):
        return ""
    ending = [n for n in names if n.endswith(pattern) or n.endswith("." + pattern)]
    if ending:
        return f" (did you mean {ending[0]!r}, or the glob '*{pattern}'?)"
    close = difflib.get_close_matches(pattern, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def quality_cases(catalog: Catalog, selection: Selection) -> list[Case]:
    """Sorted; only combinations the variant can really run."""
    cases = []
    for name in select_names(catalog.names, selection.variants):
        for device in selection.devices:
            for precision in catalog.precisions(name, device):
                if precision in selection.precisions:
                    cases.append(Case(name, precision, device))
    return sorted(cases)


def check_selection_has_cases(catalog: Catalog, selection: Selection) -> None:
    """ConfigError if the selection names no build the zoo has: pytest would skip the gates as
    an empty parameter set and the run would pass having judged nothing."""
    if quality_cases(catalog, selection):
        return
    offers = []
    for name in select_names(catalog.names, selection.variants):
        runs = [f"{device} {'/'.join(catalog.precisions(name, device))}"
                for device in DEVICES if catalog.precisions(name, device)]
        offers.append(f"{name} ({', '.join(runs)})")
    raise ConfigError(
        f"--variants {','.join(selection.variants)} --precisions "
        f"{','.join(selection.precisions)} --devices {','.join(selection.devices)} select no "
        f"build of the {catalog.profile.name!r} zoo, so nothing would be gated or timed. The "
        f"selected variants run as: {'; '.join(offers)}"
    )


def check_batches_fit(batches: tuple[int, ...], val_images: int, given: str) -> None:
    """ConfigError for a batch size above the number of `val` images: every timed batch is
    cut from them (`Suite.perf_batch`), so a larger one repeats images, and 100000 was
    accepted without a word: val tiled 153 times into one input of 81 GB at the quick
    profile's 260 px, allocated only when its case ran, after the zoo build and the cases
    before it. `given` is the option's text, for the message."""
    too_large = [b for b in batches if b > val_images]
    if too_large:
        raise ConfigError(
            f"--batch-sizes {given!r}: {too_large[-1]} is more than the {val_images} images of "
            "the `val` fixture, from which every timed batch is cut (a larger one would repeat "
            f"images, and can exhaust memory); use sizes of at most {val_images}, e.g. "
            f"{','.join(map(str, DEFAULT_BATCHES))}"
        )


def interval_confidence(budgets: list[Budget]) -> float:
    """The level of the intervals and bounds a quality result reports: the budgets' own when
    they share one (so a shown bound is the one its verdict judged), else 95%."""
    levels = {b.confidence for b in budgets}
    return levels.pop() if len(levels) == 1 else DEFAULT_CONFIDENCE


def perf_cases(catalog: Catalog, selection: Selection) -> list[Case]:
    return sorted(
        Case(c.variant, c.precision, c.device, b)
        for c in quality_cases(catalog, selection)
        for b in selection.batches
    )


# the metadata groups every quality result is broken down by (budgets may gate each value)
GROUPS = ("cell_type", "severity")


def gated_point_name(catalog: Catalog) -> str:
    """The dev operating point the gates run at: the one chosen for the profile's recall."""
    return f"dev_recall_{catalog.profile.target_recall:.2f}"


def load_checked_budgets(path: Path, catalog: Catalog) -> list[Budget]:
    """The budgets file, refused (ConfigError) where a budget names a variant, operating
    point or group this zoo has none of. Needs names only: nothing is built."""
    budgets = load_budgets(path)
    check_budgets_apply(budgets, catalog.names, [gated_point_name(catalog)],
                        str(path), groups=GROUPS)
    return budgets


class Suite:
    """Session state: the catalog, val arrays, cached predictors and quality results."""

    def __init__(self, catalog: Catalog, budgets_path: Path) -> None:
        self.catalog = catalog
        self.budgets_path = budgets_path
        self.gated_point = gated_point_name(catalog)
        self.budgets: list[Budget] = load_checked_budgets(budgets_path, catalog)
        self.interval_confidence = interval_confidence(self.budgets)
        self.val = catalog.fixture.split("val")
        self._arrays: dict[Preprocess, np.ndarray] = {}
        self._predictors: dict[tuple[str, str, str], Any] = {}
        self.quality: dict[Case, dict[str, Any]] = {}
        self._reference: dict[str, Any] | None = None
        self.latency: dict[Case, LatencyStats] = {}
        self.load_mb: dict[tuple[str, str, str], float] = {}
        self.cuda_load_mb: dict[tuple[str, str, str], float] = {}
        self.speed_results: list[dict[str, Any]] = []
        self._memory_probe = None  # started on first use: see isolated_memory()

    # -- inputs and artifacts -------------------------------------------------------------
    def val_arrays(self, variant: str) -> np.ndarray:
        pre = self.catalog.preprocess(variant)
        if pre not in self._arrays:
            self._arrays[pre] = preprocess_set(self.val, pre)
        return self._arrays[pre]

    def load_predictor(self, case: Case):
        """A newly loaded instance of the case's artifact (every call loads another)."""
        return self.catalog.predictor(case.variant, case.precision, case.device)

    def predictor(self, case: Case):
        """The instance that is timed, kept for the session (speed targets time it again)."""
        key = (case.variant, case.precision, case.device)
        if key not in self._predictors:
            # CUDA's baseline first: the first call starts CUDA (hundreds of MB of host RAM),
            # which is not the artifact's
            before_cuda = cuda_allocated_mb() if case.device == "cuda" else 0.0
            before = current_rss_mb()
            self._predictors[key] = self.load_predictor(case)
            # resident memory the loaded artifact added (weights, session, graph)
            self.load_mb[key] = max(0.0, current_rss_mb() - before)
            if case.device == "cuda":
                self.cuda_load_mb[key] = max(0.0, cuda_allocated_mb() - before_cuda)
        return self._predictors[key]

    def operating_point(self, variant: str) -> OperatingPoint:
        points = self.catalog.manifest(variant)["dev"]["operating_points"]
        for point in points:
            if point["name"] == self.gated_point:
                chosen = OperatingPoint.from_dict(point)
                if chosen.chosen_on != "dev":
                    # a threshold tuned on the split the gates judge would grade its own
                    # answers: zoo builds choose on dev, so this manifest was made elsewhere
                    raise ConfigError(
                        f"variant {variant!r}: operating point {self.gated_point!r} was chosen "
                        f"on {chosen.chosen_on!r}, not 'dev'; the gates judge on 'val' and "
                        "need a threshold chosen without it. Rebuild the variant with "
                        "`defectbench zoo build`"
                    )
                return chosen
        raise ConfigError(
            f"variant {variant!r} has no operating point {self.gated_point!r}; it has "
            f"{', '.join(p['name'] for p in points)}"
        )

    def predict_val(self, case: Case) -> tuple[np.ndarray, str, str | None]:
        """Defect probabilities on `val`, the runtime that produced them, and why the artifact
        computes another function than its build did, if it does (`differs_from_build`).

        Scored by an instance loaded for this pass alone and released after it, never the
        timed one: the timed instance's first call at each batch size is what its memory
        figures measure, and a quality pass at batch 32 before it would already have grown
        what that call allocates (ONNX Runtime's arena keeps its peak: the b8 and b32 cases
        read 0 MB).
        """
        predictor = self.load_predictor(case)
        x = self.val_arrays(case.variant)
        # one image per call where an image's score depends on its neighbours in the call
        # (dynamic INT8), as the zoo scored its dev; else 32, as the zoo scored a derived
        # artifact's dev (a trained model's dev was scored in calls of 64 by the training
        # loop: an eval-mode eager model scores each image alone, bit-identical at 32 and 64
        # for the three architectures here)
        batch_size = scoring_batch(self.catalog.recipe(case.variant))
        logits = np.concatenate(
            [predictor.predict_logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )
        self._check_finite_logits(case, logits)
        probs = defect_probability(logits)
        # getattr: a wrapper (a conftest's, or another library's predictor) need not carry it
        return probs, predictor.runtime, getattr(predictor, "differs_from_build", None)

    def _check_finite_logits(self, case: Case, logits: np.ndarray) -> None:
        """ArtifactError naming the case and the val images whose logits are not finite. The
        probabilities cannot show it: one logit overflowed to +inf (an FP16 activation beyond
        65504) gives a probability of exactly 0 or 1, a confident prediction, not a NaN."""
        broken = np.flatnonzero(~np.isfinite(logits).all(axis=1))
        if broken.size == 0:
            return
        ids = ", ".join(self.val.ids[i] for i in broken[:3])
        fp16 = (" at fp16 an activation beyond 65504 overflows to inf: judge it at bf16 or "
                "fp32;" if case.precision == "fp16" else "")
        raise ArtifactError(
            f"{case.variant} {case.precision} on {case.device} gave logits that are not finite "
            f"for {broken.size} of {len(logits)} val images ({ids}"
            f"{', ...' if broken.size > 3 else ''}); they must not be scored as predictions:"
            f"{fp16} else the artifact is broken; delete its folder and rebuild it"
        )

    # -- quality --------------------------------------------------------------------------
    def reference(self) -> dict[str, Any]:
        """The FP32 teacher on CPU at its own operating point: what every drop is against."""
        if self._reference is None:
            teacher = self.catalog.profile.teacher
            case = Case(teacher, "fp32", "cpu")
            probs, _, _ = self.predict_val(case)
            point = self.operating_point(teacher)
            self._reference = {"case": case, "pred": point.predict(probs)}
        return self._reference

    def evaluate(self, case: Case) -> dict[str, Any]:
        """Score the artifact that is timed (the same file, on an instance loaded for the
        pass: see `predict_val`) on `val`; judge every applicable budget."""
        key = Case(case.variant, case.precision, case.device)
        if key in self.quality:
            return self.quality[key]
        probs, runtime, differs_from_build = self.predict_val(key)
        point = self.operating_point(case.variant)
        pred = point.predict(probs)
        labels = self.val.labels
        groups = {g: self.val.metadata[g] for g in GROUPS}
        confidence = self.interval_confidence
        report = binary_report(labels, probs, point.threshold, groups=groups,
                               confidence=confidence)
        reference = self.reference()["pred"]
        comparison = compare_recall(self.val.ids, labels, reference, pred, confidence)
        by_group = compare_recall_by_group(self.val.ids, labels, reference, pred, groups,
                                           confidence)
        verdicts = judge_all(
            self.budgets,
            case.variant,
            Evidence.from_report(report, comparison, by_group),
            point.name,
        )
        manifest = self.catalog.manifest(case.variant)
        plain = binary_report(labels, probs, 0.5)  # reported, not gated
        # the build scored dev with the artifact as built, on CPU at its first CPU precision;
        # other precisions and CUDA apply that same threshold, as a deployment using the zoo's
        # threshold would, so their recall drop includes the threshold's shift
        chosen_with = {"precision": self.catalog.precisions(case.variant, "cpu")[0],
                       "device": "cpu"}
        result = {
            "variant": case.variant,
            "precision": case.precision,
            "device": case.device,
            "runtime": runtime,
            "operating_point": point.to_dict(),
            "threshold_chosen_with": chosen_with,
            "threshold_from_this_case": chosen_with == {"precision": case.precision,
                                                        "device": case.device},
            # a PT2E graph recalibrated at load into other parameters than its build's is
            # judged at the build's threshold: said here, not only in a warning
            "differs_from_build": differs_from_build,
            "recall": report["recall"],
            "recall_interval": [
                report["recall_interval"]["lower"],
                report["recall_interval"]["upper"],
            ],
            "fnr": report["fnr"],
            "fnr_upper": report["fnr_upper_bound"]["upper"],
            # of recall_interval (two-sided), fnr_upper and recall_drop_upper (one-sided);
            # each verdict carries the bound its own budget was judged on
            "interval_confidence": confidence,
            "counts": report["counts"],
            "precision_score": report["precision"],
            "specificity": report["specificity"],
            "accuracy": report["accuracy"],
            "f1": report["f1"],
            "n": report["n"],
            "n_defective": report["n_defective"],
            "groups": report["groups"],
            "at_0.5": {
                k: plain[k] for k in ("recall", "fnr", "precision", "specificity", "accuracy", "f1")
            },
            "recall_drop": comparison.drop,
            "recall_drop_interval": list(comparison.drop_interval),
            "recall_drop_upper": comparison.drop_upper,
            "new_misses": comparison.new_misses,
            "new_catches": comparison.new_catches,
            "new_miss_ids": list(comparison.new_miss_ids),
            "mcnemar_p": comparison.mcnemar_p,
            "verdicts": [v.to_dict() for v in verdicts],
            "passed": all(v.passed for v in verdicts),
            "size_mb": self.catalog.size_mb(case.variant),
            "params": manifest.get("params"),
            "macs": manifest.get("macs"),
            "latency_only": False,
        }
        self.quality[key] = result
        return result

    # -- speed ----------------------------------------------------------------------------
    def perf_batch(self, case: Case) -> np.ndarray:
        x = self.val_arrays(case.variant)
        reps = -(-case.batch // len(x))
        return np.ascontiguousarray(np.concatenate([x] * reps)[: case.batch])

    def memory(self, case: Case, batch: np.ndarray) -> MemoryMeasurement:
        """Memory of the first call at this batch size. On CUDA the session keeps every
        loaded artifact, so the allocator's peak would include all of them: the figure is this
        artifact's own allocation at load plus what the call allocated above what was held."""
        predictor = self.predictor(case)
        if case.device != "cuda":
            return measure_peak(lambda: predictor.predict_logits(batch), case.device)
        if predictor.runtime not in ("torch", "torch_compile"):
            predictor.predict_logits(batch)  # still the first call: lazy init, engine build
            return MemoryMeasurement("cuda_not_measured_outside_torch", None, None)
        call = measure_peak(lambda: predictor.predict_logits(batch), "cuda")
        own = self.cuda_load_mb[(case.variant, case.precision, case.device)]
        return MemoryMeasurement("cuda_artifact_peak_allocated", own + call.delta_mb,
                                 call.delta_mb)

    def isolated_memory(self, case: Case, threads: int) -> dict[str, Any]:
        """What the artifact costs in RAM on its own (a forked child loads it and runs one
        batch; see `defectbench.measure.isolated`)."""
        from defectbench.measure.isolated import IsolatedMemoryProbe

        if self._memory_probe is None:
            self._memory_probe = IsolatedMemoryProbe(self.catalog.store.root,
                                                     self.catalog.profile.name)
        return self._memory_probe.measure(
            case.variant, case.precision, case.device, case.batch, threads).to_dict()

    def close(self) -> None:
        if self._memory_probe is not None:
            self._memory_probe.close()
            self._memory_probe = None

    def perf_extra_info(
        self, case: Case, samples: list[float], memory: MemoryMeasurement, threads: int
    ) -> dict[str, Any]:
        latency = LatencyStats.from_seconds(samples)
        quality = self.evaluate(case)
        manifest = self.catalog.manifest(case.variant)
        macs = manifest.get("macs")
        gflops = 2 * macs * case.batch / (latency.p50 / 1e3) / 1e9 if macs else None
        peak_dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(case.precision)
        peak = matmul_peak_gflops(peak_dtype, case.device) if peak_dtype and gflops else None
        # recorded for speed targets only once the case's own result is complete
        self.latency[case] = latency
        per_image_s = latency.p50 / 1e3 / case.batch  # at the median latency
        return {
            "defectbench": SCHEMA,
            "variant": case.variant,
            "precision": case.precision,
            "device": case.device,
            "batch": case.batch,
            "img_size": manifest["preprocess"]["size"],
            "runtime": self.predictor(case).runtime,
            "threads": threads,
            "latency_only": False,
            "latency_ms": latency.to_dict(),
            "throughput_ips": latency.throughput(case.batch),
            "memory": {
                **memory.to_dict(),
                "load_delta_mb": self.load_mb.get((case.variant, case.precision, case.device)),
            },
            "size_mb": self.catalog.size_mb(case.variant),
            "params": manifest.get("params"),
            "macs": macs,
            "gflops_per_s": gflops,
            "peak_gflops_measured": peak,
            "peak_fraction": gflops / peak if peak else None,
            **inference_cost(per_image_s, case.device, threads),
            "quality": {k: v for k, v in quality.items() if k != "groups"},
        }


def inference_cost(seconds_per_image: float, device: str, threads: int) -> dict[str, Any]:
    """What a million inspected images cost at this latency: core-hours on CPU (the case's
    threads busy for each call), GPU-hours on CUDA (one device busy; its host threads
    mostly wait, so counting them as cores would price a GPU like a few CPU cores)."""
    hours = seconds_per_image * 1e6 / 3600
    return {
        "cost_core_hours_per_million": hours * threads if device == "cpu" else None,
        "cost_gpu_hours_per_million": hours if device == "cuda" else None,
    }


@dataclass(frozen=True)
class SpeedTarget:
    """`slower` must take at least `min_ratio` times as long as `faster` (p50, same run)."""

    name: str
    faster: str
    faster_precision: str
    slower: str
    slower_precision: str
    device: str
    batch: int
    min_ratio: float

    def __post_init__(self) -> None:
        if (isinstance(self.min_ratio, bool) or not isinstance(self.min_ratio, (int, float))
                or not 0 < self.min_ratio < math.inf):
            raise ConfigError(
                f"speed target {self.name!r}: min_ratio must be a finite number > 0, e.g. 1.5, "
                f"got {self.min_ratio!r}"
            )
        # compared with the measured case's integer batch: "1" or 0 would never match one
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(
                f"speed target {self.name!r}: batch must be a whole number >= 1 (write "
                f"batch = 1, not \"1\"), got {self.batch!r}"
            )
        # a case id is matched exactly: 'INT8' or 'gpu' would name a case no run benchmarks,
        # and the target would be skipped as "not measured" in every run, never judged
        if self.device not in DEVICES:
            raise ConfigError(
                f"speed target {self.name!r}: device = {self.device!r} is not one the suite "
                f"runs; write one of {', '.join(map(repr, DEVICES))} (a GPU is 'cuda')"
            )
        for key in ("faster_precision", "slower_precision"):
            value = getattr(self, key)
            if value not in PRECISIONS:
                raise ConfigError(
                    f"speed target {self.name!r}: {key} = {value!r} is not one of the suite's "
                    f"precisions; write one of {', '.join(map(repr, PRECISIONS))} (lower case)"
                )

        if (self.faster, self.faster_precision) == (self.slower, self.slower_precision):
            raise ConfigError(
                f"speed target {self.name!r}: faster and slower are the same case "
                f"({self.faster} {self.faster_precision}), whose ratio is 1 by construction; "
                "name two different variants or precisions"
            )

    @property
    def cases(self) -> tuple[Case, Case]:
        return (
            Case(self.faster, self.faster_precision, self.device, self.batch),
            Case(self.slower, self.slower_precision, self.device, self.batch),
        )


def load_speed_targets(path: Path, teacher: str = TEACHER) -> list[SpeedTarget]:
    """The [[target]] entries of a TOML file; ``{teacher}`` in a variant name stands for the
    profile's teacher (`Profile.teacher`), so one file serves any teacher."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        # utf-8-sig: an editor's byte-order mark is not content (tomllib refuses it)
        data = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(
            f"speed targets file {str(path)!r} not found{relative_to_cwd(Path(path))}; pass "
            "the reviewed targets, e.g. fixtures/speed_targets.toml of the checkout"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"speed targets file {str(path)!r} is a folder, not a file"
            f"{relative_to_cwd(Path(path))}; pass the speed targets TOML file, e.g. "
            "fixtures/speed_targets.toml"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"speed targets file {path} is unreadable or malformed: {exc}") from exc
    unknown = sorted(set(data) - {"target"})
    if unknown:
        raise ConfigError(
            f"speed targets file {path}: unknown top-level key {unknown[0]!r}; the file holds "
            "[[target]] entries only"
        )
    entries = data.get("target", [])
    # an empty file (or /dev/null) would gate nothing and pass every run without a word
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"speed targets file {path}: no [[target]] entries; a speed gate without targets "
            "passes every run. Add at least one [[target]] table (note the double brackets)"
        )
    targets = []
    keys = tuple(f.name for f in dataclasses.fields(SpeedTarget))
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ConfigError(f"speed targets file {path}: [[target]] #{index} is not a table "
                              "of keys; write [[target]] with double brackets")
        check_table_keys(entry, keys, (), f"speed targets file {path}: [[target]] #{index}")
        entry = {k: v.replace("{teacher}", teacher) if k in ("faster", "slower")
                 and isinstance(v, str) else v for k, v in entry.items()}
        try:
            targets.append(SpeedTarget(**entry))
        except ConfigError as exc:
            raise ConfigError(f"speed targets file {path}: [[target]] #{index}: {exc}") from None
        except TypeError as exc:  # a missing or unknown key, or a value of the wrong type
            raise ConfigError(
                f"speed targets file {path} is unreadable or malformed: [[target]] #{index}: "
                f"{exc}"
            ) from exc
    names = [t.name for t in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # pytest would give the cases the same id and the JSON two results of one name
        raise ConfigError(
            f"speed targets file {path}: name {repeated[0]!r} is used by more than one "
            "[[target]]; give each its own name"
        )
    return targets


def check_speed_targets_apply(targets: list[SpeedTarget], catalog: Catalog, where: str,
                              batches: tuple[int, ...] = ()) -> None:
    """ConfigError for a target whose variant is not in this zoo, or has no build at its
    precision on its device, or whose batch neither a default run nor this one (`batches`)
    measures: its case is never benchmarked, so a misspelt name (`...int8_ortt`) or batch
    would skip the target as "not measured" in every run. Whether this host has the device
    is not checked: a CUDA target on a CPU host is skipped, not refused."""
    names = catalog.names
    for target in targets:
        if target.batch not in DEFAULT_BATCHES and target.batch not in batches:
            raise ConfigError(
                f"{where}: speed target {target.name!r} has batch = {target.batch}, which a "
                f"default run never measures (batch sizes "
                f"{', '.join(map(str, DEFAULT_BATCHES))}), nor this one; it would be skipped "
                f"as not measured: use one of those, or run with --batch-sizes including "
                f"{target.batch}"
            )
        for key in ("faster", "slower"):
            variant, precision = getattr(target, key), getattr(target, f"{key}_precision")
            if variant not in names:
                close = difflib.get_close_matches(variant, names, n=3)
                raise ConfigError(
                    f"{where}: speed target {target.name!r} has {key} = {variant!r}, which is "
                    "not a variant of this zoo"
                    + (f"; close matches: {', '.join(map(repr, close))}" if close else "")
                    + f"; variants are {', '.join(map(repr, names))}"
                )
            offered = catalog.precisions(variant, target.device)
            if precision not in offered:
                raise ConfigError(
                    f"{where}: speed target {target.name!r}: {key} = {variant!r} has no "
                    f"{precision} build for {target.device} (it offers "
                    f"{', '.join(offered) or 'nothing'} there); fix {key}_precision or device"
                )


SPEED_TARGET_BLOCKS = 6  # alternating timing blocks per case when a target is re-timed


def judge_speed_target(
    suite: Suite, target: SpeedTarget, seconds: float = 3.0, timer=time.perf_counter
) -> dict[str, Any]:
    """Judge `target` on its two cases timed again in alternating blocks for about `seconds`.

    Both cases must have been benchmarked earlier in this run (that selects them). Those
    benchmarks ran minutes apart, and a burst of foreign load during one of them can flip the
    ratio (the second full run measured 1.41x where the first had 2.33x for the same two
    files); alternating blocks give both the same conditions. The ratio of the separate
    benchmarks is reported beside the judged one.
    """
    # a caller that did not check the file against the zoo (the plugin does, at collection)
    # must not get a misspelt variant skipped as "not measured"; the batch was checked
    # against the run's selection there, and an unmeasured one skips below
    check_speed_targets_apply([target], suite.catalog, "the speed targets file",
                              batches=(target.batch,))
    faster, slower = (suite.latency.get(c) for c in target.cases)
    if faster is None or slower is None:
        missing = [c.id for c, m in zip(target.cases, (faster, slower), strict=True) if m is None]
        return {"name": target.name, "measured": False, "missing": missing}
    calls = []
    for case in target.cases:
        predictor, batch = suite.predictor(case), suite.perf_batch(case)
        calls.append(lambda p=predictor, x=batch: p.predict_logits(x))
    block_seconds = seconds / (2 * SPEED_TARGET_BLOCKS)
    fast, slow = alternating_blocks(
        calls[0], calls[1], SPEED_TARGET_BLOCKS, block_seconds, timer=timer
    )
    ratio, separate = slow.p50 / fast.p50, slower.p50 / faster.p50
    return {
        "name": target.name,
        "measured": True,
        "timing": "alternating_blocks",
        "ratio": ratio,
        "ratio_separately_timed": separate,
        "faster_p50_ms": fast.p50,
        "slower_p50_ms": slow.p50,
        "blocks": SPEED_TARGET_BLOCKS,
        "min_ratio": target.min_ratio,
        "passed": ratio >= target.min_ratio,
        "message": (
            f"{target.faster} ({target.faster_precision}) p50 {fast.p50:.2f} ms vs "
            f"{target.slower} ({target.slower_precision}) p50 {slow.p50:.2f} ms at "
            f"{target.device} b{target.batch}, timed in {SPEED_TARGET_BLOCKS} alternating "
            f"blocks each: {ratio:.2f}x, target >= {target.min_ratio:.2f}x (their separate "
            f"benchmarks: {separate:.2f}x) [target {target.name!r}]"
        ),
    }


def json_section(suite: Suite) -> dict[str, Any]:
    """The `defectbench` key of the results JSON: fixture, budgets, every quality result."""
    fixture = suite.catalog.fixture
    return {
        "schema": SCHEMA,
        "profile": suite.catalog.profile.name,
        "profile_settings": suite.catalog.profile.to_dict(),
        "fixture": {
            "dataset": "elpv",
            "content_sha256": fixture.content_sha256,
            "split_sha256": fixture.split_sha256,
            "val_images": len(suite.val),
            "val_defective": int(suite.val.labels.sum()),
            "defect_threshold": fixture.defect_threshold,
        },
        "reference": suite.catalog.profile.teacher,
        "gated_operating_point": suite.gated_point,
        "budgets_file": str(suite.budgets_path),
        "budgets": [b.to_dict() for b in suite.budgets],
        "quality": [suite.quality[c] for c in sorted(suite.quality)],
        "speed_targets": suite.speed_results,
        "recipes": {
            n: suite.catalog.recipe(n).to_dict() for n in sorted({c.variant for c in suite.quality})
        },
    }


def survey_section() -> dict[str, Any]:
    """The `defectbench` key of a run with only latency-survey benchmarks (no fixture used)."""
    return {
        "schema": SCHEMA,
        "profile": None,
        "fixture": None,
        "reference": None,  # untrained models, no zoo: nothing is measured against a teacher
        "gated_operating_point": None,
        "budgets": [],
        "quality": [],
        "latency_only": True,
    }


def add_speedups(benchmarks: list[dict[str, Any]], teacher: str = TEACHER) -> None:
    """Speedup of each case over the FP32 teacher at the same device and batch, same run."""
    reference = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if info.get("variant") == teacher and info.get("precision") == "fp32":
            reference[(info["device"], info["batch"])] = info["latency_ms"]["p50"]
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "latency_ms" not in info:
            continue
        if info.get("latency_only"):
            # an untrained survey model at its own input size: a ratio to the trained teacher
            # would read as a trade-off it is not
            info["speedup_vs_reference"] = None
            continue
        ref = reference.get((info["device"], info["batch"]))
        info["speedup_vs_reference"] = ref / info["latency_ms"]["p50"] if ref else None
