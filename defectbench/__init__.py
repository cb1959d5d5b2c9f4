"""defectbench: measure and enforce the speed / defect-recall trade-off of compressed classifiers."""

__version__ = "0.1.0"
