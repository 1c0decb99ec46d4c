"""segmif_node in a live rclpy graph (in-process, shared-memory transport, own domain)."""
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from segmif_ros.node.encodings import image_to_numpy, numpy_to_image  # noqa: E402
from segmif_ros.node.node import ConfigurationError, SegMiFNode  # noqa: E402

from conftest import MFNET, needs_mfnet  # noqa: E402

OUTPUTS = {"fused/image": "bgr8", "segmentation/labels": "mono8", "segmentation/color": "bgr8"}


def make_node(ctx, checkpoint, **params):
    overrides = [Parameter("checkpoint", value=str(checkpoint)),
                 Parameter("input_height", value=64), Parameter("input_width", value=64)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return SegMiFNode(context=ctx, parameter_overrides=overrides)


def process_pair(node, vis_msg, ir_msg):
    """One pair through the node's frame processor in this thread (what its worker does);
    False when refused."""
    from segmif_ros.node.pipeline import Frame
    return node.frames.process(Frame("pair", vis_msg, ir_msg), 0.5)


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


def test_pair_in_all_outputs_out_with_visible_header(context, tiny_checkpoint):
    from segmif_ros.msg import LabelInfo, SegmentationInfo
    node = make_node(context, tiny_checkpoint)
    peer = rclpy.create_node("peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    got = {}
    for topic in OUTPUTS:
        peer.create_subscription(Image, topic, lambda m, t=topic: got.setdefault(t, m), 10)
    peer.create_subscription(SegmentationInfo, "segmentation/info",
                             lambda m: got.setdefault("info", m), 10)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_subscription(LabelInfo, "segmentation/label_info",
                             lambda m: got.setdefault("label_info", m), latched)
    pub_vis = peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    try:
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() and
                          pub_ir.get_subscription_count(), 10)
        rng = np.random.default_rng(0)
        vis = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
        ir = rng.integers(0, 65536, (48, 80), dtype=np.uint16)
        # visible at t = 100.5 s, thermal 7 ms later (inside the default 20 ms slop)
        vmsg = stamped(vis, "rgb8", 100, 500_000_000, "visible_camera")
        imsg = stamped(ir, "mono16", 100, 507_000_000, "thermal_camera")

        def resend_until_done():
            pub_vis.publish(vmsg)
            pub_ir.publish(imsg)
            return spin_until(ex, lambda: len(got) == 5, 3.0)

        assert any(resend_until_done() for _ in range(8)), f"received only {sorted(got)}"
        for topic, encoding in OUTPUTS.items():
            m = got[topic]
            assert (m.header.stamp.sec, m.header.stamp.nanosec) == (100, 500_000_000), topic
            assert m.header.frame_id == "visible_camera", topic
            assert m.encoding == encoding and (m.height, m.width) == (48, 80), topic
        labels = image_to_numpy(got["segmentation/labels"])
        assert labels.max() < 9
        info = got["info"]
        assert (info.header.stamp.sec, info.header.stamp.nanosec) == (100, 500_000_000)
        assert (info.thermal_stamp.sec, info.thermal_stamp.nanosec) == (100, 507_000_000)
        assert list(info.class_names)[:3] == ["unlabelled", "car", "person"]
        fractions = np.bincount(labels.ravel(), minlength=9) / labels.size
        np.testing.assert_allclose(info.class_fractions, fractions, atol=1e-6)
        assert info.inference_time_ms > 0 and info.pairs_processed >= 1
        names = [c.class_name for c in got["label_info"].class_map]
        assert names == list(info.class_names)
        # segmentation/color = 0.5 * class colour + 0.5 * fused image, channel by channel
        colors_rgb = np.array([[round(c.r * 255), round(c.g * 255), round(c.b * 255)]
                               for c in info.class_colors], np.float64)
        fused_bgr = image_to_numpy(got["fused/image"]).astype(np.float64)
        expected = 0.5 * colors_rgb[labels][:, :, ::-1] + 0.5 * fused_bgr
        color = image_to_numpy(got["segmentation/color"]).astype(np.float64)
        assert np.abs(color - expected).max() <= 0.5 + 1e-9
        # the node's time per ROS-side stage (ms)
        assert info.convert_time_ms > 0 and info.publish_time_ms > 0
        assert info.preprocess_time_ms > 0 and info.callback_delay_ms >= 0
        # the counters of the whole node travel with every frame
        assert info.received_visible >= 1 and info.received_thermal >= 1
        assert info.pairs_matched >= info.pairs_processed >= 1
        assert info.processing_errors == 0 and info.modality == "pair"
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_fused_image_parameter_publishes_a_classical_rule(context, tiny_checkpoint):
    # fused_image: maximum -> fused/image is the visible image with its BT.601 luma replaced by
    # max(luma, thermal), at the camera's size (computed here with OpenCV's YCrCb by hand)
    import cv2
    node = make_node(context, tiny_checkpoint, fused_image="maximum")
    peer = rclpy.create_node("peer_rule", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    got = []
    peer.create_subscription(Image, "fused/image", got.append, 10)
    try:
        assert spin_until(ex, lambda: node.count_subscribers("fused/image") > 0, 10)
        rng = np.random.default_rng(4)
        grey = rng.integers(40, 200, (48, 80, 1))
        vis = np.clip(grey + rng.integers(-6, 7, (48, 80, 3)), 0, 255).astype(np.uint8)
        ir = rng.integers(0, 256, (48, 80), dtype=np.uint8)
        assert process_pair(node, stamped(vis, "rgb8"), stamped(ir, "mono8"))
        assert spin_until(ex, lambda: len(got) > 0, 10)
        fused = image_to_numpy(got[0])[:, :, ::-1]      # bgr8 -> RGB
        ycrcb = cv2.cvtColor(vis, cv2.COLOR_RGB2YCrCb)
        ycrcb[..., 0] = np.maximum(ycrcb[..., 0], ir)
        expected = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
        assert fused.shape == (48, 80, 3)
        assert np.abs(fused.astype(int) - expected.astype(int)).max() <= 1
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_bad_messages_are_counted_and_node_keeps_working(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint)
    try:
        bad = Image(height=4, width=4, encoding="yuv422", step=8, data=bytes(32))
        node._on_image(0, bad)
        short = stamped(np.zeros((4, 4), np.uint8), "mono8", 1, 0, "t")
        short.data = bytes(3)
        node._on_image(1, short)
        assert node.counters["messages_rejected"] == 2
        # a pair of mismatched sizes that the identity registration cannot fix is refused too
        process_pair(node, stamped(np.zeros((40, 40, 3), np.uint8), "rgb8", 1, 0, "v"),
                     stamped(np.zeros((40, 40), np.uint8), "mono8", 1, 0, "t"))
        assert node.counters["messages_rejected"] == 2
        process_pair(node, stamped(np.zeros((40, 40, 3), np.uint8), "bgr8", 1, 0, "v"),
                     stamped(np.zeros((40, 40, 3), np.uint8), "rgb8", 1, 0, "t"))
        assert node.counters["messages_rejected"] == 3
    finally:
        node.destroy_node()


def test_newest_pair_wins_and_stale_pairs_are_counted(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint)
    try:
        with node.worker.lock:  # hold the worker off while three pairs arrive
            for i in range(3):
                v = stamped(np.zeros((40, 40, 3), np.uint8), "rgb8", 10 + i, 0, "v")
                t = stamped(np.zeros((40, 40), np.uint8), "mono8", 10 + i, 1_000_000, "t")
                node.sync.add(0, v)
                node.sync.add(1, t)
            assert node.counters["pairs_matched"] == 3
            assert node.counters["pairs_dropped"] == 2
            assert node.worker.pending.vis.header.stamp.sec == 12
    finally:
        node.destroy_node()


@pytest.mark.parametrize("params, text", [
    ({"homography": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]}, "singular"),
    ({"homography": [1.0, 0.0, 0.0, 1.0]}, "3x3"),
    ({"device": "tpu"}, "device"),
    ({"backend": "tensorrt"}, "backend: 'tensorrt' is not one of torch, onnxruntime"),
    ({"backend": "onnxruntime", "precision": "bf16"}, "takes precision"),
    ({"precision": "fp16"}, "fp16 needs a CUDA device"),
    ({"precision": "int8"}, "needs int8_calibration"),
    ({"fused_image": "median"}, "fused_image: 'median' is not one of"),
])
def test_invalid_parameters_are_refused_at_construction(context, tiny_checkpoint, params, text):
    with pytest.raises(ConfigurationError, match=text):
        make_node(context, tiny_checkpoint, **params)


def test_onnxruntime_backend_answers_pairs(context, tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from segmif_core.inference import export_onnx
    onnx = tmp_path / "tiny.onnx"
    export_onnx(onnx, tiny_checkpoint, camera=(48, 80))
    node = SegMiFNode(context=context, parameter_overrides=[
        Parameter("checkpoint", value=str(onnx)), Parameter("backend", value="onnxruntime")])
    try:
        assert node.predictor.backend.name == "onnxruntime" and node.predictor.input_size == (64, 64)
        rng = np.random.default_rng(1)
        process_pair(node,
                     stamped(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8), "rgb8", 5, 0, "v"),
                     stamped(rng.integers(0, 256, (48, 80), dtype=np.uint8), "mono8", 5, 0, "t"))
        assert node.counters["pairs_processed"] == 1
    finally:
        node.destroy_node()


def test_missing_checkpoint_is_refused(context, tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        make_node(context, tmp_path / "nope.pt")


def test_ros_time_jump_back_resets_the_synchroniser(context, tiny_checkpoint):
    from rosgraph_msgs.msg import Clock
    node = make_node(context, tiny_checkpoint, use_sim_time=True)
    peer = rclpy.create_node("clock_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    pub = peer.create_publisher(Clock, "/clock", 10)

    def publish_until(sec, predicate):
        msg = Clock()
        msg.clock.sec = sec
        end = time.monotonic() + 10.0
        while time.monotonic() < end and not predicate():
            pub.publish(msg)
            spin_until(ex, predicate, 0.2)
        return predicate()

    try:
        assert publish_until(100, lambda: node.get_clock().now().nanoseconds == 100 * 10**9)
        node.sync.add(0, stamped(np.zeros((4, 4, 3), np.uint8), "rgb8", 99, 0, "v"))
        resets = node.sync.resets
        assert publish_until(40, lambda: node.sync.resets > resets)  # 60 s back
        assert node.sync.resets == resets + 1
        assert node.sync.queue_lengths() == (0, 0)
    finally:
        node.destroy_node()
        peer.destroy_node()


def test_no_pair_warning_names_the_missing_input(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint, no_pair_warn_s=0.2)
    lines = []

    class Logger:
        def warning(self, text, **_):
            lines.append(text)

        info = warning

    try:
        node.health.start()
        node._on_image(0, stamped(np.zeros((4, 4, 3), np.uint8), "rgb8", 5, 0, "v"))
        time.sleep(0.3)
        node.get_logger = Logger
        node._check_inputs()
        assert any("no thermal messages received" in line for line in lines), lines
    finally:
        del node.get_logger
        node.destroy_node()


def test_thermal_of_another_size_is_refused_with_the_identity_homography(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint)
    lines = []

    class Logger:
        def warning(self, text, **_):
            lines.append(text)

        def debug(self, text, **_):
            pass

    try:
        node.get_logger = Logger
        vis = stamped(np.zeros((48, 80, 3), np.uint8), "rgb8", 1, 0, "v")
        for size in ((24, 40), (52, 80)):  # 80x48 visible with a 40x24 or an 80x52 thermal
            process_pair(node, vis, stamped(np.zeros(size, np.uint8), "mono8", 1, 0, "t"))
        assert node.counters["pairs_processed"] == 0
        assert node.counters["messages_rejected"] == 2
        assert any("40x24" in line and "80x48" in line and "homography" in line
                   for line in lines), lines
    finally:
        del node.get_logger
        node.destroy_node()


def test_thermal_of_another_size_is_warped_by_a_homography(context, tiny_checkpoint):
    # the thermal camera has half the resolution: x_vis = 2 x_ir
    node = make_node(context, tiny_checkpoint,
                     homography=[2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0])
    try:
        process_pair(node, stamped(np.zeros((48, 80, 3), np.uint8), "rgb8", 1, 0, "v"),
                     stamped(np.zeros((24, 40), np.uint8), "mono8", 1, 0, "t"))
        assert node.counters["pairs_processed"] == 1
        assert node.counters["messages_rejected"] == 0
    finally:
        node.destroy_node()


class Lines:
    """A stand-in for the node's logger that keeps the lines (warning/info/error/debug)."""

    def __init__(self):
        self.lines = []

    def __call__(self):
        return self

    def _keep(self, text, **_):
        self.lines.append(text)

    warning = info = error = debug = fatal = _keep


def test_rejections_are_throttled_per_reason_and_counted(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint)
    log = Lines()
    try:
        node.get_logger = log
        bad_encoding = Image(height=4, width=4, encoding="yuv422", step=8, data=bytes(32))
        short = stamped(np.zeros((4, 4), np.uint8), "mono8", 1, 0, "t")
        short.data = bytes(3)
        for _ in range(3):
            node._on_image(0, bad_encoding)
            node._on_image(1, short)
        # one line per reason inside the 5 s throttle: the second reason is not hidden
        assert len(log.lines) == 2, log.lines
        assert "yuv422" in log.lines[0] and "3 bytes" in log.lines[1]
        snap = node.health.snapshot()
        assert snap["rejected"] == {"encoding": 3, "malformed": 3}
        assert snap["counters"]["messages_rejected"] == 6
        assert snap["counters"]["received_visible"] == 3
    finally:
        del node.get_logger
        node.destroy_node()


def test_sensor_data_input_qos_honours_queue_size(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint, queue_size=12)
    try:
        assert node.sub_vis.qos_profile.depth == 12 and node.sub_ir.qos_profile.depth == 12
        assert node.sub_vis.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    finally:
        node.destroy_node()


def test_health_counters_are_exact_across_threads():
    import sys
    import threading
    from segmif_ros.node.health import Health
    health = Health()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def hammer():
            for _ in range(20000):
                health.add("pairs_matched")
                health.received(0)
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    c = health.snapshot()["counters"]
    assert c["pairs_matched"] == c["received_visible"] == 80000


def latest_status(got, task):
    for status in got[-1].status:
        if status.name.endswith(": " + task):
            return status.level[0], status.message, {kv.key: kv.value for kv in status.values}
    raise AssertionError(f"no {task} status in {got[-1]}")


def test_diagnostics_report_stream_loss_stall_errors_and_recovery(context, tiny_checkpoint):
    from diagnostic_msgs.msg import DiagnosticArray
    node = make_node(context, tiny_checkpoint, stream_timeout_s=0.5)
    peer = rclpy.create_node("diag_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    got = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    pub_vis = peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    vis = np.zeros((24, 40, 3), np.uint8)
    ir = np.zeros((24, 40), np.uint8)
    sec = [200]

    def send(thermal=True, seconds=1.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sec[0] += 1
            pub_vis.publish(stamped(vis, "rgb8", sec[0], 0, "v"))
            if thermal:
                pub_ir.publish(stamped(ir, "mono8", sec[0], 0, "t"))
            spin_until(ex, lambda: False, 0.1)

    def wait_for(task, level, timeout=10.0, **kw):
        def seen():
            return got and latest_status(got, task)[0] == level
        end = time.monotonic() + timeout
        while time.monotonic() < end and not seen():
            send(seconds=0.3, **kw)
        return seen()

    try:
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() and
                          pub_ir.get_subscription_count(), 10)
        # visible only: the thermal stream is reported within 2 s, counters travel anyway
        n = len(got)
        send(thermal=False, seconds=1.5)
        assert spin_until(ex, lambda: len(got) > n, 3.0)
        level, message, values = latest_status(got, "inputs")
        assert level == 1 and "thermal" in message, message
        assert int(values["visible received"]) > 0 and values["thermal received"] == "0"
        assert values["thermal last message (s ago)"] == "n/a"
        # pairs again: OK, with rates, stamp ages and pairs processed
        assert wait_for("inputs", 0), latest_status(got, "inputs")
        level, message, values = latest_status(got, "processing")
        # backend auto on the cpu: ONNX Runtime where installed (the venv has it), else torch
        assert level == 0 and values["device"] == "cpu"
        assert values["backend"] == node.predictor.backend.name
        assert int(values["pairs processed"]) > 0 and float(values["inference time (ms)"]) > 0
        _, _, values = latest_status(got, "inputs")
        assert float(values["visible rate (Hz)"]) > 0
        assert float(values["visible newest stamp age (s)"]) != 0
        # processing fails repeatedly: ERROR, counted; and back to OK when it recovers
        predict = node.predictor.predict

        def broken(*args, **kwargs):
            raise RuntimeError("injected failure")
        node.predictor.predict = broken
        assert wait_for("processing", 2), latest_status(got, "processing")
        assert int(latest_status(got, "processing")[2]["processing errors"]) >= 3
        node.predictor.predict = predict
        assert wait_for("processing", 0), latest_status(got, "processing")
        # both inputs stop: WARN, and the counters keep coming
        n = len(got)
        assert spin_until(ex, lambda: len(got) > n + 1 and latest_status(got, "inputs")[0] == 1,
                          4.0)
        assert "no input" in latest_status(got, "inputs")[1]
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def fallback_run(context, checkpoint, fallback, send_visible, send_thermal, expect):
    """Publish one stream only (and then both) to a node with ``fallback``; returns the
    segmentation/info and fused/image messages received."""
    from segmif_ros.msg import SegmentationInfo
    node = make_node(context, checkpoint, fallback=fallback, stream_timeout_s=0.4)
    peer = rclpy.create_node("fallback_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    infos, fused = [], []
    peer.create_subscription(SegmentationInfo, "segmentation/info", infos.append, 50)
    peer.create_subscription(Image, "fused/image", fused.append, 50)
    pub_vis = peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    rng = np.random.default_rng(3)
    vis = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    ir = rng.integers(0, 65536, (24, 40), dtype=np.uint16)
    sec = [300]

    def send(visible, thermal, until, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not until():
            sec[0] += 1
            if visible:
                pub_vis.publish(stamped(vis, "rgb8", sec[0], 0, "visible_camera"))
            if thermal:
                pub_ir.publish(stamped(ir, "mono16", sec[0], 0, "thermal_camera"))
            spin_until(ex, until, 0.1)
        return until()

    try:
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() and
                          pub_ir.get_subscription_count(), 10)
        # one pair first (the node learns the visible frame), then one camera stops
        assert send(True, True, lambda: any(m.modality == "pair" for m in infos))
        single = send(send_visible, send_thermal,
                      lambda: any(m.modality == expect for m in infos), 5.0)
        if expect == "none":
            return infos, fused, node
        assert single, [m.modality for m in infos]
        # the stream comes back: pairs again, automatically
        n = len(infos)
        assert send(True, True, lambda: len(infos) > n and infos[-1].modality == "pair")
        return infos, fused, node
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_fallback_visible_publishes_from_the_visible_image_alone(context, tiny_checkpoint):
    infos, fused, node = fallback_run(context, tiny_checkpoint, "visible", True, False,
                                      "visible_only")
    single = [m for m in infos if m.modality == "visible_only"]
    assert single[0].header.frame_id == "visible_camera"
    assert single[-1].frames_fallback >= 1
    assert len(fused) >= len(infos) - 1  # the fused image went out with each info


def test_fallback_thermal_publishes_from_the_thermal_image_alone(context, tiny_checkpoint):
    infos, fused, node = fallback_run(context, tiny_checkpoint, "thermal", False, True,
                                      "thermal_only")
    single = [m for m in infos if m.modality == "thermal_only"]
    # outputs stay in the visible camera's frame, stamped with the thermal stamp
    assert single[0].header.frame_id == "visible_camera"
    assert single[0].header.stamp == single[0].thermal_stamp


def test_without_fallback_a_lost_stream_stops_the_output(context, tiny_checkpoint):
    infos, fused, node = fallback_run(context, tiny_checkpoint, "none", True, False, "none")
    assert {m.modality for m in infos} == {"pair"}
    assert node.modality() == "pair"


def test_thermal_as_visible_is_the_thermal_rule_in_gray():
    from types import SimpleNamespace
    from segmif_ros.node.pipeline import blank_thermal, thermal_as_visible
    predictor = SimpleNamespace(thermal_norm="fixed", thermal_percentiles=(1.0, 99.0),
                                thermal_range=(1000.0, 2000.0))
    ir = np.array([[1000, 1500, 2000, 3000]], np.uint16)
    gray = thermal_as_visible(ir, predictor)
    assert gray.shape == (1, 4, 3) and gray.dtype == np.uint8
    assert gray[0, :, 0].tolist() == [0, 128, 255, 255] and (gray[..., 0] == gray[..., 2]).all()
    assert not blank_thermal(np.ones((3, 5, 3), np.uint8)).any()


@pytest.mark.parametrize("params, text", [
    ({"overlay_alpha": 2.0}, "overlay_alpha: 2.0 is out of range [0, 1]"),
    ({"slop": 0.0}, "slop: 0.0 is out of range"),
    ({"slop": "fast"}, "slop: expected a double"),
    ({"queue_size": 2.5}, "queue_size: expected an integer"),
    ({"homography": ["a"] * 9}, "homography: expected a list of doubles"),
    ({"input_height": 64, "input_width": 0}, "input_height and input_width: give both"),
    ({"fallback": "infrared"}, "fallback: 'infrared' is not one of none, visible, thermal"),
    ({"thermal_min": 10, "thermal_max": 5}, "thermal_min 10 and thermal_max 5"),
])
def test_bad_parameter_values_are_refused_in_one_line(context, tiny_checkpoint, params, text):
    overrides = [Parameter("checkpoint", value=str(tiny_checkpoint))]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    with pytest.raises(ConfigurationError) as err:
        SegMiFNode(context=context, parameter_overrides=overrides)
    assert text in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_integers_are_accepted_where_doubles_are_expected(context, tiny_checkpoint):
    node = make_node(context, tiny_checkpoint, homography=[1, 0, 0, 0, 1, 0, 0, 0, 1],
                     thermal_min=0, thermal_max=4000, slop=1, overlay_alpha=1)
    try:
        assert node.registration.is_identity
        for name in ("thermal_min", "slop", "overlay_alpha"):
            assert node.get_parameter(name).type_ == Parameter.Type.DOUBLE, name
        assert node.get_parameter("homography").type_ == Parameter.Type.DOUBLE_ARRAY
        assert list(node.get_parameter("homography").value) == [1.0, 0, 0, 0, 1, 0, 0, 0, 1]
        assert node.sync.slop == 1.0 and node.predictor.thermal_range == (0.0, 4000.0)
        # still typed and ranged as declared: ros2 param describe shows the double range
        described = node.describe_parameter("overlay_alpha")
        assert described.read_only is False and described.floating_point_range[0].to_value == 1
    finally:
        node.destroy_node()


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    import os
    from segmif_core.checkpoint import FORMAT
    import torch
    d = tmp_path_factory.mktemp("bad_ckpt")
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"format": FORMAT, "config": {}, "state_dict": {}, "classes": {}},
               d / "no_model.pt")
    del os
    return d


@pytest.mark.parametrize("name, text", [
    ("empty.pt", "empty file (0 bytes)"),
    ("random.pt", "not a PyTorch checkpoint"),
    ("no_model.pt", "without 'model'"),
])
def test_bad_checkpoints_give_one_line_naming_the_file(context, bad_checkpoints, name, text):
    with pytest.raises(ConfigurationError) as err:
        make_node(context, bad_checkpoints / name)
    line = str(err.value)
    assert str(bad_checkpoints / name) in line and text in line, line
    assert "\n" not in line and "weights_only" not in line


@pytest.mark.parametrize("args, text", [
    (["-p", "overlay_alpha:=2.0"], "overlay_alpha: 2.0 is out of range"),
    (["-p", "input_height:=64"], "input_height and input_width"),
])
def test_start_up_errors_exit_1_with_one_line(tiny_checkpoint, args, text):
    import subprocess
    import sys
    proc = subprocess.run(
        [sys.executable, "-m", "segmif_ros.node", "--ros-args", "-p",
         f"checkpoint:={tiny_checkpoint}", *args], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert text in out and "Traceback" not in out, out
    assert len([line for line in out.splitlines() if line.strip()]) == 1, out


@needs_mfnet
def test_fast_preset_runs_int8_at_its_input_size(context, tiny_checkpoint, tmp_path, monkeypatch):
    """config/segmif_fast.yaml: every key is a declared parameter; as shipped (no calibration
    folder) the node refuses to configure with the reason; with one it runs ONNX Runtime int8 at
    the preset's network size and answers a pair at the camera's size."""
    import yaml
    from segmif_ros.node.parameters import PARAMETERS
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("SEGMIF_CACHE", str(tmp_path / "cache"))
    preset = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" /
                             "segmif_fast.yaml").read_text())["/**"]["ros__parameters"]
    assert set(preset) <= set(PARAMETERS) and preset["precision"] == "int8"
    with pytest.raises(ConfigurationError, match="needs int8_calibration"):
        make_node(context, tiny_checkpoint, **preset)
    node = make_node(context, tiny_checkpoint, **dict(preset, int8_calibration=MFNET))
    try:
        pred = node.predictor
        assert pred.backend.name == "onnxruntime" and pred.input_size == (192, 256)
        assert pred.info["onnx"]["quantization"]["part"] == "segmenter"
        rng = np.random.default_rng(0)
        out = pred.predict(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
                           rng.integers(0, 256, (120, 160), dtype=np.uint8))
        assert out.labels.shape == (120, 160) and out.fused.shape == (120, 160, 3)
    finally:
        node.destroy_node()
