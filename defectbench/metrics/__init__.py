"""Defect-class metrics with exact intervals: where recall, FNR and their bounds are computed."""

from defectbench.metrics.confusion import (
    BinaryCounts,
    binary_counts,
    binary_report,
    metrics_dict,
    predict,
)
from defectbench.metrics.intervals import Proportion, clopper_pearson
from defectbench.metrics.multilabel import (
    ClassRecall,
    MultilabelRecall,
    per_class_recall,
    worst_class_recall,
)
from defectbench.metrics.operating_point import (
    OperatingPoint,
    choose_operating_point,
    recall_at,
    threshold_for_recall,
)
from defectbench.metrics.paired import (
    RecallComparison,
    compare_recall,
    compare_recall_by_group,
    drop_interval,
    mcnemar_exact_p,
)

__all__ = [
    "BinaryCounts",
    "ClassRecall",
    "MultilabelRecall",
    "OperatingPoint",
    "Proportion",
    "RecallComparison",
    "binary_counts",
    "binary_report",
    "choose_operating_point",
    "clopper_pearson",
    "compare_recall",
    "compare_recall_by_group",
    "drop_interval",
    "mcnemar_exact_p",
    "metrics_dict",
    "per_class_recall",
    "predict",
    "recall_at",
    "threshold_for_recall",
    "worst_class_recall",
]
