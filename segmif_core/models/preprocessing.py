"""Input normalisation and colour conversion, in one place for every model.

All images inside the models are float32 in [0, 1]. RGB <-> YCbCr follows ITU-R BT.601 (full
range) as implemented by kornia; SegMiF fuses the luminance Y of the visible image with the
thermal image and keeps the visible chroma (Liu et al., ICCV 2023, Sec. 3.1).
"""
from __future__ import annotations

import torch
from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb

#: ImageNet statistics used by SegFormer (RGB order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Statistics applied to a single thermal / luminance channel (mean of the RGB ones).
MONO_MEAN = 0.449
MONO_STD = 0.226


def normalize_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> ImageNet-normalised tensor, same shape."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def normalize_mono(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> normalised tensor, same shape."""
    return (x - MONO_MEAN) / MONO_STD


def split_luminance(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> (Y (B, 1, H, W) in [0, 1], CbCr (B, 2, H, W) in [0, 1])."""
    ycbcr = rgb_to_ycbcr(rgb)
    return ycbcr[:, :1], ycbcr[:, 1:]


def merge_luminance(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Fused luminance (B, 1, H, W) + visible chroma (B, 2, H, W) -> RGB (B, 3, H, W) in [0, 1]."""
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0.0, 1.0)
