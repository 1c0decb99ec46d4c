"""Detections of a model with a detector (TSJNet) as ROS messages and as boxes drawn on the
colour overlay.

``detections_message`` builds ``segmif_ros/Detection2DArray``, the project's mirror of
vision_msgs/Detection2DArray (vision_msgs is not installable here; the field names and types are
the same, so a converter is a field-by-field copy): one Detection2D per box with the frame's
header, one ObjectHypothesisWithPose (class name, score; pose left at zero) and the box as centre
and full size in pixels of the published images. ``draw_detections`` draws the boxes with their
class name and score on a BGR image (segmentation/color).
"""
from __future__ import annotations

import cv2
import numpy as np


def detections_message(header, detections: dict):
    """``segmif_ros/Detection2DArray`` of one frame.

    Args:
        header: std_msgs/Header copied into the array and every detection (the visible image's).
        detections: ``Prediction.detections``: 'boxes' (D, 4) float (x1, y1, x2, y2) pixels,
            'scores' (D,) in [0, 1], 'classes' (D,) int indices into 'names' (list of str).
    Returns the message (an empty array for D = 0).
    Raises ValueError when the arrays disagree in length or a class index is out of range.
    """
    from segmif_ros.msg import (BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesis,
                                ObjectHypothesisWithPose)

    boxes = np.asarray(detections["boxes"], np.float64).reshape(-1, 4)
    scores = np.asarray(detections["scores"], np.float64).reshape(-1)
    classes = np.asarray(detections["classes"], np.int64).reshape(-1)
    names = list(detections["names"])
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"detections: {len(boxes)} boxes, {len(scores)} scores, "
                         f"{len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= len(names)):
        raise ValueError(f"detection class index out of range 0..{len(names) - 1}")
    out = Detection2DArray(header=header)
    for k, ((x1, y1, x2, y2), score, cls) in enumerate(zip(boxes, scores, classes)):
        bbox = BoundingBox2D(size_x=float(x2 - x1), size_y=float(y2 - y1))
        bbox.center.position.x = float((x1 + x2) / 2.0)
        bbox.center.position.y = float((y1 + y2) / 2.0)
        hyp = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=names[int(cls)],
                                                                   score=float(score)))
        out.detections.append(Detection2D(header=header, results=[hyp], bbox=bbox, id=str(k)))
    return out


def draw_detections(image_bgr: np.ndarray, detections: dict, colors_bgr=None) -> np.ndarray:
    """Draw ``detections`` (see :func:`detections_message`) on ``image_bgr`` (H, W, 3) uint8 in
    place and return it: a 2-pixel rectangle per box in the colour of its class
    (``colors_bgr[class]``, default white) and 'name 0.87' above it."""
    names = list(detections["names"])
    for (x1, y1, x2, y2), score, cls in zip(np.asarray(detections["boxes"]).reshape(-1, 4),
                                            np.asarray(detections["scores"]).reshape(-1),
                                            np.asarray(detections["classes"]).reshape(-1)):
        color = tuple(int(c) for c in colors_bgr[int(cls)]) if colors_bgr is not None \
            else (255, 255, 255)
        p1 = (int(round(x1)), int(round(y1)))
        p2 = (int(round(x2)) - 1, int(round(y2)) - 1)
        cv2.rectangle(image_bgr, p1, p2, color, 2)
        cv2.putText(image_bgr, f"{names[int(cls)]} {float(score):.2f}",
                    (p1[0], max(p1[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1,
                    cv2.LINE_AA)
    return image_bgr
