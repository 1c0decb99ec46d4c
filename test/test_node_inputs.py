"""segmif_node's inputs: arrival checks (step too small, one count per bad message), compressed
input, camera_info pass-through, QoS overrides and incompatible-QoS warnings, and the
checkpoint checked before an ONNX export."""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from segmif_ros.node.encodings import numpy_to_image  # noqa: E402
from segmif_ros.node.node import SegMiFNode  # noqa: E402


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def make_node(ctx, checkpoint, **params):
    overrides = [Parameter("checkpoint", value=str(checkpoint)),
                 Parameter("input_height", value=64), Parameter("input_width", value=64),
                 Parameter("backend", value="torch")]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return SegMiFNode(context=ctx, parameter_overrides=overrides)


def stamped(array, encoding, sec=1, nanosec=0, frame="cam"):
    msg = numpy_to_image(array, encoding)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = frame
    return msg


def spin_until(executor, predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def rejected(node):
    return node.health.snapshot()["rejected"]


def step_too_small(index, kind, sec=1):
    """A visible (0) or thermal (1) 8x6 image whose step is too small for its encoding."""
    w, h = 8, 6
    if kind == "mono8_data":  # an rgb8 / mono16 header on mono8-sized data
        enc = ("rgb8", "mono16")[index]
        return Image(height=h, width=w, encoding=enc, step=w, data=bytes(w * h))
    enc, bpp = (("rgb8", 3), ("mono16", 2))[index]
    step = {"zero": 0, "one": 1, "short": w * bpp - 1}[kind]
    msg = Image(height=h, width=w, encoding=enc, step=step, data=bytes(w * bpp * h))
    msg.header.stamp.sec = sec
    return msg


def test_step_too_small_is_rejected_on_arrival_per_message(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint)
    try:
        n = 0
        for index in (0, 1):
            for kind in ("zero", "one", "short", "mono8_data"):
                node._on_image(index, step_too_small(index, kind))
                n += 1
                assert node.counters["messages_rejected"] == n, (index, kind)
        assert rejected(node) == {"step": n}
        assert node.sync.stats()["messages_unmatched"] == 0
        # a bad pair (same stamp): two rejections, no pair formed
        node._on_image(0, step_too_small(0, "short", sec=5))
        node._on_image(1, step_too_small(1, "short", sec=5))
        assert node.counters["messages_rejected"] == n + 2
        assert node.counters["pairs_matched"] == 0
        # a valid message is still accepted on arrival
        node._on_image(0, stamped(np.zeros((6, 8, 3), np.uint8), "rgb8", 7))
        assert node.counters["messages_rejected"] == n + 2
    finally:
        node.destroy_node()


def test_a_pair_of_two_bad_messages_counts_two(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint)
    try:
        # refused at processing (e.g. a message injected past the arrival check): one count
        # per bad message
        node._process(step_too_small(0, "short"), step_too_small(1, "short"))
        assert node.counters["messages_rejected"] == 2
        node._process(step_too_small(0, "short"), stamped(np.zeros((6, 8), np.uint8), "mono8"))
        assert node.counters["messages_rejected"] == 3
    finally:
        node.destroy_node()


def test_bad_checkpoint_is_refused_before_the_onnx_export_line(tmp_path, monkeypatch):
    from segmif_core.checkpoint import CheckpointError
    from segmif_core.inference.onnx_cache import cached_onnx
    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    lines = []
    with pytest.raises(CheckpointError) as err:
        cached_onnx(bad, 0.5, lines.append)
    assert str(bad) in str(err.value)
    assert not any("exporting" in line for line in lines), lines
