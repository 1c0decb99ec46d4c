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
