"""Every exception defectbench raises on purpose.

Each message names the bad value, what was expected and how to fix it; callers build the
message first, then raise.
"""


class DefectbenchError(Exception):
    """Base class: catch this to handle any defectbench error."""


class DataError(DefectbenchError):
    """A dataset on disk is missing, empty, corrupt or not in the expected layout."""


class FixtureMismatchError(DataError):
    """The installed data no longer matches the committed validation fixture."""


class WeightsError(DefectbenchError):
    """Pretrained weights could not be found or do not fit the model."""


class ConfigError(DefectbenchError, ValueError):
    """A recipe, budget or option has an invalid value."""


class UnknownNameError(DefectbenchError, KeyError):
    """A variant, model, precision or device name is not known."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TrainingDivergedError(DefectbenchError, FloatingPointError):
    """Training produced no usable model: a training loss that is not finite, or no epoch
    with a finite dev score."""


class ArtifactError(DefectbenchError):
    """A built artifact in the zoo is missing, truncated or fails its hash check."""


class ReportError(DefectbenchError):
    """Benchmark JSON given to the report is not defectbench output or cannot be merged."""


class ZooBuildError(DefectbenchError):
    """A zoo build that the benchmark suite started failed; its own output says why."""
