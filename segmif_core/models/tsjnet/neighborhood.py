"""Neighbourhood attention and the NAT-Mini network of TSJNet's base (NAT) branch, pure torch.

Neighbourhood attention: A. Hassani, S. Walton, J. Li, S. Li, H. Shi, "Neighborhood Attention
Transformer", CVPR 2023, Sec. 3.1 (Eq. 2-4). Each query pixel (i, j) attends to the k x k keys
around it; near the borders the window slides inward instead of being padded: rows
start_i = clamp(i - k // 2, 0, H - k) .. start_i + k - 1 (same for columns). Logits are
q . k * d^-0.5 plus a learned relative position bias B[h, di + k - 1, dj + k - 1] of
(2k - 1)^2 entries per head, di = key row - query row. natten (the authors' CUDA kernels) is not
assumed installable, so the windows are gathered with index tensors here (memory H W k^2 d per
head). This project's choice, where natten refuses: a map smaller than k along an axis uses the
whole axis (window min(k, H)).

NAT-Mini (TSJNet, tsjnet.md Sec. 2): conv tokenizer (3x3/s2 C -> dims[0]/2, 3x3/s2 -> dims[0],
LayerNorm), levels of NAT layers at strides 4, 8, 16, 32 joined by 3x3/s2 convolutions (no bias,
doubling the width) + LayerNorm; layer x += NA(LN x), x += MLP(LN x) (GELU, ratio 3), stochastic
depth growing linearly to ``drop_path``. TSJNet's head maps the deepest level back to the input
size: 3x3 -> head_hidden + ReLU6, 3x3 -> C + ReLU6, transposed convolutions (no bias) 4x4/s4 ...
2x2/s2 up to the total stride, ReLU6.
"""
from __future__ import annotations

import torch
from torch import nn


def window_starts(n: int, k: int, device=None) -> torch.Tensor:
    """First index of each position's window along an axis of length n (window min(k, n)):
    clamp(i - k // 2, 0, n - min(k, n)), (n,) int64."""
    kk = min(k, n)
    return (torch.arange(n, device=device) - k // 2).clamp(0, n - kk)


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: int,
                           bias: torch.Tensor | None = None) -> torch.Tensor:
    """Neighbourhood attention (Hassani et al. 2023) by gathering the clamped windows.

    Args:
        q, k, v: (B, heads, H, W, d) float; q already scaled (d^-0.5).
        kernel: odd window size k >= 1.
        bias: optional (heads, 2k - 1, 2k - 1) relative position bias.
    Returns:
        (B, heads, H, W, d), same dtype as v.
    Raises:
        ValueError: even or non-positive kernel, mismatched shapes.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and >= 1, got {kernel}")
    if not q.shape == k.shape == v.shape or q.ndim != 5:
        raise ValueError(f"q, k, v must share a (B, heads, H, W, d) shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    b, h, hh, ww, d = q.shape
    kh, kw = min(kernel, hh), min(kernel, ww)
    rows = window_starts(hh, kernel, q.device)[:, None] + torch.arange(kh, device=q.device)
    cols = window_starts(ww, kernel, q.device)[:, None] + torch.arange(kw, device=q.device)
    # (B, h, H, kh, W, kw, d) -> (B, h, H, W, kh * kw, d)
    kw_ = k[:, :, rows][:, :, :, :, cols].permute(0, 1, 2, 4, 3, 5, 6).reshape(
        b, h, hh, ww, kh * kw, d)
    vw_ = v[:, :, rows][:, :, :, :, cols].permute(0, 1, 2, 4, 3, 5, 6).reshape(
        b, h, hh, ww, kh * kw, d)
    logits = torch.einsum("bhijd,bhijnd->bhijn", q, kw_)
    if bias is not None:
        di = rows - torch.arange(hh, device=q.device)[:, None] + kernel - 1   # (H, kh)
        dj = cols - torch.arange(ww, device=q.device)[:, None] + kernel - 1   # (W, kw)
        rel = bias[:, di[:, None, :, None], dj[None, :, None, :]]            # (h, H, W, kh, kw)
        logits = logits + rel.reshape(h, hh, ww, kh * kw).to(logits.dtype)
    attn = logits.softmax(dim=-1)
    return torch.einsum("bhijn,bhijnd->bhijd", attn, vw_)


class NeighborhoodAttention(nn.Module):
    """Multi-head neighbourhood attention on channels-last maps (B, H, W, dim) -> same shape.

    qkv linear with bias, scale d^-0.5, learned relative bias (heads, 2k-1, 2k-1) (init trunc
    normal std 0.02 as NAT), output projection."""

    def __init__(self, dim: int, heads: int, kernel: int = 7):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.kernel, self.scale = heads, kernel, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = nn.Parameter(torch.zeros(heads, 2 * kernel - 1, 2 * kernel - 1))
        nn.init.trunc_normal_(self.rpb, std=0.02, a=-2.0, b=2.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, hh, ww, c = x.shape
        qkv = self.qkv(x).reshape(b, hh, ww, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)
        out = neighborhood_attention(q * self.scale, k, v, self.kernel, self.rpb)
        return self.proj(out.permute(0, 2, 3, 1, 4).reshape(b, hh, ww, c))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., ECCV 2016): in training, zero a sample's residual branch
    with probability p and scale the kept ones by 1 / (1 - p); identity in eval."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class NATLayer(nn.Module):
    """x += DropPath(NA(LN x)); x += DropPath(MLP(LN x)) on (B, H, W, dim)."""

    def __init__(self, dim: int, heads: int, kernel: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention(dim, heads, kernel)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class _ConvLN(nn.Module):
    """3x3 stride-2 convolution then LayerNorm over channels; (B, C, H, W) -> (B, H/2, W/2, C')."""

    def __init__(self, cin: int, cout: int, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 2, 1, bias=bias)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class NATMini(nn.Module):
    """NAT-Mini with TSJNet's upsampling head: (B, C, H, W) -> (B, C, H, W).

    Args:
        channels: C, in and out; dims / depths / heads: per level (paper 64/128/256/512,
            3/4/6/5, 2/4/8/16); kernel: NA window (paper 7); mlp_ratio (3); drop_path: the last
            layer's stochastic-depth rate (0.2); head_hidden (128).
    H and W must be multiples of ``stride`` = 4 * 2^(levels - 1) (the model pads its inputs).
    """

    def __init__(self, channels: int, dims, depths, heads, kernel: int = 7,
                 mlp_ratio: float = 3.0, drop_path: float = 0.2, head_hidden: int = 128):
        super().__init__()
        if not len(dims) == len(depths) == len(heads) or not dims:
            raise ValueError(f"dims, depths and heads need one entry per level, got {dims}, "
                             f"{depths}, {heads}")
        self.stride = 4 * 2 ** (len(dims) - 1)
        self.tokenizer = nn.Sequential(nn.Conv2d(channels, dims[0] // 2, 3, 2, 1),
                                       _ConvLN(dims[0] // 2, dims[0], bias=True))
        total = sum(depths)
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]
        self.levels = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for n, (dim, depth, head) in enumerate(zip(dims, depths, heads)):
            start = sum(depths[:n])
            self.levels.append(nn.Sequential(*(NATLayer(dim, head, kernel, mlp_ratio,
                                                        rates[start + i]) for i in range(depth))))
            if n + 1 < len(dims):
                self.downsamplers.append(_ConvLN(dim, dims[n + 1], bias=False))
        self.norm = nn.LayerNorm(dims[-1])
        up, factor = [], self.stride
        while factor > 1:  # 32 = 4 * 4 * 2 as in TSJNet
            f = 4 if factor % 4 == 0 else 2
            up.append(nn.ConvTranspose2d(channels, channels, f, f, bias=False))
            factor //= f
        self.head = nn.Sequential(
            nn.Conv2d(dims[-1], head_hidden, 3, 1, 1), nn.ReLU6(),
            nn.Conv2d(head_hidden, channels, 3, 1, 1), nn.ReLU6(), *up, nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"NAT-Mini needs H, W multiples of {self.stride}, got {h}x{w}")
        t = self.tokenizer(x)  # (B, H/4, W/4, dims[0]), channels last
        for n, level in enumerate(self.levels):
            t = level(t)
            if n < len(self.downsamplers):
                t = self.downsamplers[n](t.permute(0, 3, 1, 2))
        t = self.norm(t).permute(0, 3, 1, 2)
        return self.head(t)


class NATBranch(nn.Module):
    """The LSM's base branch: y = x + N(LN x), LN over channels at each pixel; (B, C, H, W)."""

    def __init__(self, channels: int, **nat):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.nat = NATMini(channels, **nat)

    @property
    def stride(self) -> int:
        return self.nat.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.nat(normed)


__all__ = ["neighborhood_attention", "window_starts", "NeighborhoodAttention", "NATLayer",
           "NATMini", "NATBranch", "DropPath"]
