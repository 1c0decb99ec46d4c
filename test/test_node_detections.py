"""segmif_node with a model that has a detector (a tiny random TSJNet) in a live rclpy graph:
``detections`` with the visible header and boxes in pixels of the output image, the boxes drawn
on segmentation/color, the detector's class names in the LabelInfo; a SegMiF node has no
``detections`` topic."""
import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from segmif_ros.node.encodings import image_to_numpy  # noqa: E402

from test_node import make_node, spin_until, stamped  # noqa: E402

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture
def tsj_checkpoint(tiny_tsjnet_checkpoint):
    return tiny_tsjnet_checkpoint


def _network_boxes(checkpoint, vis, ir):
    """The model's own boxes at its 64x64 input (x1, y1, x2, y2 in network pixels)."""
    from segmif_core.checkpoint import load_checkpoint
    from segmif_core.inference.backends import resize_host

    model = load_checkpoint(checkpoint, "cpu")[0].eval()
    v = torch.from_numpy(resize_host(vis, (64, 64))).permute(2, 0, 1)[None].float() / 255
    t = torch.from_numpy(resize_host(ir.astype(np.float32) / 255, (64, 64)))[None, None]
    with torch.no_grad():
        d = model.predict(v, t)["detections"][0]
    return d["boxes"].numpy().astype(np.float64), d["scores"].numpy(), d["classes"].numpy()


def test_detections_in_the_live_graph(context, tsj_checkpoint):
    from segmif_ros.msg import Detection2DArray, LabelInfo
    from segmif_ros.node.detections import draw_detections
    from segmif_ros.node.publishers import overlay

    # every box the model keeps (detection_min_score 0; test_min_score_filters_at_run_time)
    node = make_node(context, tsj_checkpoint, backend="torch", detection_min_score=0.0)
    peer = rclpy.create_node("peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    got = {}
    for topic in ("fused/image", "segmentation/labels", "segmentation/color"):
        peer.create_subscription(Image, topic, lambda m, t=topic: got.setdefault(t, m), 10)
    peer.create_subscription(Detection2DArray, "detections",
                             lambda m: got.setdefault("detections", m), 10)
    peer.create_subscription(LabelInfo, "segmentation/label_info",
                             lambda m: got.setdefault("label_info", m), LATCHED)
    pub_vis = peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    try:
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() and
                          pub_ir.get_subscription_count(), 10)
        rng = np.random.default_rng(1)
        import cv2
        vis = cv2.resize(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), (80, 48))
        ir = cv2.resize(rng.integers(0, 256, (6, 10), dtype=np.uint8), (80, 48))
        vmsg = stamped(vis, "rgb8", 42, 250_000_000, "visible_camera")
        imsg = stamped(ir, "mono8", 42, 251_000_000, "thermal_camera")

        def resend_until_done():
            pub_vis.publish(vmsg)
            pub_ir.publish(imsg)
            return spin_until(ex, lambda: len(got) == 5, 3.0)

        assert any(resend_until_done() for _ in range(8)), f"received only {sorted(got)}"
        det = got["detections"]
        assert (det.header.stamp.sec, det.header.stamp.nanosec) == (42, 250_000_000)
        assert det.header.frame_id == "visible_camera"
        assert got["label_info"].detection_classes == ["car", "person", "bike"]
        assert len(det.detections) > 0
        # the network's boxes (64 x 64 input) scaled to the 80 x 48 output: x * 80/64, y * 48/64
        boxes, scores, classes = _network_boxes(tsj_checkpoint, vis, ir)
        scale = np.array([80 / 64, 48 / 64, 80 / 64, 48 / 64])
        expected = boxes * scale
        assert len(det.detections) == len(expected)
        for k, d in enumerate(det.detections):
            assert (d.header.stamp.sec, d.header.frame_id) == (42, "visible_camera")
            x1, y1, x2, y2 = expected[k]
            assert d.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=1e-3)
            assert d.bbox.center.position.y == pytest.approx((y1 + y2) / 2, abs=1e-3)
            assert d.bbox.size_x == pytest.approx(x2 - x1, abs=1e-3)
            assert d.bbox.size_y == pytest.approx(y2 - y1, abs=1e-3)
            hyp = d.results[0].hypothesis
            assert hyp.class_id == ["car", "person", "bike"][int(classes[k])]
            assert hyp.score == pytest.approx(float(scores[k]), abs=1e-5)
            assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 48
        # segmentation/color = the class overlay with these boxes drawn on it
        fused = image_to_numpy(got["fused/image"])
        labels = image_to_numpy(got["segmentation/labels"])
        info_colors = {c.class_name: i for i, c in enumerate(got["label_info"].class_map)}
        rgb = np.array([[round(c.r * 255), round(c.g * 255), round(c.b * 255)]
                        for c in got["label_info"].class_colors], np.uint8)
        plain = overlay(fused, np.ascontiguousarray(rgb[labels][:, :, ::-1]), 0.5)
        det_dict = {"boxes": expected, "scores": scores, "classes": classes,
                    "names": ["car", "person", "bike"]}
        bgr = [tuple(int(v) for v in rgb[info_colors[n]][::-1]) for n in det_dict["names"]]
        drawn = draw_detections(plain.copy(), det_dict, bgr)
        color = image_to_numpy(got["segmentation/color"])
        assert not np.array_equal(color, plain)           # the boxes are there
        assert np.abs(color.astype(int) - drawn.astype(int)).max() <= 1
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_segmif_node_has_no_detections_topic(context, tiny_checkpoint):
    from segmif_ros.msg import LabelInfo

    node = make_node(context, tiny_checkpoint)
    peer = rclpy.create_node("peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    got = []
    peer.create_subscription(LabelInfo, "segmentation/label_info", got.append, LATCHED)
    try:
        assert spin_until(ex, lambda: got, 10)
        assert list(got[0].detection_classes) == []
        assert node.outputs.pub_detections is None
        assert spin_until(ex, lambda: peer.count_publishers("/segmentation/labels"), 10)
        assert peer.count_publishers("/detections") == 0
        assert "/detections" not in dict(peer.get_topic_names_and_types())
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_onnxruntime_backend_runs_the_detector(context, tsj_checkpoint):
    """TSJNet exports with its detector (issue 23 item 5): backend onnxruntime configures and
    its predictor returns boxes inside the image."""
    node = make_node(context, tsj_checkpoint, backend="onnxruntime")
    try:
        pred = node.predictor
        assert pred.backend.name == "onnxruntime"
        assert pred.detection_classes == ("car", "person", "bike")
        rng = np.random.default_rng(0)
        d = pred.predict(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8),
                         rng.integers(0, 256, (48, 80), dtype=np.uint8)).detections
        assert len(d["boxes"]) > 0 and (d["boxes"][:, [0, 2]] <= 80).all() \
            and (d["boxes"][:, [1, 3]] <= 48).all() and (d["boxes"] >= 0).all()
    finally:
        node.destroy_node()


def test_min_score_filters_the_published_boxes_at_run_time(context, tsj_checkpoint):
    """detection_min_score (default 0.5, declared with its range) keeps the boxes scoring at
    least it, on detections and on segmentation/color; it changes at run time."""
    from rclpy.parameter import Parameter
    from segmif_ros.msg import Detection2DArray
    from test_node import process_pair

    node = make_node(context, tsj_checkpoint, backend="torch")
    peer = rclpy.create_node("min_score_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    got = []
    peer.create_subscription(Detection2DArray, "detections", got.append, 10)
    rng = np.random.default_rng(1)
    import cv2
    vis = cv2.resize(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), (80, 48))
    ir = cv2.resize(rng.integers(0, 256, (6, 10), dtype=np.uint8), (80, 48))
    _, scores, _ = _network_boxes(tsj_checkpoint, vis, ir)
    try:
        assert node.get_parameter("detection_min_score").value == 0.5
        (desc,) = node.describe_parameters(["detection_min_score"])
        assert desc.floating_point_range[0].to_value == 1.0 and not desc.read_only
        assert not node.set_parameters([Parameter("detection_min_score", value=1.5)])[0].successful
        for threshold in (0.5, float(np.median(scores)), 0.0, 1.0):
            assert node.set_parameters([Parameter("detection_min_score",
                                                  value=threshold)])[0].successful
            # the box selection starts at the published threshold, never below the model's
            assert node.predictor.detection_score_threshold == pytest.approx(
                max(0.05, threshold))
            n = len(got)
            assert process_pair(node, stamped(vis, "rgb8", 1, 0, "v"),
                                stamped(ir, "mono8", 1, 0, "t"))
            assert spin_until(ex, lambda: len(got) > n, 5.0)
            published = [d.results[0].hypothesis.score for d in got[-1].detections]
            expected = sorted(float(s) for s in scores if s >= threshold)
            assert sorted(published) == pytest.approx(expected, abs=1e-5), threshold
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_node_publishes_vision_msgs_when_importable(context, tsj_checkpoint, monkeypatch,
                                                    capfd):
    """A stand-in vision_msgs whose classes are publishable (the mirror's, which have
    vision_msgs' field layout): the node picks it, says so at start-up, and its LabelInfo is
    built with vision_msgs' fields only."""
    import sys
    import types as pytypes
    import segmif_ros.msg as mirror
    from test_node import process_pair

    module = pytypes.ModuleType("vision_msgs.msg")
    for name in ("Detection2DArray", "Detection2D", "ObjectHypothesisWithPose",
                 "ObjectHypothesis", "BoundingBox2D", "LabelInfo", "VisionClass"):
        setattr(module, name, getattr(mirror, name))
    package = pytypes.ModuleType("vision_msgs")
    package.msg = module
    monkeypatch.setitem(sys.modules, "vision_msgs", package)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", module)
    node = make_node(context, tsj_checkpoint, backend="torch", detection_min_score=0.0)
    peer = rclpy.create_node("vision_msgs_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    got = {"det": [], "label": []}
    peer.create_subscription(module.Detection2DArray, "detections", got["det"].append, 10)
    peer.create_subscription(module.LabelInfo, "segmentation/label_info", got["label"].append,
                             LATCHED)
    try:
        assert node.outputs.types.package == "vision_msgs"
        assert "messages: vision_msgs (importable)" in capfd.readouterr().err
        vis = np.zeros((48, 80, 3), np.uint8)
        ir = np.full((48, 80), 128, np.uint8)
        assert process_pair(node, stamped(vis, "rgb8", 3, 0, "v"),
                            stamped(ir, "mono8", 3, 0, "t"))
        assert spin_until(ex, lambda: got["det"] and got["label"], 10)
        label = got["label"][0]
        assert [c.class_name for c in label.class_map][:3] == ["unlabelled", "car", "person"]
        assert list(label.detection_classes) == [] and list(label.class_colors) == []
        assert got["det"][0].header.stamp.sec == 3
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()
