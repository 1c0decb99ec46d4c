"""Split-attention bottlenecks (ResNeSt) of TSJNet's encoder and decoder.

H. Zhang et al., "ResNeSt: Split-Attention Networks", CVPR Workshops 2022, Sec. 3 (Fig. 2, radix
R, cardinality 1 here). TSJNet (tsjnet.md Sec. 2): 2 bottlenecks of planes 128, expansion 4,
radix 2, cardinality 1, at stride 1; the first has the shortcut 3x3 max-pool (stride 1), 1x1
conv, BN.

Split attention: a grouped 3x3 conv (groups R) maps ``planes`` to R x ``planes`` channels (+ BN +
ReLU) = R radix maps; their sum is globally average-pooled, 1x1 conv to ``inter`` channels + BN +
ReLU, 1x1 conv (with bias) to R x ``planes`` scores, softmax over the R scores of each channel,
and the radix maps are summed with these weights. The authors' code adds BN + ReLU after the
second 1x1 conv; this follows ResNeSt (and the paper's citation of it). Batch norm on the pooled
(B, C, 1, 1) vector needs a batch of at least 2 in training.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    """k x k conv (no bias, same padding) + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SplitAttention(nn.Module):
    """Split-attention conv: (B, planes, H, W) -> (B, planes, H, W).

    Args:
        planes: channels in and out; radix: R >= 1 (TSJNet 2); inter: channels of the attention
            MLP (None = ResNeSt's max(planes * R / 4, 32)).
    After a forward pass ``last_weights`` holds the (B, R, planes) softmax weights.
    """

    def __init__(self, planes: int, radix: int = 2, inter: int | None = None):
        super().__init__()
        if radix < 1:
            raise ValueError(f"radix must be >= 1, got {radix}")
        self.planes, self.radix = planes, radix
        inter = inter or max(planes * radix // 4, 32)
        self.conv = conv_bn_relu(planes, planes * radix, 3, groups=radix)
        self.fc1 = nn.Sequential(nn.Conv2d(planes, inter, 1), nn.ReLU(inplace=True))
        self.fc2 = nn.Conv2d(inter, planes * radix, 1)
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        splits = self.conv(x).view(b, self.radix, self.planes, *x.shape[-2:])
        gap = splits.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        scores = self.fc2(self.fc1(gap)).view(b, self.radix, self.planes)
        # the softmax runs over the radix index of each channel (sigmoid for radix 1, as ResNeSt)
        weights = scores.softmax(dim=1) if self.radix > 1 else torch.sigmoid(scores)
        self.last_weights = weights.detach()
        return (splits * weights[..., None, None]).sum(dim=1)


class Bottleneck(nn.Module):
    """ResNeSt bottleneck at stride 1: 1x1 -> planes + BN + ReLU, split attention, 1x1 ->
    planes * expansion + BN, plus the shortcut, ReLU. (B, cin, H, W) -> (B, planes * 4, H, W).

    The shortcut is 3x3 max-pool (stride 1, padding 1), 1x1 conv, BN when ``downsample`` (TSJNet's
    first block), else the identity (then cin must equal planes * expansion)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, radix: int = 2, downsample: bool = False):
        super().__init__()
        cout = planes * self.expansion
        if not downsample and cin != cout:
            raise ValueError(f"identity shortcut needs cin == planes * 4, got {cin}, {cout}")
        self.reduce = nn.Sequential(nn.Conv2d(cin, planes, 1, bias=False),
                                    nn.BatchNorm2d(planes), nn.ReLU(inplace=True))
        self.split = SplitAttention(planes, radix)
        self.expand = nn.Sequential(nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, cout, 1, bias=False),
                                       nn.BatchNorm2d(cout)) if downsample else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.expand(self.split(self.reduce(x))) + self.shortcut(x))


def resnest_stage(cin: int, planes: int, blocks: int = 2, radix: int = 2) -> nn.Sequential:
    """``blocks`` bottlenecks, the first with the projection shortcut: cin -> planes * 4."""
    layers = [Bottleneck(cin, planes, radix, downsample=True)]
    layers += [Bottleneck(planes * 4, planes, radix) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def stem(channels) -> nn.Sequential:
    """TSJNet's stem: one conv_bn_relu per step of ``channels`` (paper 3 -> 64 -> 64 -> 128)."""
    return nn.Sequential(*(conv_bn_relu(a, b) for a, b in zip(channels[:-1], channels[1:])))
