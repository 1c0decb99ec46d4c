"""Every model variant, written once (the segmentation_models_pytorch pattern), on 64x64 inputs."""
import numpy as np
import pytest
import torch

from segmif_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.inference import SegMiFPredictor
from segmif_core.models import build_model
from segmif_core.models.modules import DRDB, HIA
from segmif_core.models.modules.hia import Aggregation

TINY = {"fusion_width": 8, "drdb_growth": 4, "hia_heads": 2, "decoder_hidden_size": 32,
        "pretrained": None}
VARIANTS = [("segmif", dict(TINY, interaction=m)) for m in
            ("full", "soam", "moam", "concat", "sum", "average", "none")]
VARIANTS += [("segmif", dict(TINY, hia_stride=2))]
VARIANTS += [("segmif", dict(TINY, fusion_head="pyramid", pyramid_levels=3)),
             ("segmif", dict(TINY, fusion_head="pyramid", pyramid_levels=3, psi_thermal=True)),
             ("segmif", dict(TINY, fusion_head="pyramid", pyramid_levels=3,
                             pyramid_base="brighter")),
             ("segmif", dict(TINY, fusion_head="pyramid", pyramid_levels=3,
                             pyramid_upsample="binomial"))]
VARIANTS += [("baseline", {"inputs": i, "decoder_hidden_size": 32, "pretrained": None})
             for i in ("visible", "thermal", "early")]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-{'-'.join(f'{k}={x}' for k, x in v[1].items() if k in ('interaction', 'inputs', 'hia_stride', 'fusion_head', 'psi_thermal', 'pyramid_base', 'pyramid_upsample'))}")
def model(request):
    torch.manual_seed(0)
    name, cfg = request.param
    return build_model(name, dict(cfg, num_classes=5))


class TestEveryVariant:
    def test_forward_shapes_and_ranges(self, model):
        vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
        out = model(vis, ir)
        assert out["logits"].shape == (2, 5, 64, 64) and out["logits"].dtype == torch.float32
        assert out["fused_rgb"].shape == (2, 3, 64, 64)
        assert 0 <= out["fused_rgb"].min() and out["fused_rgb"].max() <= 1
        if out["fused"] is not None:
            assert out["fused"].shape == (2, 1, 64, 64)
            assert 0 <= out["fused"].min() and out["fused"].max() <= 1

    def test_non_square_odd_size(self, model):
        out = model(torch.rand(1, 3, 50, 70), torch.rand(1, 1, 50, 70))
        assert out["logits"].shape == (1, 5, 50, 70)

    def test_predict_is_eval_and_consistent(self, model):
        model.train()
        vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
        p = model.predict(vis, ir)
        assert model.training  # restored
        assert p["labels"].shape == (1, 64, 64) and p["labels"].dtype == torch.int64
        model.eval()
        with torch.no_grad():
            logits = model(vis, ir)["logits"]
        assert torch.equal(p["labels"], logits.argmax(1))
        expected_conf = torch.softmax(logits, 1).max(1).values
        torch.testing.assert_close(p["confidence"], expected_conf)

    def test_gradients_reach_every_parameter(self, model):
        out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64))
        loss = out["logits"].square().mean() + (0 if out["fused"] is None else out["fused"].mean())
        loss.backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, unused[:5]

    @pytest.mark.parametrize("vis_shape, ir_shape, text", [
        ((1, 3, 64, 64), (1, 1, 64, 60), "same"),
        ((1, 1, 64, 64), (1, 1, 64, 64), r"\(B, 3, H, W\)"),
        ((1, 3, 64, 64), (1, 3, 64, 64), r"\(B, 1, H, W\)"),
        ((1, 3, 16, 16), (1, 1, 16, 16), "at least"),
        ((3, 64, 64), (1, 64, 64), "shape"),
    ])
    def test_bad_inputs_raise(self, model, vis_shape, ir_shape, text):
        with pytest.raises(ValueError, match=text):
            model(torch.rand(vis_shape), torch.rand(ir_shape))

    def test_integer_input_refused(self, model):
        with pytest.raises(ValueError, match="float"):
            model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.rand(1, 1, 64, 64))

    def test_checkpoint_round_trip(self, model, tmp_path):
        classes = type(MFNET_CLASSES)("five", tuple("abcde"), ((0, 0, 0),) * 5)
        save_checkpoint(tmp_path / "m.pt", model, classes, (64, 64), half=False)
        loaded, cls, info = load_checkpoint(tmp_path / "m.pt")
        assert cls.names == classes.names and info["config"] == model.config_dict()
        vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(vis, ir)["logits"], model(vis, ir)["logits"])


def test_confidence_and_labels_equal_softmax_max():
    from segmif_core.models.base import confidence_and_labels
    logits = torch.randn(2, 9, 17, 23) * 8.0
    logits[0, :, 0, 0] = 1000.0  # equal logits: probability 1/9, class 0 (the first maximum)
    conf, labels = confidence_and_labels(logits)
    ref_conf, ref_labels = torch.softmax(logits.double(), dim=1).max(dim=1)
    torch.testing.assert_close(conf.double(), ref_conf, rtol=1e-6, atol=1e-7)
    assert torch.equal(labels, ref_labels) and labels[0, 0, 0] == 0
    assert abs(float(conf[0, 0, 0]) - 1 / 9) < 1e-6


@pytest.mark.parametrize("size", [(480, 640), (15, 8), (7, 9), (3, 3)])
def test_pyramid_down_equals_opencv_pyrdown(size):
    """The pyramid's ``down`` (strided slices) is OpenCV's pyrDown: the 5x5 binomial kernel
    [1 4 6 4 1]^T [1 4 6 4 1] / 256, reflect-101 borders, output ceil(n / 2), odd sizes too."""
    import cv2

    from segmif_core.models.modules.pyramid import down
    rng = np.random.default_rng(sum(size))
    img = rng.random(size).astype(np.float32)
    got = down(torch.from_numpy(img)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, cv2.pyrDown(img), atol=2e-6)


@pytest.mark.parametrize("size", [(480, 640), (15, 8), (7, 9), (5, 6), (241, 321)])
def test_pyramid_expand_equals_opencv_pyrup(size):
    """``expand`` (binomial EXPAND) is OpenCV's pyrUp from ``down``'s ceil(n / 2) level back to
    n, odd sizes too (pyrUp's borders: reflected at the start, replicated at the end)."""
    import cv2

    from segmif_core.models.modules.pyramid import expand
    rng = np.random.default_rng(sum(size))
    small = cv2.pyrDown(rng.random(size).astype(np.float32))
    got = expand(torch.from_numpy(small)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(got, cv2.pyrUp(small, dstsize=(size[1], size[0])), atol=2e-6)


@pytest.mark.parametrize("upsample", ["bilinear", "binomial"])
def test_pyramid_collapse_inverts_the_decomposition(upsample):
    from segmif_core.models.modules.pyramid import collapse, laplacian_pyramid
    x = torch.rand(1, 2, 61, 83, generator=torch.Generator().manual_seed(0))
    pyr = laplacian_pyramid(x, 5, upsample)
    assert [tuple(p.shape[-2:]) for p in pyr] == [(61, 83), (31, 42), (16, 21), (8, 11), (4, 6)]
    torch.testing.assert_close(collapse(pyr, upsample), x, atol=1e-6, rtol=0)


def test_binomial_pyramid_with_the_max_base_is_the_classical_laplacian_rule():
    """The composer with w = 1 and the brighter base (max rule at the coarsest level), 4 levels,
    binomial expand, gives ``fusion_rules.laplacian`` (OpenCV pyrDown / pyrUp, max-abs details,
    max base) to its uint8 rounding; the bilinear expand does not (a different operator)."""
    from segmif_core.fusion_rules import laplacian
    from segmif_core.models.modules.pyramid import PyramidComposer
    import cv2
    rng = np.random.default_rng(3)
    y, t = (cv2.GaussianBlur(rng.integers(0, 256, (61, 83)).astype(np.uint8), (5, 5), 1.0)
            for _ in range(2))
    ref = laplacian(y, t, levels=4).astype(np.float32)
    as_t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)[None, None]  # noqa: E731
    got = {up: PyramidComposer()(torch.ones(1, 1, 8, 11), as_t(y), as_t(t), 4, 0, "brighter",
                                 up)[0, 0].numpy() * 255.0
           for up in ("bilinear", "binomial")}
    assert np.abs(got["binomial"] - ref).max() <= 0.5 + 1e-3
    assert np.abs(got["bilinear"] - ref).max() > 2.0


def test_pyramid_head_carries_a_one_pixel_thermal_line_at_camera_resolution():
    # independent of training: an untrained SegMiF with the pyramid head, network input 64x80,
    # camera 256x320; a one-pixel warm line only in the thermal image must be in the fused image
    torch.manual_seed(0)
    model = build_model("segmif", dict(TINY, num_classes=5, fusion_head="pyramid",
                                        pyramid_levels=3))
    vis_hi = torch.full((1, 3, 256, 320), 0.35)
    ir_hi = torch.full((1, 1, 256, 320), 0.35)
    ir_hi[..., 129, :] = 0.95
    small = lambda x: torch.nn.functional.interpolate(x, size=(64, 80), mode="area")  # noqa: E731
    fused = model.predict(small(vis_hi), small(ir_hi), full=(vis_hi, ir_hi))["fused_rgb"]
    assert fused.shape == (1, 3, 256, 320)
    y = 0.299 * fused[0, 0] + 0.587 * fused[0, 1] + 0.114 * fused[0, 2]
    assert (y[129, 20:-20] - y[125, 20:-20]).min() > 0.4   # 0.6 in the source


def test_unknown_pyramid_base_is_refused():
    with pytest.raises(ValueError, match="pyramid_base"):
        build_model("segmif", dict(TINY, num_classes=5, fusion_head="pyramid", pyramid_base="max"))


def test_psi_thermal_refuses_a_missing_thermal_image():
    model = build_model("segmif", dict(TINY, num_classes=5, psi_thermal=True))
    with pytest.raises(ValueError, match="thermal"):
        model(torch.rand(1, 3, 64, 64), None, phase="fused")
    # the 4th input channel is the thermal image: changing it changes the logits
    vis = torch.rand(1, 3, 64, 64)
    a = model(vis, torch.zeros(1, 1, 64, 64), phase="fused")["logits"]
    b = model(vis, torch.ones(1, 1, 64, 64), phase="fused")["logits"]
    assert not torch.allclose(a, b)


def test_drdb_is_residual_dense():
    block = DRDB(4, growth=3, n_layers=5)
    assert [layer[0].in_channels for layer in block.layers] == [4, 7, 10, 13, 16]
    assert all(layer[0].dilation == (2, 2) for layer in block.layers)
    torch.nn.init.zeros_(block.fuse.weight)
    torch.nn.init.zeros_(block.fuse.bias)
    x = torch.rand(1, 4, 9, 9)
    torch.testing.assert_close(block(x), x)  # zero fusion conv -> pure identity path


def test_hia_updates_only_modality_features_and_uses_semantics():
    torch.manual_seed(0)
    hia = HIA(8, heads=2).eval()
    f_ir, f_vis = torch.rand(1, 8, 6, 6), torch.rand(1, 8, 6, 6)
    out1 = hia(f_ir, f_vis, torch.rand(1, 8, 6, 6))
    out2 = hia(f_ir, f_vis, torch.rand(1, 8, 6, 6))
    assert len(out1) == 2 and out1[0].shape == f_ir.shape
    assert not torch.allclose(out1[0], out2[0])  # the semantic feature changes the result
    # LayerNorm over channels: per pixel zero mean, unit variance (before the affine, init 1/0)
    tokens = out1[0].flatten(2)
    torch.testing.assert_close(tokens.mean(1), torch.zeros(1, 36), atol=1e-5, rtol=0)


def test_aggregations_by_hand():
    a, b, s = torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3)
    torch.testing.assert_close(Aggregation(2, "sum")(a, b, s)[0], a + s)
    torch.testing.assert_close(Aggregation(2, "average")(a, b, s)[1], (b + s) / 2)
    assert Aggregation(2, "none")(a, b, s)[0] is a


def test_fusion_phase_runs_phi_only_with_gradients_to_phi_only():
    torch.manual_seed(0)
    model = build_model("segmif", dict(TINY, num_classes=3))
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    out = model(vis, ir, phase="fusion")
    assert set(out) == {"fused", "fused_rgb"}
    with torch.no_grad():
        expect = model.fuse(vis, ir)[0]
    torch.testing.assert_close(out["fused"], expect)
    out["fused"].mean().backward()
    assert all(p.grad is None for p in model.segmenter.parameters())  # guidance: no graph
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.parameters())


def test_joint_phase_without_guidance_graph_keeps_psi_out_of_the_fused_image_gradient():
    torch.manual_seed(0)
    model = build_model("segmif", dict(TINY, num_classes=3))
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)  # batch norm: > 1 value
    encoder = list(model.segmenter.encoder.parameters())
    for guidance_grad, reaches_psi in ((True, True), (False, False)):
        model.zero_grad(set_to_none=True)
        out = model(vis, ir, phase="joint", guidance_grad=guidance_grad)
        out["fused"].mean().backward()  # the fused image depends on Psi only through guidance
        assert any(p.grad is not None for p in encoder) == reaches_psi
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in model.fusion.parameters())


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("unet")
    with pytest.raises(ValueError, match="interaction"):
        build_model("segmif", {"interaction": "magic"})
    with pytest.raises(ValueError, match="encoder"):
        build_model("segmif", {"encoder": "mit-b9"})
    with pytest.raises(ValueError, match="invalid config"):
        build_model("segmif", {"no_such_key": 1})


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a segmif"):
        load_checkpoint(tmp_path / "other.pt")
    # a trainer's last.pt keeps numpy RNG state: a whole archive, not a truncated one
    torch.save({"rng": np.random.default_rng(0).random(3)}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="trainer's last.pt"):
        load_checkpoint(tmp_path / "last.pt")
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")


class TestPredictor:
    def test_outputs_at_input_resolution(self, tiny_checkpoint):
        pred = SegMiFPredictor(tiny_checkpoint)
        rng = np.random.default_rng(1)
        vis = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
        for ir in (rng.integers(0, 256, (90, 130), dtype=np.uint8),
                   rng.integers(0, 65536, (90, 130), dtype=np.uint16)):
            p = pred.predict(vis, ir)
            assert p.fused.shape == (90, 130, 3) and p.fused.dtype == np.uint8
            assert p.labels.shape == (90, 130) and p.labels.dtype == np.uint8
            assert p.labels.max() < 9
            assert p.confidence.shape == (90, 130) and p.confidence.dtype == np.float32
            assert (p.confidence >= 1 / 9 - 1e-4).all() and (p.confidence <= 1).all()
            assert p.inference_ms > 0 and p.total_ms >= p.inference_ms

    def test_fused_keeps_visible_chroma(self, tiny_checkpoint):
        # the fused RGB is YCbCr(u, Cb_vis, Cr_vis): a grey visible image gives a grey output
        pred = SegMiFPredictor(tiny_checkpoint, input_size=(64, 64))
        vis = np.full((64, 64, 3), 120, np.uint8)
        p = pred.predict(vis, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
        spread = p.fused.astype(int).max(axis=2) - p.fused.astype(int).min(axis=2)
        assert spread.max() <= 2

    @pytest.mark.parametrize("vis, ir, text", [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), "visible"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "visible"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32), "thermal"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "thermal"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8), "register"),
    ])
    def test_bad_images_raise(self, tiny_checkpoint, vis, ir, text):
        with pytest.raises(ValueError, match=text):
            SegMiFPredictor(tiny_checkpoint).predict(vis, ir)

    def test_bad_device_and_size(self, tiny_checkpoint):
        with pytest.raises(ValueError, match="device"):
            SegMiFPredictor(tiny_checkpoint, device="tpu")
        with pytest.raises(ValueError, match="input_size"):
            SegMiFPredictor(tiny_checkpoint, input_size=(8, 8))


@pytest.mark.parametrize("name, choices", [
    ("segmif", {"interaction": ("full", "soam", "moam", "concat", "sum", "average", "none"),
                "fusion_head": ("direct", "pyramid"), "pyramid_base": ("visible", "brighter"),
                "pyramid_upsample": ("bilinear", "binomial")}),
    ("tsjnet", {"task_input": ("gray", "rgb"), "fusion_head": ("decoder", "pyramid"),
                "pyramid_base": ("map", "visible", "brighter"), "seg_head": ("deeplab", "mlp"),
                "pyramid_upsample": ("bilinear", "binomial")}),
])
def test_config_choices_are_refused_with_one_wording(name, choices):
    """Every choice key of both model configs refuses an unknown value with the same message,
    naming the key, the value and each valid choice (the choices written out here by hand)."""
    from segmif_core.models import MODELS
    config_cls = MODELS[name][1]
    for key, valid in choices.items():
        with pytest.raises(ValueError) as info:
            config_cls(**{key: "nope"})
        message = str(info.value)
        assert message.startswith(f"unknown {key} 'nope'; choose one of"), message
        assert all(repr(v) in message for v in valid), message
