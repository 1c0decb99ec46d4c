"""Fusion metrics (segmif_core.metrics.fusion) and baseline fusion rules (segmif_core.fusion_rules).

Expected values are worked out by hand on tiny images (comments show the arithmetic), by
construction (identities such as MI(x, x) = EN(x)), or by a deliberately naive second
implementation (explicit 2-D windows / per-pixel loops) for VIF and Qabf, and kornia for SSIM.
"""
import math
import os

import numpy as np
import pytest

from segmif_core.fusion_rules import FUSION_RULES, average, maximum, thermal, visible
from segmif_core.metrics.fusion import (FUSION_METRIC_KEYS, QABF_CONSTANTS, average_gradient,
                                        entropy, fusion_metrics, mutual_information,
                                        mutual_information_pair, qabf, scd, spatial_frequency,
                                        ssim, ssim_sum, std_dev, vif, vifp)

from conftest import MSRS, needs_msrs

# Best per-pixel Qabf with the Xydeas & Petrovic constants: G = 1, A = 1.
Q_PERFECT = (0.9994 / (1 + math.exp(-15 * (1 - 0.5)))) * (0.9879 / (1 + math.exp(-22 * (1 - 0.8))))


def _rng(seed=0):
    return np.random.default_rng(seed)


def _smooth_image(h=64, w=64, seed=0):
    """A structured test image on 0-255: blurred noise plus a bright square (float64)."""
    rng = _rng(seed)
    x = rng.uniform(0, 255, (h, w))
    k = np.ones(5) / 5
    x = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, x)
    x = np.apply_along_axis(lambda c: np.convolve(c, k, mode="same"), 0, x)
    x[h // 4:h // 2, w // 4:w // 2] += 60
    return np.clip(x, 0, 255)


def _read_msrs_pair(name=None):
    """A real MSRS pair (the tests that read one are marked ``needs_msrs``)."""
    cv2 = pytest.importorskip("cv2")
    name = name or sorted(os.listdir(os.path.join(MSRS, "vis")))[0]
    bgr = cv2.imread(os.path.join(MSRS, "vis", name), cv2.IMREAD_COLOR)
    vis_y = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)  # 0.299 R + 0.587 G + 0.114 B = BT.601 Y
    ir = cv2.imread(os.path.join(MSRS, "ir", name), cv2.IMREAD_GRAYSCALE)
    assert vis_y is not None and ir is not None and vis_y.shape == ir.shape
    return vis_y, ir


# ------------------------------------------------------------------------------------ EN, SD
def test_entropy_by_hand():
    assert entropy(np.array([[0, 0], [255, 255]], np.uint8)) == pytest.approx(1.0)
    assert entropy(np.array([[0, 1], [2, 3]], np.uint8)) == pytest.approx(2.0)
    # Level frequencies 8, 4, 2, 2 of 16: 1/2*1 + 1/4*2 + 2 * 1/8*3 = 1.75 bits.
    x = np.array([0] * 8 + [7] * 4 + [100] * 2 + [255] * 2, np.uint8).reshape(4, 4)
    assert entropy(x) == pytest.approx(1.75)
    # Floats are rounded to the nearest level: 10.4 -> 10, 10.6 -> 11, two equal halves.
    assert entropy(np.array([[10.4, 10.6], [10.2, 11.3]])) == pytest.approx(1.0)
    # 256 equally frequent levels: the maximum, 8 bits.
    assert entropy(np.arange(256, dtype=np.uint8).reshape(16, 16)) == pytest.approx(8.0)


def test_std_dev_by_hand():
    assert std_dev(np.array([[0, 0], [255, 255]], np.uint8)) == pytest.approx(127.5)
    # mean 2.5, squared deviations 2.25, 0.25, 0.25, 2.25 -> variance 1.25 (population).
    assert std_dev(np.array([[1, 2], [3, 4]], np.uint8)) == pytest.approx(math.sqrt(1.25))


@pytest.mark.parametrize("value", [0, 37, 255])
def test_constant_image_has_no_information(value):
    c = np.full((8, 9), value, np.uint8)
    assert entropy(c) == 0.0
    assert std_dev(c) == 0.0
    assert spatial_frequency(c) == 0.0
    assert spatial_frequency(c, normalise="differences") == 0.0
    assert average_gradient(c) == 0.0
    assert average_gradient(c, differences="central") == 0.0


# ------------------------------------------------------------------------------------ SF, AG
def test_spatial_frequency_of_a_ramp():
    # 3 x 4 horizontal ramp of slope 10: 3 * 3 horizontal differences of 10, no vertical ones.
    f = np.tile(np.array([0, 10, 20, 30], np.uint8), (3, 1))
    # Grid normalisation: RF^2 = 9 * 100 / 12 = 75.
    assert spatial_frequency(f) == pytest.approx(math.sqrt(75.0))
    # Difference normalisation: RF^2 = 9 * 100 / 9 = 100.
    assert spatial_frequency(f, normalise="differences") == pytest.approx(10.0)
    # Transposed ramp: the same by symmetry (CF instead of RF).
    assert spatial_frequency(f.T) == pytest.approx(math.sqrt(75.0))


def test_spatial_frequency_of_an_impulse():
    f = np.zeros((3, 3), np.uint8)
    f[1, 1] = 9
    # Row 1 has horizontal differences 9 and -9 (sum of squares 162), column 1 the same.
    assert spatial_frequency(f) == pytest.approx(math.sqrt(162 / 9 + 162 / 9))  # = 6
    assert spatial_frequency(f) == pytest.approx(6.0)
    assert spatial_frequency(f, normalise="differences") == pytest.approx(math.sqrt(162 / 6 * 2))


def test_average_gradient_of_a_plane():
    # F = 3 j + 4 i: every forward difference dx = 3, dy = 4 -> sqrt((9 + 16) / 2) = 5 / sqrt(2).
    i, j = np.mgrid[0:4, 0:5]
    f = (3 * j + 4 * i).astype(np.uint8)
    assert average_gradient(f) == pytest.approx(5 / math.sqrt(2))
    # Central differences of a plane are the same slopes everywhere.
    assert average_gradient(f, differences="central") == pytest.approx(5 / math.sqrt(2))


def test_average_gradient_of_an_impulse():
    f = np.zeros((3, 3), np.uint8)
    f[1, 1] = 9
    # Forward grid (i, j in {0, 1}): (0,0) dx=0 dy=0 -> 0; (0,1) dx=0 dy=9 -> 9/sqrt2;
    # (1,0) dx=9 dy=0 -> 9/sqrt2; (1,1) dx=-9 dy=-9 -> 9. Mean = 9 (1 + sqrt2) / 4.
    assert average_gradient(f) == pytest.approx(9 * (1 + math.sqrt(2)) / 4)
    # Central: the four 4-neighbours of the centre see a difference of 9 (one-sided at the
    # border), the centre and corners 0: mean = 4 * (9 / sqrt2) / 9 = 2 sqrt2.
    assert average_gradient(f, differences="central") == pytest.approx(2 * math.sqrt(2))


# ----------------------------------------------------------------------------------------- MI
def test_mutual_information_by_hand():
    a = np.array([[0, 0], [255, 255]], np.uint8)
    f_indep = np.array([[0, 255], [0, 255]], np.uint8)
    # Joint uniform over the four pairs, marginals 1/2 each: independent -> 0.
    assert mutual_information_pair(a, f_indep) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information_pair(a, a) == pytest.approx(1.0)
    # One source identical to f (1 bit), the other independent of it (0).
    assert mutual_information(a, f_indep, a) == pytest.approx(1.0)
    # a = (0,0,0,255), f = (0,0,255,255): H(a) = h(1/4), H(f) = 1, H(a, f) = 1.5
    # (joint 1/2, 1/4, 1/4) -> MI = h(1/4) + 1 - 1.5.
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    a2 = np.array([[0, 0], [0, 255]], np.uint8)
    f2 = np.array([[0, 0], [255, 255]], np.uint8)
    assert mutual_information_pair(a2, f2) == pytest.approx(h + 1 - 1.5)
    assert mutual_information_pair(f2, a2) == pytest.approx(h + 1 - 1.5)


def test_mutual_information_identities():
    x = _rng(1).integers(0, 256, (32, 32)).astype(np.uint8)
    assert mutual_information(x, x, x) == pytest.approx(2 * entropy(x))
    y = _rng(2).integers(0, 256, (32, 32)).astype(np.uint8)
    bits, nats = mutual_information(x, y, x), mutual_information(x, y, x, base=math.e)
    assert nats / bits == pytest.approx(math.log(2))
    assert mutual_information(x, y, x, base=10) == pytest.approx(bits * math.log10(2))
    with pytest.raises(ValueError):
        mutual_information(x, y, x, base=1)


# ---------------------------------------------------------------------------------------- SCD
def test_scd_by_hand():
    # Centred a = (-5, 5, -5, 5), b = (-5, -5, 5, 5): uncorrelated, equal variances v.
    a = np.array([[0, 10], [0, 10]], np.uint8)
    b = np.array([[0, 0], [10, 10]], np.uint8)
    # f = a + b: f - b = a and f - a = b -> 1 + 1.
    assert scd(a, b, a + b) == pytest.approx(2.0)
    # f = 2a + 2b: corr(a, 2a + b) = 2v / sqrt(v * 5v) = 2 / sqrt5, twice by symmetry.
    assert scd(a, b, 2 * a + 2 * b) == pytest.approx(4 / math.sqrt(5))
    # f = b: f - b is constant, its correlation undefined.
    assert math.isnan(scd(a, b, b))


# ---------------------------------------------------------------------------------------- VIF
def _vifp_naive(ref, dist):
    """Second VIFp implementation: explicit 2-D Gaussian windows at every valid position."""
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        c = (n - 1) / 2
        yy, xx = np.mgrid[0:n, 0:n] - c
        w = np.exp(-(xx ** 2 + yy ** 2) / (2 * (n / 5.0) ** 2))
        w /= w.sum()

        def filt(img):
            out = np.empty((img.shape[0] - n + 1, img.shape[1] - n + 1))
            for r in range(out.shape[0]):
                for q in range(out.shape[1]):
                    out[r, q] = (img[r:r + n, q:q + n] * w).sum()
            return out

        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        m1, m2 = filt(ref), filt(dist)
        s1 = np.maximum(filt(ref * ref) - m1 ** 2, 0)
        s2 = np.maximum(filt(dist * dist) - m2 ** 2, 0)
        s12 = filt(ref * dist) - m1 * m2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        assert (g > 0).all() and (s1 > 1e-10).all()  # no guard cases in this test
        sv = np.maximum(sv, 1e-10)
        num += np.log(1 + g ** 2 * s1 / (sv + 2)).sum()
        den += np.log(1 + s1 / 2).sum()
    return num / den


def test_vifp_matches_naive_windows():
    ref = _smooth_image(45, 47, seed=3)
    dist = np.clip(0.7 * ref + 20 + _rng(4).normal(0, 8, ref.shape), 0, 255)
    expected = _vifp_naive(ref, dist)
    assert 0.05 < expected < 1.0
    assert vifp(ref, dist) == pytest.approx(expected, rel=1e-9)


def test_vif_identities():
    x = _smooth_image(48, 48, seed=5)
    assert vifp(x, x) == pytest.approx(1.0, abs=1e-6)
    assert vif(x, x, x) == pytest.approx(2.0, abs=1e-6)
    # A constant shift changes no local variance or covariance.
    shifted = x * 0.75 + 30  # only the shift is "free": scale the reference too
    assert vifp(x * 0.75, shifted) == pytest.approx(1.0, abs=1e-6)
    # Contrast enhancement (gain 1.5, no noise) scores above 1: a known VIF property.
    low = x * 0.5 + 40
    assert vifp(low, (low - 40) * 1.5 + 40) > 1.0
    # A reference with no variance anywhere: undefined.
    assert math.isnan(vifp(np.full((48, 48), 50.0), x))


# --------------------------------------------------------------------------------------- Qabf
def _qabf_naive(a, b, f):
    """Per-pixel loops: Sobel with zeros outside, then the Xydeas & Petrovic formulas."""
    c = QABF_CONSTANTS

    def grad(img):
        img = img.astype(np.float64)
        h, w = img.shape
        g = np.zeros((h, w))
        al = np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                def p(di, dj):
                    ii, jj = i + di, j + dj
                    return img[ii, jj] if 0 <= ii < h and 0 <= jj < w else 0.0
                sx = (p(-1, 1) + 2 * p(0, 1) + p(1, 1)) - (p(-1, -1) + 2 * p(0, -1) + p(1, -1))
                sy = (p(1, -1) + 2 * p(1, 0) + p(1, 1)) - (p(-1, -1) + 2 * p(-1, 0) + p(-1, 1))
                g[i, j] = math.sqrt(sx * sx + sy * sy)
                al[i, j] = math.atan(sy / sx) if sx != 0 else math.pi / 2
        return g, al

    (ga, aa), (gb, ab), (gf, af) = grad(a), grad(b), grad(f)
    num = den = 0.0
    for gs, als in ((ga, aa), (gb, ab)):
        for i in range(gs.shape[0]):
            for j in range(gs.shape[1]):
                s, t = gs[i, j], gf[i, j]
                ratio = 1.0 if s == t else (t / s if s > t else s / t)
                orient = 1 - abs(als[i, j] - af[i, j]) / (math.pi / 2)
                q = (c["Tg"] / (1 + math.exp(c["kg"] * (ratio - c["Dg"])))
                     * c["Ta"] / (1 + math.exp(c["ka"] * (orient - c["Da"]))))
                num += q * s
                den += s
    return num / den


def test_qabf_matches_per_pixel_loops():
    rng = _rng(6)
    a = rng.integers(0, 256, (7, 9)).astype(np.uint8)
    b = rng.integers(0, 256, (7, 9)).astype(np.uint8)
    f = average(a, b)
    assert qabf(a, b, f) == pytest.approx(_qabf_naive(a, b, f), rel=1e-12)


def test_qabf_constants_are_the_papers():
    assert QABF_CONSTANTS == {"L": 1.0, "Tg": 0.9994, "kg": -15.0, "Dg": 0.5,
                              "Ta": 0.9879, "ka": -22.0, "Da": 0.8}


def test_qabf_closed_forms():
    x = _smooth_image(16, 16, seed=7)
    # Every edge perfectly preserved: G = 1 and A = 1 wherever a source has a gradient.
    assert qabf(x, x, x) == pytest.approx(Q_PERFECT)
    assert Q_PERFECT == pytest.approx(0.974794, abs=1e-6)
    # A source without any gradient (all zeros) carries no weight.
    zero = np.zeros_like(x)
    assert qabf(x, zero, x) == pytest.approx(Q_PERFECT)
    # f = a / 2 (a = b): every gradient halves, orientations keep: G = 0.5, A = 1 everywhere.
    q_half = (0.9994 / (1 + math.exp(0.0))) * (0.9879 / (1 + math.exp(-22 * 0.2)))
    assert qabf(x, x, x / 2) == pytest.approx(q_half)
    assert math.isnan(qabf(zero, zero, x))


# --------------------------------------------------------------------------------------- SSIM
def test_ssim_by_hand_and_identity():
    # Constant images: all local variances vanish, SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1).
    c1 = (0.01 * 255) ** 2
    x, y = np.full((11, 11), 100, np.uint8), np.full((11, 11), 50, np.uint8)
    assert ssim(x, y) == pytest.approx((2 * 100 * 50 + c1) / (100 ** 2 + 50 ** 2 + c1))
    z = _smooth_image(20, 24, seed=8)
    assert ssim(z, z) == pytest.approx(1.0)
    assert ssim_sum(z, z, z) == pytest.approx(2.0)


def _kornia_ssim(x, y):
    """kornia's SSIM with the project's definition (11 x 11 Gaussian, sigma 1.5, L = 255, valid
    region), in float64."""
    torch = pytest.importorskip("torch")
    kornia = pytest.importorskip("kornia")
    tx, ty = (torch.from_numpy(np.asarray(v, np.float64))[None, None] for v in (x, y))
    return kornia.metrics.ssim(tx, ty, 11, max_val=255.0, padding="valid").mean().item()


#: the project's SSIM equals kornia's in float64 to this absolute difference (measured: at most
#: 4e-16 on the images below; kornia in float32 differs by up to ~1e-6)
SSIM_KORNIA_TOL = 1e-12


@pytest.mark.parametrize("h, w, seed", [(11, 11, 1), (11, 40, 2), (37, 23, 3), (24, 30, 9),
                                        (120, 160, 4)])
def test_ssim_matches_kornia(h, w, seed):
    x = _smooth_image(h, w, seed=seed)
    y = np.clip(x + _rng(seed + 100).normal(0, 20, x.shape), 0, 255)
    assert abs(ssim(x, y) - _kornia_ssim(x, y)) <= SSIM_KORNIA_TOL
    xu, yu = x.astype(np.uint8), y.astype(np.uint8)  # uint8 inputs as the evaluator gives them
    assert abs(ssim(xu, yu) - _kornia_ssim(xu, yu)) <= SSIM_KORNIA_TOL


@needs_msrs
def test_ssim_sum_matches_kornia_on_a_real_pair():
    vis_y, ir = _read_msrs_pair()
    fused = ((vis_y.astype(np.float64) + ir) / 2).round().astype(np.uint8)
    expected = _kornia_ssim(vis_y, fused) + _kornia_ssim(ir, fused)
    assert abs(ssim_sum(vis_y, ir, fused) - expected) <= 2 * SSIM_KORNIA_TOL


# --------------------------------------------------------------------------------- properties
def test_swapping_sources_changes_nothing():
    rng = _rng(11)
    a = _smooth_image(48, 48, seed=12)
    b = rng.uniform(0, 255, (48, 48))
    f = 0.6 * a + 0.4 * b
    for metric in (mutual_information, scd, vif, qabf, ssim_sum):
        assert metric(a, b, f) == pytest.approx(metric(b, a, f), rel=1e-12), metric.__name__
    assert fusion_metrics(a, b, f) == pytest.approx(fusion_metrics(b, a, f), rel=1e-12)


def test_uint8_and_float_inputs_agree():
    a = _rng(13).integers(0, 256, (48, 48)).astype(np.uint8)
    b = _rng(14).integers(0, 256, (48, 48)).astype(np.uint8)
    f = average(a, b)
    as_uint8 = fusion_metrics(a, b, f)
    as_float = fusion_metrics(a.astype(np.float32), b.astype(np.float64), f.astype(np.float64))
    assert as_uint8 == pytest.approx(as_float, rel=1e-12)
    assert tuple(as_uint8) == FUSION_METRIC_KEYS
    # A very dark uint8 image (max 1) is fine: integer images are on the 0-255 scale already.
    dark = (a > 128).astype(np.uint8)
    assert entropy(dark) == pytest.approx(entropy((a > 128).astype(np.uint8) * 255))


def test_bad_inputs_are_refused():
    x = np.full((48, 48), 100.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        entropy(x / 255)                      # a [0, 1] float image
    with pytest.raises(ValueError, match="0, 255"):
        std_dev(x * 3)                        # above 255
    with pytest.raises(ValueError, match="0, 255"):
        std_dev(x - 101)                      # negative
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        spatial_frequency(bad)
    with pytest.raises(ValueError, match="2-D"):
        entropy(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        entropy(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="shape"):
        qabf(x, x, x[:-1])
    with pytest.raises(ValueError, match="41"):
        vif(x[:40], x[:40], x[:40])
    with pytest.raises(ValueError):
        spatial_frequency(x, normalise="mean")
    with pytest.raises(ValueError):
        average_gradient(x, differences="backward")
    assert std_dev(np.zeros((4, 4))) == 0.0    # an all-zero float image is accepted


@needs_msrs
def test_unrelated_noise_scores_below_the_average_rule():
    cv2 = pytest.importorskip("cv2")
    vis_y, ir = _read_msrs_pair()
    vis_y = cv2.resize(vis_y, (160, 120), interpolation=cv2.INTER_AREA)
    ir = cv2.resize(ir, (160, 120), interpolation=cv2.INTER_AREA)
    fused = average(vis_y, ir)
    noise = _rng(15).integers(0, 256, vis_y.shape).astype(np.uint8)
    for metric in (mutual_information, vif, qabf, ssim_sum):
        good, bad = metric(vis_y, ir, fused), metric(vis_y, ir, noise)
        assert good > bad + 0.1, (metric.__name__, good, bad)


# ------------------------------------------------------------------------- a real MSRS pair
@needs_msrs
def test_average_rule_on_a_real_msrs_pair():
    vis_y, ir = _read_msrs_pair()
    assert vis_y.dtype == np.uint8 and vis_y.shape == (480, 640)
    fused = FUSION_RULES["average"](vis_y, ir)
    m = fusion_metrics(vis_y, ir, fused)
    assert tuple(m) == FUSION_METRIC_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values()), m
    assert 2.0 < m["EN"] <= 8.0
    assert 1.0 < m["SD"] <= 127.5
    assert 0.5 < m["SF"] < 100.0 and 0.1 < m["AG"] < 50.0
    assert 0.5 < m["MI"] <= 16.0
    assert -2.0 <= m["SCD"] <= 2.0
    assert 0.2 < m["VIF"] < 2.0                  # each source partly preserved, never perfectly
    assert 0.1 < m["Qabf"] <= Q_PERFECT
    assert 0.5 < m["SSIM"] < 2.0
    # Averaging mixes the sources, so the average rule keeps less of each than the source itself.
    best = fusion_metrics(vis_y, ir, vis_y)
    assert best["SSIM"] > 1.0 and best["VIF"] > 1.0     # vis term is exactly 1


# ------------------------------------------------------------------------------- fusion rules
def test_fusion_rules_by_hand():
    v = np.array([[0, 255], [3, 4]], np.uint8)
    t = np.array([[255, 0], [4, 4]], np.uint8)
    # (0 + 255 + 1) // 2 = 128; (3 + 4 + 1) // 2 = 4 (half up); no uint8 overflow.
    np.testing.assert_array_equal(average(v, t), np.array([[128, 128], [4, 4]], np.uint8))
    np.testing.assert_array_equal(maximum(v, t), np.array([[255, 255], [4, 4]], np.uint8))
    np.testing.assert_array_equal(visible(v, t), v)
    np.testing.assert_array_equal(thermal(v, t), t)
    for name, rule in FUSION_RULES.items():
        out = rule(v, t)
        assert out.dtype == np.uint8 and out.shape == (2, 2), name
        assert not np.shares_memory(out, v) and not np.shares_memory(out, t), name
    vf, tf = v.astype(np.float32) / 255, t.astype(np.float32) / 255
    avg = average(vf, tf)
    assert avg.dtype == np.float32
    np.testing.assert_allclose(avg, [[0.5, 0.5], [3.5 / 255, 4 / 255]], rtol=1e-6)
    assert set(FUSION_RULES) == {"visible", "thermal", "average", "maximum", "laplacian", "gff"}


def test_fusion_rules_refuse_mismatches():
    v = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        average(v, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        maximum(v, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        visible(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8))


def test_metrics_beaten_counts_strict_wins_and_source_metrics():
    from segmif_core.metrics.fusion import SOURCE_METRIC_KEYS, TARGET_METRIC_KEYS, metrics_beaten
    assert set(SOURCE_METRIC_KEYS) <= set(TARGET_METRIC_KEYS) and len(TARGET_METRIC_KEYS) == 8
    ref = {k: 1.0 for k in FUSION_METRIC_KEYS}
    cand = dict(ref, EN=1.5, SD=0.5, MI=2.0, VIF=1.0, Qabf=float("nan"), SSIM=9.0)
    won, src = metrics_beaten(cand, ref)
    # EN and MI larger; SD smaller, VIF a tie, Qabf NaN; SSIM is not one of the 8
    assert won == ["EN", "MI"] and src == 1
    assert metrics_beaten(ref, cand) == (["SD"], 0)
    with pytest.raises(KeyError):
        metrics_beaten({"EN": 1.0}, ref)
