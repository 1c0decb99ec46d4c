"""``Segmenter``: an encoder of the registry plus the all-MLP head, the segmentation network of
every model here (SegMiF's Psi, the baselines)."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .encoders import build_encoder
from .heads import MLPHead


class Segmenter(nn.Module):
    """Encoder ``encoder`` (a registry name) + ``MLPHead`` of ``width`` channels.

    Args:
        encoder: registry name (``models.encoders.encoder_names()``); num_classes >= 1;
        in_channels: 1, 3 or 4; width: head embedding; pretrained: the encoder's weight source
            (see ``models.encoders``), None = random.
    ``features(x, stages=4)`` -> the encoder's first ``stages`` stages; ``decode(feats, size)`` -> logits at ``size``;
    ``forward(x)``: x (B, in_channels, H, W) float32, normalised (``models.preprocessing``),
    -> logits (B, num_classes, H, W), bilinearly upsampled from stride 4.
    Attributes ``encoder`` and ``head`` (the trainer gives ``head.*`` its own learning rate).
    """

    def __init__(self, encoder: str, num_classes: int, in_channels: int = 3, width: int = 256,
                 pretrained: str | None = None, dropout: float = 0.1):
        super().__init__()
        self.encoder = build_encoder(encoder, in_channels=in_channels, pretrained=pretrained)
        self.head = MLPHead(self.encoder.channels, width, num_classes, dropout)

    @property
    def channels(self) -> tuple[int, ...]:
        return self.encoder.channels

    def features(self, x: torch.Tensor, stages: int = 4) -> list[torch.Tensor]:
        return self.encoder.features(x, stages)

    def decode(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.head(feats), size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(x), x.shape[-2:])
