"""TSJNet's fusion autoencoder: a shared encoder E, two fusion layers, one decoder D.

Jie et al., "TSJNet", arXiv 2402.01212, Sec. 3 (Fig. 2); layers as in tsjnet.md Sec. 2, all at
stride 1 (full resolution) apart from inside the NAT branches:

    E: embed 3x3 conv 1 -> 3 (no bias); stem CBR 3 -> 64 -> 64 -> 128; 2 ResNeSt bottlenecks
       (planes 128, radix 2) -> 512; reduce 3x3 conv + ReLU6 512 -> 256 -> 128 -> 64; LSM ->
       (base B, detail D), 64 channels each.
    fusion: F_B = NAT'(B_V + B_I), F_D = DSM'(D_V + D_I) (separate instances).
    D: concat (B, D) -> spatial attention (8 groups, each 1x1 conv -> sigmoid gating its group,
       maps A (B, 8, H, W)) -> 1x1 -> 32 (no bias) -> stem 32 -> 64 -> 64 -> 128 -> 2
       bottlenecks -> 3x3 512 -> 256 (no bias) + LeakyReLU 0.01 -> 3x3 256 -> 1 (no bias) ->
       sigmoid.

D decodes V (D E V ~ V), I (D E I ~ I) and the fusion (the fused map F). Widths are those of
``TSJNetConfig`` (the paper's: ``TSJNetConfig.paper()``).
"""
from __future__ import annotations

import torch
from torch import nn

from .lsm import LSM, DetailBranch
from .neighborhood import NATBranch
from .split_attention import resnest_stage, stem


def _conv_relu6(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU6(inplace=True))


class SpatialAttention(nn.Module):
    """Grouped spatial attention of the decoder: the C input channels form ``groups`` groups;
    each group's 1x1 conv (-> 1) + sigmoid gives a map that multiplies that group.

    forward(x (B, C, H, W)) -> (gated x (B, C, H, W), maps A (B, groups, H, W) in (0, 1)).
    Raises ValueError at construction when C is not divisible by ``groups``."""

    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels {channels} not divisible by {groups} attention groups")
        self.groups = groups
        self.score = nn.Conv2d(channels, groups, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        maps = torch.sigmoid(self.score(x))
        gated = x.view(b, self.groups, c // self.groups, h, w) * maps[:, :, None]
        return gated.view(b, c, h, w), maps


class FusionEncoder(nn.Module):
    """E: (B, 1, H, W) in [0, 1] -> (base, detail), each (B, C, H, W); H, W multiples of
    ``stride``."""

    def __init__(self, stem_channels, planes: int, blocks: int, radix: int, reduce_channels,
                 nat: dict):
        super().__init__()
        self.embed = nn.Conv2d(1, 3, 3, 1, 1, bias=False)
        self.stem = stem((3,) + tuple(stem_channels))
        self.blocks = resnest_stage(stem_channels[-1], planes, blocks, radix)
        chain = (planes * 4,) + tuple(reduce_channels)
        self.reduce = nn.Sequential(*(_conv_relu6(a, b) for a, b in zip(chain[:-1], chain[1:])))
        self.lsm = LSM(chain[-1], **nat)

    @property
    def stride(self) -> int:
        return self.lsm.stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lsm(self.reduce(self.blocks(self.stem(self.embed(x)))))


class FusionDecoder(nn.Module):
    """D: (base, detail) (B, C, H, W) each -> (image (B, 1, H, W) in (0, 1), attention maps
    (B, groups, H, W))."""

    def __init__(self, channels: int, attention_groups: int, decoder_in: int, stem_channels,
                 planes: int, blocks: int, radix: int):
        super().__init__()
        self.attention = SpatialAttention(2 * channels, attention_groups)
        self.squeeze = nn.Conv2d(2 * channels, decoder_in, 1, bias=False)
        self.stem = stem((decoder_in,) + tuple(stem_channels))
        self.blocks = resnest_stage(stem_channels[-1], planes, blocks, radix)
        out = planes * 4
        self.out = nn.Sequential(nn.Conv2d(out, out // 2, 3, 1, 1, bias=False),
                                 nn.LeakyReLU(0.01, inplace=True),
                                 nn.Conv2d(out // 2, 1, 3, 1, 1, bias=False), nn.Sigmoid())

    def forward(self, base: torch.Tensor, detail: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        gated, maps = self.attention(torch.cat([base, detail], dim=1))
        return self.out(self.blocks(self.stem(self.squeeze(gated)))), maps


class FusionNetwork(nn.Module):
    """E, the fusion layers (NAT', DSM') and D of TSJNet.

    ``fuse(y, t)``: visible luminance y and thermal t (B, 1, H, W) in [0, 1], H and W multiples of
    ``stride`` -> (fused map F (B, 1, H, W) in (0, 1), attention maps (B, groups, H, W)).
    ``reconstruct(x)``: D(E(x)) for one modality -> (image, attention maps), the autoencoder
    passes of the reconstruction loss.
    """

    def __init__(self, stem_channels, planes: int, blocks: int, radix: int, reduce_channels,
                 attention_groups: int, decoder_in: int, nat: dict):
        super().__init__()
        channels = reduce_channels[-1]
        self.encoder = FusionEncoder(stem_channels, planes, blocks, radix, reduce_channels, nat)
        self.fuse_base = NATBranch(channels, **nat)
        self.fuse_detail = DetailBranch(channels)
        self.decoder = FusionDecoder(channels, attention_groups, decoder_in, stem_channels,
                                     planes, blocks, radix)

    @property
    def stride(self) -> int:
        return self.encoder.stride

    def fuse(self, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one encoder pass on both modalities (the batch doubles, batch norm sees both)
        base, detail = self.encoder(torch.cat([y, t], dim=0))
        b_v, b_i = base.chunk(2, dim=0)
        d_v, d_i = detail.chunk(2, dim=0)
        return self.decoder(self.fuse_base(b_v + b_i), self.fuse_detail(d_v + d_i))

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(*self.encoder(x))
