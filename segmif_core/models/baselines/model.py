"""Segmentation baselines without a fusion network (the comparisons of SegMiF's Tables 1-2).

- 'visible': SegFormer on the visible RGB image.
- 'thermal': SegFormer on the thermal image (1 input channel).
- 'early': SegFormer on RGB and thermal stacked as 4 input channels (early fusion).
They have no fused image: 'fused' is None and 'fused_rgb' is the visible image ('thermal': the
thermal image as gray RGB), so that the node and the tools treat every model alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import FusionSegModel
from ..encoders import SegFormer, segformer_config
from ..preprocessing import normalize_mono, normalize_rgb

INPUTS = ("visible", "thermal", "early")


@dataclass
class BaselineConfig:
    num_classes: int = 9
    inputs: str = "early"              # visible | thermal | early
    encoder: str = "mit-b0"
    decoder_hidden_size: int = 256

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown baseline inputs {self.inputs!r}; choose one of {INPUTS}")


class Baseline(FusionSegModel):
    """Single-modality or early-fusion SegFormer; shapes as in ``FusionSegModel``."""

    name = "baseline"

    def __init__(self, config: BaselineConfig | None = None):
        super().__init__()
        self.config = config or BaselineConfig()
        cfg = self.config
        channels = {"visible": 3, "thermal": 1, "early": 4}[cfg.inputs]
        self.segmenter = SegFormer(segformer_config(cfg.encoder, cfg.num_classes, channels,
                                                    cfg.decoder_hidden_size))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor, phase: str = "seg") -> dict:
        """``phase`` is accepted for interface parity with SegMiF (a baseline only segments)."""
        self.check_inputs(vis, ir)
        x = {"visible": lambda: normalize_rgb(vis),
             "thermal": lambda: normalize_mono(ir),
             "early": lambda: torch.cat([normalize_rgb(vis), normalize_mono(ir)], dim=1)}
        shown = ir.expand(-1, 3, -1, -1) if self.config.inputs == "thermal" else vis
        return {"logits": self.segmenter(x[self.config.inputs]()), "fused": None, "fused_rgb": shown}
