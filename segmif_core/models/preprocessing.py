"""Input normalisation and colour conversion, in one place for every model.

All images inside the models are float32 in [0, 1]. Each model normalises its network inputs
here, with the statistics stored in its config (``normalization: {'mean': [r, g, b], 'std':
[r, g, b]}``, the encoder's own, saved in the checkpoint), so inference can never normalise
differently from training. A single thermal / luminance channel uses the mean of the three
channels' statistics (it stands for a gray RGB image).

RGB <-> YCbCr follows ITU-R BT.601 (full range) as implemented by kornia; SegMiF fuses the
luminance Y of the visible image with the thermal image and keeps the visible chroma (Liu et
al., ICCV 2023, Sec. 3.1).
"""
from __future__ import annotations

import torch
from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb

from .encoders.base import IMAGENET_NORMALIZATION

#: ImageNet statistics (RGB order).
IMAGENET_MEAN = tuple(IMAGENET_NORMALIZATION["mean"])
IMAGENET_STD = tuple(IMAGENET_NORMALIZATION["std"])


def check_normalization(norm: dict) -> dict:
    """Validate ``{'mean': 3 floats, 'std': 3 floats > 0}``; returns it with float lists.
    Raises ValueError naming the problem."""
    try:
        mean = [float(v) for v in norm["mean"]]
        std = [float(v) for v in norm["std"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"normalization must be {{'mean': [3 floats], 'std': [3 floats]}}, "
                         f"got {norm!r}") from err
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"normalization needs 3 means and 3 positive stds, got {norm!r}")
    return {"mean": mean, "std": std}


def normalize_rgb(x: torch.Tensor, norm: dict = IMAGENET_NORMALIZATION) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (x - mean) / std per channel, same shape."""
    mean = x.new_tensor(norm["mean"]).view(1, 3, 1, 1)
    std = x.new_tensor(norm["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def normalize_mono(x: torch.Tensor, norm: dict = IMAGENET_NORMALIZATION) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> (x - mean(mean)) / mean(std), same shape."""
    return (x - sum(norm["mean"]) / 3.0) / (sum(norm["std"]) / 3.0)


def split_luminance(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> (Y (B, 1, H, W) in [0, 1], CbCr (B, 2, H, W) in [0, 1])."""
    ycbcr = rgb_to_ycbcr(rgb)
    return ycbcr[:, :1], ycbcr[:, 1:]


def merge_luminance(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Fused luminance (B, 1, H, W) + visible chroma (B, 2, H, W) -> RGB (B, 3, H, W) in [0, 1]."""
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0.0, 1.0)
