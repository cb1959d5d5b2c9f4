"""Preprocessing defined once and shared by every runtime (torch, ONNX Runtime, TensorRT).

Images are turned into a float32 NCHW numpy batch here, before any runtime sees them, so two
variants of one model are scored on bit-identical inputs and their recall can be compared pair
by pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Integral

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
        try:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        except (TypeError, ValueError):  # mean=0.5, or a string: not iterable numbers
            raise ConfigError(
                f"mean/std must be 3 numbers each (one per channel), got {self.mean!r}/"
                f"{self.std!r}"
            ) from None
        # an int: 32.5 passed the range check and failed in np.empty at the first batch
        if isinstance(self.size, bool) or not isinstance(self.size, Integral):
            raise ConfigError(f"input size {self.size!r} must be a whole number of pixels")
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"input size {self.size} is outside 16..1024 pixels")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std must be 3 values with std > 0, got {self.mean}/{self.std}")
        if not all(math.isfinite(v) for v in self.mean + self.std):
            # nan passed `std > 0` and made every input nan
            raise ConfigError(f"mean/std must be finite, got {self.mean}/{self.std}")

    @classmethod
    def for_model(cls, model: torch.nn.Module, size: int) -> Preprocess:
        """Use the normalisation the model was pretrained with (timm's pretrained_cfg)."""
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if cfg.get("mean") is None or cfg.get("std") is None:
            # ImageNet's statistics were assumed here without a word: a model pretrained with
            # others (Lite's 0.5) would be fed shifted, rescaled inputs
            raise ConfigError(
                f"{type(model).__name__} has no pretrained_cfg with mean and std (timm models "
                "carry one); build Preprocess(size, mean=..., std=...) with the normalisation "
                "its weights were trained with"
            )
        mean = tuple(float(v) for v in cfg["mean"])
        std = tuple(float(v) for v in cfg["std"])
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(
                f"{type(model).__name__} normalises {len(mean)} input channel(s); images are "
                "fed as 3 channels (grayscale repeated): create the model with in_chans=3"
            )
        return cls(size=size, mean=mean, std=std)

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray,
                 names: Sequence[str] | None = None) -> np.ndarray:
        """`names`, one per image, name a bad image in the error (default: its position)."""
        batch = []
        for i, img in enumerate(images):
            try:
                batch.append(self._to_chw(img))
            except DataError as err:
                # which of a folder's images is bad, and the likely slip for a 1-D "image"
                hint = ("; a single image was given where a sequence of images is expected "
                        "(wrap it in a list)" if np.ndim(img) == 1 else "")
                name = f"image {names[i]!r}" if names is not None else f"image {i}"
                raise DataError(f"{name}: {err}{hint}") from None
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
        if img.ndim in (2, 3) and 0 in img.shape[:2]:
            # torch's interpolate refused it with "Input and output sizes should be greater than 0"
            raise DataError(f"image of shape {img.shape} has no pixels; remove or re-export it")
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
        # named by id: a position within the chunk would point at another image
        out[start : idx.stop] = preprocess(images.load_all(idx),
                                           names=[images.ids[i] for i in idx])
    return out
