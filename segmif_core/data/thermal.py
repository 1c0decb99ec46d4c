"""Thermal image normalisation to the [0, 1] range the networks expect."""
from __future__ import annotations

import numpy as np

from ..choices import check_choice

THERMAL_MODES = ("fixed", "percentile")


def normalize_thermal(img: np.ndarray, mode: str = "percentile", low: float = 1.0,
                      high: float = 99.0, vmin: float = 0, vmax: float = 65535) -> np.ndarray:
    """Map a raw thermal frame to float32 in [0, 1].

    - uint8: ``img / 255`` whatever ``mode`` is (8-bit thermal is already display-scaled).
    - uint16, ``mode="fixed"``: raw ``vmin`` -> 0 and ``vmax`` -> 1 linearly, clipped.
    - uint16, ``mode="percentile"``: the per-frame ``low`` and ``high`` percentiles -> 0 and 1,
      clipped. If those percentiles coincide (e.g. a mostly uniform frame) the frame's min and max
      are used instead; a constant frame gives all zeros.

    Args:
        img: HxW (or HxWx1) uint8 or uint16 array (raw counts, unit depends on the camera).
        mode: ``"fixed"`` or ``"percentile"``.
        low, high: percentiles in [0, 100], ``low < high``.
        vmin, vmax: raw values for ``"fixed"``, ``vmin < vmax``.
    Returns:
        HxW float32 array in [0, 1].
    Raises:
        ValueError: other dtype or shape, unknown mode, or invalid low/high or vmin/vmax.
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"thermal image must be HxW (or HxWx1), got shape {img.shape}")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"thermal image must be uint8 or uint16, got {img.dtype}")
    check_choice("thermal mode", mode, THERMAL_MODES)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if mode == "fixed":
        if not vmin < vmax:
            raise ValueError(f"fixed thermal range needs vmin < vmax, got {vmin}, {vmax}")
        lo, hi = float(vmin), float(vmax)
    else:
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles need 0 <= low < high <= 100, got {low}, {high}")
        lo, hi = (float(v) for v in np.percentile(img, (low, high)))
        if hi <= lo:
            lo, hi = float(img.min()), float(img.max())
        if hi <= lo:
            return np.zeros(img.shape, np.float32)
    out = (img.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """Convert an image in [0, 1] (any shape) to uint8 0-255: ``round(clip(x, 0, 1) * 255)``."""
    x = np.clip(np.asarray(x01, np.float32), 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)
