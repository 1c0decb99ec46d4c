"""Baseline pixel fusion rules: references for the fusion metrics and for ablations.

Every rule takes ``(vis_y, ir)``: the visible luminance (BT.601 Y) and the registered thermal
image, two numpy arrays of the same H x W shape and the same dtype, on any one scale (uint8 0-255,
float 0-1, float 0-255, ...), and returns a new H x W array of that dtype and scale (never a view
of an input). A CPU torch tensor is converted with ``numpy.asarray``; the result is numpy.

Rules:
    visible:  vis_y                   (fusion that ignores the thermal camera)
    thermal:  ir                      (fusion that ignores the visible camera)
    average:  (vis_y + ir) / 2        integer dtypes: computed exactly in int64 and rounded
                                      half up, i.e. (vis_y + ir + 1) // 2;
                                      float dtypes: 0.5 * (vis_y + ir)
    maximum:  max(vis_y, ir) per pixel (choose-max rule)
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

__all__ = ["visible", "thermal", "average", "maximum", "FUSION_RULES"]


def _pair(vis_y, ir):
    if hasattr(vis_y, "detach"):
        vis_y = vis_y.detach().cpu().numpy()
    if hasattr(ir, "detach"):
        ir = ir.detach().cpu().numpy()
    v, t = np.asarray(vis_y), np.asarray(ir)
    if v.ndim != 2 or v.shape != t.shape:
        raise ValueError(f"expected two H x W images of one shape, got {v.shape} and {t.shape}")
    if v.dtype != t.dtype:
        raise ValueError(f"vis_y and ir must share a dtype, got {v.dtype} and {t.dtype}")
    if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise ValueError(f"expected integer or float images, got dtype {v.dtype}")
    return v, t


def visible(vis_y, ir) -> np.ndarray:
    """Return a copy of ``vis_y`` (H x W, its dtype). ``ir`` is only checked."""
    v, _ = _pair(vis_y, ir)
    return v.copy()


def thermal(vis_y, ir) -> np.ndarray:
    """Return a copy of ``ir`` (H x W, its dtype). ``vis_y`` is only checked."""
    _, t = _pair(vis_y, ir)
    return t.copy()


def average(vis_y, ir) -> np.ndarray:
    """Pixel mean (vis_y + ir) / 2 in the input dtype (integers round half up).

    Integer inputs: (vis_y + ir + 1) // 2 in int64, so uint8 (3, 4) -> 4 and no overflow.
    Float inputs: 0.5 * (vis_y + ir) in the input dtype.
    """
    v, t = _pair(vis_y, ir)
    if np.issubdtype(v.dtype, np.integer):
        return ((v.astype(np.int64) + t.astype(np.int64) + 1) // 2).astype(v.dtype)
    return (0.5 * (v + t)).astype(v.dtype)


def maximum(vis_y, ir) -> np.ndarray:
    """Per-pixel maximum of ``vis_y`` and ``ir`` (H x W, their dtype)."""
    v, t = _pair(vis_y, ir)
    return np.maximum(v, t)


#: Rule name -> function ``(vis_y, ir) -> fused``.
FUSION_RULES: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "visible": visible, "thermal": thermal, "average": average, "maximum": maximum,
}
