"""``bag_eval.warm_onnx_cache``: the ONNX export a started node would do at start-up is done
before the node's start-up wait, with the arguments the node would use (a fresh machine's first
export of the shipped checkpoint took over 180 s, the wait, in session 14). No ROS graph."""
from __future__ import annotations

import pytest

import segmif_core.inference.factory as factory
import segmif_core.inference.onnx_cache as onnx_cache
from segmif_core.inference.onnx_export import ExportError
from segmif_ros.tools.bag_eval import warm_onnx_cache


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_cached_onnx(checkpoint=None, fusion_scale=None, log=None, size=None,
                         int8_calibration=None, int8_pairs=16):
        seen.append((checkpoint, fusion_scale, size, int8_calibration))
        return "cached.onnx"

    monkeypatch.setattr(onnx_cache, "cached_onnx", fake_cached_onnx)
    monkeypatch.setattr(factory, "onnxruntime_usable", lambda: True)
    return seen


def test_default_node_parameters_export_at_half_fusion_scale(calls):
    # the node's defaults: backend auto (ONNX Runtime on the CPU in fp32), fusion_scale 0.5,
    # the checkpoint's input size, no int8
    assert warm_onnx_cache(None, "cpu", None, log=lambda *_: None) == "cached.onnx"
    assert calls == [(None, 0.5, None, None)]


def test_parameters_are_passed_as_the_node_would(calls):
    warm_onnx_cache("model.pt", "cpu", {"fusion_scale": 0.0, "input_height": 240,
                                        "input_width": 320}, log=lambda *_: None)
    warm_onnx_cache("model.pt", "cpu", {"input_height": 240}, log=lambda *_: None)  # one of two
    warm_onnx_cache("model.pt", "cpu", {"precision": "int8", "int8_calibration": "/calib"},
                    log=lambda *_: None)
    assert calls == [("model.pt", None, (240, 320), None), ("model.pt", 0.5, None, None),
                     ("model.pt", 0.5, None, "/calib")]


def test_nothing_to_export(calls):
    assert warm_onnx_cache("model.onnx", "cpu", None, log=lambda *_: None) is None
    assert warm_onnx_cache(None, "cpu", {"backend": "torch"}, log=lambda *_: None) is None
    assert warm_onnx_cache(None, "cpu", {"precision": "bf16"}, log=lambda *_: None) is None
    assert calls == []


def test_a_refused_export_leaves_the_fallback_to_the_node(monkeypatch):
    def refuse(*args, **kwargs):
        raise ExportError("onnxscript missing")

    monkeypatch.setattr(onnx_cache, "cached_onnx", refuse)
    monkeypatch.setattr(factory, "onnxruntime_usable", lambda: True)
    lines = []
    assert warm_onnx_cache(None, "cpu", None, log=lines.append) is None
    assert lines and "onnxscript missing" in lines[0]
