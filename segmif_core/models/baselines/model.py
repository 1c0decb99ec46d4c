"""Segmentation baselines without a fusion network (the comparisons of SegMiF's Tables 1-2).

Each is a ``Segmenter`` (an encoder of the registry + the all-MLP head) on:
- 'visible': the visible RGB image.
- 'thermal': the thermal image (1 input channel; a pretrained stem takes the sum of its RGB
  filters, see ``encoders.base.adapt_stem_weight``).
- 'early': RGB and thermal stacked as 4 input channels (early fusion; the thermal filters of a
  pretrained stem start as the mean of its RGB filters).
They have no fused image: 'fused' is None and 'fused_rgb' is the visible image ('thermal': the
thermal image as gray RGB), so that the node and the tools treat every model alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...choices import check_choice
from ..base import FusionSegModel
from ..preprocessing import check_normalization, normalize_mono, normalize_rgb
from ..segmenter import Segmenter

INPUTS = ("visible", "thermal", "early")


@dataclass
class BaselineConfig:
    num_classes: int = 9
    inputs: str = "early"              # visible | thermal | early
    encoder: str = "efficientnet-lite0"
    pretrained: str | None = "imagenet"  # see models.encoders; not read when a checkpoint loads
    decoder_hidden_size: int = 128
    normalization: dict | None = None  # None = the encoder's (filled in, saved with the weights)

    def __post_init__(self):
        check_choice("baseline inputs", self.inputs, INPUTS)
        if self.normalization is not None:
            self.normalization = check_normalization(self.normalization)


class Baseline(FusionSegModel):
    """Single-modality or early-fusion SegFormer; shapes as in ``FusionSegModel``."""

    name = "baseline"

    def __init__(self, config: BaselineConfig | None = None, load_pretrained: bool = True):
        super().__init__()
        self.config = config or BaselineConfig()
        cfg = self.config
        channels = {"visible": 3, "thermal": 1, "early": 4}[cfg.inputs]
        self.segmenter = Segmenter(cfg.encoder, cfg.num_classes, channels,
                                   cfg.decoder_hidden_size,
                                   cfg.pretrained if load_pretrained else None)
        if cfg.normalization is None:
            cfg.normalization = dict(self.segmenter.encoder.normalization)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor, phase: str = "seg") -> dict:
        """``phase`` is accepted for interface parity with SegMiF (a baseline only segments)."""
        self.check_inputs(vis, ir)
        n = self.config.normalization
        x = {"visible": lambda: normalize_rgb(vis, n),
             "thermal": lambda: normalize_mono(ir, n),
             "early": lambda: torch.cat([normalize_rgb(vis, n), normalize_mono(ir, n)], dim=1)}
        return {"logits": self.segmenter(x[self.config.inputs]()), "fused": None,
                "fused_rgb": self._shown(vis, ir)}

    def _shown(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The image shown as 'fused': the visible image ('thermal': the thermal image as gray
        RGB)."""
        return ir.expand(-1, 3, -1, -1) if self.config.inputs == "thermal" else vis

    def full_resolution_fused(self, out, vis, ir, vis_hi, ir_hi):
        """The shown image at full resolution (see ``_shown``)."""
        return self._shown(vis_hi, ir_hi)
