"""Structured pruning with Torch-Pruning, and a pickle-free way to save and rebuild the result.

Steps: ``prune_model`` builds the dependency graph, scores channel groups, removes the least
important ones in place and reports params / MACs before and after; fine-tuning is the
caller's. ``save_pruned`` writes the pruned layer shapes and weights as plain tensors and
numbers; ``load_pruned`` reshapes a freshly built model of the same architecture to them and
loads the weights with ``torch.load(weights_only=True)``, so no pickled code is ever loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import math
import numbers
import pickle
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectbench.compress._io import as_tensor, check_nchw, eval_mode
from defectbench.errors import ArtifactError, ConfigError, DataError, DefectbenchError
from defectbench.io import atomic_write_bytes

IMPORTANCES: tuple[str, ...] = ("magnitude", "random", "taylor")
PRUNED_FORMAT = "defectbench.pruned/1"
_TIMM_TOKENS = ("cls_token", "dist_token", "reg_token", "pos_embed")
_WIDTH_ATTRIBUTES = ("num_features", "head_hidden_size", "embed_dim")


@dataclass(frozen=True)
class PruneConfig:
    """How much and by what criterion to prune.

    ``ratio``: fraction of channels (and ViT head dimensions) removed per layer group, or
    overall with ``global_pruning``. ``importance``: ``magnitude`` (group L-``norm_p`` norm),
    ``taylor`` (first-order loss change; needs labelled gradient batches) or ``random`` (a
    baseline). ``round_to`` keeps channel counts multiples of it (8 suits SIMD kernels).
    ``prune_num_heads`` removes whole ViT heads instead of shrinking each head; Torch-Pruning
    rounds the number of heads removed up, so ViT-Tiny's 3 heads at ``ratio=0.5`` keep 1 (the
    report's head counts say what was kept). ``max_layer_ratio`` must stay 1.0: Torch-Pruning
    applies a per-layer cap only between iterative steps, and ``prune_model`` prunes in one
    (the field stays so that recipes and their keys keep their shape).
    """

    ratio: float
    importance: str = "magnitude"
    norm_p: int = 2
    global_pruning: bool = False
    max_layer_ratio: float = 1.0
    round_to: int | None = None
    prune_num_heads: bool = False

    def __post_init__(self) -> None:
        for field in ("ratio", "max_layer_ratio"):
            value = getattr(self, field)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise ConfigError(f"{field} must be a number, got {value!r}")
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"pruning ratio must be in (0, 1), got {self.ratio}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(
                f"unknown importance {self.importance!r}; valid choices: {', '.join(IMPORTANCES)}"
            )
        if isinstance(self.norm_p, bool) or self.norm_p not in (1, 2):
            raise ConfigError(f"norm_p must be 1 or 2, got {self.norm_p!r}")
        if not self.ratio <= self.max_layer_ratio <= 1.0:
            raise ConfigError(
                f"max_layer_ratio must be in [ratio, 1] = [{self.ratio}, 1], "
                f"got {self.max_layer_ratio}"
            )
        if self.max_layer_ratio != 1.0:
            # Torch-Pruning reads max_pruning_ratio only to skip a layer already pruned past
            # it at a later iterative step; one step at 0.5 with a cap of 0.5 removed 56% of
            # a layer, exactly as with no cap
            raise ConfigError(
                f"max_layer_ratio={self.max_layer_ratio} would cap nothing: Torch-Pruning "
                "applies it only between iterative pruning steps and prune_model prunes in one "
                "step; leave it at 1.0 (local pruning removes `ratio` of every layer group)"
            )
        if self.round_to is not None and (
            not isinstance(self.round_to, int)
            or isinstance(self.round_to, bool)
            or self.round_to < 1
        ):
            raise ConfigError(f"round_to must be a positive int or None, got {self.round_to!r}")
        for field in ("global_pruning", "prune_num_heads"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(f"{field} must be True or False, got {getattr(self, field)!r}")

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
    # (module, channels) of layer groups that Torch-Pruning skipped, left whole with a warning:
    # locally, those too narrow for round_to (the ratio keeps fewer than round_to channels
    # per channel group, which rounds to none); globally, also those the global ranking
    # would have emptied, or whose dependent layers it would have emptied
    kept_whole: tuple[tuple[str, int], ...] = ()
    # global pruning only: (module, channels) of layer groups whose every channel ranked above
    # the global threshold, so the ranking itself kept them whole; normal, so not warned about
    kept_whole_by_ranking: tuple[tuple[str, int], ...] = ()

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
            "kept_whole_by_ranking": [list(k) for k in self.kept_whole_by_ranking],
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
    are required for ``importance='taylor'`` and refused otherwise.

    Torch-Pruning skips, without a word, a layer group it cannot prune. Local pruning raises
    ArtifactError when it left a group whole (the ratio keeps no channel of it, or removes
    none, or ``round_to`` rounds attention head dimensions to none, or removing them would
    empty a layer that depends on them), except a group too narrow for ``round_to`` (the
    ratio keeps fewer than ``round_to`` of its channels, per channel group, e.g. a
    squeeze-excitation bottleneck at ``round_to=8``), which is left whole by design: listed in
    the report's ``kept_whole`` with a warning. Global pruning ranks every group's channels
    together, so a group whose every channel ranks above the threshold is kept whole by the
    ranking itself, which is what global pruning is for: listed in ``kept_whole_by_ranking``,
    not warned about. A group that global pruning wanted to prune but Torch-Pruning skipped
    (the ranking would have emptied it or a layer depending on it) is listed in ``kept_whole``
    with a warning; a global prune that removed nothing at all raises ArtifactError.

    On any error ``model`` is left as it was (its modules get back their own parameters,
    buffers, attributes and gradients): only a call that returns a report changes it.
    """
    import torch_pruning as tp

    example_t = as_tensor(check_nchw(example, "pruning example")[:1], model)
    if config.importance == "taylor" and gradient_batches is None:
        raise ConfigError(
            "importance='taylor' needs gradient_batches: an iterable of (images, labels) numpy "
            "batches to accumulate loss gradients on; or use importance='magnitude'"
        )
    if config.importance != "taylor" and gradient_batches is not None:
        raise ConfigError(
            f"gradient_batches are used only by importance='taylor', and this config ranks "
            f"channels by {config.importance!r}: drop them or set importance='taylor'"
        )
    attention = _timm_attention_modules(model)
    _check_heads_left(model, attention, config)
    # random importance draws from torch's global generator: seeded here (and the caller's
    # state restored after), so one config prunes the same channels whatever ran before it
    with _restored_on_error(model), eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            macs_before, params_before = tp.utils.count_ops_and_params(model, example_t)
        except Exception as exc:
            raise DataError(
                f"the pruning example (shape {tuple(example.shape)}) does not run through "
                f"{type(model).__name__}: {type(exc).__name__}: {_first_line(exc)}; pass a "
                "batch preprocessed for this model"
            ) from exc
        try:
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
            widths = _group_widths(pruner)
        except DefectbenchError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"Torch-Pruning cannot build the dependency graph of {type(model).__name__} "
                f"({type(exc).__name__}: {_first_line(exc)}); prune_model needs a model whose "
                "forward Torch-Pruning can trace"
            ) from exc
        if not any(channels > 1 for _, _, channels, _ in widths):
            raise ConfigError(
                f"{type(model).__name__} has no layer that Torch-Pruning can prune: besides the "
                "classifier, which keeps its outputs, no convolution, linear or attention layer "
                "has channels to remove"
            )
        scored, refused = _record_group_decisions(pruner)
        widths_before = _feature_widths(model)
        pooled_dim = _num_features_dim(model, example_t)
        if config.importance == "taylor":
            _accumulate_gradients(model, gradient_batches or ())
        pruner.step()
        if not scored:
            # the two hooks above are Torch-Pruning internals (1.6 calls both through the
            # instance); a release that bypasses them would make every group read as "never
            # ranked" or "kept whole by the ranking", so say so rather than misreport
            raise ArtifactError(
                f"Torch-Pruning {getattr(tp, '__version__', '?')} ranked no layer group "
                "through BasePruner.estimate_importance, which defectbench wraps to tell "
                "which groups it left whole; the model is left as it was; install "
                "torch-pruning 1.6 (pip install 'torch-pruning>=1.6,<1.7')"
            )
        model.zero_grad(set_to_none=True)
        names = {module: name for name, module in model.named_modules()}
        for attn in attention:
            _fix_attention(attn, pruner.num_heads[attn.qkv], names[attn], config)
        _fix_feature_widths(model, widths_before)
        kept_by_ranking: list[tuple[str, int]] = []
        if not config.global_pruning:
            kept_whole = _check_every_group_pruned(pruner, widths, names, config, scored, refused)
        else:
            kept_whole, kept_by_ranking = _report_global_groups_left_whole(
                pruner, widths, names, config, scored, refused
            )
        try:
            macs_after, params_after = tp.utils.count_ops_and_params(model, example_t)
        except Exception as exc:
            # Torch-Pruning's graph missed a dependency: a width written into forward, or a
            # reshape of channels it does not follow
            raise ArtifactError(
                f"the pruned {type(model).__name__} no longer runs ({type(exc).__name__}: "
                f"{_first_line(exc)}): Torch-Pruning missed a dependency of its channels, such "
                "as a width fixed in forward or a channel reshape; the model is left as it was; "
                "prune such layers by hand"
            ) from exc
        if pooled_dim is not None:
            with torch.no_grad():
                model.num_features = int(model.forward_features(example_t).shape[pooled_dim])
        elif _pooled_width_apart(model):
            warnings.warn(
                f"{type(model).__name__}.num_features ({model.num_features}) is neither the "
                "classifier's input width nor a dimension of forward_features' output, so "
                "pruning cannot tell which pruned width it counts and leaves it as it was; "
                "set it by hand before reset_classifier() or anything else that reads it",
                stacklevel=2,
            )
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
        kept_whole_by_ranking=tuple(kept_by_ranking),
    )


@contextlib.contextmanager
def _restored_on_error(model: nn.Module) -> Iterator[None]:
    """Put every module of ``model`` back as it was when the block raises.

    Torch-Pruning prunes by assigning new tensors and attributes, never by editing a tensor
    in place, so each module's attribute dict, the contents of the dicts in it (parameters,
    buffers, children, hooks) and each parameter's gradient are all there is to keep. Those
    dicts are refilled, not replaced: hook handles the caller holds still reach them."""
    saved = []
    for module in model.modules():
        attributes = dict(vars(module))
        contents = {
            key: dict(value) for key, value in attributes.items() if isinstance(value, dict)
        }
        saved.append((module, attributes, contents))
    gradients = [(parameter, parameter.grad) for parameter in model.parameters()]
    try:
        yield
    except BaseException:
        for module, attributes, contents in saved:
            vars(module).clear()
            vars(module).update(attributes)
            for key, value in contents.items():
                attributes[key].clear()
                attributes[key].update(value)
        for parameter, gradient in gradients:
            parameter.grad = gradient
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


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


def _feature_widths(model: nn.Module) -> dict[str, int]:
    """The model's own attributes that say how wide the classifier's input is (timm's
    ``num_features`` / ``head_hidden_size``, a ViT's ``embed_dim``), where they equal it."""
    classifier = _classifier(model)
    width = getattr(classifier, "in_features", None)
    return {key: width for key in _WIDTH_ATTRIBUTES
            if isinstance(width, int) and getattr(model, key, None) == width}


def _pooled_width_apart(model: nn.Module) -> bool:
    """Whether the model has an int ``num_features`` that is not its classifier's input
    width (which `_fix_feature_widths` keeps in step)."""
    width = getattr(model, "num_features", None)
    return (isinstance(width, int) and not isinstance(width, bool)
            and getattr(_classifier(model), "in_features", None) != width)


def _num_features_dim(model: nn.Module, example: torch.Tensor) -> int | None:
    """The dimension of ``forward_features``' output that timm's ``num_features`` counts,
    where it is not the classifier's input width (MobileNetV3: the pooled features feed
    ``conv_head``, whose wider output feeds the classifier), else None."""
    width = getattr(model, "num_features", None)
    forward_features = getattr(model, "forward_features", None)
    if not _pooled_width_apart(model) or not callable(forward_features):
        return None
    with torch.no_grad():
        out = forward_features(example)
    if not isinstance(out, torch.Tensor):
        return None
    # channels first (NCHW) or last (tokens NLC, NHWC)
    dims = [d for d in (1, out.ndim - 1) if 0 < d < out.ndim and out.shape[d] == width]
    return dims[0] if dims else None


def _fix_feature_widths(model: nn.Module, before: dict[str, int]) -> None:
    # Torch-Pruning narrows the layers, not these plain ints: left stale, timm's
    # reset_classifier() would build a head for the unpruned width that no longer runs
    width = _classifier(model).in_features if before else None
    for key in before:
        setattr(model, key, width)


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


def _record_group_decisions(
    pruner: Any,
) -> tuple[set[tuple[nn.Module, bool]], dict[tuple[nn.Module, bool], bool]]:
    """Sets that ``pruner.step()`` fills in with what it decided about each layer group.

    ``scored``: the (module, out-channel side?) of every layer of each group that was ranked.
    ``refused``: the same, of each group the step then chose channels of but Torch-Pruning's
    over-pruning check turned down (and the step skipped without a word), mapped to whether
    those channels were all of the group's own (else they would have emptied a layer that
    depends on it). Both are read from the two calls the step makes per group."""
    graph = pruner.DG
    scored: set[tuple[nn.Module, bool]] = set()
    refused: dict[tuple[nn.Module, bool], bool] = {}
    estimate_importance = pruner.estimate_importance
    check_pruning_group = graph.check_pruning_group

    def members(group: Any) -> list[tuple[nn.Module, bool]]:
        return [
            (dep.target.module, graph.is_out_channel_pruning_fn(dep.handler)) for dep, _ in group
        ]

    def recording_estimate(group: Any) -> Any:
        importance = estimate_importance(group)
        if importance is not None:
            scored.update(members(group))
        return importance

    def recording_check(group: Any) -> bool:
        allowed = check_pruning_group(group)
        if not allowed:
            root, chosen = group[0]
            width = _channels(
                pruner, root.target.module, graph.is_out_channel_pruning_fn(root.handler)
            )
            emptied = width is not None and len(chosen) >= width
            refused.update((member, emptied) for member in members(group))
        return allowed

    pruner.estimate_importance = recording_estimate
    graph.check_pruning_group = recording_check
    return scored, refused


def _groups_left_whole(
    pruner: Any, widths: list[tuple[nn.Module, bool, int, int]], names: dict[nn.Module, str]
) -> list[tuple[nn.Module, bool, int, int, str]]:
    """(module, out side?, channels, channel groups, name) of each group the step left whole."""
    return [
        (module, is_out, channels, groups, names.get(module, type(module).__name__))
        for module, is_out, channels, groups in widths
        if channels > 1 and _channels(pruner, module, is_out) == channels
    ]


def _listed(entries: list[tuple[str, int]]) -> str:
    listed = ", ".join(f"{name} ({channels})" for name, channels in entries[:5])
    return listed + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")


def _check_every_group_pruned(
    pruner: Any,
    widths: list[tuple[nn.Module, bool, int, int]],
    names: dict[nn.Module, str],
    config: PruneConfig,
    scored: set[tuple[nn.Module, bool]],
    refused: dict[tuple[nn.Module, bool], bool],
) -> list[tuple[str, int]]:
    """The (module, channels) of conv groups that ``round_to`` left whole, with a warning;
    ArtifactError when local pruning left any other layer group whole.

    Local pruning keeps ``int(width * (1 - ratio))`` channels of each channel group (rounded
    down to a multiple of ``round_to``). Kept whole by design: a group whose kept count only
    ``round_to`` rounds to none, such as a squeeze-excitation bottleneck or a RegNet conv
    group of 8 at ``round_to=8``. Refused: a ratio that keeps no channel at all (0.999 leaves
    a ViT unpruned) or removes none (1e-17), attention head dimensions that ``round_to``
    rounds to none (a ViT at ratio 0.5 and ``round_to=64`` keeps every head dimension while
    its embedding shrinks), and a group whose pruning Torch-Pruning turned down because it
    would empty a layer depending on it (a channel reshape it does not follow)."""
    kept: list[tuple[str, int]] = []
    emptied: list[tuple[str, int]] = []
    removes_none: list[tuple[str, int]] = []
    rounded: list[tuple[str, int]] = []
    turned_down: list[tuple[str, int]] = []
    unranked: list[tuple[str, int]] = []
    for module, is_out, channels, groups, name in _groups_left_whole(pruner, widths, names):
        keep = int(channels // groups * (1 - config.ratio))  # Torch-Pruning's own count
        narrow = bool(config.round_to) and keep < config.round_to
        if keep == 0:
            emptied.append((name, channels))
        elif narrow and module not in pruner.num_heads:
            kept.append((name, channels))
        elif (module, is_out) in refused:
            # every channel chosen although the ratio keeps some: round_to took the rest
            emptied_by_rounding = refused[module, is_out] and bool(config.round_to)
            (rounded if emptied_by_rounding else turned_down).append((name, channels))
        elif (module, is_out) not in scored:
            unranked.append((name, channels))
        else:  # ranked and never turned down: the step chose none of its channels
            removes_none.append((name, channels))
    problems = [
        (
            emptied,
            f"the ratio keeps int(channels * {1 - config.ratio:.4g}) = 0 of their channels",
            "lower the ratio",
        ),
        (
            removes_none,
            f"the ratio removes none of their channels (int(channels * {1 - config.ratio!r}) "
            "is every channel)",
            "raise the ratio",
        ),
        (
            rounded,
            f"round_to={config.round_to} rounds the channels that ratio keeps (per head or "
            "channel group) down to 0",
            "lower round_to (to a divisor of the head dimension) or prune whole heads",
        ),
        (
            turned_down,
            "Torch-Pruning turned them down: removing those channels would empty a layer that "
            "depends on them (a channel reshape it does not follow)",
            "use global_pruning=True, which leaves such groups whole with a warning",
        ),
        (
            unranked,
            "Torch-Pruning did not rank them",
            "use global_pruning=True, which leaves such groups whole with a warning",
        ),
    ]
    problems = [problem for problem in problems if problem[0]]
    if problems:
        whole = [entry for entries, _, _ in problems for entry in entries]
        causes = "; ".join(f"{len(entries)}: {cause}" for entries, cause, _ in problems)
        fixes = " or ".join(dict.fromkeys(fix for _, _, fix in problems))
        raise ArtifactError(
            f"pruning at ratio {config.ratio} (round_to={config.round_to}) left {len(whole)} "
            f"layer group(s) whole, which Torch-Pruning does without a word ({causes}): "
            f"{_listed(whole)} (channels); the model is left as it was: {fixes}"
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


def _report_global_groups_left_whole(
    pruner: Any,
    widths: list[tuple[nn.Module, bool, int, int]],
    names: dict[nn.Module, str],
    config: PruneConfig,
    scored: set[tuple[nn.Module, bool]],
    refused: dict[tuple[nn.Module, bool], bool],
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(groups Torch-Pruning skipped, groups the global ranking kept whole), each as (module,
    channels); a warning names the skipped ones, and ArtifactError is raised when nothing was
    pruned at all.

    Kept whole by the ranking: every channel of the group ranked above the global threshold.
    That is global pruning doing its job (the least important channels are elsewhere), so it
    is recorded, not warned about. Skipped: Torch-Pruning turned the group down because the
    channels the ranking chose (rounded to ``round_to``) were all of its channels, or would
    have emptied a layer that depends on it; or it never ranked the group. The model is still
    valid then, but that group keeps the channels the ranking meant to remove, so the call
    warns."""
    by_ranking: list[tuple[str, int]] = []
    emptied: list[tuple[str, int]] = []
    dependents: list[tuple[str, int]] = []
    unranked: list[tuple[str, int]] = []
    whole = _groups_left_whole(pruner, widths, names)
    for module, is_out, channels, _, name in whole:
        key = (module, is_out)
        if key in refused:
            (emptied if refused[key] else dependents).append((name, channels))
        elif key in scored:
            by_ranking.append((name, channels))
        else:
            unranked.append((name, channels))
    prunable = [width for width in widths if width[2] > 1]
    if len(whole) == len(prunable):
        if by_ranking and not (emptied or dependents or unranked):
            cause = "it is too small to remove a single channel; raise the ratio"
        else:
            cause = (
                "Torch-Pruning skips a layer group that the ratio would leave with no channels, "
                "and here that was every group; lower the ratio"
            )
        raise ArtifactError(f"global pruning at ratio {config.ratio} removed nothing: {cause}")
    rounding = f" (rounded to multiples of round_to={config.round_to})" if config.round_to else ""
    skipped = [
        (entries, cause)
        for entries, cause in (
            (
                emptied,
                f"the global ranking{rounding} chose all of their channels",
            ),
            (dependents, "removing the channels it chose would empty a layer that depends on them"),
            (unranked, "Torch-Pruning did not rank them"),
        )
        if entries
    ]
    kept = [entry for entries, _ in skipped for entry in entries]
    if kept:
        causes = "; ".join(f"{len(entries)}: {cause}" for entries, cause in skipped)
        warnings.warn(
            f"global pruning at ratio {config.ratio} left {len(kept)} layer group(s) whole that "
            f"Torch-Pruning skipped ({causes}): {_listed(kept)} (channels); they keep every "
            "channel, so the model is pruned less than the ratio asks; PruneReport.kept_whole "
            "lists them",
            stacklevel=3,
        )
    return kept, by_ranking


def _fix_attention(attn: nn.Module, num_heads: int, name: str, config: PruneConfig) -> None:
    # Torch-Pruning shrinks the qkv / proj weights; the attention module still holds the old
    # head geometry that its forward uses to reshape
    if int(num_heads) < 1:
        raise ArtifactError(
            f"global head pruning at ratio {config.ratio} removed every head of {name}; the "
            "model is left as it was; lower the ratio"
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
    if metadata is not None and (
        not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata)
    ):
        raise ConfigError(
            f"metadata must be a dict with str keys, got {type(metadata).__name__} "
            f"{str(metadata)[:80]}"
        )
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
    the pruned structure saved at ``path`` and load its weights; returns ``base_model``.

    A file that does not fit it (modules, tensor names, attributes that are parameters or
    read-only) raises ArtifactError before ``base_model`` is touched. Not by snapshotting it:
    a snapshot would hold the unpruned tensors until loading ends, and the suite measures the
    memory a pruned artifact's load takes."""
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
    # pruning changes shapes, never names: load_state_dict would copy every tensor that fits
    # into the base model before it complains about the rest
    expected = set(base_model.state_dict())
    if set(state) != expected:
        absent, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ArtifactError(
            f"{path} does not fit {type(base_model).__name__}: it lacks tensors "
            f"{absent[:5]} and has tensors {extra[:5]} the model does not; build the same "
            "architecture (same timm name and kwargs) that was pruned"
        )
    for name, attributes in structure.items():
        for key, value in attributes.items():
            why = _cannot_set(modules[name], key)
            if why:
                raise ArtifactError(
                    f"{path} does not fit {type(base_model).__name__}: {name}.{key} cannot "
                    f"be set to {value!r} ({why})"
                )
    widths = _feature_widths(base_model)
    for name, attributes in structure.items():
        for key, value in attributes.items():
            setattr(modules[name], key, value)
    for key, tensor in state.items():
        owner_name, _, attr = key.rpartition(".")
        _resize(modules[owner_name], attr, tensor)
    try:
        base_model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # not expected after the checks above: discard base_model
        raise ArtifactError(f"{path} does not fit {type(base_model).__name__}: {exc}") from exc
    # files saved before prune_model kept these in step hold the unpruned widths
    _fix_feature_widths(base_model, widths)
    return base_model


def _cannot_set(module: nn.Module, key: str) -> str:
    """Why a saved structure attribute cannot be set on ``module`` as a plain value ('' when
    it can): nn.Module refuses plain values for its parameters, buffers and children, and a
    read-only property refuses any."""
    for kind, names in (
        ("parameter", module._parameters),
        ("buffer", module._buffers),
        ("submodule", module._modules),
    ):
        if key in names:
            return f"it is a {kind}"
    attribute = inspect.getattr_static(type(module), key, None)
    if isinstance(attribute, property) and attribute.fset is None:
        return "it is a read-only property"
    return ""


def _load_payload(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"pruned model {path} not found; write it with save_pruned")
    data = path.read_bytes()  # an unreadable file raises its own OSError, naming it
    try:
        _check_zip(data, path)
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except ArtifactError:
        raise
    except (
        RuntimeError,
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        NotImplementedError,
        OverflowError,
        struct.error,
        zlib.error,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
    ) as exc:
        # a truncated file: "File is not a zip file", torch's "failed finding central
        # directory", "negative seek value" or nothing at all
        raise ArtifactError(
            f"{path} cannot be read as a pruned model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'file ends early'}); it is truncated "
            "or not a torch file: write it again with save_pruned"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != PRUNED_FORMAT:
        raise ArtifactError(
            f"{path} is not a defectbench pruned model (expected format {PRUNED_FORMAT!r})"
        )
    _check_payload(payload, path)
    return payload


def _check_zip(data: bytes, path: Path) -> None:
    """ArtifactError when a record of the zip that torch.save wrote is damaged.

    torch reads tensor bytes without checking them: a flipped bit in a weight loaded as
    another weight, and a record whose directory entry gained the MS-DOS directory flag
    loaded as an uninitialized tensor. The zip's own CRCs catch the first; torch writes
    every record as a plain file, so a flag saying otherwise is damage too."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        folders = [info.filename for info in archive.infolist() if info.external_attr & 0x10]
        if folders:
            raise ArtifactError(
                f"{path} is damaged: its record {folders[0]!r} is marked as a folder, which "
                "torch.save never writes; write it again with save_pruned"
            )
        damaged = archive.testzip()
    if damaged is not None:
        raise ArtifactError(
            f"{path} is damaged: its record {damaged!r} fails its CRC check; write it again "
            "with save_pruned"
        )


def _check_payload(payload: dict[str, Any], path: Path) -> None:
    """ArtifactError naming the parts of a pruned-model payload that save_pruned did not write
    (a KeyError or AttributeError deep in load_pruned otherwise)."""
    structure, state = payload.get("structure"), payload.get("state_dict")
    wrong = []
    if not isinstance(structure, dict) or not all(
        isinstance(name, str)
        and isinstance(attributes, dict)
        and all(isinstance(key, str) and _is_plain(value) for key, value in attributes.items())
        for name, attributes in structure.items()
    ):
        wrong.append("structure (module name -> plain attributes)")
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in state.items()
    ):
        wrong.append("state_dict (name -> tensor)")
    if not isinstance(payload.get("metadata"), dict):
        wrong.append("metadata (a dict)")
    if wrong:
        raise ArtifactError(
            f"{path} is not a pruned model as save_pruned writes it: its {', '.join(wrong)} "
            "is missing or malformed; write it again with save_pruned"
        )


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
