"""TSJNet's detection network on the fused image: an FCOS-style anchor-free detector on an encoder
of the registry (this project's replacement of the paper's Faster R-CNN).

Differences from the paper (Jie et al., arXiv 2402.01212, Sec. 3; code: torchvision Faster R-CNN
ResNet-50-FPN with COCO weights): one stage instead of two (no region proposals, no RoIAlign);
no anchors: every location of the stride-8/16/32 maps predicts class scores (sigmoid, focal
loss), the distances (l, t, r, b) to the box sides (GIoU loss) and a centerness (FCOS, Tian et
al., ICCV 2019); a lighter FPN on P3-P5 only (no P6/P7); the backbone is any encoder of the
registry (ImageNet EfficientNet-Lite0 by default, not a COCO-pretrained detector), so the head
starts from random weights; class-wise NMS in pure torch (``box_ops``). The paper's detector
sees the fused map broadcast to 3 channels and ImageNet-normalised, as here.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..encoders import build_encoder
from .fcos import postprocess


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class FPN(nn.Module):
    """Feature pyramid (Lin et al., CVPR 2017) on the encoder's stages: 1x1 laterals to ``width``,
    top-down nearest upsampling + sum, 3x3 output convs. list of (B, C_n, h_n, w_n) -> list of
    (B, width, h_n, w_n)."""

    def __init__(self, channels, width: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.output = nn.ModuleList(nn.Conv2d(width, width, 3, 1, 1) for _ in channels)

    def forward(self, feats):
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for n in range(len(lat) - 2, -1, -1):
            lat[n] = lat[n] + F.interpolate(lat[n + 1], size=lat[n].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.output, lat)]


class FCOSHead(nn.Module):
    """Shared FCOS head: classification and regression towers of ``num_convs`` (3x3 conv + GN +
    ReLU), class logits (bias prior 0.01, FCOS Sec. 4), l/t/r/b regression as ReLU(s_n x) * stride
    with a learned scale s_n per level (FCOS v2), centerness on the regression tower.

    forward(feats, strides) -> dict 'cls_logits' [(B, K, h, w)], 'box_regression' [(B, 4, h, w)]
    distances in input pixels >= 0, 'centerness' [(B, 1, h, w)] logits, 'strides' tuple."""

    def __init__(self, width: int, num_classes: int, num_convs: int = 4, levels: int = 3,
                 prior: float = 0.01):
        super().__init__()

        def tower():
            layers = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(width, width, 3, 1, 1), _norm(width), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(width, num_classes, 3, 1, 1)
        self.box = nn.Conv2d(width, 4, 3, 1, 1)
        self.centerness = nn.Conv2d(width, 1, 3, 1, 1)
        self.scales = nn.Parameter(torch.ones(levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))

    def forward(self, feats, strides) -> dict:
        out = {"cls_logits": [], "box_regression": [], "centerness": [],
               "strides": tuple(int(s) for s in strides)}
        for n, (x, s) in enumerate(zip(feats, strides)):
            c, r = self.cls_tower(x), self.box_tower(x)
            out["cls_logits"].append(self.cls_logits(c))
            out["box_regression"].append(F.relu(self.scales[n] * self.box(r)) * float(s))
            out["centerness"].append(self.centerness(r))
        return out


class Detector(nn.Module):
    """Encoder (registry ``encoder``, weights ``pretrained``) + FPN on its stride-8/16/32 stages +
    FCOS head for ``num_classes`` object classes.

    forward(x): x (B, 3, H, W) float32, normalised with the encoder's statistics -> the head's
    raw dict (see ``FCOSHead``). ``detect(raw, image_size, **options)`` -> per-image boxes
    (``fcos.postprocess``).

    ``border_pad`` (pixels, a multiple of the largest stride; 0 = off): the input is padded
    with zeros (the normalised mean colour) by that much on every side before the encoder and
    the head's maps are cropped back by border_pad / stride cells, so the raw outputs have the
    locations (and points) of the unpadded input, while the image border no longer coincides
    with the network's own border. Why: the EfficientNet-Lite encoders pad every stride-2
    convolution TensorFlow-'same' style, one zero column more on the right / bottom than on
    the left / top ((0, 1) for 3x3, (1, 2) for 5x5), so the same content makes more false boxes
    at the right image border than at the left (measured: scripts/tsjnet_border_boxes.py).
    Raises ValueError for a border_pad that is not a non-negative multiple of the largest
    stride."""

    def __init__(self, encoder: str, num_classes: int, width: int = 128, num_convs: int = 4,
                 pretrained: str | None = None, border_pad: int = 0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"the detector needs >= 1 class, got {num_classes}")
        self.encoder = build_encoder(encoder, in_channels=3, pretrained=pretrained)
        self.strides = tuple(self.encoder.strides[1:])
        if border_pad < 0 or border_pad % max(self.strides):
            raise ValueError(f"border_pad must be a multiple of {max(self.strides)} >= 0, got "
                             f"{border_pad}")
        self.border_pad = int(border_pad)
        self.fpn = FPN(self.encoder.channels[1:], width)
        self.head = FCOSHead(width, num_classes, num_convs, levels=len(self.strides))

    def forward(self, x: torch.Tensor) -> dict:
        p = self.border_pad
        if p:
            x = F.pad(x, (p, p, p, p))
        feats = self.encoder.features(x)[1:]
        out = self.head(self.fpn(feats), self.strides)
        if p:
            for key in ("cls_logits", "box_regression", "centerness"):
                out[key] = [m[..., p // s:m.shape[-2] - p // s, p // s:m.shape[-1] - p // s]
                            for m, s in zip(out[key], self.strides)]
        return out

    @staticmethod
    def detect(raw: dict, image_size: tuple[int, int], **options) -> list[dict]:
        return postprocess(raw, image_size, **options)
