"""SegMiF losses against values computed by hand on small tensors."""
import math

import pytest
import torch

from segmif_core.training.losses import (class_weights, fusion_loss, gradient_loss, high_pass,
                                         saliency_pixel_loss, segmentation_loss, ssim_loss,
                                         vsm_saliency, vsm_weights)


def test_ssim_loss_zero_for_identical_and_positive_otherwise():
    x = torch.rand(2, 1, 32, 32)
    assert ssim_loss(x, x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert ssim_loss(x, x, 1 - x).item() > 0.1


def test_ssim_of_constants_by_hand():
    # constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (variance terms cancel)
    a, b, c1 = 0.2, 0.6, 0.01 ** 2
    u = torch.full((1, 1, 16, 16), a)
    v = torch.full((1, 1, 16, 16), b)
    expected = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2
    assert ssim_loss(u, v, u).item() == pytest.approx(expected, rel=1e-3)


def test_vsm_saliency_by_hand():
    # image with levels 0 (3 pixels) and 255 (1 pixel): V(0) = 1*255, V(255) = 3*255
    img = torch.tensor([[0.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    v = vsm_saliency(img)
    torch.testing.assert_close(v, torch.tensor([[0.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2))
    assert vsm_saliency(torch.full((1, 1, 3, 3), 0.5)).abs().max() == 0  # constant -> zeros


def test_vsm_weights_sum_to_one_and_favour_salient_source():
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)  # salient at (1, 1)
    y = torch.full((1, 1, 2, 2), 0.3)                              # constant: no saliency
    m1, m2 = vsm_weights(x, y)
    torch.testing.assert_close(m1 + m2, torch.ones_like(m1))
    assert m1[0, 0, 1, 1].item() == pytest.approx(1.0) and m1[0, 0, 0, 0].item() == pytest.approx(0.5)


def test_saliency_pixel_loss_by_hand_and_minimiser():
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    y = torch.full((1, 1, 2, 2), 0.3)
    u = torch.zeros(1, 1, 2, 2)
    # m1 = [.5 .5 .5 1], m2 = [.5 .5 .5 0]; errors to x: [0 0 0 1], to y: .09 everywhere
    expected = (1.0 * 1.0) / 4 + (0.5 * 0.09 * 3) / 4
    assert saliency_pixel_loss(u, x, y).item() == pytest.approx(expected, rel=1e-5)
    m1, m2 = vsm_weights(x, y)
    best = m1 * x + m2 * y  # the weighted average is the minimiser
    u = best.clone().requires_grad_(True)
    saliency_pixel_loss(u, x, y).backward()
    assert u.grad.abs().max().item() < 1e-6


def test_high_pass_zero_on_constants_and_gradient_loss_by_hand():
    c = torch.full((1, 1, 9, 9), 0.4)
    assert high_pass(c, 5).abs().max().item() < 1e-6
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    y = torch.zeros(1, 1, 9, 9)
    # u = 0: loss = sum_k mean(hp_k(x)^2) since |hp(x)| >= |hp(y)| = 0 everywhere
    expected = sum(high_pass(x, k).square().mean().item() for k in (3, 5, 7))
    assert gradient_loss(torch.zeros_like(x), x, y).item() == pytest.approx(expected, rel=1e-5)
    assert gradient_loss(x, x, y).item() == pytest.approx(0.0, abs=1e-7)  # u = x matches
    # the target takes the larger-magnitude response: swapping sources changes nothing
    assert gradient_loss(x * 0.5, x, y).item() == pytest.approx(gradient_loss(x * 0.5, y, x).item())


def test_fusion_loss_combines_parts_with_eta():
    u, x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    parts = fusion_loss(u, x, y, eta=3.0)
    total = parts["ssim"] + parts["mse"] + 3.0 * parts["grad"]
    assert parts["total"].item() == pytest.approx(total.item())


def test_fusion_loss_weights_the_intensity_term():
    # max target: the pixel term is mean((u - max(x, y))^2), computed here by hand
    u, x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    mse = ((u - torch.maximum(x, y)) ** 2).mean().item()
    one = fusion_loss(u, x, y, eta=2.0, intensity="max")
    twenty = fusion_loss(u, x, y, eta=2.0, intensity="max", intensity_weight=20.0)
    assert one["mse"].item() == pytest.approx(mse, rel=1e-6)
    assert twenty["total"].item() - one["total"].item() == pytest.approx(19.0 * mse, rel=1e-5)
    with pytest.raises(ValueError, match="intensity_weight"):
        fusion_loss(u, x, y, intensity_weight=-1.0)


def test_cross_entropy_ignores_index_and_matches_hand_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)  # pixel0: (2,0) pixel1: (0,0)
    target = torch.tensor([[[0, 255]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert segmentation_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_class_weights_enet_rule():
    w = class_weights(torch.tensor([90, 10, 0]))
    expected = [1 / math.log(1.02 + 0.9), 1 / math.log(1.02 + 0.1), 1 / math.log(1.02)]
    torch.testing.assert_close(w, torch.tensor(expected))
