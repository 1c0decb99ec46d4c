"""Dilated residual dense block (DRDB), the unit of SegMiF's fusion streams.

Liu et al., ICCV 2023, Sec. 3.1 / Fig. 2: ``n_layers`` densely connected 3x3 convolutions with
dilation 2 and ``growth`` output channels each (every layer sees the block input and all previous
layer outputs), a 1x1 convolution back to ``channels``, and a residual addition. Paper values:
5 layers, growth 32, 64 channels.
"""
from __future__ import annotations

import torch
from torch import nn


class DRDB(nn.Module):
    """Dilated residual dense block.

    Args:
        channels: input and output channels C.
        growth: channels added by each dense layer.
        n_layers: number of dense 3x3 dilated convolutions.
        dilation: dilation of the 3x3 convolutions (padding keeps H, W).

    Shapes: (B, C, H, W) float -> (B, C, H, W).
    """

    def __init__(self, channels: int, growth: int = 32, n_layers: int = 5, dilation: int = 2):
        super().__init__()
        if channels < 1 or growth < 1 or n_layers < 1:
            raise ValueError("channels, growth and n_layers must be >= 1")
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels + i * growth, growth, 3, padding=dilation, dilation=dilation),
                nn.ReLU(inplace=True),
            )
            for i in range(n_layers)
        )
        self.fuse = nn.Conv2d(channels + n_layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1)))
        return x + self.fuse(torch.cat(feats, dim=1))
