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
    return x


def model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def as_tensor(x: np.ndarray, model: nn.Module) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(model_device(model))


def take_samples(batches: Iterable[np.ndarray], limit: int | None, what: str) -> list[np.ndarray]:
    """Batches from ``batches`` holding ``limit`` samples in all (every sample if None)."""
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
