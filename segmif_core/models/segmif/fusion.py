"""SegMiF fusion network Phi (Liu et al., ICCV 2023, Sec. 3.1, Fig. 2).

Two parallel full-resolution streams (thermal, visible luminance): 3x3 conv to C channels + PReLU,
then two groups of DRDBs. After each group the streams interact with a semantic feature through
HIA (first with the MiT stage-1 feature, then with stage 2). With ``hia_stride`` s > 1 (a CPU
option, not in the paper) the interaction runs on s-times average-pooled stream features and its
change is upsampled and added back: F <- F + up(HIA(pool(F)) - pool(F)); s = 1 is the paper's
full-resolution HIA. Decoder: concat(ir, vis) 2C -> C ->
C/2 -> 1 with 3x3 conv + PReLU, a sigmoid on the last layer gives the fused luminance u in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..modules import DRDB, make_interaction


def _conv_prelu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.PReLU(cout))


class FusionNetwork(nn.Module):
    """Fusion network Phi.

    Args:
        width: stream channels C (paper 64).
        growth, drdb_layers: DRDB growth and dense layers (paper 32, 5).
        drdbs_per_group: DRDBs in each of the two groups of each stream.
        semantic_channels: channels of the two guidance features (MiT stages 1 and 2).
        heads: HIA heads; interaction: HIA mode or ablation aggregation (see modules.hia).
        hia_stride: resolution divisor of the interaction (1 = full resolution, the paper).

    forward(y, ir, sem): y, ir (B, 1, H, W) in [0, 1]; sem = [stage-1 (B, c1, H/4, W/4),
    stage-2 (B, c2, H/8, W/8)] -> fused luminance (B, 1, H, W) in [0, 1].
    """

    def __init__(self, width: int, growth: int, drdb_layers: int, drdbs_per_group: int,
                 semantic_channels: tuple[int, int], heads: int, interaction: str,
                 hia_stride: int = 1):
        super().__init__()
        if hia_stride < 1:
            raise ValueError(f"hia_stride must be >= 1, got {hia_stride}")
        self.hia_stride = hia_stride
        c = width
        self.stem_ir = _conv_prelu(1, c)
        self.stem_vis = _conv_prelu(1, c)

        def group():
            return nn.Sequential(*[DRDB(c, growth, drdb_layers) for _ in range(drdbs_per_group)])

        self.groups_ir = nn.ModuleList([group(), group()])
        self.groups_vis = nn.ModuleList([group(), group()])
        self.uses_semantics = interaction != "none"
        self.semantic_proj = nn.ModuleList(nn.Conv2d(s, c, 1) for s in semantic_channels
                                           if self.uses_semantics)
        self.interactions = nn.ModuleList(make_interaction(c, heads, interaction) for _ in range(2)
                                          if self.uses_semantics)
        self.decoder = nn.Sequential(_conv_prelu(2 * c, c), _conv_prelu(c, c // 2),
                                     nn.Conv2d(c // 2, 1, 3, padding=1))

    def forward(self, y: torch.Tensor, ir: torch.Tensor, sem: list[torch.Tensor] | None
                ) -> torch.Tensor:
        """sem may be None when ``uses_semantics`` is False (interaction 'none')."""
        f_ir, f_vis = self.stem_ir(ir), self.stem_vis(y)
        for i, (g_ir, g_vis) in enumerate(zip(self.groups_ir, self.groups_vis)):
            f_ir, f_vis = g_ir(f_ir), g_vis(f_vis)
            if self.uses_semantics:
                # project at low resolution, then upsample (same result as the reverse order)
                f_ir, f_vis = self._interact(self.interactions[i], f_ir, f_vis,
                                             self.semantic_proj[i](sem[i]))
        return torch.sigmoid(self.decoder(torch.cat([f_ir, f_vis], dim=1)))

    def _interact(self, inter: nn.Module, f_ir, f_vis, f_seg_low):
        size = f_ir.shape[-2:]
        if self.hia_stride == 1:
            f_seg = F.interpolate(f_seg_low, size=size, mode="bilinear", align_corners=False)
            return inter(f_ir, f_vis, f_seg)
        p_ir = F.avg_pool2d(f_ir, self.hia_stride, ceil_mode=True)
        p_vis = F.avg_pool2d(f_vis, self.hia_stride, ceil_mode=True)
        f_seg = F.interpolate(f_seg_low, size=p_ir.shape[-2:], mode="bilinear", align_corners=False)
        o_ir, o_vis = inter(p_ir, p_vis, f_seg)
        up = lambda d: F.interpolate(d, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        return f_ir + up(o_ir - p_ir), f_vis + up(o_vis - p_vis)
