"""Baseline pixel fusion rules: references for the fusion metrics and for ablations.

Every rule takes ``(vis_y, ir)``: the visible luminance (BT.601 Y) and the registered thermal
image, two numpy arrays of the same H x W shape and the same dtype, on any one scale (uint8 0-255,
float 0-1, float 0-255, ...), and returns a new H x W array of that dtype and scale (never a view
of an input). A CPU torch tensor is converted with ``numpy.asarray``; the result is numpy.

Rules:
    visible:  vis_y                   (fusion that ignores the thermal camera)
    thermal:  ir                      (fusion that ignores the visible camera)
    average:  (vis_y + ir) / 2        integer dtypes: computed exactly in int64 and rounded
                                      half up, i.e. (vis_y + ir + 1) // 2;
                                      float dtypes: 0.5 * (vis_y + ir)
    maximum:  max(vis_y, ir) per pixel (choose-max rule)
    laplacian: Laplacian-pyramid fusion (Burt & Adelson 1983; Toet 1989 for IR/visible):
              ``levels`` pyramid levels of each source (OpenCV pyrDown / pyrUp), every detail
              coefficient from the source with the larger magnitude, the coarsest level by
              ``base`` (max | average | add)
    gff:      guided-filtering fusion (S. Li, X. Kang, J. Hu, IEEE TIP 22(7):2864-2875, 2013)

``laplacian`` and ``gff`` compute in float32 and return the input dtype: integer results are
rounded and clipped to the dtype's range, float results clipped to [min, max] of the two sources
(a pyramid can overshoot the sources' range near strong edges).
"""
from __future__ import annotations

from typing import Callable, Dict

import cv2
import numpy as np

from .choices import check_choice

__all__ = ["visible", "thermal", "average", "maximum", "laplacian", "gff", "laplacian_pyramid",
           "pyramid_reconstruct", "guided_filter", "fuse_rgb", "FUSION_RULES",
           "LAPLACIAN_BASE_RULES"]


def _pair(vis_y, ir):
    if hasattr(vis_y, "detach"):
        vis_y = vis_y.detach().cpu().numpy()
    if hasattr(ir, "detach"):
        ir = ir.detach().cpu().numpy()
    v, t = np.asarray(vis_y), np.asarray(ir)
    if v.ndim != 2 or v.shape != t.shape:
        raise ValueError(f"expected two H x W images of one shape, got {v.shape} and {t.shape}")
    if v.dtype != t.dtype:
        raise ValueError(f"vis_y and ir must share a dtype, got {v.dtype} and {t.dtype}")
    if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise ValueError(f"expected integer or float images, got dtype {v.dtype}")
    return v, t


def visible(vis_y, ir) -> np.ndarray:
    """Return a copy of ``vis_y`` (H x W, its dtype). ``ir`` is only checked."""
    v, _ = _pair(vis_y, ir)
    return v.copy()


def thermal(vis_y, ir) -> np.ndarray:
    """Return a copy of ``ir`` (H x W, its dtype). ``vis_y`` is only checked."""
    _, t = _pair(vis_y, ir)
    return t.copy()


def average(vis_y, ir) -> np.ndarray:
    """Pixel mean (vis_y + ir) / 2 in the input dtype (integers round half up).

    Integer inputs: (vis_y + ir + 1) // 2 in int64, so uint8 (3, 4) -> 4 and no overflow.
    Float inputs: 0.5 * (vis_y + ir) in the input dtype.
    """
    v, t = _pair(vis_y, ir)
    if np.issubdtype(v.dtype, np.integer):
        return ((v.astype(np.int64) + t.astype(np.int64) + 1) // 2).astype(v.dtype)
    return (0.5 * (v + t)).astype(v.dtype)


def maximum(vis_y, ir) -> np.ndarray:
    """Per-pixel maximum of ``vis_y`` and ``ir`` (H x W, their dtype)."""
    v, t = _pair(vis_y, ir)
    return np.maximum(v, t)


# --------------------------------------------------------------------------- multi-scale rules
#: Rules for the coarsest pyramid level of :func:`laplacian`.
LAPLACIAN_BASE_RULES = ("max", "average", "add")


def _float_pair(vis_y, ir):
    v, t = _pair(vis_y, ir)
    return v, t, v.astype(np.float32), t.astype(np.float32)


def _back(f: np.ndarray, v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """float32 result -> the inputs' dtype (see the module docstring)."""
    if np.issubdtype(v.dtype, np.integer):
        info = np.iinfo(v.dtype)
        return np.clip(np.rint(f), info.min, info.max).astype(v.dtype)
    lo = min(float(v.min()), float(t.min()))
    hi = max(float(v.max()), float(t.max()))
    return np.clip(f, lo, hi).astype(v.dtype)


def laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid of a float32 H x W image: ``levels - 1`` detail levels (finest first,
    ``G_k - pyrUp(G_{k+1})``) and the coarsest Gaussian level last, ``levels`` arrays in all.
    ``pyramid_reconstruct`` inverts it exactly (to float rounding). levels >= 1 (1: the image)."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    gauss = [np.asarray(img, np.float32)]
    for _ in range(levels - 1):
        gauss.append(cv2.pyrDown(gauss[-1]))
    out = []
    for k in range(levels - 1):
        h, w = gauss[k].shape
        out.append(gauss[k] - cv2.pyrUp(gauss[k + 1], dstsize=(w, h)))
    out.append(gauss[-1])
    return out


def pyramid_reconstruct(pyr: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`laplacian_pyramid`: collapse from the coarsest level (float32)."""
    img = pyr[-1]
    for detail in reversed(pyr[:-1]):
        h, w = detail.shape
        img = cv2.pyrUp(img, dstsize=(w, h)) + detail
    return img


def laplacian(vis_y, ir, levels: int = 4, base: str = "max") -> np.ndarray:
    """Laplacian-pyramid fusion (Burt & Adelson, IEEE Trans. Commun. 31(4), 1983; Toet, Pattern
    Recognit. Lett. 9(4), 1989, for IR/visible).

    Both sources are decomposed into ``levels`` levels (``laplacian_pyramid``: levels - 1 detail
    levels and the coarsest Gaussian level); each detail coefficient is taken from the source
    whose coefficient has the larger magnitude (ties: visible); the coarsest level by ``base``:
    ``max`` (per pixel), ``average`` or ``add`` (the sum minus the mean of the two levels' means,
    so both sources' low-frequency structure is kept at the sources' mean brightness). The
    levels are collapsed back (``pyramid_reconstruct``).

    Args: vis_y, ir: H x W arrays of one shape and dtype (see the module docstring); levels >= 1,
    capped at what the image size allows (the coarsest level keeps >= 2 pixels per side, so a
    tiny image gets fewer levels).
    Returns: H x W fused luminance in the inputs' dtype. Raises ValueError for bad arguments.
    """
    check_choice("base", base, LAPLACIAN_BASE_RULES)
    if int(levels) < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    v, t, vf, tf = _float_pair(vis_y, ir)
    levels = max(1, min(int(levels), int(np.log2(max(min(v.shape), 2))) ))
    pv, pt = laplacian_pyramid(vf, levels), laplacian_pyramid(tf, levels)
    fused = [np.where(np.abs(dv) >= np.abs(dt), dv, dt) for dv, dt in zip(pv[:-1], pt[:-1])]
    bv, bt = pv[-1], pt[-1]
    if base == "max":
        fb = np.maximum(bv, bt)
    elif base == "average":
        fb = 0.5 * (bv + bt)
    else:
        fb = bv + bt - 0.5 * (float(bv.mean()) + float(bt.mean()))
    return _back(pyramid_reconstruct(fused + [fb]), v, t)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Gray-guide guided filter (K. He, J. Sun, X. Tang, TPAMI 35(6), 2013, Eqs. 7-8): float32
    H x W ``guide`` and ``src`` (same scale as ``eps``, e.g. [0, 1]), box windows of
    (2 radius + 1)^2 pixels (OpenCV ``boxFilter``, normalised, reflected borders)."""
    k = (2 * radius + 1, 2 * radius + 1)
    box = lambda x: cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mi, mp = box(guide), box(src)
    cov = box(guide * src) - mi * mp
    var = box(guide * guide) - mi * mi
    a = cov / (var + eps)
    b = mp - a * mi
    return box(a) * guide + box(b)


def gff(vis_y, ir, average_size: int = 31, r1: int = 45, eps1: float = 0.3, r2: int = 7,
        eps2: float = 1e-6, saliency_radius: int = 5, saliency_sigma: float = 5.0) -> np.ndarray:
    """Guided-filtering fusion, GFF (S. Li, X. Kang, J. Hu, "Image Fusion With Guided
    Filtering", IEEE TIP 22(7):2864-2875, 2013), with the paper's parameters as defaults.

    1. Two-scale decomposition (Eqs. 1-2): base B_n = mean filter (``average_size``^2) of I_n,
       detail D_n = I_n - B_n.
    2. Saliency (Eqs. 3-4): S_n = Gaussian(|Laplacian(I_n)|) (3 x 3 Laplacian; Gaussian of
       (2 ``saliency_radius`` + 1)^2 pixels, sigma ``saliency_sigma``).
    3. Weight maps (Eq. 5): P_n = 1 where S_n is the largest (ties: visible), else 0.
    4. Refinement (Eqs. 6-7): W^B_n = G_{r1, eps1}(P_n, I_n), W^D_n = G_{r2, eps2}(P_n, I_n),
       guided filters with the source as guide (intensities in [0, 1] for eps), normalised to
       sum to 1 per pixel.
    5. Fusion (Eqs. 8-9): F = sum W^B_n B_n + sum W^D_n D_n.

    Args: vis_y, ir: H x W arrays of one shape and dtype, any one scale (module docstring);
    intensities are divided by the sources' common maximum (at least 1 for floats, the dtype's
    maximum for integers) so that eps has the paper's [0, 1] meaning.
    Returns: H x W fused luminance in the inputs' dtype.
    """
    v, t, vf, tf = _float_pair(vis_y, ir)
    if np.issubdtype(v.dtype, np.integer):
        scale = float(max(np.iinfo(v.dtype).max, 1))
    else:
        scale = max(float(vf.max()), float(tf.max()), 1.0)
    srcs = [vf / scale, tf / scale]
    k = (average_size, average_size)
    bases = [cv2.blur(s, k, borderType=cv2.BORDER_REFLECT) for s in srcs]
    ks = 2 * saliency_radius + 1
    sal = [cv2.GaussianBlur(np.abs(cv2.Laplacian(s, cv2.CV_32F, ksize=1)), (ks, ks),
                            saliency_sigma, borderType=cv2.BORDER_REFLECT) for s in srcs]
    p_vis = (sal[0] >= sal[1]).astype(np.float32)
    masks = [p_vis, 1.0 - p_vis]
    wb = [guided_filter(s, p, r1, eps1) for s, p in zip(srcs, masks)]
    wd = [guided_filter(s, p, r2, eps2) for s, p in zip(srcs, masks)]
    fused = np.zeros_like(srcs[0])
    for w, parts in ((wb, bases), (wd, [s - b for s, b in zip(srcs, bases)])):
        w = [np.clip(x, 0.0, None) for x in w]
        total = w[0] + w[1]
        total = np.where(total > 1e-12, total, 1.0)
        even = (w[0] + w[1]) <= 1e-12          # both weights 0: an even mix
        w0 = np.where(even, 0.5, w[0] / total)
        w1 = np.where(even, 0.5, w[1] / total)
        fused += w0 * parts[0] + w1 * parts[1]
    return _back(fused * scale, v, t)


#: Rule name -> function ``(vis_y, ir) -> fused``.
FUSION_RULES: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "visible": visible, "thermal": thermal, "average": average, "maximum": maximum,
    "laplacian": laplacian, "gff": gff,
}


def fuse_rgb(method: str, vis_rgb: np.ndarray, ir8: np.ndarray) -> np.ndarray:
    """A colour fused image by a rule: the rule fuses the visible luma (OpenCV YCrCb, BT.601
    Y = 0.299 R + 0.587 G + 0.114 B) with the thermal image, and the result goes back into the
    visible image's YCrCb as its luma (the chroma stays the visible camera's).

    Args:
        method: a key of ``FUSION_RULES``.
        vis_rgb: H x W x 3 uint8 RGB; ir8: H x W uint8 thermal registered onto it.
    Returns: H x W x 3 uint8 RGB. Raises ValueError for an unknown rule or bad arrays.
    """
    if method not in FUSION_RULES:
        raise ValueError(f"unknown fusion rule {method!r}; known: {list(FUSION_RULES)}")
    vis_rgb, ir8 = np.asarray(vis_rgb), np.asarray(ir8)
    if vis_rgb.dtype != np.uint8 or ir8.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {vis_rgb.dtype} and {ir8.dtype}")
    if vis_rgb.ndim != 3 or vis_rgb.shape[2] != 3 or ir8.shape != vis_rgb.shape[:2]:
        raise ValueError(f"expected H x W x 3 and H x W images of one size, got {vis_rgb.shape} "
                         f"and {ir8.shape}")
    ycrcb = cv2.cvtColor(vis_rgb, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = FUSION_RULES[method](np.ascontiguousarray(ycrcb[..., 0]), ir8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
