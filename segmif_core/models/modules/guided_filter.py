"""Fast guided filter with two guides: the fused luminance at the camera's resolution.

K. He, J. Sun, X. Tang, "Guided Image Filtering", TPAMI 2013, Sec. 3 (Eqs. 7-8; the
multi-channel guide of Eqs. 19-21, here with the 2 channels visible luminance Y and thermal T)
and its fast form K. He, J. Sun, "Fast Guided Filter", arXiv 1505.00996, as used for joint
upsampling in H. Wu et al., "Fast End-to-End Trainable Guided Filter", CVPR 2018 (Sec. 3, Fig. 2):
the local linear model u = a_Y Y + a_T T + b is fitted on the low-resolution output of the
network, its coefficients are box-averaged and bilinearly upsampled, and applied to the
full-resolution sources. Fusion is locally a linear mix of the two sources, so the model fits
well and the full-resolution detail of both cameras reaches the fused image at the cost of a few
element-wise operations at full resolution (no network runs there).

This project's choice, not SegMiF's: Phi runs at the network's input size; ``eps`` and the
radius are fixed (not trained), so training at the network size is unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, windows clipped at the borders
    (He et al.'s box filter divided by the window's pixel count N). x (B, C, H, W) -> same.

    Computed as two depthwise 1-D sums (rows, then columns) divided by the clipped window's
    pixel count: the same values as ``avg_pool2d(count_include_pad=False)`` to float rounding,
    about 30x faster on CPU for r = 4 (a 9x9 pool is ~80 multiply-adds per pixel and channel,
    not vectorised by PyTorch's CPU kernel; the separable sum is 18, on the convolution path).
    """
    if radius == 0:
        return x
    c, (h, w), k = x.shape[1], x.shape[-2:], 2 * radius + 1
    ones_v = x.new_ones(c, 1, k, 1)
    ones_h = x.new_ones(c, 1, 1, k)
    s = F.conv2d(F.conv2d(x, ones_v, padding=(radius, 0), groups=c), ones_h,
                 padding=(0, radius), groups=c)
    return s / (_window_count(h, radius, x)[:, None] * _window_count(w, radius, x)[None, :])


def _window_count(n: int, radius: int, like: torch.Tensor) -> torch.Tensor:
    """Pixels of the clipped 1-D window of each of n positions, (n,) in ``like``'s dtype."""
    i = torch.arange(n, device=like.device)
    return ((i + radius).clamp(max=n - 1) - (i - radius).clamp(min=0) + 1).to(like.dtype)


class GuidedUpsampler(nn.Module):
    """Joint upsampling of a fused luminance with the two sources as guides.

    Args:
        radius: window radius r at the low resolution (>= 1).
        eps: regularisation of the local fit (> 0), in units of squared [0, 1] intensity: local
            variances well below eps are smoothed rather than reproduced.

    forward(u_lo, y_lo, t_lo, y_hi, t_hi): u_lo, y_lo, t_lo (B, 1, h, w) in [0, 1] (the network's
    fused luminance and the sources it fused, at the network size); y_hi, t_hi (B, 1, H, W) in
    [0, 1] (the sources at the camera size) -> fused luminance (B, 1, H, W) float32 in [0, 1].
    Raises ValueError for mismatched shapes.
    """

    def __init__(self, radius: int = 4, eps: float = 1e-5):
        super().__init__()
        if radius < 1 or not eps > 0:
            raise ValueError(f"radius must be >= 1 and eps > 0, got {radius}, {eps}")
        self.radius, self.eps = int(radius), float(eps)

    def coefficients(self, u: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """(a_Y, a_T, b), each (B, 1, h, w): the box-averaged local linear model of u on (y, t)."""
        r, eps = self.radius, self.eps
        stats = box_mean(torch.cat([y, t, u, y * y, t * t, y * t, y * u, t * u], dim=1), r)
        my, mt, mu, myy, mtt, myt, myu, mtu = stats.split(1, dim=1)
        s_yy, s_tt, s_yt = myy - my * my + eps, mtt - mt * mt + eps, myt - my * mt
        c_yu, c_tu = myu - my * mu, mtu - mt * mu
        det = s_yy * s_tt - s_yt * s_yt          # >= eps^2 > 0 (positive definite)
        a_y = (s_tt * c_yu - s_yt * c_tu) / det
        a_t = (s_yy * c_tu - s_yt * c_yu) / det
        b = mu - a_y * my - a_t * mt
        return box_mean(torch.cat([a_y, a_t, b], dim=1), r).split(1, dim=1)

    def forward(self, u_lo, y_lo, t_lo, y_hi, t_hi) -> torch.Tensor:
        if not (u_lo.shape == y_lo.shape == t_lo.shape and y_hi.shape == t_hi.shape
                and u_lo.shape[:2] == y_hi.shape[:2] and u_lo.shape[1] == 1):
            raise ValueError(f"shapes differ: u {tuple(u_lo.shape)}, y {tuple(y_lo.shape)}, "
                             f"t {tuple(t_lo.shape)}, y_hi {tuple(y_hi.shape)}, "
                             f"t_hi {tuple(t_hi.shape)}")
        dtype = u_lo.dtype
        # float32 throughout, also under autocast: the local variances are differences of
        # nearly equal means, which fp16 / bf16 cannot resolve
        with torch.autocast(u_lo.device.type, enabled=False):
            coeffs = torch.cat(self.coefficients(u_lo.float(), y_lo.float(), t_lo.float()), dim=1)
            if coeffs.shape[-2:] != y_hi.shape[-2:]:
                coeffs = F.interpolate(coeffs, size=y_hi.shape[-2:], mode="bilinear",
                                       align_corners=False)
            a_y, a_t, b = coeffs.split(1, dim=1)
            return (a_y * y_hi.float() + a_t * t_hi.float() + b).clamp(0.0, 1.0).to(dtype)
