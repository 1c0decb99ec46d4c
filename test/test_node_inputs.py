"""segmif_node's inputs: arrival checks (step too small, one count per bad message), compressed
input, camera_info pass-through, QoS overrides and incompatible-QoS warnings, and the
checkpoint checked before an ONNX export."""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from test_node import (make_node as _make_node, process_pair, spin_until,  # noqa: E402
                       stamped)


def make_node(ctx, checkpoint, **params):
    """test_node's node, on the torch backend (no ONNX export for these input tests)."""
    return _make_node(ctx, checkpoint, **{"backend": "torch", **params})


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
        process_pair(node, step_too_small(0, "short"), step_too_small(1, "short"))
        assert node.counters["messages_rejected"] == 2
        process_pair(node, step_too_small(0, "short"),
                     stamped(np.zeros((6, 8), np.uint8), "mono8"))
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


def live(context, node):
    peer = rclpy.create_node("peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    return peer, ex


def smooth_images(h=48, w=80):
    """A visible rgb image with low-frequency content (jpeg keeps it well) and a 16-bit thermal."""
    yy, xx = np.mgrid[0:h, 0:w]
    vis = np.stack([(xx * 3) % 256, (yy * 5) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    ir = ((xx * 700 + yy * 300) % 65536).astype(np.uint16)
    return vis, ir


def test_compressed_pair_is_answered_like_the_decoded_raw_pair(context, tiny_checkpoint):
    import cv2
    from sensor_msgs.msg import CompressedImage
    from rclpy.qos import qos_profile_sensor_data
    from segmif_ros.node.encodings import image_to_numpy
    node = make_node(context, tiny_checkpoint, input_transport="compressed")
    peer, ex = live(context, node)
    got = []
    peer.create_subscription(Image, "segmentation/labels", got.append, 10)
    pub_vis = peer.create_publisher(CompressedImage, "visible/image/compressed",
                                    qos_profile_sensor_data)
    pub_ir = peer.create_publisher(CompressedImage, "thermal/image/compressed",
                                   qos_profile_sensor_data)
    try:
        assert node.sub_vis.topic_name == "/visible/image/compressed"
        assert node.sub_ir.topic_name == "/thermal/image/compressed"
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() and
                          pub_ir.get_subscription_count(), 10)
        vis, ir = smooth_images()
        jpeg = cv2.imencode(".jpg", vis[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        png = cv2.imencode(".png", ir)[1].tobytes()
        cvis = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg)
        cir = CompressedImage(format="16UC1; png compressed", data=png)
        for msg, sec, frame in ((cvis, 3, "vis"), (cir, 3, "ir")):
            msg.header.stamp.sec, msg.header.frame_id = sec, frame
        for _ in range(8):
            pub_vis.publish(cvis)
            pub_ir.publish(cir)
            if spin_until(ex, lambda: got, 3.0):
                break
        assert got, "no output for the compressed pair"
        live_labels = image_to_numpy(got[0])
        assert got[0].header.frame_id == "vis" and got[0].header.stamp.sec == 3
        # the same pair, decoded here and given to the node raw
        dec_vis = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        dec_ir = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert dec_ir.dtype == np.uint16 and np.array_equal(dec_ir, ir)
        got.clear()
        assert process_pair(node, stamped(np.ascontiguousarray(dec_vis), "rgb8", 3, 0, "vis"),
                            stamped(dec_ir, "mono16", 3, 0, "ir"))
        assert spin_until(ex, lambda: got, 10)
        raw_labels = image_to_numpy(got[0])
        assert live_labels.shape == raw_labels.shape == (48, 80)
        assert (live_labels == raw_labels).mean() >= 0.99
        assert node.counters["messages_rejected"] == 0
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_bad_compressed_data_is_rejected_and_counted_per_reason(context, tiny_checkpoint):
    import cv2
    from sensor_msgs.msg import CompressedImage
    node = make_node(context, tiny_checkpoint, input_transport="compressed")
    try:
        vis, ir = smooth_images()
        node._on_image(0, CompressedImage(format="jpeg", data=b"not an image at all"))
        node._on_image(1, CompressedImage(format="png", data=b""))
        png16_vis = cv2.imencode(".png", ir)[1].tobytes()  # a 16-bit visible image
        node._on_image(0, CompressedImage(format="png", data=png16_vis))
        png_rgb_ir = cv2.imencode(".png", vis)[1].tobytes()  # a colour thermal image
        node._on_image(1, CompressedImage(format="png", data=png_rgb_ir))
        truncated = cv2.imencode(".png", ir)[1].tobytes()[:40]
        node._on_image(1, CompressedImage(format="png", data=truncated))
        assert rejected(node) == {"undecodable": 3, "depth": 1, "channels": 1}
        assert node.counters["messages_rejected"] == 5
        assert node.sync.stats()["messages_unmatched"] == 0 and node.counters["pairs_matched"] == 0
        # a compressed thermal of another size is refused like a raw one (size_mismatch)
        small = cv2.imencode(".png", ir[:24, :40])[1].tobytes()
        jpeg = cv2.imencode(".jpg", vis)[1].tobytes()
        from segmif_ros.node.inputs import decode_compressed
        v, _ = decode_compressed(CompressedImage(format="jpeg", data=jpeg), 0)
        t, _ = decode_compressed(CompressedImage(format="png", data=small), 1)
        assert not process_pair(node, v, t)
        assert rejected(node)["size_mismatch"] == 1
    finally:
        node.destroy_node()


def camera_info_msg():
    from sensor_msgs.msg import CameraInfo
    info = CameraInfo(width=80, height=48, distortion_model="plumb_bob")
    info.k = [100.0, 0.0, 40.0, 0.0, 101.0, 24.0, 0.0, 0.0, 1.0]
    info.p = [100.0, 0.0, 40.0, -5.0, 0.0, 101.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.1, -0.01, 0.0, 0.0, 0.0]
    info.header.frame_id = "info_frame"
    info.header.stamp.sec = 42
    return info


@pytest.mark.parametrize("crop", [None, [2, 4, 60, 40]])
def test_camera_info_is_republished_with_the_output_header(context, tiny_checkpoint, crop):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo
    params = {"crop": crop} if crop else {}
    node = make_node(context, tiny_checkpoint, **params)
    peer, ex = live(context, node)
    got = {}
    for topic in ("fused/camera_info", "segmentation/camera_info", "fused/image"):
        peer.create_subscription(CameraInfo if "info" in topic else Image, topic,
                                 lambda m, t=topic: got.setdefault(t, m), 10)
    pub_info = peer.create_publisher(CameraInfo, "visible/camera_info", qos_profile_sensor_data)
    pub_vis = peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    try:
        assert spin_until(ex, lambda: pub_info.get_subscription_count() and
                          pub_vis.get_subscription_count() and pub_ir.get_subscription_count(), 10)
        vis, ir = smooth_images()
        for _ in range(8):
            pub_info.publish(camera_info_msg())
            if spin_until(ex, lambda: node.outputs.camera_info.received, 1.0):
                break
        assert node.outputs.camera_info.received
        vmsg, imsg = stamped(vis, "rgb8", 9, 5, "visible_camera"), stamped(ir, "mono16", 9, 5, "t")
        for _ in range(8):
            pub_vis.publish(vmsg)
            pub_ir.publish(imsg)
            if spin_until(ex, lambda: len(got) == 3, 3.0):
                break
        assert len(got) == 3, sorted(got)
        image = got["fused/image"]
        for topic in ("fused/camera_info", "segmentation/camera_info"):
            info = got[topic]
            assert (info.header.stamp.sec, info.header.stamp.nanosec) == (9, 5), topic
            assert info.header.frame_id == "visible_camera", topic
            assert (info.width, info.height) == (image.width, image.height), topic
            assert list(info.d) == pytest.approx([0.1, -0.01, 0.0, 0.0, 0.0])
            x, y = (crop or [0, 0])[:2]
            assert info.k[2] == 40.0 - x and info.k[5] == 24.0 - y
            assert info.p[2] == 40.0 - x and info.p[6] == 24.0 - y and info.p[3] == -5.0
            assert info.k[0] == 100.0 and info.k[4] == 101.0
        assert (image.width, image.height) == ((60, 40) if crop else (80, 48))
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


class RecordingLogger:
    def __init__(self, logger):
        self._logger, self.lines = logger, []

    def warning(self, text, *a, **k):
        self.lines.append(text)
        return self._logger.warning(text, *a, **k)

    def __getattr__(self, name):
        return getattr(self._logger, name)


def test_qos_override_sets_the_subscription_reliability_and_incompatible_peers_warn(
        context, tiny_checkpoint):
    from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)
    node = make_node(context, tiny_checkpoint, **{
        "qos_overrides./visible/image.subscription.reliability": "reliable"})
    logger = RecordingLogger(node.get_logger())
    node.get_logger = lambda: logger
    peer, ex = live(context, node)
    try:
        def reliability(topic):
            infos = peer.get_subscriptions_info_by_topic(topic)
            return [i.qos_profile.reliability for i in infos if i.node_name == "segmif_node"]
        assert spin_until(ex, lambda: reliability("/visible/image") and
                          reliability("/thermal/image"), 10)
        assert reliability("/visible/image") == [ReliabilityPolicy.RELIABLE]
        assert reliability("/thermal/image") == [ReliabilityPolicy.BEST_EFFORT]  # input_qos
        assert node.get_parameter(
            "qos_overrides./visible/image.subscription.reliability").value == "reliable"
        # a best-effort camera cannot serve the reliable subscription: a warning names both
        peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
        warned = lambda: [l for l in logger.lines if "incompatible" in l and  # noqa: E731
                          "/visible/image" in l and "reliability" in l]
        assert spin_until(ex, warned, 10), logger.lines
        # a transient-local subscriber of a volatile output: the publisher side warns too
        peer.create_subscription(Image, "fused/image", lambda m: None, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        pub_warned = lambda: [l for l in logger.lines if "/fused/image" in l  # noqa: E731
                              and "durability" in l]
        assert spin_until(ex, pub_warned, 10), logger.lines
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_node_with_a_bad_checkpoint_and_backend_auto_says_no_export(tmp_path):
    import os
    import subprocess
    import sys
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(2).bytes(4096))
    env = dict(os.environ, SEGMIF_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "segmif_ros.node", "--ros-args", "-p", f"checkpoint:={bad}",
         "-p", "backend:=auto"], capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "exporting" not in out and "not a PyTorch checkpoint" in out, out
