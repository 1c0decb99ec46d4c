"""SegMiF losses (Liu et al., ICCV 2023, Sec. 3.3, Eqs. 3-7).

All images are float tensors in [0, 1] of shape (B, 1, H, W): u the fused luminance, x the visible
luminance, y the thermal image. Every function returns a scalar tensor (mean over the batch).
SSIM and the Gaussian blur come from kornia.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.losses import ssim_loss as _kornia_ssim_loss

from ..choices import check_choice


def ssim_loss(u: torch.Tensor, x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Eq. (3): L_SSIM = (1 - SSIM(u, x)) / 2 + (1 - SSIM(u, y)) / 2, in [0, 2].

    SSIM with a Gaussian window of ``window`` pixels (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2 (data
    range 1), as in kornia. Identical inputs give 0.
    """
    return _kornia_ssim_loss(u, x, window) + _kornia_ssim_loss(u, y, window)


def vsm_saliency(img: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Visual saliency map of Ma et al., "Infrared and visible image fusion based on visual saliency
    map and weighted least square optimization", Infrared Phys. Technol. 82:8-17, 2017.

    V(p) = sum_q hist(q) |p - q| over the ``levels`` grey levels of the image, then min-max
    normalised to [0, 1] per image (a constant image gives all zeros).

    Args:
        img: (B, 1, H, W) float in [0, 1]; quantised to ``levels`` levels.
    Returns:
        (B, 1, H, W) float32 saliency in [0, 1]. Not differentiable (a data-dependent weight).
    """
    with torch.no_grad():
        b = img.shape[0]
        q = (img.clamp(0, 1) * (levels - 1)).round().long().view(b, -1)
        hist = torch.zeros(b, levels, device=img.device).scatter_add_(
            1, q, torch.ones_like(q, dtype=torch.float32))
        grey = torch.arange(levels, device=img.device, dtype=torch.float32)
        per_level = hist @ (grey[:, None] - grey[None, :]).abs()  # (B, levels): V of each level
        lo = per_level.gather(1, q).min(1, keepdim=True).values
        hi = per_level.gather(1, q).max(1, keepdim=True).values
        v = (per_level.gather(1, q) - lo) / (hi - lo).clamp_min(1e-12)
        return v.view_as(img).float()


def vsm_weights(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Saliency weight maps (m1, m2) of Eq. (4): Ma et al.'s base-layer weights
    W = 0.5 + (V_x - V_y) / 2 and 1 - W (the SegMiF paper does not say how m1, m2 are normalised;
    we use Ma et al.'s). Shapes (B, 1, H, W) -> two (B, 1, H, W) maps in [0, 1] summing to 1.
    """
    w = 0.5 + (vsm_saliency(x) - vsm_saliency(y)) / 2
    return w, 1 - w


def saliency_pixel_loss(u: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (4), saliency-weighted pixel loss: mean(m1 (u - x)^2) + mean(m2 (u - y)^2).

    Read as weights on the two squared errors: its minimiser is the saliency-weighted average
    m1 x + m2 y, the VSM fusion rule of Ma et al. (the literal ||u - m1 x||^2 + ||u - m2 y||^2 has
    the half-intensity minimiser (m1 x + m2 y) / 2, which darkens every image).
    """
    m1, m2 = vsm_weights(x, y)
    return (m1 * (u - x) ** 2).mean() + (m2 * (u - y) ** 2).mean()


def high_pass(img: torch.Tensor, k: int) -> torch.Tensor:
    """grad_k(I) = I - G_k(I), G_k a k x k Gaussian blur (sigma = 0.3 ((k - 1) / 2 - 1) + 0.8, the
    OpenCV rule), reflect padding. Shape preserved."""
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    return img - gaussian_blur2d(img, (k, k), (sigma, sigma), border_type="reflect")


def gradient_loss(u: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  kernels: tuple[int, ...] = (3, 5, 7)) -> torch.Tensor:
    """Eq. (5): sum_k mean((grad_k(u) - max(grad_k(x), grad_k(y)))^2), k in ``kernels``.

    The high-pass responses are signed; "max" takes, per pixel, the source response of larger
    magnitude (with its sign), the usual max-gradient fusion target.
    """
    total = u.new_zeros(())
    for k in kernels:
        gx, gy, gu = high_pass(x, k), high_pass(y, k), high_pass(u, k)
        target = torch.where(gx.abs() >= gy.abs(), gx, gy)
        total = total + F.mse_loss(gu, target)
    return total


def max_intensity_loss(u: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean((u - max(x, y))^2): the max-intensity target of SeAFusion (Tang et al., Inf. Fusion
    82, 2022, Eq. 6, there with an L1 norm) and of TSJNet's MFF loss; an option of this project
    in place of Eq. (4) (``train.loss.intensity: max``)."""
    return F.mse_loss(u, torch.maximum(x, y))


#: Values of ``train.loss.intensity``: the paper's saliency-weighted Eq. (4), or the max target.
INTENSITY_TERMS = ("vsm", "max")


def fusion_loss(u: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eta: float = 1.0,
                intensity: str = "vsm", intensity_weight: float = 1.0) -> dict:
    """Eq. (6): L_f = L_SSIM + w_I * L_MSE + eta * L_grad (w_I = ``intensity_weight``; the paper's
    Eq. (6) has w_I = 1). Returns a dict of the unweighted parts and 'total'.

    ``intensity``: 'vsm' (Eq. 4, the paper) or 'max' (``max_intensity_loss``) for L_MSE.
    Raises ValueError for another value or a negative ``intensity_weight``."""
    check_choice("intensity", intensity, INTENSITY_TERMS)
    if not float(intensity_weight) >= 0.0:
        raise ValueError(f"intensity_weight must be >= 0, got {intensity_weight!r}")
    pixel = saliency_pixel_loss if intensity == "vsm" else max_intensity_loss
    parts = {"ssim": ssim_loss(u, x, y), "mse": pixel(u, x, y),
             "grad": gradient_loss(u, x, y)}
    parts["total"] = parts["ssim"] + float(intensity_weight) * parts["mse"] + eta * parts["grad"]
    return parts


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                      weight: torch.Tensor | None = None, ignore_index: int = 255) -> torch.Tensor:
    """Eq. (6), L_s: pixel-wise cross entropy. logits (B, K, H, W), target (B, H, W) int64 with
    ``ignore_index`` for unlabelled-by-crop pixels; optional class weights (K,)."""
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def class_weights(counts: torch.Tensor, c: float = 1.02) -> torch.Tensor:
    """Class weights 1 / ln(c + p_k) from pixel counts per class (ENet, Paszke et al. 2016);
    a class with no pixels gets the largest weight, 1 / ln(c)."""
    p = counts.double() / counts.sum().clamp_min(1)
    return (1.0 / torch.log(c + p)).float()
