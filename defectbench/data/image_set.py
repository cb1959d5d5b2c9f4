"""`ImageSet`: the one in-memory shape every dataset loader returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from defectbench.errors import DataError


@dataclass(frozen=True)
class ImageSet:
    """Images with image-level labels and per-image metadata.

    ``labels`` is ``(N,)`` int8 with 1 = defective for binary sets, or ``(N, C)`` int8 for
    multi-label sets (one column per entry of ``class_names``). ``metadata`` maps a group name
    (``"cell_type"``, ``"severity"``, ``"category"``...) to an ``(N,)`` array so metrics can be
    reported per group. Pixels come from ``load(i)`` as ``uint8`` arrays, ``(H, W)`` grayscale or
    ``(H, W, 3)`` RGB; loaders that read from disk decode lazily and raise ``DataError`` naming
    the file when it cannot be decoded.
    """

    ids: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    loader: Callable[[int], np.ndarray] = field(repr=False)
    metadata: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.labels) != n:
            raise DataError(f"ImageSet has {n} ids but {len(self.labels)} labels")
        for key, values in self.metadata.items():
            if len(values) != n:
                raise DataError(f"ImageSet metadata {key!r} has {len(values)} values for {n} ids")
        if len(set(self.ids)) != n:
            raise DataError("ImageSet ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_multilabel(self) -> bool:
        return self.labels.ndim == 2

    def load(self, index: int) -> np.ndarray:
        return self.loader(index)

    def load_all(self, indices: Sequence[int] | None = None) -> list[np.ndarray]:
        return [self.loader(i) for i in (range(len(self)) if indices is None else indices)]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """A view on some of the images, in the given order (indices), or those a boolean mask
        of the set's length selects."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(
                    f"a boolean mask must have one entry per image ({len(self)}), "
                    f"got shape {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return ImageSet(
            ids=tuple(self.ids[i] for i in idx),
            labels=self.labels[idx],
            class_names=self.class_names,
            loader=_SubsetLoader(self.loader, tuple(int(i) for i in idx)),
            metadata={k: np.asarray(v)[idx] for k, v in self.metadata.items()},
        )


@dataclass(frozen=True)
class _SubsetLoader:
    """Loader of a subset: maps the subset's index to the parent's (a class, not a closure, so a
    subset pickles into worker processes like the set it came from)."""

    parent: Callable[[int], np.ndarray]
    indices: tuple[int, ...]

    def __call__(self, index: int) -> np.ndarray:
        return self.parent(self.indices[index])


@dataclass(frozen=True)
class _InMemoryLoader:
    """Loader of already decoded images (a class, not a closure, so the set pickles)."""

    images: np.ndarray | Sequence[np.ndarray] = field(repr=False)

    def __call__(self, index: int) -> np.ndarray:
        return self.images[index]


def in_memory(
    ids: Sequence[str],
    labels: np.ndarray,
    images: np.ndarray | Sequence[np.ndarray],
    class_names: Sequence[str] = ("good", "defective"),
    metadata: Mapping[str, np.ndarray] | None = None,
) -> ImageSet:
    """An ImageSet whose pixels are already decoded (ELPV ships as one array)."""
    return ImageSet(
        ids=tuple(ids),
        labels=np.asarray(labels),
        class_names=tuple(class_names),
        loader=_InMemoryLoader(images),
        metadata=dict(metadata or {}),
    )
