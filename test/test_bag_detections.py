"""The bag analysis' detection part on synthetic recorded bags (no live graph): detections
recorded on ``detections`` matched by stamp to boxes derived from the ground-truth labels.

Two frames of 48 x 64, ground truth drawn by hand (boxes are [x1, y1, x2, y2), pixels):
    frame 1 s: car rows 5-24, cols 10-29 -> [10, 5, 30, 25]; person rows 20-39, cols 40-49
               -> [40, 20, 50, 40]
    frame 2 s: car rows 0-9, cols 0-19 -> [0, 0, 20, 10]; bike rows 0-19, cols 30-49
               -> [30, 0, 50, 20]
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from segmif_ros.tools.bag import get_typestore
from segmif_ros.tools.bag_analysis import analyse_output_bag, detections_from_message
from segmif_ros.tools.bag_eval import live_topics

H, W = 48, 64
GT_BOXES = {1: [("car", [10, 5, 30, 25]), ("person", [40, 20, 50, 40])],
            2: [("car", [0, 0, 20, 10]), ("bike", [30, 0, 50, 20])]}


def _labels(sec: int) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    if sec == 1:
        lab[5:25, 10:30] = 1      # car
        lab[20:40, 40:50] = 2     # person
    else:
        lab[0:10, 0:20] = 1       # car
        lab[0:20, 30:50] = 3      # bike
    return lab


def _write_bag(path, detections: dict, gt_secs=(1, 2)):
    """A recorded output bag: visible, thermal, ground truth, labels (= ground truth), fused and
    ``detections`` {sec: [(class, [x1, y1, x2, y2], score)]} (a sec missing: no message)."""
    from rosbags.rosbag2 import Writer

    store = get_typestore()
    T = store.types
    topics = live_topics("")

    def header(sec):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec,
                                                                                nanosec=0),
                                        frame_id="visible_camera")

    def image(sec, array, encoding):
        ch = 1 if array.ndim == 2 else 3
        return T["sensor_msgs/msg/Image"](header=header(sec), height=H, width=W,
                                          encoding=encoding, is_bigendian=0, step=W * ch,
                                          data=np.ascontiguousarray(array).reshape(-1))

    def det_array(sec, items):
        dets = []
        for k, (name, (x1, y1, x2, y2), score) in enumerate(items):
            center = T["segmif_ros/msg/Pose2D"](
                position=T["segmif_ros/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2), theta=0.0)
            hyp = T["segmif_ros/msg/ObjectHypothesisWithPose"](
                hypothesis=T["segmif_ros/msg/ObjectHypothesis"](class_id=name, score=score),
                pose=T["geometry_msgs/msg/PoseWithCovariance"](
                    pose=T["geometry_msgs/msg/Pose"](
                        position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                      w=1.0)),
                    covariance=np.zeros(36)))
            bbox = T["segmif_ros/msg/BoundingBox2D"](center=center, size_x=float(x2 - x1),
                                                     size_y=float(y2 - y1))
            dets.append(T["segmif_ros/msg/Detection2D"](header=header(sec), results=[hyp],
                                                        bbox=bbox, id=str(k)))
        return T["segmif_ros/msg/Detection2DArray"](header=header(sec), detections=dets)

    img = "sensor_msgs/msg/Image"
    det_type = "segmif_ros/msg/Detection2DArray"
    with Writer(path, version=9) as writer:
        conns = {k: writer.add_connection(topics[k], t, typestore=store) for k, t in (
            ("visible", img), ("thermal", img), ("ground_truth", img),
            ("segmentation/labels", img), ("fused/image", img), ("detections", det_type))}
        t = 10_000_000_000
        rng = np.random.default_rng(0)
        for sec in (1, 2):
            vis = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            ir = rng.integers(0, 256, (H, W), dtype=np.uint8)
            msgs = [("visible", image(sec, vis, "rgb8")), ("thermal", image(sec, ir, "mono8")),
                    ("segmentation/labels", image(sec, _labels(sec), "mono8")),
                    ("fused/image", image(sec, vis[..., ::-1], "bgr8"))]
            if sec in gt_secs:
                msgs.append(("ground_truth", image(sec, _labels(sec), "mono8")))
            if sec in detections:
                msgs.append(("detections", det_array(sec, detections[sec])))
            for k, msg in msgs:
                t += 1_000_000
                typ = det_type if k == "detections" else img
                writer.write(conns[k], t, store.serialize_cdr(msg, typ))


def _analyse(tmp_path, detections, **kw):
    bag = tmp_path / "bag"
    _write_bag(bag, detections, **kw)
    return analyse_output_bag(bag, tmp_path, live_topics(""), rules=(), n_mosaics=0,
                              detection_classes=["car", "person", "bike"])


def test_detections_equal_to_the_ground_truth_give_map_100(tmp_path):
    exact = {s: [(n, b, 0.9 - 0.1 * i) for i, (n, b) in enumerate(items)]
             for s, items in GT_BOXES.items()}
    r = _analyse(tmp_path, exact)
    assert r["map50"] == pytest.approx(100.0) and r["map50_95"] == pytest.approx(100.0)
    assert r["mIoU"] == pytest.approx(100.0)          # labels = ground truth
    det = r["detection"]
    assert det["gt_boxes"] == 4 and det["images"] == 2
    assert {k: v["positives"] for k, v in det["per_class"].items()} == \
        {"car": 2, "person": 1, "bike": 1}
    from segmif_core.report import write_report
    write_report(r, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Detection" in md and "mAP@0.5" in md and "**100.0**" in md
    assert json.loads((tmp_path / "out" / "report.json").read_text())["map50"] == 100.0


def test_shifted_detections_by_hand(tmp_path):
    # car: both exact -> AP 1 at every IoU.
    # person [40, 20, 50, 40] detected 4 px lower, [40, 24, 50, 44]: intersection 10 x 16 = 160,
    #   union 200 + 200 - 160 = 240, IoU 2/3: a true positive at IoU 0.50, 0.55, 0.60, 0.65
    #   (AP 1), missed at 0.70 ... 0.95 (AP 0) -> AP50 1, AP50:95 4/10.
    # bike [30, 0, 50, 20] detected 12 px right, [42, 0, 62, 20]: intersection 8 x 20 = 160,
    #   union 400 + 400 - 160 = 640, IoU 0.25 < 0.5: a false positive everywhere -> AP 0.
    # mAP@0.5 = (1 + 1 + 0) / 3, mAP@0.5:0.95 = (1 + 0.4 + 0) / 3
    shifted = {1: [("car", [10, 5, 30, 25], 0.9), ("person", [40, 24, 50, 44], 0.8)],
               2: [("car", [0, 0, 20, 10], 0.7), ("bike", [42, 0, 62, 20], 0.6)]}
    r = _analyse(tmp_path, shifted)
    per = r["detection"]["per_class"]
    assert per["car"]["ap50_95"] == pytest.approx(100.0)
    assert per["person"]["ap50"] == pytest.approx(100.0)
    assert per["person"]["ap50_95"] == pytest.approx(40.0)
    assert per["bike"]["ap50"] == pytest.approx(0.0) and per["bike"]["ap50_95"] == 0.0
    assert r["map50"] == pytest.approx(200.0 / 3)
    assert r["map50_95"] == pytest.approx(140.0 / 3)


def test_frames_without_detections_or_ground_truth(tmp_path):
    # frame 2 s has ground truth but no detections message: left out (listed); frame 1 exact
    r = _analyse(tmp_path, {1: [(n, b, 0.9) for n, b in GT_BOXES[1]]})
    assert r["detection"]["pairs_without_boxes"] == [str(2_000_000_000)]
    assert r["detection"]["images"] == 1 and r["detection"]["per_class"]["bike"]["ap50"] is None
    assert r["map50"] == pytest.approx(100.0)
    # no ground truth at all: no mAP, a warning
    r = _analyse(tmp_path / "no_gt", {1: [("car", [0, 0, 5, 5], 0.5)]}, gt_secs=())
    assert r["map50"] is None and any("no ground truth" in w for w in r["warnings"])
    # a SegMiF bag (no detections topic): no detection part
    bag = tmp_path / "segmif"
    _write_bag(bag, {})
    r = analyse_output_bag(bag, tmp_path, live_topics(""), rules=(), n_mosaics=0)
    assert r["detection"] is None and r["map50"] is None


def test_detections_from_message_corners():
    class B:  # duck-typed message: centre (30, 40), size 40 x 20
        detections = [type("D", (), {
            "results": [type("R", (), {"hypothesis": type("H", (), {
                "class_id": "person", "score": 0.5})})],
            "bbox": type("BB", (), {"center": type("C", (), {"position": type("P", (), {
                "x": 30.0, "y": 40.0})}), "size_x": 40.0, "size_y": 20.0})})]
    d = detections_from_message(B, ["car", "person"])
    np.testing.assert_allclose(d["boxes"], [[10.0, 30.0, 50.0, 50.0]])
    assert d["classes"].tolist() == [1] and d["scores"].tolist() == [0.5]
    assert len(detections_from_message(B, ["car"])["boxes"]) == 0   # unknown class: left out
