"""Structured pruning with Torch-Pruning, and a pickle-free way to save and rebuild the result.

Steps: ``prune_model`` builds the dependency graph, scores channel groups, removes the least
important ones in place and reports params / MACs before and after; fine-tuning is the
caller's. ``save_pruned`` writes the pruned layer shapes and weights as plain tensors and
numbers; ``load_pruned`` reshapes a freshly built model of the same architecture to them and
loads the weights with ``torch.load(weights_only=True)``, so no pickled code is ever loaded.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectbench.compress._io import as_tensor, check_nchw, eval_mode
from defectbench.errors import ArtifactError, ConfigError
from defectbench.io import atomic_write_bytes

IMPORTANCES: tuple[str, ...] = ("magnitude", "random", "taylor")
PRUNED_FORMAT = "defectbench.pruned/1"
_TIMM_TOKENS = ("cls_token", "dist_token", "reg_token", "pos_embed")


@dataclass(frozen=True)
class PruneConfig:
    """How much and by what criterion to prune.

    ``ratio``: fraction of channels (and ViT head dimensions) removed per layer group, or
    overall with ``global_pruning``. ``importance``: ``magnitude`` (group L-``norm_p`` norm),
    ``taylor`` (first-order loss change; needs labelled gradient batches) or ``random`` (a
    baseline). ``round_to`` keeps channel counts multiples of it (8 suits SIMD kernels).
    ``prune_num_heads`` removes whole ViT heads instead of shrinking each head; Torch-Pruning
    rounds the number of heads removed up, so ViT-Tiny's 3 heads at ``ratio=0.5`` keep 1 (the
    report's head counts say what was kept).
    """

    ratio: float
    importance: str = "magnitude"
    norm_p: int = 2
    global_pruning: bool = False
    max_layer_ratio: float = 1.0
    round_to: int | None = None
    prune_num_heads: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"pruning ratio must be in (0, 1), got {self.ratio}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(
                f"unknown importance {self.importance!r}; valid choices: {', '.join(IMPORTANCES)}"
            )
        if self.norm_p not in (1, 2):
            raise ConfigError(f"norm_p must be 1 or 2, got {self.norm_p}")
        if not self.ratio <= self.max_layer_ratio <= 1.0:
            raise ConfigError(
                f"max_layer_ratio must be in [ratio, 1] = [{self.ratio}, 1], "
                f"got {self.max_layer_ratio}"
            )
        if self.round_to is not None and (not isinstance(self.round_to, int) or self.round_to < 1):
            raise ConfigError(f"round_to must be a positive int or None, got {self.round_to!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PruneReport:
    """Cost before and after pruning, per image at the example's input size."""

    input_shape: tuple[int, int, int]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    attention_heads: tuple[tuple[str, int, int], ...]  # (module, num_heads, head_dim) after
    config: PruneConfig
    # (module, channels) of layer groups left whole because round_to could not prune them:
    # the ratio keeps fewer than round_to channels (per channel group), which rounds to none
    kept_whole: tuple[tuple[str, int], ...] = ()

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_ratio": self.params_ratio,
            "macs_ratio": self.macs_ratio,
            "attention_heads": [list(h) for h in self.attention_heads],
            "config": self.config.to_dict(),
            "kept_whole": [list(k) for k in self.kept_whole],
        }


def prune_model(
    model: nn.Module,
    example: np.ndarray,
    config: PruneConfig,
    *,
    gradient_batches: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
) -> PruneReport:
    """Prune ``model`` in place (copy it first to keep the original) and report the savings.

    The classifier (``get_classifier()`` for timm models, else the last ``nn.Linear``) keeps
    its outputs. timm attention blocks are pruned per head and their ``num_heads`` /
    ``head_dim`` / ``attn_dim`` / ``scale`` updated. ``gradient_batches`` (images, labels)
    are required for ``importance='taylor'``. A ratio (with ``round_to``) that would leave a
    layer group no channels, which Torch-Pruning answers by leaving the group whole, raises
    ArtifactError (the model is then pruned in part: discard it). A group too narrow for
    ``round_to`` (the ratio keeps fewer than ``round_to`` of its channels, per channel group,
    e.g. a squeeze-excitation bottleneck at ``round_to=8``) is left whole by design: it is
    listed in the report's ``kept_whole`` and a warning names it.
    """
    import torch_pruning as tp

    example_t = as_tensor(check_nchw(example, "pruning example")[:1], model)
    if config.importance == "taylor" and gradient_batches is None:
        raise ConfigError(
            "importance='taylor' needs gradient_batches: an iterable of (images, labels) numpy "
            "batches to accumulate loss gradients on; or use importance='magnitude'"
        )
    attention = _timm_attention_modules(model)
    _check_heads_left(model, attention, config)
    # random importance draws from torch's global generator: seeded here (and the caller's
    # state restored after), so one config prunes the same channels whatever ran before it
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        macs_before, params_before = tp.utils.count_ops_and_params(model, example_t)
        pruner = tp.pruner.BasePruner(
            model,
            example_t,
            importance=_importance(config),
            global_pruning=config.global_pruning,
            pruning_ratio=config.ratio,
            max_pruning_ratio=config.max_layer_ratio,
            ignored_layers=[_classifier(model)],
            round_to=config.round_to,
            num_heads={attn.qkv: attn.num_heads for attn in attention},
            unwrapped_parameters=_timm_token_parameters(model),
            prune_num_heads=config.prune_num_heads,
            prune_head_dims=not config.prune_num_heads,
            head_pruning_ratio=config.ratio if config.prune_num_heads else 0.0,
        )
        if config.importance == "taylor":
            _accumulate_gradients(model, gradient_batches or ())
        widths = _group_widths(pruner)
        pruner.step()
        model.zero_grad(set_to_none=True)
        names = {module: name for name, module in model.named_modules()}
        for attn in attention:
            _fix_attention(attn, pruner.num_heads[attn.qkv], names[attn], config)
        kept_whole: list[tuple[str, int]] = []
        if not config.global_pruning:
            kept_whole = _check_every_group_pruned(pruner, widths, names, config)
        elif all(_channels(pruner, module, out) == width for module, out, width, _ in widths):
            # global ranking that would empty every group it reaches prunes none of them
            raise ArtifactError(
                f"global pruning at ratio {config.ratio} removed nothing: Torch-Pruning skips "
                "a layer group that the ratio would leave with no channels, and here that was "
                "every group; lower the ratio"
            )
        macs_after, params_after = tp.utils.count_ops_and_params(model, example_t)
    attention_set = set(attention)
    return PruneReport(
        input_shape=tuple(int(d) for d in example.shape[1:]),
        params_before=int(params_before),
        params_after=int(params_after),
        macs_before=int(macs_before),
        macs_after=int(macs_after),
        attention_heads=tuple(
            (name, int(m.num_heads), int(m.head_dim))
            for name, m in model.named_modules()
            if m in attention_set
        ),
        config=config,
        kept_whole=tuple(kept_whole),
    )


def _importance(config: PruneConfig) -> Any:
    import torch_pruning as tp

    if config.importance == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=config.norm_p)
    if config.importance == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.RandomImportance()


def _classifier(model: nn.Module) -> nn.Module:
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier) and isinstance(get_classifier(), nn.Module):
        return get_classifier()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"cannot find the classifier of {type(model).__name__}: no get_classifier() and no "
            "nn.Linear; prune_model expects a timm-style classifier"
        )
    return linears[-1]


def _timm_attention_modules(model: nn.Module) -> list[nn.Module]:
    from timm.layers import Attention

    return [m for m in model.modules() if isinstance(m, Attention)]


def _timm_token_parameters(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    # class / register tokens and position embeddings are bare parameters whose last dim is
    # the embedding width: they shrink with it (Torch-Pruning warns unless told so)
    tokens = (getattr(model, name, None) for name in _TIMM_TOKENS)
    return [(p, p.ndim - 1) for p in tokens if isinstance(p, nn.Parameter)]


def _check_heads_left(model: nn.Module, attention: list[nn.Module], config: PruneConfig) -> None:
    """ConfigError, before anything is pruned, when local head pruning would remove every head
    of a block (Torch-Pruning removes ceil(ratio * heads) of them)."""
    if not config.prune_num_heads or config.global_pruning:
        return
    names = {module: name for name, module in model.named_modules()}
    for attn in attention:
        heads = int(attn.num_heads)
        if math.ceil(config.ratio * heads) >= heads:
            raise ConfigError(
                f"prune_num_heads at ratio {config.ratio} removes ceil({config.ratio} * {heads}) "
                f"= {math.ceil(config.ratio * heads)} of the {heads} heads of {names[attn]}, "
                f"leaving none; use ratio <= {(heads - 1) / heads:.4g} or prune head "
                "dimensions instead (prune_num_heads=False)"
            )


def _group_widths(pruner: Any) -> list[tuple[nn.Module, bool, int, int]]:
    """(root module, out-channel side?, channels, channel groups) of every group Torch-Pruning
    may prune; channel groups (grouped convs, attention heads) are pruned alike."""
    widths = []
    for group in pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        dep = group[0].dep
        is_out = pruner.DG.is_out_channel_pruning_fn(dep.handler)
        channels = _channels(pruner, dep.target.module, is_out)
        if channels is not None:
            widths.append((dep.target.module, is_out, channels, pruner._get_channel_groups(group)))
    return widths


def _channels(pruner: Any, module: nn.Module, is_out: bool) -> int | None:
    get = pruner.DG.get_out_channels if is_out else pruner.DG.get_in_channels
    return get(module)


def _check_every_group_pruned(
    pruner: Any,
    widths: list[tuple[nn.Module, bool, int, int]],
    names: dict[nn.Module, str],
    config: PruneConfig,
) -> list[tuple[str, int]]:
    """The (module, channels) of conv groups that ``round_to`` left whole, with a warning;
    ArtifactError when local pruning left any other layer group whole.

    Torch-Pruning skips, without a word, a group that the ratio (after ``round_to``) would
    leave with no channels. Local pruning keeps ``int(width * (1 - ratio))`` channels of each
    channel group (rounded down to a multiple of ``round_to``) and removes at least one of
    every other group. Kept whole by design: a group whose kept count only ``round_to``
    rounds to none, such as a squeeze-excitation bottleneck or a RegNet conv group of 8 at
    ``round_to=8``. Refused: a ratio that keeps no channel at all (0.999 leaves a ViT
    unpruned), and attention head dimensions that ``round_to`` rounds to none (a ViT at
    ratio 0.5 and ``round_to=64`` keeps every head dimension while its embedding shrinks)."""
    kept: list[tuple[str, int]] = []
    emptied: list[tuple[str, int]] = []
    rounded: list[tuple[str, int]] = []
    for module, is_out, channels, groups in widths:
        if channels <= 1 or _channels(pruner, module, is_out) != channels:
            continue
        name = names.get(module, type(module).__name__)
        keep = int(channels // groups * (1 - config.ratio))  # Torch-Pruning's own count
        if keep == 0:
            emptied.append((name, channels))
        elif config.round_to and keep < config.round_to and module not in pruner.num_heads:
            kept.append((name, channels))
        else:
            rounded.append((name, channels))
    whole = emptied + rounded
    if whole:
        listed = ", ".join(f"{name} ({channels})" for name, channels in whole[:5])
        more = f" and {len(whole) - 5} more" if len(whole) > 5 else ""
        if emptied:
            cause = (
                f"that ratio keeps int(channels * {1 - config.ratio:.4g}) = 0 channels of "
                f"{len(emptied)} of them"
            )
            fix = "lower the ratio"
        else:
            cause = (
                f"round_to={config.round_to} rounds the channels that ratio keeps (per head or "
                "channel group) down to 0"
            )
            fix = "lower round_to (to a divisor of the head dimension) or prune whole heads"
        raise ArtifactError(
            f"pruning at ratio {config.ratio} (round_to={config.round_to}) left {len(whole)} "
            f"layer group(s) whole, because {cause} and Torch-Pruning then skips them: "
            f"{listed}{more} (channels); the model was pruned only in part, so discard it and "
            f"{fix}"
        )
    if kept:
        listed = ", ".join(f"{name} ({channels})" for name, channels in kept)
        warnings.warn(
            f"pruning at ratio {config.ratio} left {len(kept)} layer group(s) whole: "
            f"round_to={config.round_to} rounds the channels it would keep of them to none, so "
            f"Torch-Pruning skips them: {listed} (channels); PruneReport.kept_whole lists them",
            stacklevel=3,
        )
    return kept


def _fix_attention(attn: nn.Module, num_heads: int, name: str, config: PruneConfig) -> None:
    # Torch-Pruning shrinks the qkv / proj weights; the attention module still holds the old
    # head geometry that its forward uses to reshape
    if int(num_heads) < 1:
        raise ArtifactError(
            f"global head pruning at ratio {config.ratio} removed every head of {name}; the "
            "model was pruned only in part, so discard it and lower the ratio"
        )
    attn.num_heads = int(num_heads)
    attn.head_dim = attn.qkv.out_features // (3 * attn.num_heads)
    attn.attn_dim = attn.num_heads * attn.head_dim
    # fused SDPA scales by 1/sqrt(head_dim) of the tensors it sees; keep the unfused path equal.
    # Narrower heads so sharpen every attention map by sqrt(old / new head_dim) until the
    # fine-tune that follows pruning re-learns the temperature.
    attn.scale = attn.head_dim**-0.5


def _accumulate_gradients(
    model: nn.Module, batches: Iterable[tuple[np.ndarray, np.ndarray]]
) -> None:
    model.zero_grad(set_to_none=True)
    seen = 0
    for images, labels in batches:
        logits = model(as_tensor(check_nchw(images, "gradient batch"), model))
        target = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=logits.device)
        torch.nn.functional.cross_entropy(logits, target).backward()
        seen += len(images)
    if seen == 0:
        raise ConfigError("gradient_batches is empty; taylor importance needs labelled batches")


# --------------------------------------------------------------------------- save / load


def pruned_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module, the plain attributes (ints, floats, strings, tuples) that shape it."""
    return {
        name: {
            key: _plain(value)
            for key, value in vars(module).items()
            if not key.startswith("_") and key != "training" and _is_plain(value)
        }
        for name, module in model.named_modules()
    }


def save_pruned(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write a pruned model as plain data (structure, weights, metadata), atomically."""
    payload = {
        "format": PRUNED_FORMAT,
        "structure": pruned_structure(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    bad = [k for k, v in payload["metadata"].items() if not _is_plain(v)]
    if bad:
        raise ConfigError(f"metadata values must be plain numbers/strings/tuples; not {bad}")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    # written by defectbench.io, not torch: a full disk is then an OSError naming the file
    atomic_write_bytes(path, buffer.getvalue())


def load_pruned_metadata(path: str | Path) -> dict[str, Any]:
    return dict(_load_payload(path)["metadata"])


def load_pruned(path: str | Path, base_model: nn.Module) -> nn.Module:
    """Reshape ``base_model`` (a fresh, unpruned model of the saved architecture) in place to
    the pruned structure saved at ``path`` and load its weights; returns ``base_model``."""
    payload = _load_payload(path)
    structure, state = payload["structure"], payload["state_dict"]
    modules = dict(base_model.named_modules())
    missing = sorted(set(structure) - set(modules))
    if missing:
        raise ArtifactError(
            f"{path} does not fit {type(base_model).__name__}: it has no modules "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}; build the same architecture "
            "(same timm name and kwargs) that was pruned"
        )
    for name, attributes in structure.items():
        for key, value in attributes.items():
            setattr(modules[name], key, value)
    for key, tensor in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None:
            raise ArtifactError(f"{path}: tensor {key!r} belongs to no module of the base model")
        _resize(owner, attr, tensor)
    try:
        base_model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path} does not fit {type(base_model).__name__}: {exc}") from exc
    return base_model


def _load_payload(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"pruned model {path} not found; write it with save_pruned")
    data = path.read_bytes()  # an unreadable file raises its own OSError, naming it
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        # a truncated file: torch says "failed finding central directory", "negative seek
        # value" or nothing at all
        raise ArtifactError(
            f"{path} cannot be read as a pruned model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'file ends early'}); it is truncated "
            "or not a torch file: write it again with save_pruned"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != PRUNED_FORMAT:
        raise ArtifactError(
            f"{path} is not a defectbench pruned model (expected format {PRUNED_FORMAT!r})"
        )
    return payload


def _resize(module: nn.Module, attr: str, tensor: torch.Tensor) -> None:
    """Replace a parameter or buffer with an empty one of the saved shape, keeping its kind."""
    if attr in module._parameters:
        old = module._parameters[attr]
        if old is None or old.shape != tensor.shape:
            requires_grad = True if old is None else old.requires_grad
            module._parameters[attr] = nn.Parameter(
                torch.empty_like(tensor), requires_grad=requires_grad
            )
    elif attr in module._buffers:
        old = module._buffers[attr]
        if old is None or old.shape != tensor.shape:
            module._buffers[attr] = torch.empty_like(tensor)


def _is_plain(value: Any) -> bool:
    """Whether ``torch.load(weights_only=True)`` can read ``value`` back (no enums, no objects)."""
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) in (tuple, list, torch.Size):
        return all(_is_plain(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    return tuple(value) if type(value) is torch.Size else value
