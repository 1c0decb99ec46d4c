"""Image-fusion quality metrics, computed on the 0-255 scale (numpy only).

Conventions (read this before comparing numbers with a paper)
-------------------------------------------------------------
* Images are 2-D ``H x W`` arrays (numpy, or anything ``numpy.asarray`` accepts, e.g. a CPU torch
  tensor): the visible luminance ``a`` (BT.601 Y, what the fusion network calls x), the thermal
  image ``b`` (y) and the fused luminance ``f`` (u). Any integer or float dtype is accepted and
  **interpreted on the 0-255 scale**; all arithmetic is done in float64 (no uint8 wrap-around).
* Nothing is rescaled silently. Values outside [0, 255], NaN/inf, booleans and images of
  different shapes raise ``ValueError``. A float image whose maximum lies in (0, 1] is refused as
  well: it is almost certainly a [0, 1] image (the network's output) and must be multiplied by 255
  first (``np.clip(u * 255, 0, 255)``). An all-zero float image is accepted.
* Histogram metrics (EN, MI) use 256 bins, one per grey level; float inputs are first rounded to
  the nearest level (``numpy.rint``, ties to even). The other metrics use the values unrounded, so
  a fused image saved to an 8-bit PNG and read back can differ from the in-memory float result by
  the rounding error (typically in the third significant digit for SF/AG, less for the rest).
* A metric that is mathematically undefined for the input (e.g. a correlation with a constant
  image, VIF with a flat reference, Qabf with no edges anywhere) returns ``nan``; it never
  silently substitutes a value.

Metric definitions (F = fused image, M rows x N columns)
--------------------------------------------------------
======  ===============================================================================
EN      Shannon entropy of the 256-bin grey-level histogram, log base 2 (bits), in [0, 8].
SD      population standard deviation (ddof = 0) of F, grey levels.
SF      sqrt(RF^2 + CF^2) (Eskicioglu & Fisher 1995), RF^2 = 1/(MN) sum_{i, j>=2}
        (F(i,j) - F(i,j-1))^2, CF^2 = 1/(MN) sum_{i>=2, j} (F(i,j) - F(i-1,j))^2, i.e. the
        sums of squared first differences divided by the pixel count M*N (the paper's form).
AG      1/((M-1)(N-1)) sum_{i<M, j<N} sqrt((dx^2 + dy^2) / 2) with forward differences
        dx = F(i,j+1) - F(i,j), dy = F(i+1,j) - F(i,j).
MI      MI(a, F) + MI(b, F), each from the 256 x 256 joint grey-level histogram, in **bits**
        (``base=2``); ``base=math.e`` gives nats. MI(x, x) = EN(x).
SCD     corr(a, F - b) + corr(b, F - a), Pearson correlations (Aslantas & Bendes 2015), in
        [-2, 2].
VIF     vifp(a, F) + vifp(b, F): the pixel-domain multi-scale VIF of Sheikh & Bovik 2006 of
        each source taken as the reference and F as the "distorted" image, summed.
Qabf    Xydeas & Petrovic 2000 edge-preservation index with Sobel gradients, L = 1,
        Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8, in [0, 0.97479].
SSIM    SSIM(a, F) + SSIM(b, F), Wang et al. 2004, Gaussian window 11 x 11, sigma 1.5,
        K1 = 0.01, K2 = 0.03, L = 255, mean over the valid region (own numpy code, equal to
        ``kornia.metrics.ssim(..., padding='valid')`` in float64 within 1e-12).
======  ===============================================================================

Differences from the MMIF-CDDFuse / EMMA evaluator (source of the SegMiF-on-MSRS numbers in the
design notes: EN 5.95, SD 37.28, SF 11.10, AG 3.47, SCD 1.57, VIF 0.88)
------------------------------------------------------------------------------------------------
That evaluator divides the SF sums by the number of differences, M(N-1) and (M-1)N, instead of MN
(``spatial_frequency(f, normalise="differences")`` reproduces it; the two differ by ~0.1 % at
640x480), computes AG with central differences on the full M x N grid (``average_gradient(f,
differences="central")``), reports MI in **nats** (``mutual_information(..., base=math.e)``),
uses scikit-image's SSIM (7 x 7 uniform window) and, in Qabf, sets the gradient ratio to g_F
instead of 1 where g_A == g_F > 0. EN, SD, SCD and VIF follow the same definitions as here.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FUSION_METRIC_KEYS", "TARGET_METRIC_KEYS", "SOURCE_METRIC_KEYS", "metrics_beaten",
    "QABF_CONSTANTS", "entropy", "std_dev", "spatial_frequency",
    "average_gradient", "mutual_information", "mutual_information_pair", "scd", "vifp", "vif",
    "qabf", "ssim", "ssim_sum", "fusion_metrics",
]

#: Keys of :func:`fusion_metrics`, in report order.
FUSION_METRIC_KEYS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")

#: The 8 metrics of the project's fused-image comparisons (issue 22's targets; SSIM left out):
#: for every one of them larger is better.
TARGET_METRIC_KEYS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf")

#: Those of :data:`TARGET_METRIC_KEYS` measured against the source images (the others, EN, SD,
#: SF and AG, look at the fused image alone and reward sharpening as much as fusion).
SOURCE_METRIC_KEYS = ("MI", "SCD", "VIF", "Qabf")


def metrics_beaten(candidate: dict, reference: dict,
                   keys=TARGET_METRIC_KEYS) -> tuple[list[str], int]:
    """The metrics on which ``candidate`` beats ``reference`` (strictly larger; a NaN on either
    side is no win), in ``keys`` order, and how many of them are in
    :data:`SOURCE_METRIC_KEYS`. ``candidate`` / ``reference``: {key: float} as returned by
    :func:`fusion_metrics` (or their means over a set). Raises KeyError if a key is missing
    from either."""
    won = [k for k in keys if float(candidate[k]) > float(reference[k])]
    return won, sum(k in SOURCE_METRIC_KEYS for k in won)


#: Xydeas & Petrovic (2000) constants: gradient-strength sigmoid (Tg, kg, Dg), orientation sigmoid
#: (Ta, ka, Da) and the weight exponent L.
QABF_CONSTANTS = {"L": 1.0, "Tg": 0.9994, "kg": -15.0, "Dg": 0.5,
                  "Ta": 0.9879, "ka": -22.0, "Da": 0.8}

_LEVELS = 256
_VIF_SIGMA_NSQ = 2.0     # Sheikh & Bovik's HVS noise variance (grey levels^2)
_VIF_EPS = 1e-10         # their guard for "zero" variances
_SSIM_WINDOW, _SSIM_SIGMA, _SSIM_K1, _SSIM_K2, _SSIM_L = 11, 1.5, 0.01, 0.03, 255.0


# ----------------------------------------------------------------------------------- input checks
def _image(x, name: str = "image") -> np.ndarray:
    """``x`` as a float64 2-D array on the 0-255 scale, or ValueError (see module docstring)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D H x W image, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty image")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: expected an integer or float image, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: contains NaN or infinity")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0.0 or hi > 255.0:
        raise ValueError(f"{name}: values must lie in [0, 255], got [{lo:g}, {hi:g}]")
    if np.issubdtype(arr.dtype, np.floating) and 0.0 < hi <= 1.0:
        raise ValueError(f"{name}: float image with maximum {hi:g} <= 1 looks like a [0, 1] image;"
                         " these metrics use the 0-255 scale: pass np.clip(x * 255, 0, 255)")
    return out


def _images(a, b, f, min_side: int = 1):
    a, b, f = _image(a, "a (visible)"), _image(b, "b (thermal)"), _image(f, "f (fused)")
    if not a.shape == b.shape == f.shape:
        raise ValueError(f"shape mismatch: a {a.shape}, b {b.shape}, f {f.shape}")
    if min(f.shape) < min_side:
        raise ValueError(f"images must be at least {min_side} x {min_side}, got {f.shape}")
    return a, b, f


def _levels(x: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 (int64) of a checked float64 image (nearest level, ties to even)."""
    return np.rint(x).astype(np.int64)


# --------------------------------------------------------------------------------- single image
def entropy(f) -> float:
    """EN: Shannon entropy of the 256-bin grey-level histogram of ``f``, in bits (log2).

    Args:
        f: H x W image on the 0-255 scale (float inputs are rounded to the nearest level).
    Returns:
        float in [0, 8]; 0 for a constant image, 1 for two equally frequent levels.
    """
    lv = _levels(_image(f, "f"))
    p = np.bincount(lv.ravel(), minlength=_LEVELS) / lv.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.0" for constant images


def std_dev(f) -> float:
    """SD: population standard deviation (ddof = 0) of ``f``, in grey levels (0-255 scale).

    Returns:
        float in [0, 127.5].
    """
    return float(np.std(_image(f, "f")))


def spatial_frequency(f, normalise: str = "grid") -> float:
    """SF = sqrt(RF^2 + CF^2), Eskicioglu & Fisher (1995), in grey levels.

    RF^2 = S_row / D_row, CF^2 = S_col / D_col, where S_row = sum_{i, j>=2} (F(i,j) - F(i,j-1))^2
    and S_col = sum_{i>=2, j} (F(i,j) - F(i-1,j))^2 are the sums of squared horizontal / vertical
    first differences of the M x N image.

    Args:
        f: H x W image on the 0-255 scale.
        normalise: ``"grid"`` (default, the paper's definition): D_row = D_col = M*N.
            ``"differences"``: D_row = M(N-1), D_col = (M-1)N, the mean over the differences
            (MMIF-CDDFuse / EMMA evaluator). For a horizontal ramp of slope c the former gives
            c * sqrt((N-1)/N), the latter exactly c.
    Returns:
        float >= 0; 0 for a constant image.
    """
    x = _image(f, "f")
    dr = np.diff(x, axis=1)
    dc = np.diff(x, axis=0)
    if normalise == "grid":
        rf2 = (dr ** 2).sum() / x.size
        cf2 = (dc ** 2).sum() / x.size
    elif normalise == "differences":
        rf2 = (dr ** 2).mean() if dr.size else 0.0
        cf2 = (dc ** 2).mean() if dc.size else 0.0
    else:
        raise ValueError(f"normalise must be 'grid' or 'differences', got {normalise!r}")
    return float(math.sqrt(rf2 + cf2))


def average_gradient(f, differences: str = "forward") -> float:
    """AG: mean of sqrt((dx^2 + dy^2) / 2), in grey levels per pixel.

    Args:
        f: H x W image on the 0-255 scale, at least 2 x 2.
        differences: ``"forward"`` (default, the usual definition): dx = F(i,j+1) - F(i,j),
            dy = F(i+1,j) - F(i,j), averaged over the (M-1) x (N-1) grid where both exist.
            ``"central"``: numpy.gradient-style differences ((F(j+1) - F(j-1)) / 2 inside,
            one-sided at the borders) averaged over all M x N pixels (MMIF-CDDFuse / EMMA).
    Returns:
        float >= 0; 0 for a constant image; sqrt((cx^2 + cy^2) / 2) for a plane of slopes cx, cy.
    """
    x = _image(f, "f")
    if min(x.shape) < 2:
        raise ValueError(f"average_gradient needs an image of at least 2 x 2, got {x.shape}")
    if differences == "forward":
        dx = x[:-1, 1:] - x[:-1, :-1]
        dy = x[1:, :-1] - x[:-1, :-1]
    elif differences == "central":
        dy, dx = np.gradient(x)
    else:
        raise ValueError(f"differences must be 'forward' or 'central', got {differences!r}")
    return float(np.sqrt((dx ** 2 + dy ** 2) / 2.0).mean())


# --------------------------------------------------------------------------------- MI, SCD
def _log_base(base) -> float:
    base = float(base)
    if not (base > 0.0 and base != 1.0 and math.isfinite(base)):
        raise ValueError(f"log base must be positive, finite and != 1, got {base}")
    return math.log(base)


def _mi_levels(lx: np.ndarray, ly: np.ndarray, log_base: float) -> float:
    joint = np.bincount((lx * _LEVELS + ly).ravel(), minlength=_LEVELS * _LEVELS)
    joint = joint.reshape(_LEVELS, _LEVELS) / lx.size
    px, py = joint.sum(axis=1), joint.sum(axis=0)
    i, j = np.nonzero(joint)
    p = joint[i, j]
    mi = float((p * np.log(p / (px[i] * py[j]))).sum()) / log_base
    return max(mi, 0.0)  # MI >= 0; clears -1e-16 round-off


def mutual_information_pair(x, y, base: float = 2.0) -> float:
    """MI(x, y) from the 256 x 256 joint grey-level histogram (float inputs rounded to levels).

    MI = sum_{u,v} p(u,v) log(p(u,v) / (p(u) p(v))), in bits for ``base=2`` (default), nats for
    ``base=math.e``. MI(x, x) = EN(x); 0 for independent images. Returns float in [0, 8] bits.
    """
    x, y = _image(x, "x"), _image(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    return _mi_levels(_levels(x), _levels(y), _log_base(base))


def mutual_information(a, b, f, base: float = 2.0) -> float:
    """MI = MI(a, f) + MI(b, f) (the fusion MI of Qu et al. 2002), 256-level joint histograms.

    Args:
        a, b: source images (visible luminance, thermal), f: fused image; H x W, 0-255 scale.
        base: logarithm base: 2 (default) gives bits, ``math.e`` nats (the MMIF-CDDFuse / EMMA
            evaluator uses sklearn's mutual_info_score, i.e. nats: divide our bits by
            log2(e) = 1.4427 to compare).
    Returns:
        float in [0, 16] bits; 2 * EN(a) when a == b == f.
    """
    a, b, f = _images(a, b, f)
    lb = _log_base(base)
    lf = _levels(f)
    return _mi_levels(_levels(a), lf, lb) + _mi_levels(_levels(b), lf, lb)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xc * xc).sum()) * float((yc * yc).sum()))
    return float((xc * yc).sum()) / den if den > 0 else float("nan")


def scd(a, b, f) -> float:
    """SCD, sum of the correlations of differences (Aslantas & Bendes 2015).

    SCD = corr(a, f - b) + corr(b, f - a), Pearson correlation over all pixels: the difference
    f - b is what the fusion took from a, and vice versa.

    Returns:
        float in [-2, 2]; 2 for f = a + b; ``nan`` if a, b, f - a or f - b is constant.
    """
    a, b, f = _images(a, b, f)
    return _pearson(a, f - b) + _pearson(b, f - a)


# -------------------------------------------------------------------------------- filtering
def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised sampled Gaussian of ``size`` taps centred on the middle tap."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation of ``x`` with ``outer(g, g)``, 'valid' part only (no padding).

    The normalised outer product of normalised 1-D Gaussians equals MATLAB's
    fspecial('gaussian', N, s) (whose eps-cut of tiny tails is a no-op for the windows used here).
    """
    k = g.size
    h = x.shape[1] - k + 1
    rows = np.zeros((x.shape[0], h))
    for t in range(k):
        rows += g[t] * x[:, t:t + h]
    v = x.shape[0] - k + 1
    out = np.zeros((v, h))
    for t in range(k):
        out += g[t] * rows[t:t + v, :]
    return out


# --------------------------------------------------------------------------------------- VIF
def vifp(ref, dist) -> float:
    """Pixel-domain multi-scale VIF (VIFp) of ``dist`` w.r.t. ``ref`` (Sheikh & Bovik 2006).

    Four scales s = 1..4, Gaussian window of N = 2^(4-s+1) + 1 taps (17, 9, 5, 3) and standard
    deviation N/5; before scales 2..4 both images are low-passed with that scale's window ('valid')
    and decimated by 2. At each scale local means/variances/covariance come from the window
    ('valid'), the gain g = s12 / s1^2 and the residual variance sv^2 = s2^2 - g s12 (with the
    reference code's guards: eps = 1e-10, negative gains set to 0), and
    VIFp = sum log(1 + g^2 s1^2 / (sv^2 + sn^2)) / sum log(1 + s1^2 / sn^2), sn^2 = 2 (HVS noise,
    grey levels^2), sums over all positions and scales.

    Args:
        ref, dist: H x W images on the 0-255 scale, H, W >= 41 (every scale non-empty).
    Returns:
        float >= 0: 1 for dist == ref (or ref + constant), > 1 for a contrast-enhanced ref,
        ``nan`` when ref is flat at every scale (denominator 0).
    """
    r, d = _image(ref, "ref"), _image(dist, "dist")
    if r.shape != d.shape:
        raise ValueError(f"shape mismatch: {r.shape} vs {d.shape}")
    return _vifp(r, d)


def _vifp(r: np.ndarray, d: np.ndarray) -> float:
    if min(r.shape) < 41:
        raise ValueError(f"VIF needs images of at least 41 x 41 (4 scales), got {r.shape}")
    eps, num, den = _VIF_EPS, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        g = _gaussian_1d(n, n / 5.0)
        if scale > 1:
            r = _filter_valid(r, g)[::2, ::2]
            d = _filter_valid(d, g)[::2, ::2]
        mu1, mu2 = _filter_valid(r, g), _filter_valid(d, g)
        s1 = np.maximum(_filter_valid(r * r, g) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(d * d, g) - mu2 * mu2, 0.0)
        s12 = _filter_valid(r * d, g) - mu1 * mu2
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        flat_ref = s1 < eps                  # no signal in the reference: all of dist is noise
        gain[flat_ref] = 0.0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0.0
        flat_dist = s2 < eps                 # nothing in dist: zero gain, zero noise
        gain[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        negative = gain < 0                  # anti-correlated: treat as pure noise
        sv[negative] = s2[negative]
        gain[negative] = 0.0
        sv = np.maximum(sv, eps)
        num += float(np.log10(1.0 + gain * gain * s1 / (sv + _VIF_SIGMA_NSQ)).sum())
        den += float(np.log10(1.0 + s1 / _VIF_SIGMA_NSQ).sum())
    return num / den if den > 0 else float("nan")


def vif(a, b, f) -> float:
    """VIF of a fusion: vifp(a, f) + vifp(b, f), each source as reference (design notes; same
    convention as the MMIF-CDDFuse / EMMA evaluator). See :func:`vifp` for the constants.

    Returns:
        float >= 0; 2 when a == b == f. Images at least 41 x 41.
    """
    a, b, f = _images(a, b, f, min_side=41)
    return _vifp(a, f) + _vifp(b, f)


# -------------------------------------------------------------------------------------- Qabf
def _sobel(x: np.ndarray):
    """Sobel responses (sx horizontal, sy vertical) with zero padding ('same' size)."""
    p = np.pad(x, 1, mode="constant")
    h, w = x.shape

    def at(di, dj):
        return p[1 + di:1 + di + h, 1 + dj:1 + dj + w]

    sx = (at(-1, 1) + 2.0 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2.0 * at(0, -1) + at(1, -1))
    sy = (at(1, -1) + 2.0 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2.0 * at(-1, 0) + at(-1, 1))
    return sx, sy


def _strength_orientation(x: np.ndarray):
    sx, sy = _sobel(x)
    g = np.hypot(sx, sy)
    alpha = np.full(x.shape, math.pi / 2.0)
    nz = sx != 0
    alpha[nz] = np.arctan(sy[nz] / sx[nz])
    return g, alpha


def _edge_preservation(gs, als, gf, alf, c) -> np.ndarray:
    """Q^{SF} per pixel: strength and orientation preservation of source S in fused F."""
    ratio = np.ones_like(gs)
    lt, gt = gs < gf, gs > gf
    ratio[lt] = gs[lt] / gf[lt]
    ratio[gt] = gf[gt] / gs[gt]
    orient = 1.0 - np.abs(als - alf) / (math.pi / 2.0)
    qg = c["Tg"] / (1.0 + np.exp(c["kg"] * (ratio - c["Dg"])))
    qa = c["Ta"] / (1.0 + np.exp(c["ka"] * (orient - c["Da"])))
    return qg * qa


def qabf(a, b, f) -> float:
    """Q^{AB/F} edge-information preservation (Xydeas & Petrovic, Electronics Letters 36(4), 2000).

    Sobel gradients (3 x 3, zero padding, same size) give strength g = sqrt(sx^2 + sy^2) and
    orientation alpha = arctan(sy / sx) (pi/2 where sx = 0) per pixel. For a source S:
    G = g_F / g_S if g_S > g_F, g_S / g_F if g_S < g_F, 1 if equal; A = 1 - |alpha_S - alpha_F| /
    (pi/2); Q^{SF} = Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (A - Da))) with
    Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8 (:data:`QABF_CONSTANTS`);
    Qabf = sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B), w = g^L, L = 1.

    Returns:
        float in [0, 0.97479]: with these constants a perfectly preserved edge scores
        Tg / (1 + e^{-7.5}) * Ta / (1 + e^{-4.4}) = 0.974794 (f == a == b gives that value);
        ``nan`` when neither source has any gradient.
    """
    a, b, f = _images(a, b, f)
    c = QABF_CONSTANTS
    ga, aa = _strength_orientation(a)
    gb, ab = _strength_orientation(b)
    gf, af = _strength_orientation(f)
    wa, wb = ga ** c["L"], gb ** c["L"]
    den = float((wa + wb).sum())
    if den <= 0:
        return float("nan")
    num = float((_edge_preservation(ga, aa, gf, af, c) * wa
                 + _edge_preservation(gb, ab, gf, af, c) * wb).sum())
    return num / den


# -------------------------------------------------------------------------------------- SSIM
def ssim(x, y) -> float:
    """Mean SSIM of two images (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4), 2004).

    Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, dynamic range L = 255
    (C1 = (K1 L)^2, C2 = (K2 L)^2); local statistics over the window, SSIM map on the 'valid'
    region (no padding, no downsampling), averaged. Own numpy implementation (so the metrics
    need no torch), equal to ``kornia.metrics.ssim(x, y, 11, max_val=255,
    padding='valid').mean()`` computed in float64 within 1e-12 absolute
    (test/test_metrics_fusion.py checks it; kornia in float32 differs by up to ~1e-6).

    Args:
        x, y: H x W images on the 0-255 scale, H, W >= 11.
    Returns:
        float in [-1, 1]; 1 for x == y.
    """
    x, y = _image(x, "x"), _image(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    return _ssim(x, y)


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    if min(x.shape) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW} x {_SSIM_WINDOW}, "
                         f"got {x.shape}")
    g = _gaussian_1d(_SSIM_WINDOW, _SSIM_SIGMA)
    c1, c2 = (_SSIM_K1 * _SSIM_L) ** 2, (_SSIM_K2 * _SSIM_L) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(smap.mean())


def ssim_sum(a, b, f) -> float:
    """SSIM(a, f) + SSIM(b, f) (see :func:`ssim`). Float in [-2, 2]; 2 when a == b == f."""
    a, b, f = _images(a, b, f, min_side=_SSIM_WINDOW)
    return _ssim(a, f) + _ssim(b, f)


# ------------------------------------------------------------------------------------ all of them
def fusion_metrics(a, b, f) -> dict:
    """All fusion metrics of fused ``f`` from sources ``a`` (visible Y) and ``b`` (thermal).

    Args:
        a, b, f: H x W images of one shape on the 0-255 scale, H, W >= 41 (VIF).
    Returns:
        dict with the keys of :data:`FUSION_METRIC_KEYS` (EN, SD, SF, AG, MI, SCD, VIF, Qabf,
        SSIM), python floats, with each function's default convention: MI in bits, SF normalised
        by M*N, AG with forward differences.
    """
    _images(a, b, f, min_side=41)  # shape / range errors first; each metric converts its own copy
    return {"EN": entropy(f), "SD": std_dev(f), "SF": spatial_frequency(f),
            "AG": average_gradient(f), "MI": mutual_information(a, b, f), "SCD": scd(a, b, f),
            "VIF": vif(a, b, f), "Qabf": qabf(a, b, f), "SSIM": ssim_sum(a, b, f)}
