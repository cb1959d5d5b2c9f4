"""Batch augmentation on preprocessed float tensors (after the shared preprocessing)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from defectbench.train.config import AugmentConfig


def augment_batch(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Random per-image flips, transposes (`rot90`: with the flips, all eight 90-degree turns and
    mirror images), small rotations and contrast/brightness jitter."""
    n = x.shape[0]

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    if config.flips:
        x = torch.where((draw(n) < 0.5).view(n, 1, 1, 1), x.flip(-1), x)
        x = torch.where((draw(n) < 0.5).view(n, 1, 1, 1), x.flip(-2), x)
    if config.rot90 and x.shape[-1] == x.shape[-2]:
        x = torch.where((draw(n) < 0.5).view(n, 1, 1, 1), x.transpose(-1, -2), x)
    if config.max_rotation_deg > 0:
        angle = (draw(n) * 2 - 1) * math.radians(config.max_rotation_deg)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if config.contrast > 0 or config.brightness > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = 1 + (draw(n) * 2 - 1).view(n, 1, 1, 1) * config.contrast
        # brightness is a fraction of the pixel range: 2 units after normalising with std 0.5,
        # as every zoo model does (Lite, ViT-Tiny); a model normalised with ImageNet's stds
        # (about 0.22) would get about half that relative to its input range
        b = (draw(n) * 2 - 1).view(n, 1, 1, 1) * config.brightness * 2
        x = (x - mean) * c + mean + b
    return x.contiguous()
