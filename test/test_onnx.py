"""ONNX export and the inference backends: parity of ONNX Runtime with torch on real pairs, the
metadata carried in the file, backend selection and its errors, the device preprocessing path
(the CUDA code run on the CPU), precision options and ``fusion_scale``."""
import sys

import cv2
import numpy as np
import pytest
import torch

from segmif_core.checkpoint import load_checkpoint
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.inference import (BackendError, SegMiFPredictor, export_onnx,
                                   read_onnx_metadata)
from segmif_core.inference.onnx_export import WholeModel, camera_dynamic_shapes

from conftest import MFNET, needs_mfnet

ort = pytest.importorskip("onnxruntime")
CAMERA = (96, 128)  # camera size of the fixed-size export (network 64x64, the tiny checkpoint)


def _real_pair(i=0, size=CAMERA):
    """A real MFNet val pair (night or day), resized to ``size`` (h, w)."""
    name = open(f"{MFNET}/val.txt").read().split()[i]
    vis = cv2.cvtColor(cv2.imread(f"{MFNET}/vis/{name}.png"), cv2.COLOR_BGR2RGB)
    ir = cv2.imread(f"{MFNET}/ir/{name}.png", cv2.IMREAD_UNCHANGED)
    r = lambda x: cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_AREA)  # noqa: E731
    return r(vis), r(ir)


@pytest.fixture(scope="module")
def static_onnx(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    meta = export_onnx(path, tiny_checkpoint, camera=CAMERA)
    return path, meta


def _inputs(vis, ir, size):
    """The graph's inputs from an 8-bit pair, built with numpy/OpenCV (not the backend code)."""
    v = vis.astype(np.float32) / 255.0
    t = ir.astype(np.float32) / 255.0
    rs = lambda x: cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_AREA)  # noqa: E731
    chw = lambda x: np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # noqa: E731
    return chw(rs(v)), rs(t)[None, None], chw(v), t[None, None]


@pytest.mark.parametrize("pair", [0, 5])
@needs_mfnet
def test_onnx_graph_matches_torch_on_real_pairs(static_onnx, tiny_checkpoint, pair):
    path, _ = static_onnx
    feeds = _inputs(*_real_pair(pair), (64, 64))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, labels, conf, fused = sess.run(None, dict(zip(
        ["visible", "thermal", "visible_full", "thermal_full"], feeds)))
    model, _, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        ref = [t.numpy() for t in WholeModel(model)(*map(torch.from_numpy, feeds))]
    # stated tolerance: float32 reordering of sums only
    assert np.abs(logits - ref[0]).max() < 1e-3
    assert np.abs(fused - ref[3]).max() < 1e-4
    assert fused.shape == (1, 3) + CAMERA and labels.dtype == np.uint8
    # labels agree wherever torch's best class is not a near tie
    top2 = np.sort(ref[0][0], axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-3
    assert (labels[0][clear] == ref[1][0][clear]).all()
    np.testing.assert_allclose(conf, ref[2], atol=1e-4)


@needs_mfnet
def test_onnx_predictor_matches_torch_predictor(static_onnx, tiny_checkpoint):
    path, meta = static_onnx
    vis, ir = _real_pair(3)
    a = SegMiFPredictor(tiny_checkpoint).predict(vis, ir)
    po = SegMiFPredictor(path, backend="onnxruntime")
    b = po.predict(vis, ir)
    assert b.fused.shape == vis.shape and b.labels.shape == ir.shape
    assert np.abs(a.fused.astype(int) - b.fused).max() <= 1
    assert (a.labels == b.labels).mean() > 0.999
    assert set(b.stages_ms) >= {"resize", "network", "postprocess"}
    # the file describes itself: classes, sizes, model
    assert po.classes.names == MFNET_CLASSES.names and po.input_size == (64, 64)
    assert meta["camera_size"] == list(CAMERA) and read_onnx_metadata(path)["model"] == "segmif"


@needs_mfnet
def test_fixed_size_file_refuses_other_sizes(static_onnx):
    path, _ = static_onnx
    with pytest.raises(ValueError, match="exported for network input 64x64"):
        SegMiFPredictor(path, backend="onnxruntime", input_size=(96, 96))
    pred = SegMiFPredictor(path, backend="onnxruntime")
    vis, ir = _real_pair(0, (120, 160))
    with pytest.raises(ValueError, match="exported for a 128x96 camera"):
        pred.predict(vis, ir)


@needs_mfnet
def test_dynamic_export_takes_any_camera_size(tiny_checkpoint, tmp_path):
    path = tmp_path / "dyn.onnx"
    export_onnx(path, tiny_checkpoint, size=(64, 96), dynamic=True)
    pt = SegMiFPredictor(tiny_checkpoint, input_size=(64, 96))
    po = SegMiFPredictor(path, backend="onnxruntime")
    assert po.input_size == (64, 96)       # the network size stays fixed in a dynamic export
    for size in ((120, 160), (90, 200)):
        vis, ir = _real_pair(1, size)
        a, b = pt.predict(vis, ir), po.predict(vis, ir)
        assert b.fused.shape == (*size, 3)
        assert np.abs(a.fused.astype(int) - b.fused).max() <= 1
        assert (a.labels == b.labels).mean() > 0.999
    with pytest.raises(ValueError, match="exported for network input 64x96"):
        SegMiFPredictor(path, backend="onnxruntime", input_size=(64, 64))


def test_camera_dynamic_shapes_free_only_the_camera_inputs():
    free = camera_dynamic_shapes(32)
    assert free[:2] == (None, None)                  # network-size inputs stay fixed
    assert free[2] == free[3] and set(free[2]) == {2, 3}
    h = free[2][2]
    assert (h.min, h.max) == (32, 8192)
    stepped = camera_dynamic_shapes(32, multiple=64)
    assert (stepped[2][2].min, stepped[2][2].max) == (64, 8192) and stepped[2] == stepped[3]
    inward = camera_dynamic_shapes(100, multiple=64)  # 128 is the first multiple of 64 >= 100
    assert (inward[2][3].min, inward[2][3].max) == (128, 8192)
    for bad in ((0, None), (32, 0)):
        with pytest.raises(ValueError, match="must be >= 1"):
            camera_dynamic_shapes(*bad)
    for min_size, multiple in ((200, 5000), (5000, 3000)):  # none, or only 6000
        with pytest.raises(ValueError, match=f"fewer than two multiples of {multiple}"):
            camera_dynamic_shapes(min_size, multiple=multiple)


def test_backend_errors(static_onnx, tiny_checkpoint, tmp_path, monkeypatch):
    path, _ = static_onnx
    with pytest.raises(BackendError, match="unknown backend"):
        SegMiFPredictor(tiny_checkpoint, backend="tensorflow")
    with pytest.raises(BackendError, match="is an ONNX file"):
        SegMiFPredictor(path, backend="torch")
    with pytest.raises(BackendError, match="not found"):
        SegMiFPredictor(tmp_path / "missing.onnx", backend="onnxruntime")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(BackendError, match="cannot load ONNX file"):
        SegMiFPredictor(junk, backend="onnxruntime")
    with pytest.raises(BackendError, match="takes precision"):
        SegMiFPredictor(path, backend="onnxruntime", precision="bf16")
    with pytest.raises(BackendError, match="fixed in an exported"):
        SegMiFPredictor(path, backend="onnxruntime", fusion_scale=0.5)
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        SegMiFPredictor(tiny_checkpoint, precision="fp16")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(BackendError, match="needs the onnxruntime package"):
        SegMiFPredictor(path, backend="onnxruntime")


def test_onnx_file_without_our_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(BackendError, match="not written by `segmif export --onnx`"):
        SegMiFPredictor(path, backend="onnxruntime")


@needs_mfnet
def test_device_preprocessing_path_agrees_with_the_host_path(tiny_checkpoint):
    vis, ir = _real_pair(2, (128, 160))
    host = SegMiFPredictor(tiny_checkpoint).predict(vis, ir)
    dev = SegMiFPredictor(tiny_checkpoint, device_preprocess=True).predict(vis, ir)
    # torch's antialiased bilinear vs OpenCV's area resize: close, not equal
    assert dev.fused.shape == host.fused.shape and dev.labels.shape == host.labels.shape
    assert np.abs(dev.fused.astype(int) - host.fused).mean() < 2.0
    assert (dev.labels == host.labels).mean() > 0.9


@needs_mfnet
def test_bf16_autocast_on_cpu_stays_close(tiny_checkpoint):
    vis, ir = _real_pair(4)
    a = SegMiFPredictor(tiny_checkpoint).predict(vis, ir)
    b = SegMiFPredictor(tiny_checkpoint, precision="bf16").predict(vis, ir)
    assert np.abs(a.fused.astype(int) - b.fused).mean() < 3.0
    assert np.abs(a.confidence - b.confidence).mean() < 0.05


@needs_mfnet
def test_fusion_scale_runs_phi_at_the_reduced_size(tiny_checkpoint):
    pred = SegMiFPredictor(tiny_checkpoint, input_size=(64, 96), fusion_scale=0.5)
    seen = []
    pred.model.fusion.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-2:]))
    vis, ir = _real_pair(0, (128, 192))
    p = pred.predict(vis, ir)
    assert seen == [(32, 48)] and p.fused.shape == (128, 192, 3)
    with pytest.raises(ValueError, match="fusion_scale"):
        SegMiFPredictor(tiny_checkpoint, fusion_scale=1.5)


@needs_mfnet
def test_registration_on_the_device_matches_opencv(tiny_checkpoint):
    """The CUDA path warps thermal with kornia on the device; run here on the CPU, it must agree
    with OpenCV's warp of the host path (same homography, same crop)."""
    from segmif_core.registration import Registration
    vis, _ = _real_pair(0, (96, 128))
    _, ir = _real_pair(0, (80, 100))                    # thermal camera of another size
    h = np.array([[1.2, 0.05, 3.0], [0.02, 1.15, 2.0], [0.0, 0.0, 1.0]])
    reg = Registration(h, crop=(4, 6, 112, 80))
    host = SegMiFPredictor(tiny_checkpoint).predict(vis, ir, registration=reg)
    dev_pred = SegMiFPredictor(tiny_checkpoint, device_preprocess=True)
    dev = dev_pred.predict(vis, ir, registration=reg)
    assert host.fused.shape == dev.fused.shape == (80, 112, 3)
    assert "registration" in host.stages_ms and "registration" not in dev.stages_ms
    # the warped thermal itself: kornia on the device vs OpenCV, interior pixels
    import torch
    ir01 = ir.astype(np.float32) / 255.0
    ref = reg.crop(reg.warp_thermal(ir01, vis.shape))
    got = reg.crop_torch(reg.warp_thermal_torch(torch.from_numpy(ir01)[None, None],
                                                vis.shape[:2]))[0, 0].numpy()
    assert np.abs(got - ref)[2:-2, 2:-2].max() < 1e-3
    assert np.abs(dev.fused.astype(int) - host.fused).mean() < 2.0


@needs_mfnet
def test_pt_checkpoint_on_onnxruntime_is_exported_once_and_cached(tiny_checkpoint, tmp_path,
                                                                   monkeypatch):
    from segmif_core.inference.factory import choose_backend
    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    lines = []
    a = SegMiFPredictor(tiny_checkpoint, backend="onnxruntime", log=lines.append)
    files = list((tmp_path / "cache").glob("*.onnx"))
    assert len(files) == 1 and len(lines) == 1 and "exporting" in lines[0]
    mtime = files[0].stat().st_mtime_ns
    b = SegMiFPredictor(tiny_checkpoint, backend="auto", log=lines.append)  # cpu: ONNX Runtime
    assert b.backend.name == "onnxruntime" and len(lines) == 1       # no second export
    assert files[0].stat().st_mtime_ns == mtime
    # another fusion_scale or network size is another graph (a graph traced at one network size
    # fails at another: the export keeps it fixed); each takes any camera size
    SegMiFPredictor(tiny_checkpoint, backend="onnxruntime", fusion_scale=0.5)
    other = SegMiFPredictor(tiny_checkpoint, backend="onnxruntime", input_size=(96, 128),
                            fusion_scale=0.5)
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 3
    assert other.predict(*_real_pair(2, (120, 160))).fused.shape == (120, 160, 3)
    vis, ir = _real_pair(1, (120, 160))
    t = SegMiFPredictor(tiny_checkpoint).predict(vis, ir)
    o = a.predict(vis, ir)
    assert np.abs(t.fused.astype(int) - o.fused).max() <= 1 and (t.labels == o.labels).mean() > 0.999
    import torch
    assert choose_backend("auto", None, torch.device("cpu"), "bf16") == "torch"
    assert choose_backend("auto", "x.onnx", torch.device("cpu")) == "onnxruntime"


def _conv_weight_sources(path):
    """[(weight name, 'dq' | 'plain')] for every Conv node of an ONNX file (Psi's encoder runs
    twice, guidance pass and Psi, so a weight can appear twice), read with the onnx package,
    independently of the quantiser's own bookkeeping."""
    import onnx
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    out = []
    for n in g.node:
        if n.op_type != "Conv":
            continue
        src = producer.get(n.input[1])
        if src is not None and src.op_type == "DequantizeLinear":
            out.append((src.input[0], "dq"))
        else:
            out.append((n.input[1], "plain"))
    return out


@needs_mfnet
def test_int8_quantises_only_psi_convolutions_and_stays_close(static_onnx, tmp_path):
    from segmif_core.inference.onnx_quantize import quantize_onnx
    path, _ = static_onnx
    before = _conv_weight_sources(path)
    psi = [k for k, _ in before if k.startswith("model.segmenter.")]
    assert psi and all(v == "plain" for _, v in before)
    out = tmp_path / "int8.onnx"
    meta = quantize_onnx(path, out, MFNET, pairs=3)
    q = meta["quantization"]
    assert q["part"] == "segmenter" and 0 < q["convolutions"] <= len(psi)
    assert q["calibration_pairs"] == 3
    after = _conv_weight_sources(out)
    # every convolution still there; those with int8 weights are Psi's (the pre-processing may
    # rewrite some weights, which then stay fp32), never Phi's
    assert len(after) == len(before)
    dq = [k for k, v in after if v == "dq"]
    assert len(dq) == q["convolutions"] and all(k.startswith("model.segmenter.") for k in dq)
    # the file is a normal exported file for the backend: metadata carried, camera size kept
    assert read_onnx_metadata(out)["quantization"]["convolutions"] == len(dq)
    vis, ir = _real_pair(3)
    a = SegMiFPredictor(str(path), backend="onnxruntime").predict(vis, ir)
    b = SegMiFPredictor(str(out), backend="onnxruntime").predict(vis, ir)
    assert b.labels.shape == a.labels.shape and b.fused.shape == a.fused.shape
    # int8 ranges from real pairs: most labels and the fused image survive (a random tiny model
    # has close logits, so some labels flip); the fused image moves only through Psi's guidance
    assert (a.labels == b.labels).mean() > 0.8
    diff = np.abs(a.fused.astype(int) - b.fused.astype(int))
    assert diff.mean() < 3.0 and not np.array_equal(a.confidence, b.confidence)


def test_int8_errors(static_onnx, tmp_path):
    from segmif_core.inference.onnx_quantize import quantize_onnx
    path, _ = static_onnx
    with pytest.raises(ValueError, match="unknown part"):
        quantize_onnx(path, tmp_path / "x.onnx", MFNET, part="decoder")
    with pytest.raises(ValueError, match="pairs must be >= 1"):
        quantize_onnx(path, tmp_path / "x.onnx", MFNET, pairs=0)
    (tmp_path / "empty" / "vis").mkdir(parents=True)
    (tmp_path / "empty" / "ir").mkdir()
    with pytest.raises(ValueError, match="no calibration pairs|no pairs"):
        quantize_onnx(path, tmp_path / "x.onnx", tmp_path / "empty")
    assert not (tmp_path / "x.onnx").exists()  # nothing half-written
    from segmif_ros.tools.cli import main
    assert main(["export", "--onnx", str(tmp_path / "y.onnx"), "--int8"]) == 2


@needs_mfnet
def test_int8_precision_quantises_a_pt_checkpoint_once_and_caches_it(tiny_checkpoint, static_onnx,
                                                                     tmp_path, monkeypatch):
    import segmif_core.inference.onnx_quantize as oq
    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    pred = SegMiFPredictor(tiny_checkpoint, backend="auto", precision="int8",
                           int8_calibration=MFNET)
    assert pred.backend.name == "onnxruntime"
    assert pred.info["onnx"]["quantization"]["part"] == "segmenter"
    vis, ir = _real_pair(1)
    fp32 = SegMiFPredictor(tiny_checkpoint, backend="onnxruntime").predict(vis, ir)
    out = pred.predict(vis, ir)
    assert (out.labels == fp32.labels).mean() > 0.8
    cached = sorted((tmp_path / "cache").glob("*.int8.onnx"))
    assert len(cached) == 1

    def boom(*a, **k):
        raise AssertionError("quantised again")
    monkeypatch.setattr(oq, "quantize_onnx", boom)
    again = SegMiFPredictor(tiny_checkpoint, backend="auto", precision="int8",
                            int8_calibration=MFNET)
    assert again.info["onnx"]["quantization"]["calibration_pairs"] == 16
    # errors: no calibration, the torch backend, an fp32 .onnx file, a missing folder
    with pytest.raises(BackendError, match="needs int8_calibration"):
        SegMiFPredictor(tiny_checkpoint, backend="auto", precision="int8")
    with pytest.raises(BackendError, match="not torch"):
        SegMiFPredictor(tiny_checkpoint, backend="torch", precision="int8",
                        int8_calibration=MFNET)
    with pytest.raises(BackendError, match="fp32 ONNX file"):
        SegMiFPredictor(str(static_onnx[0]), backend="auto", precision="int8")
    with pytest.raises(ValueError, match="calibration folder not found"):
        SegMiFPredictor(tiny_checkpoint, backend="auto", precision="int8",
                        int8_calibration=tmp_path / "none")


def _sibling_imports(path):
    """Modules of segmif_core.inference that a module imports (top level or inside functions),
    read from its source with ast (relative '.x' imports and absolute 'segmif_core.inference.x')."""
    import ast
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(a.name for a in node.names)
            elif (node.module or "").startswith("segmif_core.inference."):
                found.add(node.module.split(".")[2])
    return found


def test_inference_modules_import_in_layers_without_a_circle():
    """Backends take a ready .onnx file: they import neither the exporter, the quantiser, the
    cache, the factory nor the predictor; the quantiser builds its inputs without a predictor;
    and the import graph of the package has no circle."""
    from pathlib import Path

    import segmif_core.inference as inf
    folder = Path(inf.__file__).parent
    graph = {p.stem: _sibling_imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    assert not graph["backends"] & {"onnx_export", "onnx_quantize", "onnx_cache", "factory",
                                    "predictor"}
    assert not graph["onnx_quantize"] & {"predictor", "factory", "backends", "onnx_cache"}
    assert "predictor" not in set().union(*(v for k, v in graph.items() if k != "__init__"))
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", f"import circle: {' -> '.join(stack + [nxt])}"
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


# ---------------------------------------------------------------- TSJNet (a detector) on ONNX
def _match_detections(a: dict, b: dict, box_tol: float, score_tol: float) -> int:
    """Number of detections of ``b`` paired one-to-one with one of ``a`` of the same class whose
    four coordinates differ by <= box_tol pixels and score by <= score_tol (near-equal scores
    may come out in either order, so the sets are compared, not the sequences)."""
    used = np.zeros(len(a["boxes"]), bool)
    n = 0
    for box, score, cls in zip(b["boxes"], b["scores"], b["classes"]):
        ok = (~used & (np.asarray(a["classes"]) == cls)
              & (np.abs(np.asarray(a["boxes"]) - box).max(axis=1) <= box_tol)
              & (np.abs(np.asarray(a["scores"]) - score) <= score_tol))
        if ok.any():
            used[np.flatnonzero(ok)[0]] = True
            n += 1
    return n


@pytest.fixture(scope="module")
def tsj_onnx(tiny_tsjnet_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("tsj_onnx") / "tsj.onnx"
    export_onnx(path, tiny_tsjnet_checkpoint, dynamic=True)
    return path


@pytest.mark.parametrize("pair", [0, 5])
@needs_mfnet
def test_tsjnet_onnx_matches_torch_on_real_pairs(tsj_onnx, tiny_tsjnet_checkpoint, pair):
    """The exported TSJNet graph (decoded boxes in the graph, selection in numpy after it)
    against the torch model on real val pairs: the graph's per-location boxes within 1e-3 px
    and scores within 1e-5 of torch's; the predictors' detections (camera pixels) the same set
    within 0.01 px and 1e-5; fused image and labels as for SegMiF."""
    from segmif_core.models.tsjnet.fcos import decode_all

    feeds = _inputs(*_real_pair(pair), (64, 64))
    sess = ort.InferenceSession(str(tsj_onnx), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()][-2:] == ["boxes", "box_scores"]
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(zip(
        ["visible", "thermal", "visible_full", "thermal_full"], feeds)))))
    model, _, _ = load_checkpoint(tiny_tsjnet_checkpoint)
    with torch.no_grad():
        raw = model.eval()(*map(torch.from_numpy, feeds[:2]))["detections"]
        boxes, scores = decode_all(raw, (64, 64))
    assert np.abs(out["boxes"] - boxes.numpy()).max() < 1e-3
    assert np.abs(out["box_scores"] - scores.numpy()).max() < 1e-5
    vis, ir = _real_pair(pair)
    a = SegMiFPredictor(tiny_tsjnet_checkpoint).predict(vis, ir)
    b = SegMiFPredictor(tsj_onnx, backend="onnxruntime").predict(vis, ir)
    assert np.abs(a.fused.astype(int) - b.fused).max() <= 1
    assert (a.labels == b.labels).mean() > 0.999
    da, db = a.detections, b.detections
    assert db["names"] == da["names"] == ["car", "person", "bike"]
    assert 0 < len(db["boxes"]) == len(da["boxes"])
    assert _match_detections(da, db, 0.01, 1e-5) == len(db["boxes"])
    h, w = CAMERA
    assert (db["boxes"] >= 0).all() and (db["boxes"][:, [0, 2]] <= w).all() \
        and (db["boxes"][:, [1, 3]] <= h).all()
    assert db["boxes"].dtype == np.float32 and db["classes"].dtype == np.int64


def test_numpy_selection_equals_the_torch_postprocess():
    """``detections.select_detections`` on ``decode_all``'s outputs keeps exactly what
    ``fcos.postprocess`` keeps, on random head outputs (distinct scores) of an input whose maps
    reach outside it, with and without the top-k and detection caps."""
    from segmif_core.inference.detections import select_detections
    from segmif_core.models.tsjnet.fcos import decode_all, postprocess

    g = torch.Generator().manual_seed(3)
    sizes = [(9, 12), (5, 6), (3, 3)]                    # a 70 x 90 input at strides 8, 16, 32
    raw = {"cls_logits": [torch.randn(1, 3, *s, generator=g) * 2 for s in sizes],
           "box_regression": [torch.rand(1, 4, *s, generator=g) * 40 for s in sizes],
           "centerness": [torch.randn(1, 1, *s, generator=g) for s in sizes],
           "strides": (8, 16, 32)}
    boxes, scores = (t[0].numpy() for t in decode_all(raw, (70, 90)))
    for opts in ({}, {"pre_nms_top_k": 50, "max_detections": 7},
                 {"score_threshold": 0.4, "nms_threshold": 0.3}):
        (ref,) = postprocess(raw, (70, 90), **opts)
        got = select_detections(boxes, scores, **opts)
        assert len(got["boxes"]) == len(ref["boxes"]) > 0
        np.testing.assert_array_equal(got["classes"], ref["classes"].numpy())
        np.testing.assert_allclose(got["boxes"], ref["boxes"].numpy(), atol=1e-5)
        np.testing.assert_allclose(got["scores"], ref["scores"].numpy(), atol=1e-7)


def test_numpy_nms_hand_cases():
    """The hand cases of the torch NMS (test_detection), with classes and a cap."""
    from segmif_core.inference.detections import nms, select_detections
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 5]],
                     np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]       # IoU(A, E) = 0.5 is not > 0.5
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]
    assert nms(boxes, scores, 0.5, classes=[0, 1, 0, 0]).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, 0.5, max_keep=2).tolist() == [0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    # per-location scores (N, K): B's class-1 score survives beside A's class 0; E's 0.03 is
    # under the threshold; a zero-width box is dropped
    per = np.zeros((5, 2), np.float32)
    per[:4, 0], per[1, 1], per[3, 0] = scores, 0.85, 0.03
    per[4, 1] = 0.99
    b5 = np.vstack([boxes, [[5, 5, 5, 9]]]).astype(np.float32)
    d = select_detections(b5, per, score_threshold=0.05, nms_threshold=0.5)
    # candidates: A c0 0.9, B c1 0.85, B c0 0.8 (IoU(A, B) = 0.82: suppressed), C c0 0.7
    assert d["classes"].tolist() == [0, 1, 0]
    assert d["scores"].tolist() == pytest.approx([0.9, 0.85, 0.7])
    np.testing.assert_array_equal(d["boxes"], boxes[[0, 1, 2]])
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        select_detections(boxes, scores)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@needs_mfnet
def test_raised_score_threshold_keeps_the_same_high_boxes(tsj_onnx, tiny_tsjnet_checkpoint,
                                                          backend):
    """``detection_score_threshold`` (the node sets it from detection_min_score): selecting at s
    gives exactly the boxes scoring >= s of a selection at the model's 0.05 (greedy NMS: a box
    only suppresses lower-scoring ones), on both backends; out-of-range values are refused and
    a model without a detector reports None."""
    ckpt = tiny_tsjnet_checkpoint if backend == "torch" else tsj_onnx
    pred = SegMiFPredictor(ckpt, backend=backend)
    assert pred.detection_score_threshold == pytest.approx(0.05)
    vis, ir = _real_pair(1)
    low = pred.predict(vis, ir).detections
    s = float(np.median(low["scores"]))
    pred.detection_score_threshold = s
    high = pred.predict(vis, ir).detections
    keep = low["scores"] >= s
    assert 0 < len(high["boxes"]) == int(keep.sum()) < len(low["boxes"])
    np.testing.assert_allclose(high["boxes"], low["boxes"][keep], atol=1e-5)
    np.testing.assert_array_equal(high["classes"], low["classes"][keep])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pred.detection_score_threshold = 1.5


def test_segmif_has_no_detection_score_threshold(tiny_checkpoint):
    pred = SegMiFPredictor(tiny_checkpoint)
    assert pred.detection_score_threshold is None
    pred.detection_score_threshold = 0.5            # nothing to set: no error, still None
    assert pred.detection_score_threshold is None


@needs_mfnet
def test_auto_runs_tsjnet_on_onnxruntime_with_detections(tiny_tsjnet_checkpoint, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    pred = SegMiFPredictor(tiny_tsjnet_checkpoint, backend="auto")
    assert pred.backend.name == "onnxruntime"
    assert pred.detection_classes == ("car", "person", "bike")
    vis, ir = _real_pair(2)
    d = pred.predict(vis, ir).detections
    assert d is not None and len(d["boxes"]) > 0 and d["names"] == ["car", "person", "bike"]


@needs_mfnet
def test_tsjnet_fusion_scale_on_onnxruntime_matches_torch(tiny_tsjnet_checkpoint, tmp_path,
                                                          monkeypatch):
    """TSJNet's fusion_scale (the fusion network at half the network size) through the export
    cache: the same fused image and detections as the torch predictor with that scale."""
    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    vis, ir = _real_pair(4)
    a = SegMiFPredictor(tiny_tsjnet_checkpoint, fusion_scale=0.5).predict(vis, ir)
    po = SegMiFPredictor(tiny_tsjnet_checkpoint, backend="onnxruntime", fusion_scale=0.5)
    assert po.info["onnx"]["config"]["fusion_scale"] == 0.5
    b = po.predict(vis, ir)
    assert np.abs(a.fused.astype(int) - b.fused).max() <= 1
    assert 0 < len(b.detections["boxes"]) == len(a.detections["boxes"])
    assert _match_detections(a.detections, b.detections, 0.01, 1e-5) == len(b.detections["boxes"])


def test_cache_key_follows_the_source_of_the_graph(tiny_checkpoint, tmp_path, monkeypatch):
    """A cached graph is found again only while the code that built it is the same: the digest
    of a copy of the package's model and exporter sources changes when one model file changes,
    and the cache key changes with the digest."""
    import shutil
    from pathlib import Path

    import segmif_core
    import segmif_core.inference.onnx_cache as oc
    src = Path(segmif_core.__file__).parent
    copy = tmp_path / "segmif_core"
    shutil.copytree(src / "models", copy / "models")
    (copy / "inference").mkdir()
    for name in ("onnx_export.py", "onnx_io.py"):
        shutil.copy(src / "inference" / name, copy / "inference" / name)
    before = oc.graph_source_digest(copy)
    assert before == oc.graph_source_digest()                 # the copy is the package's
    fcos = copy / "models" / "tsjnet" / "fcos.py"
    fcos.write_text(fcos.read_text() + "\n# changed\n")
    assert oc.graph_source_digest(copy) != before
    key = oc.cache_key(tiny_checkpoint, None, (64, 64))
    monkeypatch.setattr(oc, "_SOURCE_DIGEST", "0" * 64)
    assert oc.cache_key(tiny_checkpoint, None, (64, 64)) != key


@pytest.mark.parametrize("channels", [1, 3])
def test_graph_fused_output_to_uint8_rounds_and_saturates(channels):
    """The ONNX backend's fused (C, H, W) float output -> (H, W, C) uint8: round(x * 255),
    values outside [0, 1] saturated, contiguous; expected values from numpy in float64."""
    from segmif_core.inference.backends import _planes_to_u8
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.2, 1.2, (channels, 37, 53)).astype(np.float32)
    x[0, 0, :5] = [0.0, 1.0, -1e-4, 1.0001, 0.25]
    got = _planes_to_u8(x)
    want = np.clip(np.floor(x.astype(np.float64) * 255.0 + 0.5), 0, 255).transpose(1, 2, 0)
    assert got.shape == (37, 53, channels) and got.dtype == np.uint8
    assert got.flags["C_CONTIGUOUS"]
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max() <= 1  # only at exact halves (OpenCV rounds them to even)
    halves = np.abs(x.astype(np.float64) * 255.0 % 1.0 - 0.5) < 1e-3
    assert (diff[~halves.transpose(1, 2, 0)] == 0).all()
    assert list(got[0, :5, 0]) == [0, 255, 0, 255, 64]


@needs_mfnet
def test_tsjnet_pyramid_and_mlp_heads_on_onnxruntime_match_torch(tmp_path, monkeypatch):
    """TSJNet with this project's heads (fusion_head 'pyramid': the camera-size pyramid on F's
    coarsest level; seg_head 'mlp') through the export cache at fusion scale 0.5 (one export,
    about a minute; the scale-1 path differs only in the number of down steps of F): the fused
    image at a camera size other than the network's within 1 grey level of torch's, the same
    labels and detections."""
    from conftest import TINY_TSJNET
    from segmif_core.checkpoint import save_checkpoint
    from segmif_core.models import build_model

    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build_model("tsjnet", dict(TINY_TSJNET, fusion_head="pyramid", seg_head="mlp"))
    with torch.no_grad():
        model.detector.head.cls_logits.bias.fill_(2.0)
    path = tmp_path / "tsj_pyramid.pt"
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(64, 64))
    vis, ir = _real_pair(3, size=(120, 160))
    a = SegMiFPredictor(path, fusion_scale=0.5).predict(vis, ir)
    b = SegMiFPredictor(path, backend="onnxruntime", fusion_scale=0.5).predict(vis, ir)
    assert a.fused.shape[:2] == (120, 160)
    assert np.abs(a.fused.astype(int) - b.fused).max() <= 1
    assert (a.labels == b.labels).mean() > 0.999
    assert 0 < len(b.detections["boxes"]) == len(a.detections["boxes"])
    assert _match_detections(a.detections, b.detections, 0.01, 1e-5) == len(b.detections["boxes"])
