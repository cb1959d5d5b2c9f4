"""Helpers the transforms share: checking and moving numpy batches, eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from defectbench.errors import DataError


def check_nchw(x: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or len(x) == 0:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(
            f"{what} must be a non-empty float32 NCHW numpy batch, got {got}; preprocess images "
            "with defectbench.data.preprocess first"
        )
    finite = np.isfinite(x)
    if not finite.all():
        # NaN poisons torch's histogram observers; an inf stretches ONNX Runtime's MinMax range
        # until every real activation rounds to zero and the INT8 model outputs a constant
        bad = np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))
        raise DataError(
            f"{what} holds {int((~finite).sum())} NaN or infinite values (samples "
            f"{bad[:5].tolist()}{'...' if len(bad) > 5 else ''} of {len(x)}); drop or repair "
            "those images before they reach the model"
        )
    return x


def check_same_shape(x: np.ndarray, shape: tuple[int, ...], what: str, fix: str) -> None:
    """DataError unless the per-sample shape of ``x`` is ``shape`` (C, H, W)."""
    if tuple(x.shape[1:]) != tuple(shape):
        raise DataError(
            f"{what} has samples of shape {tuple(x.shape[1:])} (C, H, W) but {fix} takes "
            f"{tuple(shape)}; preprocess them with the same Preprocess (channels, size)"
        )


def check_not_blank(batches: list[np.ndarray], what: str) -> None:
    """DataError when every sample is one constant value (blank or all-zero frames).

    Calibrated on those, every activation range is one point, real images saturate it and
    the INT8 model is written without an error but computes nothing useful."""
    if all(float(np.ptp(sample)) == 0.0 for batch in batches for sample in batch):
        raise DataError(
            f"every {what} sample is a constant image, so the INT8 ranges calibrated on them "
            "would not cover real images; calibrate on real, preprocessed images"
        )


def model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def as_tensor(x: np.ndarray, model: nn.Module) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(model_device(model))


def take_samples(batches: Iterable[np.ndarray], limit: int | None, what: str) -> list[np.ndarray]:
    """Batches from ``batches`` holding ``limit`` samples in all (every sample if None)."""
    if isinstance(batches, np.ndarray):
        # iterating one array yields its 3-d samples, each then refused as "not NCHW"
        raise DataError(
            f"{what}es must be an iterable of NCHW batches, got one array of shape "
            f"{batches.shape}; wrap it in a list: [images]"
        )
    taken: list[np.ndarray] = []
    count = 0
    for batch in batches:
        check_nchw(batch, what)
        if limit is not None:
            batch = batch[: limit - count]
        taken.append(batch)
        count += len(batch)
        if limit is not None and count >= limit:
            break
    return taken


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its training flag afterwards."""
    # per module: a caller may keep some submodules (frozen BatchNorm) in eval while training
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training
