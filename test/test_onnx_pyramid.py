"""The pyramid head (and Psi's thermal channel) on ONNX Runtime: a dynamic export keeps the
camera size free, and gives torch's labels and fused image at two camera sizes."""
import numpy as np
import pytest
import torch

from segmif_core.checkpoint import save_checkpoint
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.inference import SegMiFPredictor, export_onnx
from segmif_core.models import build_model

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module", params=[("visible", "bilinear"), ("brighter", "bilinear"),
                                        ("brighter", "binomial")], ids=lambda p: "-".join(p))
def pyramid_checkpoint(tmp_path_factory, request):
    torch.manual_seed(0)
    model = build_model("segmif", {"num_classes": MFNET_CLASSES.num_classes, "fusion_width": 8,
                                   "drdb_growth": 4, "hia_heads": 2, "decoder_hidden_size": 32,
                                   "pretrained": None, "fusion_head": "pyramid",
                                   "pyramid_levels": 3, "psi_thermal": True,
                                   "pyramid_base": request.param[0],
                                   "pyramid_upsample": request.param[1]})
    path = tmp_path_factory.mktemp("ckpt") / "pyramid.pt"
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(64, 64))
    # the same network with Phi's weight map forced to ~1 (last layer: zero weights, bias 8):
    # the visible base, or the brighter source's (the max rule), at the coarsest level
    with torch.no_grad():
        model.fusion.decoder[-1].weight.zero_()
        model.fusion.decoder[-1].bias.fill_(8.0)
    forced = path.with_name("forced.pt")
    save_checkpoint(forced, model, MFNET_CLASSES, input_size=(64, 64))
    return path, forced, request.param[0]


def test_base_rule_in_the_onnx_graph(pyramid_checkpoint, tmp_path):
    # w ~ 1: a dark visible scene (luma ~40) and a bright flat thermal image (200) give a fused
    # image near 200 with the brighter base (max rule) and near 40 with the visible base, on
    # both backends (a graph with the rule swapped or lost would not)
    _, forced, base = pyramid_checkpoint
    onnx_path = tmp_path / "forced.onnx"
    export_onnx(onnx_path, forced, camera=(96, 128), dynamic=True)
    vis = np.full((96, 128, 3), 40, np.uint8)
    ir = np.full((96, 128), 200, np.uint8)
    for pred in (SegMiFPredictor(forced), SegMiFPredictor(onnx_path, backend="onnxruntime")):
        y = pred.predict(vis, ir).fused.astype(float) @ np.array([0.299, 0.587, 0.114])
        want = 200.0 if base == "brighter" else 40.0
        assert abs(y.mean() - want) < 5, (pred.backend.name, base, y.mean())


def test_dynamic_pyramid_export_matches_torch_at_two_camera_sizes(pyramid_checkpoint, tmp_path):
    pyramid_checkpoint = pyramid_checkpoint[0]
    onnx_path = tmp_path / "pyramid.onnx"
    export_onnx(onnx_path, pyramid_checkpoint, camera=(96, 128), dynamic=True)
    torch_pred = SegMiFPredictor(pyramid_checkpoint)
    onnx_pred = SegMiFPredictor(onnx_path, backend="onnxruntime")
    rng = np.random.default_rng(0)
    for camera in ((96, 128), (150, 200)):
        # smooth random scenes (upsampled noise) with a one-pixel warm line in the thermal image
        vis = np.clip(np.kron(rng.integers(0, 256, (camera[0] // 6 + 1, camera[1] // 8 + 1, 3)),
                              np.ones((6, 8, 1)))[:camera[0], :camera[1]], 0, 255).astype(np.uint8)
        ir = np.full(camera, 60, np.uint8)
        ir[camera[0] // 2] = 230
        a, b = torch_pred.predict(vis, ir), onnx_pred.predict(vis, ir)
        assert a.fused.shape == b.fused.shape == camera + (3,)
        assert (a.labels == b.labels).mean() >= 0.999
        assert np.abs(a.fused.astype(int) - b.fused.astype(int)).max() <= 2
        # the line is in both backends' fused image at the camera size
        for p in (a, b):
            y = p.fused.astype(float) @ np.array([0.299, 0.587, 0.114])
            assert (y[camera[0] // 2, 10:-10] - y[camera[0] // 2 - 4, 10:-10]).mean() > 60
