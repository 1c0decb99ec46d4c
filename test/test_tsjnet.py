"""TSJNet (issue 15): neighbourhood attention against a direct masked attention, split attention,
the paper's parameter counts, the model at 64x64 (outputs, predict, checkpoints) and its losses.
Expected values are derived by hand or by independent direct computations."""
import math

import pytest
import torch

from segmif_core.checkpoint import load_checkpoint, save_checkpoint
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.models import build_model
from segmif_core.models.preprocessing import split_luminance
from segmif_core.models.tsjnet import TSJNet, TSJNetConfig
from segmif_core.models.tsjnet.fusion import FusionNetwork, SpatialAttention
from segmif_core.models.tsjnet.lsm import LSM, DetailBranch
from segmif_core.models.tsjnet.neighborhood import (NATMini, NeighborhoodAttention,
                                                    neighborhood_attention, window_starts)
from segmif_core.models.tsjnet.split_attention import Bottleneck, SplitAttention
from segmif_core.training.tsjnet_losses import (LOSS_WEIGHTS, attention_diversity_loss,
                                                detection_loss, intensity_loss, mff_loss,
                                                reconstruction_loss, sigmoid_focal_loss,
                                                sobel_gradient, ssim_loss)

TINY = {"pretrained": None, "det_width": 16, "det_convs": 1, "seg_width": 16,
        "seg_low_channels": 8}


# ---------------------------------------------------------------- neighbourhood attention
def reference_na(q, k, v, kernel, bias):
    """Dense attention over all H*W keys with a mask of each query's k x k window (the window
    slides inward at the borders; a whole axis when it is shorter than k), written as loops."""
    b, h, hh, ww, d = q.shape
    out = torch.zeros_like(q)
    for i in range(hh):
        for j in range(ww):
            kh, kw = min(kernel, hh), min(kernel, ww)
            r0 = min(max(i - kernel // 2, 0), hh - kh)
            c0 = min(max(j - kernel // 2, 0), ww - kw)
            logits = torch.full((b, h, hh, ww), -math.inf, dtype=q.dtype)
            for r in range(r0, r0 + kh):
                for c in range(c0, c0 + kw):
                    logits[:, :, r, c] = ((q[:, :, i, j] * k[:, :, r, c]).sum(-1)
                                          + bias[:, r - i + kernel - 1, c - j + kernel - 1])
            attn = logits.flatten(2).softmax(-1)                    # (b, h, H*W)
            out[:, :, i, j] = torch.einsum("bhn,bhnd->bhd", attn, v.flatten(2, 3))
    return out


@pytest.mark.parametrize("size,kernel", [((6, 9), 3), ((7, 8), 5), ((5, 9), 7), ((3, 4), 7)])
def test_neighborhood_attention_matches_masked_dense_attention(size, kernel):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, *size, 4, dtype=torch.float64).unbind(0)
    bias = torch.randn(2, 2 * kernel - 1, 2 * kernel - 1, dtype=torch.float64)
    got = neighborhood_attention(q, k, v, kernel, bias)
    torch.testing.assert_close(got, reference_na(q, k, v, kernel, bias))


def test_window_starts_slide_inward():
    # k = 3 on 5 positions: windows 0-2, 0-2, 1-3, 2-4, 2-4
    assert window_starts(5, 3).tolist() == [0, 0, 1, 2, 2]
    assert window_starts(3, 7).tolist() == [0, 0, 0]


def test_neighborhood_attention_rejects_even_kernel():
    q = torch.zeros(1, 1, 4, 4, 2)
    with pytest.raises(ValueError, match="odd"):
        neighborhood_attention(q, q, q, 4)


def test_na_module_with_kernel_covering_map_is_global_attention():
    """Kernel >= the map: every query sees every key; with a zero bias the module is plain
    multi-head self-attention, computed here directly."""
    torch.manual_seed(1)
    na = NeighborhoodAttention(8, 2, kernel=7).double()
    with torch.no_grad():
        na.rpb.zero_()
    x = torch.randn(1, 3, 4, 8, dtype=torch.float64)
    qkv = na.qkv(x.reshape(1, 12, 8)).reshape(1, 12, 3, 2, 4).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * 4 ** -0.5, qkv[1], qkv[2]
    o = (q @ k.transpose(-1, -2)).softmax(-1) @ v                   # (1, 2, 12, 4)
    expected = na.proj(o.permute(0, 2, 1, 3).reshape(1, 12, 8)).reshape(1, 3, 4, 8)
    torch.testing.assert_close(na(x), expected)


def test_nat_mini_shapes_and_stride():
    nat = NATMini(8, dims=(8, 16), depths=(1, 1), heads=(1, 2), head_hidden=8)
    assert nat.stride == 8
    assert nat(torch.rand(2, 8, 16, 24)).shape == (2, 8, 16, 24)
    with pytest.raises(ValueError, match="multiples of 8"):
        nat(torch.rand(1, 8, 12, 16))


# ---------------------------------------------------------------- split attention / LSM
def test_split_attention_shapes_and_weights():
    sa = SplitAttention(8, radix=2)
    y = sa(torch.rand(2, 8, 5, 7))
    assert y.shape == (2, 8, 5, 7)
    assert sa.last_weights.shape == (2, 2, 8)
    torch.testing.assert_close(sa.last_weights.sum(1), torch.ones(2, 8))


def test_split_attention_with_zero_scores_averages_the_radix_maps():
    sa = SplitAttention(4, radix=2).eval()
    with torch.no_grad():
        sa.fc2.weight.zero_()
        sa.fc2.bias.zero_()
    x = torch.rand(1, 4, 6, 6)
    maps = sa.conv(x)                                 # (1, 8, 6, 6): radix 0 then radix 1
    torch.testing.assert_close(sa(x), (maps[:, :4] + maps[:, 4:]) / 2)


def test_bottleneck_shapes():
    assert Bottleneck(16, 8, downsample=True)(torch.rand(2, 16, 5, 7)).shape == (2, 32, 5, 7)
    assert Bottleneck(32, 8)(torch.rand(2, 32, 5, 7)).shape == (2, 32, 5, 7)
    with pytest.raises(ValueError):
        Bottleneck(16, 8)


def test_lsm_and_detail_branch_shapes():
    lsm = LSM(8, dims=(8, 16), depths=(1, 1), heads=(1, 2), head_hidden=8)
    base, detail = lsm(torch.rand(2, 8, 16, 16))
    assert base.shape == detail.shape == (2, 8, 16, 16)
    with pytest.raises(ValueError, match="even"):
        DetailBranch(8)(torch.rand(1, 8, 5, 6))


def test_spatial_attention_gates_each_group_with_its_map():
    att = SpatialAttention(8, groups=4)
    x = torch.rand(2, 8, 3, 5)
    gated, maps = att(x)
    assert maps.shape == (2, 4, 3, 5)
    torch.testing.assert_close(gated, x * maps.repeat_interleave(2, dim=1))


def test_paper_fusion_network_has_the_hand_counted_size():
    """tsjnet.md Sec. 2: E 22.7 M (NAT 20.3 M), fusion layers 20.3 M + 0.14 M, D 1.95 M."""
    c = TSJNetConfig.paper()
    nat = dict(dims=c.nat_dims, depths=c.nat_depths, heads=c.nat_heads, kernel=c.nat_kernel,
               mlp_ratio=c.nat_mlp_ratio, drop_path=c.nat_drop_path,
               head_hidden=c.nat_head_hidden)
    net = FusionNetwork(c.stem_channels, c.planes, c.blocks, c.radix, c.reduce_channels,
                        c.attention_groups, c.decoder_in, nat)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    assert count(net.encoder) == pytest.approx(22.7, abs=0.05)
    assert count(net.encoder.lsm.base) == pytest.approx(20.3, abs=0.05)
    assert count(net.fuse_base) == pytest.approx(20.3, abs=0.05)
    assert count(net.fuse_detail) == pytest.approx(0.14, abs=0.005)
    assert count(net.decoder) == pytest.approx(1.95, abs=0.02)
    assert count(net) == pytest.approx(45.1, abs=0.1)


# ---------------------------------------------------------------- the model
#: The model variants every model test runs on: the paper's heads, and this project's pyramid
#: fusion head with the all-MLP segmentation head.
VARIANTS = {"paper_heads": {}, "pyramid_mlp": {"fusion_head": "pyramid", "seg_head": "mlp"},
            "pyramid_brighter": {"fusion_head": "pyramid", "pyramid_base": "brighter"}}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    torch.manual_seed(0)
    return build_model("tsjnet", dict(TINY, **VARIANTS[request.param]))


def bt601_rgb(y, vis):
    """Independent JPEG (BT.601 full-range) recombination: Cb, Cr of vis, Y replaced, clipped."""
    r, g, b = vis.unbind(1)
    yv = 0.299 * r + 0.587 * g + 0.114 * b
    cb, cr = (b - yv) * 0.564 + 0.5, (r - yv) * 0.713 + 0.5
    y = y[:, 0]
    out = torch.stack([y + 1.403 * (cr - 0.5), y - 0.714 * (cr - 0.5) - 0.344 * (cb - 0.5),
                       y + 1.773 * (cb - 0.5)], dim=1)
    return out.clamp(0, 1)


def test_forward_outputs(model):
    torch.manual_seed(1)
    vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    out = model(vis, ir, reconstruct=True)
    assert out["logits"].shape == (2, 9, 64, 64)
    for key in ("fused", "recon_vis", "recon_ir"):
        assert out[key].shape == (2, 1, 64, 64)
        assert 0 <= out[key].min() and out[key].max() <= 1
    assert out["attention"].shape == (2, 8, 64, 64)
    torch.testing.assert_close(out["fused_rgb"], bt601_rgb(out["fused"], vis), atol=2e-3,
                               rtol=0)
    det = out["detections"]
    assert det["strides"] == (8, 16, 32)
    assert [tuple(m.shape) for m in det["cls_logits"]] == [(2, 3, 8, 8), (2, 3, 4, 4),
                                                           (2, 3, 2, 2)]
    assert all(m.shape[1] == 4 and m.min() >= 0 for m in det["box_regression"])


def test_phases(model):
    vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    extra = {"fusion_map"} if model.config.fusion_head == "pyramid" else set()
    assert set(model(vis, ir, phase="fusion")) == {"fused", "fused_rgb", "attention"} | extra
    assert set(model(torch.rand(2, 1, 64, 64), phase="fused")) == {"logits", "detections"}
    with pytest.raises(ValueError, match="phase"):
        model(vis, ir, phase="nope")


def test_odd_size_is_padded_and_cropped(model):
    out = model(torch.rand(1, 3, 50, 70), torch.rand(1, 1, 50, 70))
    assert out["fused"].shape == (1, 1, 50, 70) and out["logits"].shape == (1, 9, 50, 70)


def test_gradients_reach_every_parameter(model):
    model.train()
    model.zero_grad()
    vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    out = model(vis, ir, reconstruct=True)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    loss = (out["logits"].square().mean() + out["fused"].mean() + out["recon_vis"].mean()
            + out["recon_ir"].mean() + out["attention"].mean()
            + detection_loss(out["detections"], targets)["total"])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]


def test_predict_and_detections(model):
    model.train()
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        model.detector.head.cls_logits.bias.fill_(2.0)   # make sure some boxes pass the threshold
    p = model.predict(vis, ir)
    assert model.training
    assert p["labels"].shape == (1, 64, 64) and p["fused_rgb"].shape == (1, 3, 64, 64)
    (d,) = p["detections"]
    assert d["boxes"].shape[1] == 4 and len(d["boxes"]) == len(d["scores"]) == len(d["classes"])
    assert 0 < len(d["boxes"]) <= model.config.max_detections
    assert d["boxes"].min() >= 0 and d["boxes"].max() <= 64
    assert torch.all(d["scores"][:-1] >= d["scores"][1:])
    full = model.predict(vis, ir, full=(torch.rand(1, 3, 128, 192), torch.rand(1, 1, 128, 192)))
    assert full["fused_rgb"].shape == (1, 3, 128, 192)
    torch.testing.assert_close(full["detections"][0]["boxes"],
                               d["boxes"] * torch.tensor([3.0, 2.0, 3.0, 2.0]))
    torch.testing.assert_close(model.detect(vis, ir)[0]["scores"], d["scores"])
    with torch.no_grad():
        model.detector.head.cls_logits.bias.fill_(-math.log(99.0))


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "tsjnet.pt"
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(64, 64), half=False)
    loaded, classes, info = load_checkpoint(path)
    assert isinstance(loaded, TSJNet) and info["model"] == "tsjnet"
    assert loaded.config == model.config and classes == MFNET_CLASSES
    model.eval()
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = model(vis, ir), loaded(vis, ir)
    torch.testing.assert_close(a["fused"], b["fused"])
    torch.testing.assert_close(a["logits"], b["logits"])
    torch.testing.assert_close(a["detections"]["box_regression"][0],
                               b["detections"]["box_regression"][0])


def test_config_checks_and_paper_values():
    paper = TSJNetConfig.paper()
    assert (paper.stem_channels, paper.planes, paper.reduce_channels) == ((64, 64, 128), 128,
                                                                          (256, 128, 64))
    assert (paper.nat_depths, paper.nat_heads) == ((3, 4, 6, 5), (2, 4, 8, 16))
    assert TSJNetConfig(stem_channels=[8, 8, 16]).stem_channels == (8, 8, 16)
    with pytest.raises(ValueError, match="task_input"):
        TSJNetConfig(task_input="bgr")
    for key in ("fusion_head", "seg_head", "pyramid_base"):
        with pytest.raises(ValueError, match=key):
            TSJNetConfig(**{key: "nope"})
    with pytest.raises(ValueError, match="pyramid_levels"):
        TSJNetConfig(pyramid_levels=1)
    with pytest.raises(ValueError, match="invalid config"):
        build_model("tsjnet", {"no_such_key": 1})


# ---------------------------------------------------------------- losses
def test_sobel_gradient_of_a_ramp():
    x = (torch.arange(8.0) * 0.1).expand(1, 1, 6, 8)       # slope 0.1 along x
    g = sobel_gradient(x)
    torch.testing.assert_close(g[..., 1:-1, 1:-1], torch.full((1, 1, 4, 6), 0.8))


def test_intensity_and_ssim_terms():
    v, i = torch.full((1, 1, 16, 16), 0.5), torch.full((1, 1, 16, 16), 0.25)
    assert intensity_loss(torch.zeros_like(v), v, i).item() == pytest.approx(0.5)
    assert intensity_loss(torch.maximum(v, i), v, i).item() == 0
    torch.manual_seed(0)
    textured = torch.rand(1, 1, 32, 32)
    # flat visible image: all SSIM weight on the thermal image, whose copy is perfect
    assert ssim_loss(textured, torch.full_like(textured, 0.3), textured).item() == \
        pytest.approx(0.0, abs=1e-5)
    assert ssim_loss(textured, textured, textured).item() == pytest.approx(0.0, abs=1e-5)


def test_mff_and_reconstruction_weights():
    torch.manual_seed(0)
    f, v, i = torch.rand(3, 1, 1, 16, 16).unbind(0)
    parts = mff_loss(f, v, i)
    expected = 20 * parts["intensity"] + 20 * parts["gradient"] + 10 * parts["ssim"]
    torch.testing.assert_close(parts["total"], expected)
    r = reconstruction_loss(f, v, f, i)
    torch.testing.assert_close(r["total"], 6 * ((f - v) ** 2).mean() + ((f - i) ** 2).mean())
    assert LOSS_WEIGHTS["attention"] == 0.1


def test_attention_diversity_loss():
    assert attention_diversity_loss(torch.ones(1, 4, 2, 2)).item() == pytest.approx(1.0)
    one_hot = torch.zeros(1, 4, 2, 2)
    one_hot[:, 0] = 1
    assert attention_diversity_loss(one_hot).item() == pytest.approx(0.25)


def test_focal_loss_hand_value():
    got = sigmoid_focal_loss(torch.zeros(1), torch.ones(1)).item()
    assert got == pytest.approx(0.25 * 0.5 ** 2 * math.log(2))


def test_detection_loss_of_exact_boxes_is_zero_box_term():
    """One 32x32 image, one stride-8 level (points at 4, 12, 20, 28), box (0, 0, 16, 16): four
    positive points; the regression maps hold each point's exact distances to the box."""
    xs = torch.arange(4) * 8 + 4.0
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    reg = torch.stack([xx, yy, 16 - xx, 16 - yy]).clamp(min=0)[None]
    raw = {"cls_logits": [torch.zeros(1, 2, 4, 4, requires_grad=True)],
           "box_regression": [reg.requires_grad_()],
           "centerness": [torch.zeros(1, 1, 4, 4, requires_grad=True)], "strides": (8,)}
    target = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]), "labels": torch.tensor([1])}]
    loss = detection_loss(raw, target, center_radius=None)
    assert loss["positives"] == 4
    assert loss["box"].item() == pytest.approx(0.0, abs=1e-5)
    # class term: 4 positives of class 1 at logit 0 (0.25 * 0.25 ln 2 each) and 28 negative
    # entries (0.75 * 0.25 ln 2 each), divided by 4
    ln2 = math.log(2)
    assert loss["cls"].item() == pytest.approx((4 * 0.0625 * ln2 + 28 * 0.1875 * ln2) / 4)
    loss["total"].backward()
    empty = detection_loss(raw, [{"boxes": torch.zeros(0, 4),
                                  "labels": torch.zeros(0, dtype=torch.int64)}])
    assert empty["positives"] == 0 and empty["box"].item() == 0
    with pytest.raises(ValueError):
        detection_loss(raw, target * 2)


def test_detector_border_pad_keeps_the_locations_of_the_unpadded_input():
    """det_border_pad 32: the head's maps have the unpadded input's sizes, and each cell holds
    what the same network computes at that image position on the input zero-padded by 32 px
    on every side (cell j + 32 / stride of the padded maps); the detection loss trains it."""
    import torch.nn.functional as F

    from segmif_core.training.tsjnet_losses import detection_loss
    torch.manual_seed(0)
    padded = build_model("tsjnet", dict(TINY, det_border_pad=32)).eval()
    plain = build_model("tsjnet", dict(TINY)).eval()
    plain.load_state_dict(padded.state_dict())
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        got = padded.detector(x)
        ref = plain.detector(F.pad(x, (32, 32, 32, 32)))
        own = plain.detector(x)
    for key in ("cls_logits", "box_regression", "centerness"):
        for g, r, o, s in zip(got[key], ref[key], own[key], got["strides"]):
            assert g.shape == o.shape
            c = 32 // s
            torch.testing.assert_close(g, r[..., c:c + g.shape[-2], c:c + g.shape[-1]])
    assert not torch.allclose(got["cls_logits"][0], own["cls_logits"][0])
    padded.train()
    raw = padded.detector(x)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])}]
    loss = detection_loss(raw, targets)
    assert loss["positives"] > 0
    loss["total"].backward()
    assert padded.detector.head.box.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="border_pad"):
        build_model("tsjnet", dict(TINY, det_border_pad=16))


def test_fusion_scale_runs_the_fusion_network_at_the_reduced_size(model):
    """fusion_scale 0.5 on a 64 x 96 input: the fusion network's encoder sees 32 x 64 (the
    reduced 32 x 48 padded to its stride 32), F and the attention maps come back at 64 x 96 in
    [0, 1], F is the guided upsampling of the reduced map (a smooth image is reproduced closely),
    the task networks see 64 x 96; the option is set on a built model by set_fusion_scale."""
    from segmif_core.inference.backends import set_fusion_scale
    torch.manual_seed(0)
    m = build_model("tsjnet", dict(TINY)).eval()
    seen = []
    m.fusion.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    vis = torch.stack([xx, yy, (xx + yy) / 2])[None]
    ir = ((xx * yy)[None, None] * 0.8 + 0.1)
    with torch.no_grad():
        full = m(vis, ir)
        assert set_fusion_scale(m, 0.5) and m.config.fusion_scale == 0.5
        half = m(vis, ir)
    assert seen[0][-2:] == (64, 96) and seen[1][-2:] == (32, 64) and seen[1][0] == 2
    assert half["fused"].shape == (1, 1, 64, 96) and half["attention"].shape[-2:] == (64, 96)
    assert half["fused"].min() >= 0 and half["fused"].max() <= 1
    assert half["logits"].shape[-2:] == (64, 96)
    # smooth inputs: the half-size fusion plus guided upsampling stays close to full size
    assert (half["fused"] - full["fused"]).abs().mean() < 0.05
    with pytest.raises(ValueError, match="fusion_scale"):
        TSJNetConfig(fusion_scale=0.0)


def test_map_base_of_equal_sources_is_the_source():
    """y = t = the map (base 'map'): every detail level and the coarsest level are y's, so the
    collapse is y."""
    from segmif_core.models.modules.pyramid import PyramidComposer
    compose = PyramidComposer()
    y = torch.rand(2, 1, 37, 53, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(compose(y, y, y.clone(), 4, 3, "map"), y, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="shapes differ"):
        compose(y, y, y[:, :, :30], 4, 3, "map")


@pytest.mark.parametrize("scale,base", [(1.0, "map"), (0.5, "map"), (0.5, "brighter")])
def test_pyramid_head_keeps_a_thermal_only_line_at_camera_resolution(scale, base):
    """A one-pixel bright line present only in the thermal image at the camera's resolution
    (4x the network size) survives into the full-resolution fused image of an untrained
    pyramid-head TSJNet: it stands above the pixels beside it by at least half its height above
    the background (the visible image is flat, so every detail coefficient of the line comes
    from the thermal image; only the coarsest level is the network's)."""
    torch.manual_seed(0)
    m = build_model("tsjnet", dict(TINY, fusion_head="pyramid", fusion_scale=scale,
                                   pyramid_base=base)).eval()
    h, w = 64, 96
    vis, ir = torch.full((1, 3, h, w), 0.4), torch.full((1, 1, h, w), 0.3)
    vis_hi, ir_hi = torch.full((1, 3, 4 * h, 4 * w), 0.4), torch.full((1, 1, 4 * h, 4 * w), 0.3)
    ir_hi[..., :, 200] = 0.9                                       # the line, 0.6 above
    ir = torch.nn.functional.interpolate(ir_hi, size=(h, w), mode="area")
    fused = m.predict(vis, ir, full=(vis_hi, ir_hi))["fused_rgb"]
    assert fused.shape == (1, 3, 4 * h, 4 * w)
    y = split_luminance(fused)[0][0, 0]
    rows = slice(20, 4 * h - 20)                                   # away from the borders
    contrast = y[rows, 200] - torch.maximum(y[rows, 196], y[rows, 204])
    assert contrast.min() > 0.3


def test_checkpoint_with_config_script_changes_only_the_config(tiny_tsjnet_checkpoint, tmp_path):
    """scripts/checkpoint_with_config.py: the re-saved TSJNet has the pyramid head and the same
    weights (its F equals the source model's fusion map), and a change of the segmentation head
    (other parameters) is refused."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "checkpoint_with_config.py"
    spec = importlib.util.spec_from_file_location("checkpoint_with_config", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "pyr.pt"
    assert script.main([str(tiny_tsjnet_checkpoint), str(out), "fusion_head=pyramid",
                        "pyramid_levels=3"]) == 0
    src, _, _ = load_checkpoint(tiny_tsjnet_checkpoint)
    new, _, info = load_checkpoint(out)
    assert (new.config.fusion_head, new.config.pyramid_levels) == ("pyramid", 3)
    assert info["meta"]["config_changed"] == {"fusion_head": "pyramid", "pyramid_levels": 3}
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(vis, ir)["fusion_map"],
                                   src.eval()(vis, ir)["fused"])
    with pytest.raises(RuntimeError, match="changes the model's parameters"):
        script.main([str(tiny_tsjnet_checkpoint), str(tmp_path / "x.pt"), "seg_head=mlp"])
    # the network input size alone: stored, recorded in meta, weights and config untouched
    sized = tmp_path / "sized.pt"
    old_size = list(load_checkpoint(tiny_tsjnet_checkpoint)[2]["input_size"])
    assert script.main([str(tiny_tsjnet_checkpoint), str(sized), "--input-size", "96", "128"]) == 0
    resized, _, info = load_checkpoint(sized)
    assert info["input_size"] == [96, 128] != old_size
    assert info["meta"]["input_size_changed"] == [old_size, [96, 128]]
    assert resized.config == src.config
    for key, value in src.state_dict().items():
        torch.testing.assert_close(resized.state_dict()[key], value)
    with pytest.raises(SystemExit):
        script.main([str(tiny_tsjnet_checkpoint), str(tmp_path / "y.pt")])
