"""Laplacian-pyramid composition of the fused luminance: Phi decides, the pyramid carries detail.

This project's design for SegMiF's full-resolution fused image (``SegMiFConfig.fusion_head =
'pyramid'``; not the paper's, whose Phi outputs the fused luminance directly): Phi outputs a
per-pixel weight map w in [0, 1] at the network size, and the fused luminance at ANY size (the
network's, or the camera's) is

    u = collapse( maxabs(L_k(Y), L_k(T)) for the detail levels k < n-1,
                  w_b * G_{n-1}(Y) + (1 - w_b) * G_{n-1}(T) at the coarsest level ),

(``base='brighter'``: w_b * max(G_{n-1}(Y), G_{n-1}(T)) + (1 - w_b) * min(...), w_b the brighter
source's share, 1 = the classical max rule) with L_k / G_k the Laplacian / Gaussian pyramid
levels of the visible luminance Y and the thermal image T (Burt & Adelson, IEEE Trans. Commun.
31(4), 1983; the max-abs detail rule of Toet, Pattern Recognit. Lett. 9(4), 1989) and w_b the
weight map brought to the coarsest level's size.
So every detail coefficient of both cameras reaches the fused image at full resolution (no
network runs there: a few filters per level), and the network decides where thermal or visible
wins at low frequency (the warm pedestrian at night, the lit sign). Gradients reach Phi through
w_b only.

Pyramid operators (torch, exportable to ONNX): ``down`` = 5-tap binomial blur [1 4 6 4 1] / 16
(separable, reflected borders) at every second pixel (the size becomes ceil(n / 2), as
OpenCV's pyrDown); the expand step from a level to the finer one, ``upsample``:
'bilinear' (``up``, a bilinear resize; the pyramid head's first operator, what every checkpoint
trained before session 18 uses) or 'binomial' (``expand``: Burt & Adelson's EXPAND, zeros
inserted and the same 5-tap kernel, x4 -- the numbers of OpenCV's pyrUp and so of the classical
``fusion_rules.laplacian``). Decomposition and collapse use the same step, so
``collapse(pyramid(x)) == x`` to float rounding with either. Measured (session 18, the max-base
pyramid on MSRS's 10 pairs, 4 levels): with 'bilinear' VIF 0.953 / Qabf 0.646, with 'binomial'
0.970 / 0.651 (the classical rule's): the bilinear step's detail levels alias, and the
larger-magnitude selection keeps the aliasing (docs/model_card.md).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ...choices import check_choice


def down(x: torch.Tensor) -> torch.Tensor:
    """Blur (5-tap binomial, reflected borders) and keep every second pixel:
    (B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2)). H, W >= 3 (reflect padding of 2).

    Computed only at the kept pixels, as sums of strided slices of the padded image (the same
    numbers as a separable convolution with stride 2, to float rounding; 10x faster than torch's
    grouped convolution on a 640x480 image on one CPU thread, and exportable to ONNX)."""
    h, w = x.shape[-2:]
    ho, wo = (h + 1) // 2, (w + 1) // 2
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    r = [x[:, :, i:i + 2 * ho - 1:2, :] for i in range(5)]
    x = (r[0] + r[4]) + 4.0 * (r[1] + r[3]) + 6.0 * r[2]
    c = [x[:, :, :, i:i + 2 * wo - 1:2] for i in range(5)]
    return ((c[0] + c[4]) + 4.0 * (c[1] + c[3]) + 6.0 * c[2]) * (1.0 / 256.0)


def up(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize to ``size`` (h, w) (half-pixel centres)."""
    return F.interpolate(x, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def _expand_axis(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """EXPAND along ``dim`` (2: rows, 3: columns) of x (B, C, H, W) to length ``n`` (2m - 1 or
    2m for m samples): u[2i] = (x[i-1] + 6 x[i] + x[i+1]) / 8, u[2i+1] = (x[i] + x[i+1]) / 2,
    with x[-1] = x[1] and x[m] = x[m-1] (OpenCV pyrUp's borders: reflected at the start,
    replicated at the end). m >= 2."""
    m = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 1, 1), x, x.narrow(dim, m - 1, 1)], dim=dim)
    even = (xp.narrow(dim, 0, m) + xp.narrow(dim, 2, m)) * 0.125 + xp.narrow(dim, 1, m) * 0.75
    odd = (xp.narrow(dim, 1, m) + xp.narrow(dim, 2, m)) * 0.5
    shape = list(x.shape)
    shape[dim] = 2 * m
    return torch.stack([even, odd], dim=dim + 1).reshape(shape).narrow(dim, 0, n)


def expand(x: torch.Tensor, size) -> torch.Tensor:
    """Burt & Adelson's EXPAND (IEEE Trans. Commun. 31(4), 1983; OpenCV's pyrUp, to float
    rounding): (B, C, h, w) -> (B, C, size[0], size[1]) with size[k] in {2 h - 1, 2 h} (the
    finer level of ``down``'s ceil(n / 2)); h, w >= 2. Separable, computed as sums of slices of
    the coarse image (exportable to ONNX with free sizes)."""
    return _expand_axis(_expand_axis(x, size[0], 2), size[1], 3)


#: The expand step of :func:`laplacian_pyramid` / :func:`collapse` (module docstring).
PYRAMID_UPSAMPLES = ("bilinear", "binomial")


def _step(upsample: str):
    check_choice("upsample", upsample, PYRAMID_UPSAMPLES)
    return up if upsample == "bilinear" else expand


def _tracing() -> bool:
    """True under torch.export / torch.compile (no checks on symbolic sizes there: a check
    would fix the camera size of a dynamic ONNX export)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def laplacian_pyramid(x: torch.Tensor, levels: int,
                      upsample: str = "bilinear") -> list[torch.Tensor]:
    """``levels - 1`` detail levels (finest first, G_k - step(G_{k+1}), ``upsample`` the step of
    :data:`PYRAMID_UPSAMPLES`) and the coarsest Gaussian level of x (B, C, H, W): ``levels``
    tensors. Raises ValueError if the image is too small (every level but the coarsest must be
    >= 3 pixels per side) or ``upsample`` is unknown."""
    step = _step(upsample)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if not _tracing() and min(x.shape[-2:]) < 3 * 2 ** max(levels - 2, 0):
        raise ValueError(f"{levels} pyramid levels need at least {3 * 2 ** max(levels - 2, 0)} "
                         f"pixels per side, got {tuple(x.shape[-2:])}")
    out, g = [], x
    for _ in range(levels - 1):
        g_next = down(g)
        out.append(g - step(g_next, g.shape[-2:]))
        g = g_next
    out.append(g)
    return out


def collapse(pyr: list[torch.Tensor], upsample: str = "bilinear") -> torch.Tensor:
    """Inverse of :func:`laplacian_pyramid` with the same ``upsample``."""
    step = _step(upsample)
    x = pyr[-1]
    for detail in reversed(pyr[:-1]):
        x = step(x, detail.shape[-2:]) + detail
    return x


#: What the weight map w means at the coarsest level (``PyramidComposer.forward``'s ``base``):
#: 'visible' = the visible share, w G(Y) + (1 - w) G(T); 'brighter' = the share of the brighter
#: source at each pixel, w max(G(Y), G(T)) + (1 - w) min(G(Y), G(T)), so that w = 1 is the max
#: rule of the classical pyramid fusion and the network learns where to depart from it.
PYRAMID_BASES = ("visible", "brighter")
#: ``PyramidComposer``'s bases: :data:`PYRAMID_BASES` and 'map', where w is the coarsest level
#: itself (a network's fused map, TSJNet's ``pyramid_base='map'``).
COMPOSER_BASES = PYRAMID_BASES + ("map",)


def weight_downs(levels: int, net_size: int, map_size: int) -> int:
    """``down`` steps that bring a weight map made at ``map_size`` (its height) for a network
    input of height ``net_size`` to the scale of the coarsest level of a ``levels``-level
    pyramid of that input: levels - 1 - log2(net_size / map_size), rounded, at least 0. It
    depends on the network and map sizes only, so an ONNX export keeps the camera size free."""
    n_net = max(int(round(math.log2(float(net_size) / float(map_size)))), 0)
    return max(int(levels) - 1 - n_net, 0)


class PyramidComposer(nn.Module):
    """Fused luminance from a base-level weight map and the two sources (module docstring).

    forward(w, y, t, levels, w_downs, base='visible', upsample='bilinear'): w (B, 1, h, w) in
    [0, 1], the visible share of the coarsest level (``base='brighter'``: the brighter source's share, see
    :data:`PYRAMID_BASES`; ``base='map'``: the coarsest level itself, e.g. a network's fused
    map, :data:`COMPOSER_BASES`), reduced by ``w_downs`` ``down`` steps (to about the coarsest level's
    scale) and then resized bilinearly to the coarsest level's size; y, t (B, 1, H, W) in [0, 1];
    levels >= 1; ``upsample``: the pyramid's expand step (:data:`PYRAMID_UPSAMPLES`; w itself
    is always resized bilinearly) -> fused luminance (B, 1, H, W) float in [0, 1] (clamped).
    ``w_downs`` depends only on w's size, never on H, W, so an ONNX export keeps the camera size
    free. Raises ValueError for mismatched shapes, too small images, an unknown ``base`` or
    ``upsample``.
    """

    def forward(self, w: torch.Tensor, y: torch.Tensor, t: torch.Tensor, levels: int,
                w_downs: int, base: str = "visible", upsample: str = "bilinear") -> torch.Tensor:
        if not _tracing() and (y.shape != t.shape or y.shape[1] != 1 or w.shape[1] != 1
                               or w.shape[0] != y.shape[0]):
            raise ValueError(f"shapes differ: w {tuple(w.shape)}, y {tuple(y.shape)}, "
                             f"t {tuple(t.shape)}")
        check_choice("base", base, COMPOSER_BASES)
        both = laplacian_pyramid(torch.cat([y, t], dim=1), levels, upsample)
        fused = [torch.where(d[:, :1].abs() >= d[:, 1:].abs(), d[:, :1], d[:, 1:])
                 for d in both[:-1]]
        coarse = both[-1]
        for _ in range(int(w_downs)):
            w = down(w)
        w = up(w, coarse.shape[-2:])
        if base == "map":
            fused.append(w)
        elif base == "visible":
            fused.append(w * coarse[:, :1] + (1.0 - w) * coarse[:, 1:])
        else:  # "brighter": w is the share of the brighter source (w = 1: the max rule)
            hi = torch.maximum(coarse[:, :1], coarse[:, 1:])
            lo = torch.minimum(coarse[:, :1], coarse[:, 1:])
            fused.append(w * hi + (1.0 - w) * lo)
        return collapse(fused, upsample).clamp(0.0, 1.0)

