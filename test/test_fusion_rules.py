"""Classical fusion rules (laplacian, gff) and the pyramid head's composer, on hand-made images
whose answers are known without the code: equal inputs, a step edge in one source only, the
coarsest-level rule, a one-pixel line present only in the thermal image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segmif_core import fusion_rules as R
from segmif_core.models.modules.pyramid import PyramidComposer, collapse, laplacian_pyramid


def _step(h=64, w=96, lo=60, hi=190, col=48):
    img = np.full((h, w), lo, np.uint8)
    img[:, col:] = hi
    return img


@pytest.mark.parametrize("rule", ["laplacian", "gff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_equal_inputs_give_that_input_back(rule, dtype):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80)).astype(dtype)
    if dtype == np.float32:
        img = img / 255.0
    out = R.FUSION_RULES[rule](img, img.copy())
    assert out.dtype == img.dtype and out.shape == img.shape
    assert np.abs(out.astype(np.float64) - img.astype(np.float64)).max() <= (
        1 if dtype == np.uint8 else 1e-4)


@pytest.mark.parametrize("rule", ["laplacian", "maximum"])
def test_step_edge_in_one_source_keeps_its_full_contrast(rule):
    # the visible image has a 130-level step; the thermal image is flat at the dark side's level,
    # so the fused image must show the whole step (a pixel average would halve it to 65)
    vis = _step(lo=60, hi=190)
    ir = np.full_like(vis, 60)
    f = R.FUSION_RULES[rule](vis, ir).astype(float)
    left, right = f[:, 8:40].mean(), f[:, 56:88].mean()
    assert right - left >= 0.9 * 130
    # and the same with the edge in the thermal image only
    f2 = R.FUSION_RULES[rule](ir, vis).astype(float)
    assert f2[:, 56:88].mean() - f2[:, 8:40].mean() >= 0.9 * 130


def test_gff_takes_each_region_from_the_source_with_the_texture():
    # left half: texture in the visible image only; right half: texture in the thermal image
    # only (GFF's saliency rule, Eqs. 3-5): the fused texture follows each region's source
    rng = np.random.default_rng(3)
    tex = lambda: rng.normal(0, 25, (96, 64))  # noqa: E731
    vis = np.full((96, 128), 120.0)
    ir = np.full((96, 128), 120.0)
    vis[:, :64] += tex()
    ir[:, 64:] += tex()
    vis, ir = [np.clip(x, 0, 255).astype(np.float32) for x in (vis, ir)]
    f = R.gff(vis, ir)
    left, right = (slice(8, -8), slice(8, 48)), (slice(8, -8), slice(80, 120))
    assert np.corrcoef(f[left].ravel(), vis[left].ravel())[0, 1] > 0.9
    assert np.corrcoef(f[right].ravel(), ir[right].ravel())[0, 1] > 0.9
    assert f[left].std() > 0.8 * vis[left].std() and f[right].std() > 0.8 * ir[right].std()


def test_laplacian_base_rule_is_applied_to_the_coarsest_level():
    # two flat images: no detail anywhere, so the fused image is the base rule of the two levels
    a = np.full((64, 64), 40.0, np.float32)
    b = np.full((64, 64), 200.0, np.float32)
    assert np.allclose(R.laplacian(a, b, base="max"), 200.0, atol=1e-3)
    assert np.allclose(R.laplacian(a, b, base="average"), 120.0, atol=1e-3)
    # 'add': sum minus the mean of the two means = a + b - (a + b) / 2
    assert np.allclose(R.laplacian(a, b, base="add"), 120.0, atol=1e-3)
    # a coarse bright blob only in b, a coarse dark region in a: max keeps the blob's level
    yy, xx = np.mgrid[:64, :64]
    blob = (150.0 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 12.0 ** 2))).astype(np.float32)
    f = R.laplacian(np.zeros_like(blob), blob, levels=4, base="max")
    assert abs(float(f[32, 32]) - 150.0) < 8.0


def test_laplacian_detail_rule_takes_the_larger_magnitude():
    # fine checkerboard of amplitude 10 in a, of amplitude 40 in b (opposite phase): max-abs picks
    # b's coefficients, so the fused texture has b's amplitude and phase
    yy, xx = np.mgrid[:64, :64]
    cb = np.where((yy + xx) % 2 == 0, 1.0, -1.0).astype(np.float32)
    a, b = 100 + 10 * cb, 100 - 40 * cb
    f = R.laplacian(a.astype(np.float32), b.astype(np.float32), levels=3, base="average")
    inner = (slice(8, -8), slice(8, -8))
    assert np.corrcoef(f[inner].ravel(), b[inner].ravel())[0, 1] > 0.95
    assert f[inner].std() > 30


def test_pyramid_reconstructs_exactly():
    rng = np.random.default_rng(1)
    img = rng.random((61, 83)).astype(np.float32)
    assert np.abs(R.pyramid_reconstruct(R.laplacian_pyramid(img, 4)) - img).max() < 1e-5
    t = torch.from_numpy(img)[None, None]
    assert (collapse(laplacian_pyramid(t, 5)) - t).abs().max() < 1e-5


def test_rules_refuse_bad_arguments():
    a = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="base"):
        R.laplacian(a, a, base="median")
    with pytest.raises(ValueError, match="levels"):
        R.laplacian(a, a, levels=0)
    with pytest.raises(ValueError, match="shape"):
        R.gff(a, np.zeros((32, 33), np.uint8))
    with pytest.raises(ValueError, match="unknown fusion rule"):
        R.fuse_rgb("median", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))


def test_fuse_rgb_keeps_the_visible_chroma_and_fuses_the_luma():
    rng = np.random.default_rng(2)
    # low-saturation colours (grey + small chroma), so that no RGB channel clips
    grey = rng.integers(40, 200, (48, 64, 1))
    vis = np.clip(grey + rng.integers(-8, 9, (48, 64, 3)), 0, 255).astype(np.uint8)
    ir = rng.integers(30, 220, (48, 64)).astype(np.uint8)
    out = R.fuse_rgb("maximum", vis, ir)
    # BT.601 luma by hand; the max rule's luma is max(Y, T) up to the YCrCb round trip
    y = np.rint(vis.astype(float) @ np.array([0.299, 0.587, 0.114]))
    y_out = out.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(y_out - np.maximum(y, ir)).mean() < 1.5


# --------------------------------------------------------------------- the pyramid head's composer
def test_composer_carries_a_one_pixel_thermal_line_at_camera_resolution():
    # a one-pixel bright line present only in the thermal image at 480x640 survives into the
    # fused luminance whatever the network's weight map says (here: all-visible, w = 1, at the
    # network's 240x320), because the detail levels take the larger-magnitude coefficient
    y = torch.full((1, 1, 480, 640), 0.3)
    t = torch.full((1, 1, 480, 640), 0.3)
    t[..., 201, :] = 0.9
    w = torch.ones(1, 1, 240, 320)
    u = PyramidComposer()(w, y, t, levels=5, w_downs=3)
    line, beside = u[..., 201, 50:-50].mean().item(), u[..., 197, 50:-50].mean().item()
    assert line - beside > 0.45          # 0.6 of contrast in the source
    assert abs(beside - 0.3) < 0.05


def test_composer_weight_chooses_the_base_level():
    # flat sources: the result is the weight map's mix of the two levels
    y = torch.full((1, 1, 64, 64), 0.2)
    t = torch.full((1, 1, 64, 64), 0.8)
    for wv in (0.0, 0.25, 1.0):
        u = PyramidComposer()(torch.full((1, 1, 16, 16), wv), y, t, levels=3, w_downs=0)
        assert torch.allclose(u, torch.full_like(u, wv * 0.2 + (1 - wv) * 0.8), atol=1e-5)


def test_composer_brighter_base_is_the_max_rule_at_weight_one():
    # base='brighter': w is the share of the brighter source. Two flat halves where visible is
    # brighter on the left and thermal on the right: w = 1 gives the max of the two on each
    # side (the classical max rule), w = 0 the min, w = 0.25 their mix; expected values by hand
    y = torch.full((1, 1, 64, 128), 0.2)
    t = torch.full((1, 1, 64, 128), 0.8)
    y[..., :64], t[..., :64] = 0.7, 0.1
    for wv, left, right in ((1.0, 0.7, 0.8), (0.0, 0.1, 0.2), (0.25, 0.25, 0.35)):
        u = PyramidComposer()(torch.full((1, 1, 16, 32), wv), y, t, levels=2, w_downs=0,
                              base="brighter")
        # away from the step (the pyramid's blur mixes the halves within a few pixels)
        assert torch.allclose(u[..., :24], torch.full_like(u[..., :24], left), atol=1e-4)
        assert torch.allclose(u[..., 104:], torch.full_like(u[..., 104:], right), atol=1e-4)
    with pytest.raises(ValueError, match="base"):
        PyramidComposer()(torch.ones(1, 1, 16, 32), y, t, levels=2, w_downs=0, base="max")
