"""Model construction: timm models by name, with pretrained weights that resolve offline."""

from defectbench.models.pretrained import (
    WeightsProvenance,
    create_model,
    imagenet_data_config,
    imagenet_eval_transform,
    packaged_weights_available,
    remap_by_position,
)

__all__ = [
    "WeightsProvenance",
    "create_model",
    "imagenet_data_config",
    "imagenet_eval_transform",
    "packaged_weights_available",
    "remap_by_position",
]
