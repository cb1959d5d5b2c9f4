"""Preprocessing defined once and shared by every runtime (torch, ONNX Runtime, TensorRT).

Images are turned into a float32 NCHW numpy batch here, before any runtime sees them, so two
variants of one model are scored on bit-identical inputs and their recall can be compared pair
by pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from defectbench.data.image_set import ImageSet
from defectbench.errors import ConfigError, DataError


@dataclass(frozen=True)
class Preprocess:
    """Resize to `size` x `size`, grayscale -> 3 channels, normalise with the model's mean/std."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        # tuples, also when read back from JSON, so equal recipes hash equal
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"input size {self.size} is outside 16..1024 pixels")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std must be 3 values with std > 0, got {self.mean}/{self.std}")

    @classmethod
    def for_model(cls, model: torch.nn.Module, size: int) -> Preprocess:
        """Use the normalisation the model was pretrained with (timm's pretrained_cfg)."""
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
        std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
        return cls(size=size, mean=mean, std=std)

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        batch = [self._to_chw(img) for img in images]
        if not batch:
            raise DataError("no images to preprocess; pass at least one (H, W[, 3]) uint8 image")
        shapes = sorted({img.shape for img in batch})
        if len(shapes) == 1:
            return self._resize_and_normalise(np.stack(batch))
        # images of several sizes (a user's folder dataset): each size is resized on its own,
        # then the batch is put back together in the order given
        out = np.empty((len(batch), 3, self.size, self.size), dtype=np.float32)
        for shape in shapes:
            idx = [i for i, img in enumerate(batch) if img.shape == shape]
            out[idx] = self._resize_and_normalise(np.stack([batch[i] for i in idx]))
        return out

    def _resize_and_normalise(self, chw: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(chw).float()
        gray = bool((x[:, :1] == x[:, 1:]).all())  # resize one channel, not three identical ones
        if gray:
            x = x[:, :1]
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)
        if gray:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std).view(1, 3, 1, 1) * 255.0
        return ((x - mean) / std).numpy().astype(np.float32, copy=False)

    @staticmethod
    def _to_chw(img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise DataError(f"expected uint8 pixels, got {img.dtype}; decode images to 8-bit first")
        if img.ndim == 2:
            return np.repeat(img[None], 3, axis=0)
        if img.ndim == 3 and img.shape[2] == 3:
            return img.transpose(2, 0, 1)
        if img.ndim == 3 and img.shape[2] == 1:
            return np.repeat(img.transpose(2, 0, 1), 3, axis=0)
        raise DataError(f"expected (H, W) grayscale or (H, W, 3) RGB, got shape {img.shape}")


@dataclass(frozen=True)
class PreprocessedRows:
    """An image set preprocessed on demand: ``rows[index]`` is what
    ``preprocess_set(images, preprocess)[index]`` would be for a slice, a boolean mask or an
    array of distinct indices, but only the rows asked for are decoded and nothing is kept.
    (Repeated indices are refused: a subset's ids must be unique.)"""

    images: ImageSet
    preprocess: Preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            raise TypeError("index PreprocessedRows with a slice or an index array, not an int")
        rows = np.arange(len(self.images))[index]
        return preprocess_set(self.images.subset(rows), self.preprocess)


def preprocess_set(images, preprocess: Preprocess, batch_size: int = 64) -> np.ndarray:
    """Preprocess a whole ImageSet into one (N, 3, S, S) float32 array, in chunks."""
    out = np.empty((len(images), 3, preprocess.size, preprocess.size), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        idx = range(start, min(start + batch_size, len(images)))
        out[start : idx.stop] = preprocess(images.load_all(idx))
    return out
