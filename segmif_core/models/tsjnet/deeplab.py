"""TSJNet's segmentation network on the fused image: a DeepLabV3+-style head on an encoder of the
registry.

L.-C. Chen, Y. Zhu, G. Papandreou, F. Schroff, H. Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation" (DeepLabV3+), ECCV 2018, Sec. 3.1-3.2 (Fig. 2):
ASPP on the deepest features (a 1x1 branch, three 3x3 atrous branches, image pooling; concat,
1x1 projection, dropout), upsampled to stride 4 and concatenated with a 1x1 reduction of the
stride-4 low-level features, two 3x3 convolutions, a 1x1 classifier, bilinear upsampling to the
input size.

The paper names DeepLabV3+ (its code loads torchvision's DeepLabV3-ResNet-101, without the V3+
decoder); this follows the paper. Differences from DeepLabV3+: the registry encoders end at
stride 32 (no atrous output stride 16), so the default ASPP rates are halved to (3, 6, 9); plain
3x3 convs instead of separable ones; the image-pooling branch has no batch norm (it would need
more than one sample per channel in training).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..encoders import build_encoder


def _cbr(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, dilation * (k // 2), dilation=dilation,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: (B, cin, h, w) -> (B, width, h, w)."""

    def __init__(self, cin: int, width: int, rates=(3, 6, 9), dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList([_cbr(cin, width, 1)] +
                                      [_cbr(cin, width, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, width, 1),
                                  nn.ReLU(inplace=True))
        self.project = nn.Sequential(_cbr(width * (len(rates) + 2), width, 1),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the last stage + low-level skip from the first: list of 4 stage maps -> logits
    (B, num_classes, h_0, w_0) at the first stage's (stride-4) size.

    Args:
        channels: the 4 stage channels; num_classes >= 1; width: ASPP / decoder channels
            (DeepLabV3+: 256); low_channels: the low-level reduction (48); rates: atrous rates.
    """

    def __init__(self, channels, num_classes: int, width: int = 256, low_channels: int = 48,
                 rates=(3, 6, 9)):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.aspp = ASPP(channels[-1], width, rates)
        self.low = _cbr(channels[0], low_channels, 1)
        self.fuse = nn.Sequential(_cbr(width + low_channels, width, 3), _cbr(width, width, 3))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats) -> torch.Tensor:
        low = self.low(feats[0])
        high = F.interpolate(self.aspp(feats[-1]), size=low.shape[-2:], mode="bilinear",
                             align_corners=False)
        return self.classifier(self.fuse(torch.cat([high, low], dim=1)))


class DeepLabSegmenter(nn.Module):
    """Encoder (registry ``encoder``, weights ``pretrained``) + ``DeepLabV3PlusHead``.

    forward(x): x (B, 3, H, W) float32 normalised with the encoder's statistics -> logits
    (B, num_classes, H, W). Attributes ``encoder`` and ``head`` (for per-part learning rates)."""

    def __init__(self, encoder: str, num_classes: int, width: int = 256, low_channels: int = 48,
                 rates=(3, 6, 9), pretrained: str | None = None):
        super().__init__()
        self.encoder = build_encoder(encoder, in_channels=3, pretrained=pretrained)
        self.head = DeepLabV3PlusHead(self.encoder.channels, num_classes, width, low_channels,
                                      tuple(rates))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
