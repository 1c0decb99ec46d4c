"""Hierarchical interactive attention (HIA) and the ablation aggregations of SegMiF.

Liu et al., ICCV 2023, Sec. 3.2, Fig. 3. Inputs are the two modality features F_ir, F_vis and the
semantic feature F_seg, all (B, C, H, W). Each is embedded per token by Linear(C -> 2C) + ReLU and
split into a semantic half F^s and a modality half F^m.

Attention is the linear (channel) form: per head, a global context G = softmax(K^T V) of size
(d x d) (d = C / heads) and output Q G, so the cost is linear in the number of pixels.
Because K^T V sums over all H*W tokens, K and V are L2-normalised over the tokens first and the
context is scaled by a learned per-head temperature before the softmax (our choice, the paper does
not say how the sum is scaled).

- SoAM (semantic-oriented): Q_s from F_seg^s; G_ir, G_vis from F_ir^m, F_vis^m;
  S_ir = Q_s G_ir, S_vis = Q_s G_vis.
- MoAM (modality-oriented): Q_ir, Q_vis from F_ir^m, F_vis^m; G_s from the segmentation tokens
  (we use F_seg^m, so both halves of the semantic embedding are used); M_ir = Q_ir G_s,
  M_vis = Q_vis G_s.
- Concatenate {S_ir, M_ir} and {S_vis, M_vis}, one MLP per modality (2C -> C), residual addition to
  F_ir / F_vis, LayerNorm. Only the modality features are updated.

Ablations of the paper's Table 3: ``mode`` 'full', 'soam' (SoAM only), 'moam' (MoAM only), and
``Aggregation`` 'concat', 'sum', 'average' (no HIA: the semantic feature is merged into each
stream directly), 'none' (no semantic guidance at all).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ...choices import check_choice

HIA_MODES = ("full", "soam", "moam")
AGGREGATIONS = ("concat", "sum", "average", "none")


class _Context(nn.Module):
    """Multi-head linear-attention context G = softmax(tau * K^T V), K, V from tokens."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens (B, N, C) -> context (B, heads, d, d)
        b, n, c = tokens.shape
        k = self.k(tokens).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        v = self.v(tokens).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        k = F.normalize(k, dim=2)
        v = F.normalize(v, dim=2)
        return torch.softmax(self.temperature * (k.transpose(-2, -1) @ v), dim=-1)


def _apply(q: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """q (B, heads, N, d) @ context (B, heads, d, d) -> (B, N, heads*d)."""
    out = q @ context
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


class HIA(nn.Module):
    """Hierarchical interactive attention block (SoAM + MoAM).

    Args:
        channels: C of F_ir, F_vis, F_seg; must be divisible by ``heads``.
        heads: attention heads (paper code: 8 heads of 8 dims for C = 64).
        mode: 'full', 'soam' or 'moam' (Table 3 ablation).

    forward(f_ir, f_vis, f_seg): three (B, C, H, W) tensors -> updated (f_ir, f_vis), same shapes.

    Raises:
        ValueError: channels not divisible by heads, unknown mode.
    """

    def __init__(self, channels: int, heads: int = 8, mode: str = "full"):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        check_choice("HIA mode", mode, HIA_MODES)
        c = channels
        self.heads, self.mode = heads, mode
        self.use_soam = mode in ("full", "soam")
        self.use_moam = mode in ("full", "moam")
        self.embed = nn.ModuleDict({k: nn.Sequential(nn.Linear(c, 2 * c), nn.ReLU(inplace=True))
                                    for k in ("ir", "vis", "seg")})
        n_parts = int(self.use_soam) + int(self.use_moam)
        if self.use_soam:
            self.q_seg = nn.Linear(c, c)
            self.ctx_ir = _Context(c, heads)
            self.ctx_vis = _Context(c, heads)
        if self.use_moam:
            self.q_ir = nn.Linear(c, c)
            self.q_vis = nn.Linear(c, c)
            self.ctx_seg = _Context(c, heads)
        self.mlp_ir = nn.Sequential(nn.Linear(n_parts * c, c), nn.GELU(), nn.Linear(c, c))
        self.mlp_vis = nn.Sequential(nn.Linear(n_parts * c, c), nn.GELU(), nn.Linear(c, c))
        self.norm_ir = nn.LayerNorm(c)
        self.norm_vis = nn.LayerNorm(c)

    def _q(self, layer: nn.Linear, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        return layer(tokens).view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, f_ir: torch.Tensor, f_vis: torch.Tensor, f_seg: torch.Tensor):
        b, c, h, w = f_ir.shape
        tok = {k: t.flatten(2).transpose(1, 2) for k, t in (("ir", f_ir), ("vis", f_vis), ("seg", f_seg))}
        emb = {k: self.embed[k](t).chunk(2, dim=-1) for k, t in tok.items()}  # (semantic, modality)
        parts_ir, parts_vis = [], []
        if self.use_soam:  # semantic query, modality contexts
            q_s = self._q(self.q_seg, emb["seg"][0])
            parts_ir.append(_apply(q_s, self.ctx_ir(emb["ir"][1])))
            parts_vis.append(_apply(q_s, self.ctx_vis(emb["vis"][1])))
        if self.use_moam:  # modality queries, semantic context
            g_s = self.ctx_seg(emb["seg"][1])
            parts_ir.append(_apply(self._q(self.q_ir, emb["ir"][1]), g_s))
            parts_vis.append(_apply(self._q(self.q_vis, emb["vis"][1]), g_s))
        out_ir = self.norm_ir(tok["ir"] + self.mlp_ir(torch.cat(parts_ir, dim=-1)))
        out_vis = self.norm_vis(tok["vis"] + self.mlp_vis(torch.cat(parts_vis, dim=-1)))
        to_map = lambda t: t.transpose(1, 2).reshape(b, c, h, w)  # noqa: E731
        return to_map(out_ir), to_map(out_vis)


class Aggregation(nn.Module):
    """Ablation without HIA: merge F_seg into each stream by 'concat' (1x1 conv of [F, F_seg]),
    'sum' (F + F_seg), 'average' ((F + F_seg) / 2) or 'none' (streams unchanged).

    forward(f_ir, f_vis, f_seg): (B, C, H, W) each -> (f_ir, f_vis).
    """

    def __init__(self, channels: int, mode: str):
        super().__init__()
        check_choice("aggregation", mode, AGGREGATIONS)
        self.mode = mode
        if mode == "concat":
            self.proj_ir = nn.Conv2d(2 * channels, channels, 1)
            self.proj_vis = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, f_ir, f_vis, f_seg):
        if self.mode == "concat":
            return (self.proj_ir(torch.cat([f_ir, f_seg], 1)),
                    self.proj_vis(torch.cat([f_vis, f_seg], 1)))
        if self.mode == "sum":
            return f_ir + f_seg, f_vis + f_seg
        if self.mode == "average":
            return (f_ir + f_seg) / 2, (f_vis + f_seg) / 2
        return f_ir, f_vis


def make_interaction(channels: int, heads: int, mode: str) -> nn.Module:
    """Build the stream interaction for ``mode`` in HIA_MODES + AGGREGATIONS."""
    if mode in HIA_MODES:
        return HIA(channels, heads, mode)
    return Aggregation(channels, mode)
