"""defectbench: measure and enforce the speed / defect-recall trade-off of compressed models."""

__version__ = "0.1.0"
