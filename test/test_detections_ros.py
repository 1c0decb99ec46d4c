"""segmif_ros.node.detections: the Detection2DArray mirror and the box overlay, without a graph."""
import numpy as np
import pytest
from std_msgs.msg import Header

from segmif_ros.node.detections import detections_message, draw_detections

DETS = {"boxes": np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 8.0, 4.0]], np.float32),
        "scores": np.array([0.9, 0.4], np.float32), "classes": np.array([1, 0]),
        "names": ["car", "person", "bike"]}


def test_message_mirrors_vision_msgs_fields():
    header = Header(frame_id="visible_camera")
    header.stamp.sec, header.stamp.nanosec = 7, 500
    msg = detections_message(header, DETS)
    assert msg.header.frame_id == "visible_camera" and len(msg.detections) == 2
    d0 = msg.detections[0]
    assert (d0.header.stamp.sec, d0.header.stamp.nanosec) == (7, 500)
    # centre and full size of (10, 20)-(50, 60)
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y) == (30.0, 40.0)
    assert (d0.bbox.size_x, d0.bbox.size_y) == (40.0, 40.0) and d0.bbox.center.theta == 0.0
    hyp = d0.results[0].hypothesis
    assert hyp.class_id == "person" and hyp.score == pytest.approx(0.9)
    assert msg.detections[1].results[0].hypothesis.class_id == "car"
    # the same field names as vision_msgs/Detection2DArray
    assert set(type(msg).get_fields_and_field_types()) == {"header", "detections"}
    assert set(type(d0).get_fields_and_field_types()) == {"header", "results", "bbox", "id"}
    assert set(type(d0.results[0]).get_fields_and_field_types()) == {"hypothesis", "pose"}


def test_empty_and_inconsistent_detections():
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int),
             "names": ["car"]}
    assert len(detections_message(Header(), empty).detections) == 0
    with pytest.raises(ValueError, match="2 boxes, 1 scores"):
        detections_message(Header(), dict(DETS, scores=np.array([0.5])))
    with pytest.raises(ValueError, match="out of range"):
        detections_message(Header(), dict(DETS, classes=np.array([3, 0])))


def test_boxes_are_drawn_in_their_class_colour():
    img = np.zeros((80, 80, 3), np.uint8)
    colors = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)
    draw_detections(img, DETS, colors)
    # the person box (class 1, green) edges at x = 10 and x = 49, y in 20..59
    assert (img[40, 10] == [0, 255, 0]).all() and (img[40, 49] == [0, 255, 0]).all()
    assert (img[40, 30] == 0).all()            # inside the box: untouched
    assert (img[2, 0] == [0, 0, 255]).all()    # the car box (class 0, red) at the corner


# ------------------------------------------------------------------ vision_msgs or the mirror
class _Strict:
    """A message stand-in that accepts exactly its fields (vision_msgs' layout), defaults
    nested messages, and refuses any other keyword."""
    FIELDS: dict = {}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        for name, default in self.FIELDS.items():
            setattr(self, name, kwargs[name] if name in kwargs else default())


def vision_msgs_standin():
    """A ``vision_msgs.msg`` module with vision_msgs 4.x's field layout (Humble and later)."""
    import types as pytypes

    def msg(name, **fields):
        return type(name, (_Strict,), {"FIELDS": fields})

    point = msg("Point2D", x=float, y=float)
    pose = msg("Pose2D", position=point, theta=float)
    module = pytypes.ModuleType("vision_msgs.msg")
    module.BoundingBox2D = msg("BoundingBox2D", center=pose, size_x=float, size_y=float)
    module.ObjectHypothesis = msg("ObjectHypothesis", class_id=str, score=float)
    module.ObjectHypothesisWithPose = msg("ObjectHypothesisWithPose",
                                          hypothesis=module.ObjectHypothesis, pose=object)
    module.Detection2D = msg("Detection2D", header=Header, results=list,
                             bbox=module.BoundingBox2D, id=str)
    module.Detection2DArray = msg("Detection2DArray", header=Header, detections=list)
    module.VisionClass = msg("VisionClass", class_id=int, class_name=str)
    module.LabelInfo = msg("LabelInfo", header=Header, class_map=list, threshold=float)
    return module


@pytest.fixture
def with_vision_msgs(monkeypatch):
    import sys
    import types as pytypes
    module = vision_msgs_standin()
    package = pytypes.ModuleType("vision_msgs")
    package.msg = module
    monkeypatch.setitem(sys.modules, "vision_msgs", package)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", module)
    return module


def test_vision_msgs_are_used_when_importable(with_vision_msgs):
    from segmif_ros.node.detections import label_info_message, message_types
    types, why = message_types("auto")
    assert types.package == "vision_msgs" and "vision_msgs" in why
    assert types.Detection2DArray is with_vision_msgs.Detection2DArray
    header = Header(frame_id="visible_camera")
    msg = detections_message(header, DETS, types)
    assert isinstance(msg, with_vision_msgs.Detection2DArray) and len(msg.detections) == 2
    d0 = msg.detections[0]
    assert (d0.bbox.center.position.x, d0.bbox.size_y) == (30.0, 40.0)
    assert d0.results[0].hypothesis.class_id == "person" and d0.header is header
    # vision_msgs/LabelInfo: header, class_map, threshold only (a colour field would raise)
    info = label_info_message(types, header, ["unlabelled", "car"], ["c0", "c1"], ["car"], 0.25)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "unlabelled"),
                                                                     (1, "car")]
    assert info.threshold == 0.25
    # the mirror stays available on request
    assert message_types("segmif_ros")[0].package == "segmif_ros"


def test_mirror_types_without_vision_msgs(monkeypatch):
    import sys
    from segmif_ros.node.detections import label_info_message, message_types
    monkeypatch.setitem(sys.modules, "vision_msgs", None)  # import fails, as on this machine
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)
    types, why = message_types("auto")
    assert types.package == "segmif_ros" and "not importable" in why
    info = label_info_message(types, None, ["a", "b"], [], ["car"])
    assert list(info.detection_classes) == ["car"] and len(info.class_map) == 2
    with pytest.raises(ValueError, match="vision_msgs cannot be imported"):
        message_types("vision_msgs")
    with pytest.raises(ValueError, match="not one of"):
        message_types("yolo")


def test_filter_detections_by_score():
    from segmif_ros.node.detections import filter_detections
    kept = filter_detections(DETS, 0.5)
    assert kept["scores"].tolist() == pytest.approx([0.9]) and kept["classes"].tolist() == [1]
    assert kept["boxes"].tolist() == [[10.0, 20.0, 50.0, 60.0]] and kept["names"] is DETS["names"]
    assert filter_detections(DETS, 0.0) is DETS
    assert len(filter_detections(DETS, 0.95)["boxes"]) == 0
