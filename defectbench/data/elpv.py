"""ELPV solar-cell electroluminescence images, read offline from the `elpv-dataset` package.

Deitsch et al., "Automatic classification of defective photovoltaic module cells in
electroluminescence images", Solar Energy 2019. 2,624 cells, 300x300 grayscale, each with a
defect probability in {0, 1/3, 2/3, 1} from expert annotation and a cell type (mono / poly).
Licence CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import functools

import numpy as np

from defectbench.data.image_set import ImageSet, in_memory
from defectbench.errors import ConfigError, DataError

ELPV_LICENCE = "CC BY-NC-SA 4.0"
DEFAULT_DEFECT_THRESHOLD = 0.5
SEVERITY_NAMES = {0: "0", 1: "1/3", 2: "2/3", 3: "1"}


@functools.lru_cache(maxsize=1)
def _read_package() -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    try:
        import elpv_dataset
        from elpv_dataset.utils import load_dataset
    except ImportError as exc:
        raise DataError(
            "ELPV needs the `elpv-dataset` package, which is not installed; "
            "fix: pip install elpv-dataset (or reinstall defectbench)"
        ) from exc
    import os

    labels_csv = os.path.join(os.path.dirname(elpv_dataset.__file__), "data", "labels.csv")
    try:
        images, probs, types = load_dataset(labels_csv)
        names = np.genfromtxt(labels_csv, dtype=["|S19"], usecols=[0])
        ids = tuple(np.char.decode(names["f0"] if names.dtype.names else names).tolist())
    # the package's reader lets PIL's and numpy's errors through, mostly without a file name
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"the installed elpv-dataset package under {os.path.dirname(labels_csv)} cannot be "
            f"read ({type(exc).__name__}: {exc}); a file of it is missing or damaged: "
            "fix: pip install --force-reinstall --no-deps elpv-dataset"
        ) from exc
    images.setflags(write=False)
    return ids, images, np.asarray(probs, dtype=np.float64), np.asarray(types).astype(str)


def severity_level(probability: np.ndarray) -> np.ndarray:
    """Annotator defect probability 0, 1/3, 2/3, 1 -> integer level 0..3."""
    level = np.rint(np.asarray(probability) * 3).astype(np.int8)
    if not np.allclose(level / 3, probability, atol=1e-6):
        raise DataError("ELPV probabilities are expected to be multiples of 1/3")
    return level


def defect_labels(
    probability: np.ndarray, threshold: float = DEFAULT_DEFECT_THRESHOLD
) -> np.ndarray:
    """Binary label: defective (1) when the annotated defect probability is >= threshold."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(
            f"defect threshold {threshold!r} is outside (0, 1]; ELPV probabilities are 0, 1/3, "
            "2/3, 1 (the default 0.5 counts 2/3 and 1 as defective)"
        )
    return (np.asarray(probability) >= threshold - 1e-9).astype(np.int8)


def load_elpv(defect_threshold: float = DEFAULT_DEFECT_THRESHOLD) -> ImageSet:
    """All 2,624 ELPV cells as an ImageSet with metadata cell_type, severity and probability."""
    ids, images, probs, types = _read_package()
    return in_memory(
        ids=ids,
        labels=defect_labels(probs, defect_threshold),
        images=images,
        metadata={"cell_type": types, "severity": severity_level(probs), "probability": probs},
    )
