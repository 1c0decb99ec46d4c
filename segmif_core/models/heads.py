"""Segmentation decoders that take any encoder of the registry.

``MLPHead``: the all-MLP decoder of SegFormer (Xie et al., NeurIPS 2021, Sec. 3.2, Eq. 1): each of
the 4 stages is projected to ``width`` channels by a linear layer, upsampled to the stride-4 size,
the four are concatenated (deepest first, as in the authors' code), fused by a 1x1 convolution
with batch norm and ReLU, and classified by a 1x1 convolution. Its parameter names are those of
``transformers``' ``SegformerDecodeHead`` (``linear_projections.i.proj``, ``linear_fuse``,
``batch_norm``, ``classifier``), so MiT checkpoints of earlier releases keep loading.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class _Projection(nn.Module):
    """A per-pixel linear layer (a 1x1 convolution stored as ``nn.Linear``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.proj.weight[:, :, None, None], self.proj.bias)


class MLPHead(nn.Module):
    """All-MLP decoder.

    Args:
        channels: channels of the 4 encoder stages; width: the common embedding (SegFormer: 256
            for B0/B1, 768 for B2-B5); num_classes >= 1; dropout: before the classifier.
    forward(feats): list of 4 (B, channels[i], H_i, W_i) -> logits (B, num_classes, H_0, W_0)
    (the stride-4 size of the first stage).
    """

    def __init__(self, channels, width: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(f"num_classes and width must be >= 1, got {num_classes}, {width}")
        self.linear_projections = nn.ModuleList(_Projection(c, width) for c in channels)
        self.linear_fuse = nn.Conv2d(width * len(channels), width, 1, bias=False)
        self.batch_norm = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        up = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False)
              if f.shape[-2:] != size else p(f)
              for f, p in zip(feats, self.linear_projections)]
        x = torch.relu(self.batch_norm(self.linear_fuse(torch.cat(up[::-1], dim=1))))
        return self.classifier(self.dropout(x))
