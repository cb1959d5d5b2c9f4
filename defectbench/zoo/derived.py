"""Variants made from another variant: ONNX export, INT8 (ONNX Runtime, torchao PT2E), pruning.

Each recipe names its parent and holds the frozen config of one transform from
`defectbench.compress`; its builder applies that transform to the parent's artifact, picks
the variant's own operating point on `dev` from the artifact's own predictions, and records
the transform's report in the manifest.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectbench.compress.onnx_export import OnnxExportConfig, export_onnx
from defectbench.compress.ort_quant import (
    OrtDynamicInt8Config,
    OrtStaticInt8Config,
    quantize_onnx_dynamic,
    quantize_onnx_static,
    tensorrt_compatible,
)
from defectbench.compress.prune import PruneConfig, load_pruned, prune_model, save_pruned
from defectbench.compress.pt2e import Pt2eInt8Config
from defectbench.data.preprocess import Preprocess, PreprocessedRows
from defectbench.errors import ArtifactError, ConfigError, DataError
from defectbench.train.config import DistillConfig, TrainConfig, check_distillable
from defectbench.zoo.recipes import TrainedRecipe, recipe_asdict

# The preprocessed `dev` set, or rows of it decoded on demand (`PreprocessedRows`): what
# PT2E and QAT variants rebuild from, indexed by a slice or an index array.
DevRows = np.ndarray | PreprocessedRows

ONNX_FILE = "model.onnx"
PRUNED_FILE = "pruned.pt"
CPU_ONLY_INT8 = {"cpu": ("int8",)}
SCORING_BATCH = 32  # images per call when dev (build) and val (suite) are scored


def scoring_batch(recipe) -> int:
    """Images per call when a variant's dev and val scores are computed.

    One for artifacts whose score for an image depends on the other images of its call
    (dynamic INT8 takes one activation scale per call), so that each image's score, and the
    gate's decision on it, is what a batch-1 deployment sees."""
    return getattr(recipe, "scoring_batch", SCORING_BATCH)


@dataclass(frozen=True)
class OnnxRecipe:
    """The parent exported to one self-contained ONNX file, run by ONNX Runtime in FP32 (and,
    on CUDA hosts, as a TensorRT FP16 engine built from it)."""

    parent: str
    export: OnnxExportConfig = OnnxExportConfig()
    runtime = "onnxruntime"
    precisions = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.parent,)

    def to_dict(self) -> dict:
        return {"kind": "onnx", "parent": self.parent, "export": self.export.to_dict()}


@dataclass(frozen=True)
class OrtInt8Recipe:
    """ONNX Runtime INT8 of an `OnnxRecipe` variant; static QDQ calibrated on a `dev` subset
    drawn with `calibration_seed`, or dynamic (no calibration)."""

    parent: str
    quant: OrtStaticInt8Config | OrtDynamicInt8Config
    calibration_seed: int = 0
    # dynamic INT8 scored one image per call (`scoring_batch`); False: in calls of 32, as zoos
    # built before 2026-11-30 did (their keys)
    score_dynamic_per_image: bool = True
    runtime = "onnxruntime"

    def __post_init__(self) -> None:
        _check_calibration(self.parent, None, self.calibration_seed)

    @property
    def precisions(self) -> dict[str, tuple[str, ...]]:
        # a symmetric int8 QDQ graph also becomes a TensorRT INT8 engine on CUDA hosts
        if tensorrt_compatible(self.quant):
            return {"cpu": ("int8",), "cuda": ("int8",)}
        return CPU_ONLY_INT8

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.parent,)

    @property
    def scoring_batch(self) -> int:
        # dynamic INT8 quantizes activations with one scale per call: in calls of 32 an image's
        # score moved with its neighbours (up to 0.016 on val), and one image per call flipped
        # the threshold's own dev cell (docs/results/dynamic-int8-batch.txt), so it is scored
        # one image at a time
        static = isinstance(self.quant, OrtStaticInt8Config)
        return SCORING_BATCH if static or not self.score_dynamic_per_image else 1

    def to_dict(self) -> dict:
        static = isinstance(self.quant, OrtStaticInt8Config)
        return {
            "kind": "ort_int8",
            "parent": self.parent,
            "mode": "static" if static else "dynamic",
            "quant": self.quant.to_dict(),
            "calibration_seed": self.calibration_seed,
            # only where it is not the default, so other variants keep their keys
            **({} if self.scoring_batch == SCORING_BATCH else {"scoring_batch": 1}),
        }


@dataclass(frozen=True)
class Pt2eRecipe:
    """torchao PT2E static INT8 (X86InductorQuantizer), calibrated on a `dev` subset and run
    through torch.compile with inductor freezing so the INT8 kernels really run."""

    parent: str
    quant: Pt2eInt8Config = Pt2eInt8Config()
    num_calibration: int = 128
    calibration_seed: int = 0
    runtime = "torch_compile"
    precisions = CPU_ONLY_INT8

    def __post_init__(self) -> None:
        _check_calibration(self.parent, self.num_calibration, self.calibration_seed)

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.parent,)

    def to_dict(self) -> dict:
        return {
            "kind": "pt2e_int8",
            "parent": self.parent,
            "quant": self.quant.to_dict(),
            "num_calibration": self.num_calibration,
            "calibration_seed": self.calibration_seed,
        }


@dataclass(frozen=True)
class PruneRecipe:
    """Structured pruning (Torch-Pruning) of the parent, then fine-tuning with KD."""

    parent: str
    prune: PruneConfig
    finetune: TrainConfig
    distill: DistillConfig | None = None
    runtime = "torch"
    precisions = TrainedRecipe.precisions

    def __post_init__(self) -> None:
        check_distillable(self.finetune, self.distill)

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.parent,) + ((self.distill.teacher,) if self.distill else ())

    def to_dict(self) -> dict:
        return {
            "kind": "pruned",
            "parent": self.parent,
            "prune": self.prune.to_dict(),
            "finetune": self.finetune.to_dict(),
            "distill": recipe_asdict(self.distill) if self.distill else None,
        }


@dataclass(frozen=True)
class QatRecipe:
    """torchao PT2E quantization-aware training: fake-quantize the parent, fine-tune it (with KD
    from the teacher), convert to INT8 and compile like `Pt2eRecipe`."""

    parent: str
    finetune: TrainConfig
    distill: DistillConfig | None = None
    quant: Pt2eInt8Config = Pt2eInt8Config()
    # observers frozen while dev is scored between epochs (set_qat_mode); False is the form
    # built before 2026-11-30, whose ranges also saw dev
    freeze_observers_in_eval: bool = True
    runtime = "torch_compile"
    precisions = CPU_ONLY_INT8

    def __post_init__(self) -> None:
        check_distillable(self.finetune, self.distill)
        if self.finetune.ema_decay is not None:
            # the average would also blend the observers' quantization scales and zero points,
            # which convert_pt2e then bakes into the INT8 model as if one observer had seen them
            raise ConfigError(
                f"QAT of {self.parent!r}: finetune.ema_decay={self.finetune.ema_decay} is not "
                "supported for quantization-aware training; set it to None"
            )

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.parent,) + ((self.distill.teacher,) if self.distill else ())

    def to_dict(self) -> dict:
        return {
            "kind": "qat_pt2e",
            "parent": self.parent,
            "finetune": self.finetune.to_dict(),
            "distill": recipe_asdict(self.distill) if self.distill else None,
            "quant": self.quant.to_dict(),
            # only when set, so the variants built before the option keep their keys
            **({"freeze_observers_in_eval": True} if self.freeze_observers_in_eval else {}),
        }


def _check_calibration(parent: str, count: int | None, seed: int) -> None:
    # checked when the recipe is made: otherwise 0 calibrated on nothing and failed at the
    # build as an empty "export example", and a negative seed failed inside numpy
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ConfigError(
            f"INT8 recipe of {parent!r}: num_calibration must be a positive int, got {count!r}"
        )
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(
            f"INT8 recipe of {parent!r}: calibration_seed must be an int >= 0, got {seed!r}"
        )


# ----------------------------------------------------------------------------- helpers


def torch_root(recipes: dict[str, Any], name: str) -> str:
    """The trained variant a chain of derived variants starts from."""
    while not isinstance(recipes[name], TrainedRecipe):
        name = recipes[name].parent
    return name


def img_size(recipes: dict[str, Any], name: str) -> int:
    return recipes[torch_root(recipes, name)].model.img_size


def load_requirements(recipe: Any) -> tuple[tuple[str, ...], str | None]:
    """The files a variant's loader opens in its own folder, and the parent whose weights it is
    rebuilt from at every load (PT2E and QAT graphs cannot be saved without pickling), or
    None: what a variant needs intact besides its manifest's key."""
    from defectbench.zoo.build import MODEL_FILE

    if isinstance(recipe, TrainedRecipe):
        return (MODEL_FILE,), None
    if isinstance(recipe, PruneRecipe):
        return (PRUNED_FILE,), None
    if isinstance(recipe, (OnnxRecipe, OrtInt8Recipe)):
        return (ONNX_FILE,), None
    if isinstance(recipe, QatRecipe):
        return (QAT_FILE,), recipe.parent
    if isinstance(recipe, Pt2eRecipe):
        return (), recipe.parent
    raise ArtifactError(f"unknown recipe type {type(recipe).__name__}")


def load_torch_model(store, recipes: dict[str, Any], keys: dict[str, str], name: str):
    """The torch module of a trained or pruned variant (artifacts hash-checked first)."""
    from defectbench.zoo.build import _build_model, load_trained_model

    recipe = recipes[name]
    if isinstance(recipe, TrainedRecipe):
        return load_trained_model(store, name, recipe, keys[name])
    if isinstance(recipe, PruneRecipe):
        path = store.artifact_path(name, store.verify(name, keys[name]), PRUNED_FILE)
        base, _ = _build_model(recipes[torch_root(recipes, name)], pretrained=False)
        return load_pruned(path, base).eval()
    raise ArtifactError(f"variant {name!r} is not a torch model (it is {type(recipe).__name__})")


def calibration_rows(dev_count: int, count: int, seed: int) -> np.ndarray:
    """Which `dev` rows calibrate (sorted): the same rows at build and at every load.

    A `dev` smaller than `count` (the smoke profile's subset) calibrates on all of it, so
    calibration seeds then give one and the same subset."""
    if dev_count == 0:
        raise DataError(
            "the dev split is empty, so there is nothing to calibrate INT8 ranges on; check "
            "the fixture's split and the profile's max_dev_images"
        )
    count = min(count, dev_count)
    return np.sort(np.random.default_rng(seed).choice(dev_count, size=count, replace=False))


def calibration_subset(dev_x: DevRows, count: int, seed: int) -> np.ndarray:
    return dev_x[calibration_rows(len(dev_x), count, seed)]


def tensorrt_engine_dir(store, name: str, manifest: dict[str, Any]) -> Path:
    """Where TensorRT engines of this artifact are cached: named by the ONNX file's bytes.

    ONNX Runtime names cached engines by graph topology, not weights, and a variant rebuilt
    under the same key can come out with other bytes (another CPU model or thread count), so
    a folder per key would hand the rebuilt artifact the old weights' engine.
    """
    onnx_sha256 = manifest["artifacts"][ONNX_FILE]["sha256"]
    return store.cache_dir() / "tensorrt" / f"{name}-{onnx_sha256[:16]}"


def _check_float_output(store, name: str, recipe, path: Path) -> None:
    """A static INT8 graph whose recipe keeps the output float but whose scores still leave
    through a DequantizeLinear (a convolution classifier behind a flatten, built before such
    classifiers were kept float, under the same key) is refused, not scored on 8 bits."""
    from defectbench.compress.ort_quant import output_op_types

    quant = getattr(recipe, "quant", None)
    if not (isinstance(quant, OrtStaticInt8Config) and quant.float_model_output):
        return
    if "DequantizeLinear" in output_op_types(path, through_shape_ops=True):
        raise ArtifactError(
            f"variant {name!r}: its ONNX graph {path} rounds its scores to 8 bits although its "
            "recipe keeps them float (built by an earlier defectbench); delete "
            f"{store.variant_dir(name)} and run {store.rebuild_command(name)}"
        )


def open_derived_predictor(catalog, name: str, precision: str, device: str):
    from defectbench.runtime.predictor import (
        TENSORRT_MAX_BATCH,
        OrtPredictor,
        TorchPredictor,
        ort_execution,
        tensorrt_environment,
        tensorrt_profile_shapes,
    )

    recipe = catalog.recipe(name)
    store, recipes, keys = catalog.store, catalog.recipes, catalog.keys
    if isinstance(recipe, (OnnxRecipe, OrtInt8Recipe)):
        manifest = store.verify(name, keys[name])
        path = store.artifact_path(name, manifest, ONNX_FILE)
        engines, shapes, max_batch = None, None, None
        if device == "cuda" and precision in ("fp16", "int8"):  # TensorRT
            engines = tensorrt_engine_dir(store, name, manifest) / tensorrt_environment()
            try:
                engines.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ArtifactError(
                    f"TensorRT engines of {name!r} are cached in {engines}, which cannot be "
                    f"made ({exc.strerror or exc}); run from a writable copy of the zoo"
                ) from exc
            shapes, max_batch = tensorrt_profile_shapes(path), TENSORRT_MAX_BATCH
        execution = ort_execution(precision, device, engines, shapes)
        predictor = OrtPredictor(
            path,
            providers=execution.providers,
            provider_options=execution.provider_options,
            intra_op_threads=_threads(),
            max_batch=max_batch,
            name=name,
        )
        if predictor.precision != precision:  # e.g. an "int8" graph without quantize ops
            raise ArtifactError(
                f"variant {name!r} was asked for at {precision} but its ONNX graph "
                f"{store.variant_dir(name) / ONNX_FILE} computes in {predictor.precision}; "
                f"delete {store.variant_dir(name)} and run {store.rebuild_command(name)}"
            )
        _check_float_output(store, name, recipe, path)
        return predictor
    if isinstance(recipe, PruneRecipe):
        input_shape = catalog.input_shape(name)  # an eager CNN: it would take any size
        model = load_torch_model(store, recipes, keys, name)
        return TorchPredictor(
            model, device=device, precision=precision, input_shape=input_shape, name=name
        )
    if isinstance(recipe, Pt2eRecipe):
        manifest = store.verify(name, keys[name])
        threads = (manifest.get("built_on") or {}).get("torch_threads")
        predictor = _pt2e_predictor(
            catalog.dev_rows(name), store, recipes, keys, name, calibration_threads=threads
        )
        _check_same_calibration(store, name, manifest, predictor)
        return predictor
    if isinstance(recipe, QatRecipe):
        store.artifact_path(name, store.verify(name, keys[name]), QAT_FILE)  # checked, then read
        return _qat_predictor(catalog.dev_rows(name), store, recipes, keys, name)
    raise ArtifactError(f"no predictor for variant {name!r} ({type(recipe).__name__})")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _pt2e_predictor(
    dev_x: DevRows, store, recipes, keys, name: str, calibration_threads: int | None = None
):
    """Re-create the converted PT2E graph from the parent and the recorded calibration subset.

    A converted PT2E graph cannot be saved without pickling arbitrary objects, so the
    artifact is the recipe: parent weights (hash-checked) + the seeded calibration subset of
    `dev`. Calibration is deterministic for one CPU model and thread count, but the float
    activations it observes can round differently at another thread count, so at load it runs at
    the build's (`calibration_threads`); the build records the result's fingerprint
    (`qparams_sha256`) and a load that arrives elsewhere says so.
    """
    from defectbench.compress.pt2e import (
        calibrate_pt2e,
        convert_pt2e_int8,
        int8_predictor,
        prepare_pt2e_int8,
    )

    recipe = recipes[name]
    model = load_torch_model(store, recipes, keys, recipe.parent)
    calib = calibration_subset(dev_x, recipe.num_calibration, recipe.calibration_seed)
    prepared = prepare_pt2e_int8(model, calib[:2], recipe.quant)
    with _torch_threads(calibration_threads):
        calibrate_pt2e(prepared, [calib[i : i + 16] for i in range(0, len(calib), 16)])
    quantized = convert_pt2e_int8(
        prepared, drop_unused_float_weights=recipe.quant.drop_unused_float_weights
    )
    return int8_predictor(quantized, name=name)


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block (None: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_same_calibration(store, name: str, manifest: dict[str, Any], predictor) -> None:
    from defectbench.compress.pt2e import qparams_fingerprint

    recorded = manifest.get("qparams_sha256")  # absent in manifests built before it existed
    if recorded is None:
        return
    here = qparams_fingerprint(predictor.model)
    if here != recorded:
        from defectbench.measure.machine import cpu_identity

        # said in each result that uses it (`differs_from_build`), not only in a warning
        predictor.differs_from_build = (
            f"calibrating again at load gave other quantization parameters than the build "
            f"(fingerprint {here[:12]} vs {recorded[:12]}; built on {manifest.get('built_on')}, "
            f"loaded on {cpu_identity()})"
        )
        warnings.warn(
            f"{name}: {predictor.differs_from_build}: the gates judge the graph "
            "made here, while its dev operating point was chosen on the build's; to make them "
            f"one, delete {store.variant_dir(name)} and run {store.rebuild_command(name)} on "
            "this machine",
            stacklevel=2,
        )


QAT_FILE = "qat_state.pt"


def _qat_prepared(dev_x: DevRows, store, recipes, keys, name: str):
    """The parent exported and fake-quantized for QAT (same graph every time: deterministic)."""
    from defectbench.compress.pt2e import prepare_qat_pt2e_int8

    recipe = recipes[name]
    model = load_torch_model(store, recipes, keys, recipe.parent)
    return prepare_qat_pt2e_int8(model, dev_x[:2], recipe.quant)


def _qat_predictor(dev_x: DevRows, store, recipes, keys, name: str):
    """Rebuild the QAT graph, load its trained weights and observer state, convert, compile."""
    import torch

    from defectbench.compress.pt2e import convert_pt2e_int8, int8_predictor, set_qat_mode

    prepared = _qat_prepared(dev_x, store, recipes, keys, name)
    state = torch.load(store.variant_dir(name) / QAT_FILE, weights_only=True)
    prepared.load_state_dict(state, strict=True)
    set_qat_mode(prepared, train=False)
    quantized = convert_pt2e_int8(
        prepared, drop_unused_float_weights=recipes[name].quant.drop_unused_float_weights
    )
    return int8_predictor(quantized, name=name)


# ----------------------------------------------------------------------------- builders


def _dev_inputs(ctx, recipes, name) -> tuple[np.ndarray, Preprocess]:
    root = torch_root(recipes, name)
    manifest = ctx.store.verify(root, ctx.keys[root])
    pre = Preprocess(**manifest["preprocess"])
    return ctx.arrays("dev", pre), pre


def _finish(
    ctx, name, predictor, pre: Preprocess, extra: dict[str, Any], batch: int = SCORING_BATCH
) -> dict[str, Any]:
    from defectbench.zoo.build import evaluate_on_dev

    dev_x = ctx.arrays("dev", pre)
    probs = np.concatenate(
        [predictor.predict_proba(dev_x[i : i + batch]) for i in range(0, len(dev_x), batch)]
    )
    return {
        "preprocess": pre.to_dict(),
        "dev": evaluate_on_dev(ctx, probs),
        "dev_images": len(dev_x),
        "dev_scoring_batch": batch,
        **extra,
    }


def _finish_onnx(
    ctx, name: str, parent_name: str, pre: Preprocess, report: dict[str, Any],
    batch: int = SCORING_BATCH,
) -> dict[str, Any]:
    """Score the written ONNX file on dev through ONNX Runtime and record it."""
    from defectbench.runtime.predictor import OrtPredictor

    parent = ctx.store.verify(parent_name, ctx.keys[parent_name])
    path = ctx.store.variant_dir(name) / ONNX_FILE
    predictor = OrtPredictor(path, providers=("cpu",), intra_op_threads=_threads(), name=name)
    return _finish(
        ctx,
        name,
        predictor,
        pre,
        {
            **report,
            "artifacts": {ONNX_FILE: ctx.store.record_file(name, ONNX_FILE)},
            "params": parent.get("params"),
            "macs": parent.get("macs"),
        },
        batch,
    )


def build_onnx(ctx, name: str, recipe: OnnxRecipe, recipes) -> dict[str, Any]:
    model = load_torch_model(ctx.store, recipes, ctx.keys, recipe.parent)
    dev_x, pre = _dev_inputs(ctx, recipes, name)
    path = ctx.store.variant_dir(name) / ONNX_FILE
    report = export_onnx(
        model,
        dev_x[:2],
        path,
        recipe.export,
        check_batches=[dev_x[i : i + 32] for i in range(0, len(dev_x), 32)],
    )
    return _finish_onnx(ctx, name, recipe.parent, pre, {"export": report.to_dict()})


def build_ort_int8(ctx, name: str, recipe: OrtInt8Recipe, recipes) -> dict[str, Any]:
    ctx.store.verify(recipe.parent, ctx.keys[recipe.parent])
    source = ctx.store.variant_dir(recipe.parent) / ONNX_FILE
    path = ctx.store.variant_dir(name) / ONNX_FILE
    dev_x, pre = _dev_inputs(ctx, recipes, name)
    if isinstance(recipe.quant, OrtStaticInt8Config):
        calib = calibration_subset(dev_x, recipe.quant.num_calibration, recipe.calibration_seed)
        recipe_quant = recipe.quant
        if len(calib) < recipe_quant.num_calibration:  # smoke profile: a small dev subset
            import dataclasses

            recipe_quant = dataclasses.replace(recipe_quant, num_calibration=len(calib))
        report = quantize_onnx_static(source, path, [calib], recipe_quant)
    else:
        report = quantize_onnx_dynamic(source, path, recipe.quant)
    return _finish_onnx(ctx, name, recipe.parent, pre, {"quantization": report.to_dict()},
                        scoring_batch(recipe))


def build_pt2e(ctx, name: str, recipe: Pt2eRecipe, recipes) -> dict[str, Any]:
    from defectbench.compress.pt2e import (
        graph_state_bytes,
        qparams_fingerprint,
        quantized_op_counts,
    )

    dev_x, pre = _dev_inputs(ctx, recipes, name)
    predictor = _pt2e_predictor(dev_x, ctx.store, recipes, ctx.keys, name)
    parent = ctx.store.verify(recipe.parent, ctx.keys[recipe.parent])
    return _finish(
        ctx,
        name,
        predictor,
        pre,
        {
            "quantized_ops": quantized_op_counts(predictor.model),
            # fewer than the recipe's num_calibration when `dev` is smaller (smoke's subset)
            "calibration_images": len(
                calibration_subset(dev_x, recipe.num_calibration, recipe.calibration_seed)
            ),
            "size_bytes": graph_state_bytes(predictor.model),  # what the graph holds
            "qparams_sha256": qparams_fingerprint(predictor.model),  # checked at every load
            # the artifact is the recipe + the parent's weights: see _pt2e_predictor
            "artifacts": {},
            "artifact_from": recipe.parent,
            "params": parent.get("params"),
            "macs": parent.get("macs"),
        },
    )


def build_pruned(ctx, name: str, recipe: PruneRecipe, recipes) -> dict[str, Any]:
    from defectbench.measure.compute import count_macs
    from defectbench.runtime.predictor import TorchPredictor
    from defectbench.train.fit import fit
    from defectbench.zoo.build import (
        TRAIN_STATE,
        annotated_probability,
        lineage_key,
        teacher_logits,
    )

    model = copy.deepcopy(load_torch_model(ctx.store, recipes, ctx.keys, recipe.parent))
    dev_x, pre = _dev_inputs(ctx, recipes, name)
    train_x = ctx.arrays("train", pre)
    report = prune_model(model, dev_x[:2], recipe.prune)
    soft = teacher_logits(ctx, recipe.distill.teacher, recipes) if recipe.distill else None
    result = fit(
        model,
        train_x,
        ctx.subset("train").labels,
        dev_x,
        ctx.subset("dev").labels,
        recipe.finetune,
        distill=recipe.distill,
        teacher_logits=soft,
        train_probability=annotated_probability(ctx.subset("train"), recipe.finetune, name),
        # pruning is deterministic, so a resumed run re-prunes to the same shapes
        checkpoint_path=ctx.store.variant_dir(name) / TRAIN_STATE,
        checkpoint_key=lineage_key(ctx, name, recipe),
        description=name,
    )
    save_pruned(model, ctx.store.variant_dir(name) / PRUNED_FILE, {"parent": recipe.parent})
    predictor = TorchPredictor(model, name=name)
    return _finish(
        ctx,
        name,
        predictor,
        pre,
        {
            "pruning": report.to_dict(),
            "fit": result.to_dict(),
            "artifacts": {PRUNED_FILE: ctx.store.record_file(name, PRUNED_FILE)},
            "params": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model, pre.size),
        },
    )


def build_qat(ctx, name: str, recipe: QatRecipe, recipes) -> dict[str, Any]:
    import io

    import torch

    from defectbench.compress.pt2e import allow_qat_train_eval
    from defectbench.train.fit import fit
    from defectbench.zoo.build import TRAIN_STATE, lineage_key, teacher_logits

    dev_x, pre = _dev_inputs(ctx, recipes, name)
    prepared = _qat_prepared(dev_x, ctx.store, recipes, ctx.keys, name)
    # .train()/.eval() now switch batch norm, dropout and (unless the recipe predates it) the
    # observers, as fit() calls them around each epoch's dev scoring
    allow_qat_train_eval(prepared, observers_follow=recipe.freeze_observers_in_eval)
    soft = teacher_logits(ctx, recipe.distill.teacher, recipes) if recipe.distill else None
    result = fit(
        prepared,
        ctx.arrays("train", pre),
        ctx.subset("train").labels,
        dev_x,
        ctx.subset("dev").labels,
        recipe.finetune,
        distill=recipe.distill,
        teacher_logits=soft,
        checkpoint_path=ctx.store.variant_dir(name) / TRAIN_STATE,
        checkpoint_key=lineage_key(ctx, name, recipe),
        description=name,
    )
    buffer = io.BytesIO()
    torch.save(prepared.state_dict(), buffer)
    artifacts = {QAT_FILE: ctx.store.write_artifact(name, QAT_FILE, buffer.getvalue())}
    predictor = _qat_predictor(dev_x, ctx.store, recipes, ctx.keys, name)
    parent = ctx.store.verify(recipe.parent, ctx.keys[recipe.parent])
    from defectbench.compress.pt2e import graph_state_bytes

    return _finish(
        ctx,
        name,
        predictor,
        pre,
        {
            "fit": result.to_dict(),
            "artifacts": artifacts,
            # the converted INT8 graph's tensors, not the saved fake-quantized float state
            "size_bytes": graph_state_bytes(predictor.model),
            "params": parent.get("params"),
            "macs": parent.get("macs"),
        },
    )


BUILDERS = {
    QatRecipe: build_qat,
    OnnxRecipe: build_onnx,
    OrtInt8Recipe: build_ort_int8,
    Pt2eRecipe: build_pt2e,
    PruneRecipe: build_pruned,
}
