"""A missing camera and what replaces it: the substitutes of segmif_node's ``fallback`` modes
(``segmif_ros/node/pipeline.py``), for training with random modality dropout
(``data.modality_dropout``) and for measuring how segmentation degrades when a camera is lost.

- visible only (thermal lost): the thermal image is all zeros ("cold"), the visible image is kept;
- thermal only (visible lost): the visible image is the thermal image in gray (its [0, 1]
  values, the node's thermal rule, replicated to R, G and B), the thermal image is kept.

This project's choice (SegMiF has no such mode): the substitutes are what the network would see
from the node, so a model trained with dropout has seen exactly them.
"""
from __future__ import annotations

import numpy as np

from ..choices import check_choice

MODALITIES = ("pair", "visible_only", "thermal_only")


def substitute(vis: np.ndarray, ir: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(vis, ir) with the missing camera replaced.

    Args:
        vis: (H, W, 3) RGB, float in [0, 1] or uint8; ir: (H, W) thermal, float in [0, 1] or
            uint8 (already registered; 16-bit thermal: scale it first, the substitute of the
            visible image is the 8-bit or [0, 1] thermal as the network sees it).
        modality: 'pair' (unchanged), 'visible_only' or 'thermal_only'.
    Returns new arrays (or the inputs for 'pair'), same dtypes as given.
    Raises ValueError for an unknown modality, shapes that differ, or a thermal dtype that does
    not fit the visible one for 'thermal_only'.
    """
    check_choice("modality", modality, MODALITIES)
    if vis.shape[:2] != ir.shape[:2] or vis.ndim != 3 or ir.ndim != 2:
        raise ValueError(f"vis (H, W, 3) and ir (H, W) must match, got {vis.shape}, {ir.shape}")
    if modality == "pair":
        return vis, ir
    if modality == "visible_only":
        return vis, np.zeros_like(ir)
    if ir.dtype != vis.dtype:
        raise ValueError(f"thermal_only: thermal dtype {ir.dtype} differs from visible "
                         f"{vis.dtype} (scale 16-bit thermal first)")
    return np.repeat(ir[:, :, None], 3, axis=2), ir


def draw_modality(rng: np.random.Generator, p: float) -> str:
    """'visible_only' or 'thermal_only' with probability p / 2 each, else 'pair'."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"modality dropout must be in [0, 1], got {p}")
    u = rng.random()
    return "visible_only" if u < p / 2 else "thermal_only" if u < p else "pair"
