"""The local significant feature module (LSM) of TSJNet: a base branch (neighbourhood attention,
``neighborhood.NATBranch``) and a detail branch (DSM with coordinate-free channel attention COA
and a pooled squeeze-and-excitation path), run in parallel on the same features.

Jie et al., "TSJNet", arXiv 2402.01212, Sec. 3 (LSM; v1 calls the detail branch DSM, v2 MDM, the
README LSFE/COA); the layer list follows the authors' code (tsjnet.md Sec. 2):

    a = 1x1 conv(Dropout2d 0.1(CBR(COA(CBR x)))),  CBR = 3x3 conv (no bias) + BN + ReLU,
        COA(z) = z + ReLU(1x1 conv z)
    b = up(SE(u) * u),  u = maxpool2(t) + avgpool2(t),  t = LeakyReLU 0.2(3x3 conv x),
        SE = GAP, FC C -> C/2, ReLU, FC C/2 -> C (both without bias), sigmoid,
        up = 2x2 stride-2 transposed conv
    DSM(x) = a + b

Disabled variants of the code gate COA with a binary Harris-corner map; whether the paper does is
uncertain, and it is not done here. H and W must be even (the model pads to a multiple of 32).
"""
from __future__ import annotations

import torch
from torch import nn

from .neighborhood import NATBranch
from .split_attention import conv_bn_relu


class COA(nn.Module):
    """COA(z) = z + ReLU(1x1 conv z); (B, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + torch.relu(self.conv(z))


class SqueezeExcite(nn.Module):
    """Channel weights in (0, 1): GAP, FC C -> C/r, ReLU, FC -> C, sigmoid (no biases);
    (B, C, H, W) -> (B, C, 1, 1)."""

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))[..., None, None]


class DetailBranch(nn.Module):
    """DSM, the LSM's detail branch: (B, C, H, W) -> (B, C, H, W), H and W even."""

    def __init__(self, channels: int, dropout: float = 0.1):
        super().__init__()
        self.local = nn.Sequential(conv_bn_relu(channels, channels), COA(channels),
                                   conv_bn_relu(channels, channels), nn.Dropout2d(dropout),
                                   nn.Conv2d(channels, channels, 1))
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.max_pool, self.avg_pool = nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.se = SqueezeExcite(channels, 2)
        self.up = nn.ConvTranspose2d(channels, channels, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"the detail branch needs even H, W, got {tuple(x.shape[-2:])}")
        t = nn.functional.leaky_relu(self.conv(x), 0.2)
        u = self.max_pool(t) + self.avg_pool(t)
        return self.local(x) + self.up(u * self.se(u))


class LSM(nn.Module):
    """Base (NAT) and detail (DSM) branches in parallel: x (B, C, H, W) -> (base, detail), both
    (B, C, H, W). ``nat`` are the keyword arguments of ``NATMini`` (dims, depths, heads, ...)."""

    def __init__(self, channels: int, **nat):
        super().__init__()
        self.base = NATBranch(channels, **nat)
        self.detail = DetailBranch(channels)

    @property
    def stride(self) -> int:
        return self.base.stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base(x), self.detail(x)
