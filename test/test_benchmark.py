"""``segmif export`` and ``segmif benchmark`` on a tiny checkpoint (what they write, not how fast
they are), and the latency a bag-eval report gives for replays away from rate 1."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segmif_ros.tools.bag import get_typestore
from segmif_ros.tools.bag_analysis import analyse_output_bag, output_rate
from segmif_ros.tools.bag_eval import live_topics
from segmif_ros.tools.cli import main as segmif

NS = 1_000_000_000


def _image(T, stamp_ns, encoding, arr):
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    return T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id="visible_camera"),
        height=h, width=w, encoding=encoding, is_bigendian=0, step=w * ch,
        data=np.ascontiguousarray(arr).reshape(-1).astype(np.uint8))


def _output_bag(path, n, stamp_step_ns, arrive_step_ns, latency_ns):
    """A recording as bag eval makes it: visible/thermal inputs with stamps ``stamp_step_ns``
    apart that arrive every ``arrive_step_ns`` (a slowed replay keeps the stamp spacing), and
    outputs arriving ``latency_ns`` after their input."""
    from rosbags.rosbag2 import Writer

    store = get_typestore()
    T = store.types
    live = live_topics("")
    rng = np.random.default_rng(0)
    img = "sensor_msgs/msg/Image"
    t0, s0 = 50 * NS, 10 * NS
    with Writer(path, version=9) as writer:
        conns = {k: writer.add_connection(live[k], img, typestore=store)
                 for k in ("visible", "thermal", "fused/image", "segmentation/labels",
                           "segmentation/color")}
        for i in range(n):
            stamp, arrive = s0 + i * stamp_step_ns, t0 + i * arrive_step_ns
            vis = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            ir = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            lab = rng.integers(0, 9, (8, 8), dtype=np.uint8)
            for key, ts, enc, arr in (("visible", arrive, "rgb8", vis),
                                      ("thermal", arrive, "mono8", ir),
                                      ("fused/image", arrive + latency_ns, "rgb8", vis),
                                      ("segmentation/labels", arrive + latency_ns, "mono8", lab),
                                      ("segmentation/color", arrive + latency_ns, "rgb8", vis)):
                writer.write(conns[key], ts, store.serialize_cdr(_image(T, stamp, enc, arr), img))
    return live


@pytest.mark.parametrize("rate", [0.05, 1.0])
def test_replay_latency_is_measured_from_receive_times(tmp_path, rate):
    n, latency = 6, 100_000_000                 # outputs 100 ms after their inputs
    stamp_step = 33_333_333                     # 30 Hz stamps
    arrive_step = int(round(stamp_step / rate))  # arriving 1 / rate times slower
    live = _output_bag(tmp_path / "bag", n, stamp_step, arrive_step, latency)
    report = analyse_output_bag(tmp_path / "bag", tmp_path, live, rules=(), n_mosaics=0,
                                replay_rate=rate)
    t = report["timing"]
    assert t["latency_ms"]["n"] == n
    np.testing.assert_allclose([t["latency_ms"]["p50"], t["latency_ms"]["max"]], [100.0, 100.0],
                               atol=1e-6)
    # outputs per second: n - 1 intervals of arrive_step
    assert t["output_fps"] == pytest.approx(1e9 / arrive_step, rel=1e-3)
    if rate == 1.0:
        assert t["stamp_to_receive_ms"]["n"] == n
        assert not any("stamp-based" in w for w in report["warnings"])
    else:
        # the stamps kept the 30 Hz spacing: stamp -> receive would grow by ~627 ms per frame
        assert t["stamp_to_receive_ms"] is None and t["node_latency_ms"] is None
        assert any("stamp-based latencies are left out" in w for w in report["warnings"])


def test_output_rate_needs_two_outputs():
    assert output_rate({}) is None and output_rate({1: (5, None)}) is None
    assert output_rate({1: (0, None), 2: (NS // 2, None), 3: (NS, None)}) == pytest.approx(2.0)


def test_export_command_writes_a_self_describing_file(tiny_checkpoint, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    assert segmif(["export", "--onnx", str(out), "--checkpoint", str(tiny_checkpoint),
                   "--camera", "96", "128"]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["segmif"])
    assert meta["input_size"] == [64, 64] and meta["camera_size"] == [96, 128]
    assert "backend:=onnxruntime" in capsys.readouterr().out
    assert segmif(["export", "--onnx", str(tmp_path / "x.onnx"), "--checkpoint",
                   str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_benchmark_command_writes_every_configuration(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench"
    assert segmif(["benchmark", "--checkpoint", str(tiny_checkpoint), "--camera", "64", "80",
                   "--frames", "2", "--precision", "fp32", "fp16", "--out", str(out)]) == 0
    result = json.loads((out / "benchmark.json").read_text())
    rows = {(r["backend"], r["precision"]): r for r in result["predictor"]}
    assert set(rows) == {("torch", "fp32"), ("torch", "fp16"), ("onnxruntime", "fp32")}
    assert "CUDA" in rows[("torch", "fp16")]["skipped"]  # this machine has no GPU
    for key in (("torch", "fp32"), ("onnxruntime", "fp32")):
        r = rows[key]
        assert r["fps"] > 0 and r["latency_ms"]["n"] == 2 and r["camera"] == [64, 80]
        assert {"resize", "network", "postprocess"} <= set(r["stages_ms"])
    assert set(rows[("torch", "fp32")]["subnetworks_ms"]) == {
        "guidance_encoder", "phi", "psi", "full_resolution_fusion"}
    assert result["model"]["model"] == "segmif" and result["hardware"]["cores"] >= 1
    assert "| 80x64 | cpu | torch | fp32 |" in (out / "benchmark.md").read_text()


@pytest.mark.parametrize("given, expected", [(None, 0.5), (0.0, 0.0), (0.3, 0.3)])
def test_live_run_passes_the_node_default_min_score(tmp_path, monkeypatch, given, expected):
    """``segmif benchmark --live`` measures the node as a robot runs it: detection_min_score at
    the node's default (0.5, from the parameter table) unless --detection-min-score is given;
    bag eval's own default (0, every box for mAP) does not apply. The bag and the graph are
    stubbed: this checks what reaches the node's parameters and the reported row."""
    pytest.importorskip("rclpy")
    from segmif_ros.node.parameters import PARAMETERS
    from segmif_ros.tools import bag_eval, bag_make, benchmark

    assert PARAMETERS["detection_min_score"][0] == 0.5
    seen = {}
    monkeypatch.setattr(bag_make, "make_bag", lambda *a, **k: None)
    monkeypatch.setattr(benchmark, "_resized_pairs", lambda *a, **k: ["p"])

    def fake_eval(*args, node_params=None, **kwargs):
        seen.update(node_params)
        return {"timing": {"stages_ms": {}, "processing_ms": None, "output_fps": 1.0},
                "stream": {k: 0 for k in ("frames_in_visible", "frames_out",
                                          "pairs_dropped_by_node", "pairs_never_answered",
                                          "messages_unmatched")}}

    monkeypatch.setattr(bag_eval, "run_bag_eval", fake_eval)
    row = benchmark.run_live((48, 64), tmp_path, backend="torch", data=tmp_path,
                             detection_min_score=given, log=lambda *_: None)
    assert seen["detection_min_score"] == expected
    assert row["detection_min_score"] == expected and "skipped" not in row
