"""Threshold-free ranking quality, used to select checkpoints on `dev`."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from defectbench.errors import DataError
from defectbench.metrics.confusion import as_binary, check_same_length


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Labels must be 0/1 (1 = defective). NaN scores give NaN, on purpose: training scores
    every epoch with it and skips an epoch whose model diverged rather than crashing.
    """
    y = as_binary(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:  # an (n, 2) softmax would be flattened into 2n scores
        raise DataError(
            f"ROC AUC needs one score per item (1-D), got shape {s.shape}; pass the defect "
            "class's column"
        )
    check_same_length(y_true=y, scores=s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"ROC AUC needs both classes; got {n_pos} defective and {n_neg} good; score a set "
            "that holds images of both"
        )
    if np.isnan(s).any():
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
