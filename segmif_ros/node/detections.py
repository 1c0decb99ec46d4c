"""Detections of a model with a detector (TSJNet) as ROS messages and as boxes drawn on the
colour overlay.

Message types (:func:`message_types`, parameter ``detection_messages``, chosen at configure and
logged): with ``auto`` (default) the standard ``vision_msgs`` types when ``vision_msgs`` can be
imported (a robot with ROS and ``ros-$ROS_DISTRO-vision-msgs`` installed), otherwise the
project's mirror types ``segmif_ros/Detection2DArray`` ... (vision_msgs is not installable from
the package registries this project builds from; the mirror has the same field names and types,
so a converter is a field-by-field copy). ``vision_msgs`` requires them (configure fails
without), ``segmif_ros`` always uses the mirror (what ``segmif bag eval`` records).

``detections_message`` builds the Detection2DArray: one Detection2D per box with the frame's
header, one ObjectHypothesisWithPose (class name, score; pose left at zero) and the box as
centre and full size in pixels of the published images. ``label_info_message`` builds the
LabelInfo of the class map: vision_msgs/LabelInfo has ``header``, ``class_map`` and
``threshold`` only, so with it the class colours (also in segmentation/info) and the detector's
class names (also each hypothesis' ``class_id``) are not in it; the mirror carries both.
``filter_detections`` keeps the boxes at or above the node's ``detection_min_score``;
``draw_detections`` draws boxes with their class name and score on a BGR image
(segmentation/color).
"""
from __future__ import annotations

import importlib
from typing import Any, NamedTuple, Tuple

import cv2
import numpy as np

#: values of the ``detection_messages`` parameter
CHOICES = ("auto", "vision_msgs", "segmif_ros")


class MessageTypes(NamedTuple):
    """The message classes the node publishes detections and the class map with;
    ``package``: "vision_msgs" or "segmif_ros" (the mirror)."""
    package: str
    Detection2DArray: Any
    Detection2D: Any
    ObjectHypothesisWithPose: Any
    ObjectHypothesis: Any
    BoundingBox2D: Any
    LabelInfo: Any
    VisionClass: Any


def _types(package: str, module) -> MessageTypes:
    return MessageTypes(package, *(getattr(module, name) for name in MessageTypes._fields[1:]))


def message_types(choice: str = "auto") -> Tuple[MessageTypes, str]:
    """(the message types for ``choice``, one line saying which and why).

    Raises ValueError: an unknown choice, or "vision_msgs" where it cannot be imported."""
    if choice not in CHOICES:
        raise ValueError(f"detection_messages: {choice!r} is not one of {', '.join(CHOICES)}")
    if choice != "segmif_ros":
        try:
            module = importlib.import_module("vision_msgs.msg")
            return _types("vision_msgs", module), "vision_msgs (importable)"
        except ImportError as err:
            if choice == "vision_msgs":
                raise ValueError(f"detection_messages vision_msgs: vision_msgs cannot be "
                                 f"imported ({err}); install ros-$ROS_DISTRO-vision-msgs or "
                                 "choose auto or segmif_ros") from None
            why = "segmif_ros mirror types (vision_msgs not importable)"
    else:
        why = "segmif_ros mirror types (detection_messages segmif_ros)"
    return _types("segmif_ros", importlib.import_module("segmif_ros.msg")), why


def filter_detections(detections: dict, min_score: float) -> dict:
    """The boxes of ``detections`` (see :func:`detections_message`) whose score is at least
    ``min_score``, in their order."""
    scores = np.asarray(detections["scores"]).reshape(-1)
    keep = scores >= float(min_score)
    if keep.all():
        return detections
    return dict(detections, boxes=np.asarray(detections["boxes"]).reshape(-1, 4)[keep],
                scores=scores[keep], classes=np.asarray(detections["classes"]).reshape(-1)[keep])


def detections_message(header, detections: dict, types: MessageTypes | None = None):
    """The Detection2DArray of one frame.

    Args:
        header: std_msgs/Header copied into the array and every detection (the visible image's).
        detections: ``Prediction.detections``: 'boxes' (D, 4) float (x1, y1, x2, y2) pixels,
            'scores' (D,) in [0, 1], 'classes' (D,) int indices into 'names' (list of str).
        types: :func:`message_types` (default: the segmif_ros mirror).
    Returns the message (an empty array for D = 0).
    Raises ValueError when the arrays disagree in length or a class index is out of range.
    """
    t = types or message_types("segmif_ros")[0]
    boxes = np.asarray(detections["boxes"], np.float64).reshape(-1, 4)
    scores = np.asarray(detections["scores"], np.float64).reshape(-1)
    classes = np.asarray(detections["classes"], np.int64).reshape(-1)
    names = list(detections["names"])
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"detections: {len(boxes)} boxes, {len(scores)} scores, "
                         f"{len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= len(names)):
        raise ValueError(f"detection class index out of range 0..{len(names) - 1}")
    out = t.Detection2DArray(header=header)
    for k, ((x1, y1, x2, y2), score, cls) in enumerate(zip(boxes, scores, classes)):
        bbox = t.BoundingBox2D(size_x=float(x2 - x1), size_y=float(y2 - y1))
        bbox.center.position.x = float((x1 + x2) / 2.0)
        bbox.center.position.y = float((y1 + y2) / 2.0)
        hyp = t.ObjectHypothesisWithPose(hypothesis=t.ObjectHypothesis(
            class_id=names[int(cls)], score=float(score)))
        out.detections.append(t.Detection2D(header=header, results=[hyp], bbox=bbox,
                                            id=str(k)))
    return out


def label_info_message(types: MessageTypes, header, class_names, class_colors=(),
                       detection_classes=(), threshold: float = 0.0):
    """The LabelInfo of the class map ``class_names`` (class id = index); with the mirror also
    ``class_colors`` (std_msgs/ColorRGBA per class) and ``detection_classes`` (see the module
    docstring for vision_msgs); ``header`` None: a default header."""
    kw = {"class_map": [types.VisionClass(class_id=i, class_name=str(n))
                        for i, n in enumerate(class_names)], "threshold": float(threshold)}
    if header is not None:
        kw["header"] = header
    if types.package == "vision_msgs":
        return types.LabelInfo(**kw)
    return types.LabelInfo(class_colors=list(class_colors),
                           detection_classes=[str(n) for n in detection_classes], **kw)


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
