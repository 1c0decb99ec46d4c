"""The outputs of segmif_node: its publishers and the messages it builds for them.

Every output carries the visible image's header (acquisition stamp and frame_id, never now()):

    fused/image              sensor_msgs/Image bgr8, the fused image
    segmentation/labels      sensor_msgs/Image mono8, class id per pixel
    segmentation/color       sensor_msgs/Image bgr8, class colours over the fused image, and for
                             a model with a detector its boxes (class colour, 'name score')
    segmentation/info        segmif_ros/SegmentationInfo, per frame: classes, timings, counters
    segmentation/label_info  LabelInfo (vision_msgs', or the segmif_ros mirror with the class
                             colours and ``detection_classes``, the detector's class names),
                             the class map, published once at start, reliable and transient
                             local (late subscribers get it)
    detections               Detection2DArray (vision_msgs' or the segmif_ros mirror,
                             :mod:`.detections`), every processed frame, the boxes scoring at
                             least ``detection_min_score``, in pixels of the published images;
                             only for a model with a detector (TSJNet): for a model without one
                             (SegMiF) the topic is not created at all
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA

from .detections import (detections_message, draw_detections, filter_detections,
                         label_info_message, message_types)
from .encodings import numpy_to_image
from .qos import publisher_options
from .sync import stamp_to_ns


def overlay(fused: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * colours + (1 - alpha) * fused, HxWx3 uint8, rounded to nearest (OpenCV's
    addWeighted; alpha = 1: the plain colour mask). Both images in the same channel order."""
    return cv2.addWeighted(colors, float(alpha), fused, 1.0 - float(alpha), 0.0)


def class_lut(colors_rgb) -> np.ndarray:
    """The (256, 1, 3) uint8 BGR lookup table of class colours for ``cv2.LUT`` (ids past the
    class set are black)."""
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:len(colors_rgb), 0] = np.asarray(colors_rgb, np.uint8)[:, ::-1]
    return lut


class Outputs:
    """The publishers of ``node`` for the class set ``classes`` (a segmif_core ClassSet), with
    QoS ``qos`` (LabelInfo: reliable, transient local). Publishes the LabelInfo at once.

    ``detection_classes``: the detector's class names (``SegMiFPredictor.detection_classes``);
    non-empty creates the ``detections`` publisher. A box is drawn in the colour of the
    segmentation class of the same name (case-insensitive), white when there is none.
    ``types``: the Detection2DArray / LabelInfo types (:func:`.detections.message_types`;
    default the segmif_ros mirror); ``min_score``: the lowest score of a published box (the
    node updates :attr:`min_score` when ``detection_min_score`` changes)."""

    def __init__(self, node, classes, qos: QoSProfile, detection_classes=(), warn=None,
                 types=None, min_score: float = 0.0):
        from segmif_ros.msg import SegmentationInfo

        self._node = node
        self.types = types or message_types("segmif_ros")[0]
        self.min_score = float(min_score)
        # publishers with QoS overrides and incompatible-QoS warnings (``warn(key, text)``)
        self._warn = warn
        self.camera_info = None  # a .camera_info.CameraInfoRelay, published with the images
        self.class_names = list(classes.names)
        self.detection_classes = [str(n) for n in detection_classes]
        by_name = {n.lower(): tuple(int(v) for v in c[::-1])  # RGB -> BGR
                   for n, c in zip(self.class_names, classes.colors)}
        self._det_colors_bgr = [by_name.get(n.lower(), (255, 255, 255))
                                for n in self.detection_classes]
        self.pub_detections = (self.create_publisher(self.types.Detection2DArray, "detections",
                                                     qos) if self.detection_classes else None)
        self._lut_bgr = class_lut(classes.colors)
        self._colors_msg = [ColorRGBA(r=c[0] / 255.0, g=c[1] / 255.0, b=c[2] / 255.0, a=1.0)
                            for c in classes.colors]
        self._info_cls = SegmentationInfo
        self.pub_fused = self.create_publisher(Image, "fused/image", qos)
        self.pub_labels = self.create_publisher(Image, "segmentation/labels", qos)
        self.pub_color = self.create_publisher(Image, "segmentation/color", qos)
        self.pub_info = self.create_publisher(SegmentationInfo, "segmentation/info", qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_label_info = self.create_publisher(self.types.LabelInfo,
                                                    "segmentation/label_info", latched)
        label_info = label_info_message(self.types, None, self.class_names, self._colors_msg,
                                        self.detection_classes, threshold=0.0)
        label_info.header.stamp = node.get_clock().now().to_msg()
        self.pub_label_info.publish(label_info)

    def create_publisher(self, msg_type, topic: str, qos: QoSProfile):
        """``node.create_publisher`` with QoS overrides and, given ``warn``, the
        incompatible-QoS warning (:mod:`.qos`)."""
        if self._warn is None:
            return self._node.create_publisher(msg_type, topic, qos)
        return self._node.create_publisher(msg_type, topic,
                                           **publisher_options(self._node, topic, qos,
                                                               self._warn))

    def destroy(self) -> None:
        """Destroy the publishers (lifecycle cleanup)."""
        for pub in (self.pub_fused, self.pub_labels, self.pub_color, self.pub_info,
                    self.pub_label_info, self.pub_detections):
            if pub is not None:
                self._node.destroy_publisher(pub)
        if self.camera_info is not None:
            self.camera_info.destroy()

    def publish_images(self, header, pred, alpha: float) -> None:
        """fused/image, segmentation/labels and segmentation/color of one prediction
        (segmif_core Prediction: RGB ``fused``, ``labels``), colours weighted by ``alpha``;
        with the ``detections`` publisher, the prediction's boxes scoring at least
        :attr:`min_score` drawn on the colour image and published on ``detections`` (an empty
        array when there are none).
        OpenCV does the per-pixel work (channel swap, colour lookup, blend: about 1 ms at
        640x480, against 15 ms for the numpy indexing and float blend it replaced; the boxes
        are a few cv2.rectangle/putText calls)."""
        fused_bgr = cv2.cvtColor(pred.fused, cv2.COLOR_RGB2BGR)
        colors = cv2.LUT(cv2.cvtColor(pred.labels, cv2.COLOR_GRAY2BGR), self._lut_bgr)
        color = overlay(fused_bgr, colors, alpha)
        dets = None
        if self.pub_detections is not None:
            dets = getattr(pred, "detections", None) or {
                "boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                "classes": np.zeros(0, np.int64), "names": self.detection_classes}
            dets = filter_detections(dets, self.min_score)
            det_msg = detections_message(header, dets, self.types)  # ValueError before publish
            draw_detections(color, dets, self._det_colors_bgr)
        self.pub_fused.publish(numpy_to_image(fused_bgr, "bgr8", header))
        self.pub_labels.publish(numpy_to_image(pred.labels, "mono8", header))
        self.pub_color.publish(numpy_to_image(color, "bgr8", header))
        if dets is not None:
            self.pub_detections.publish(det_msg)
        if self.camera_info is not None:
            self.camera_info.publish(header)

    def publish_info(self, header, thermal_stamp, pred, t0: float, counters: dict,
                     sync_stats: dict, stages: dict | None = None,
                     modality: str = "pair", registration: dict | None = None) -> None:
        """segmentation/info of one prediction: class fractions, confidence, timings
        (processing from ``t0``, a ``time.perf_counter()`` value; latency from the header
        stamp to the node clock's now), the node's ``counters`` (:data:`.health.COUNTERS`),
        the synchroniser's ``sync_stats`` (``messages_unmatched``, ``resets``), the ROS-side
        ``stages`` (ms: convert, registration, preprocess, postprocess, publish,
        callback_delay), the ``modality`` ("pair", "visible_only", "thermal_only") and the
        registration health (a ``RegistrationMonitor.status()``; None: checks off, NaN)."""
        stages = stages or {}
        nan = float("nan")
        reg = registration or {}
        latest, ref = reg.get("latest"), reg.get("reference")
        counts = np.bincount(pred.labels.ravel(), minlength=len(self.class_names))
        info = self._info_cls(
            header=header, thermal_stamp=thermal_stamp, class_names=self.class_names,
            class_colors=self._colors_msg,
            class_fractions=(counts[:len(self.class_names)] / max(1, pred.labels.size)).tolist(),
            mean_confidence=float(pred.confidence.mean()),
            inference_time_ms=float(pred.inference_ms),
            processing_time_ms=float((time.perf_counter() - t0) * 1e3),
            latency_ms=float((self._node.get_clock().now().nanoseconds
                              - stamp_to_ns(header.stamp)) / 1e6),
            pairs_processed=counters["pairs_processed"],
            pairs_dropped=counters["pairs_dropped"],
            messages_unmatched=int(sync_stats.get("messages_unmatched", 0)),
            messages_rejected=counters["messages_rejected"],
            pairs_matched=counters["pairs_matched"],
            received_visible=counters["received_visible"],
            received_thermal=counters["received_thermal"],
            processing_errors=counters["processing_errors"],
            sync_resets=int(sync_stats.get("resets", 0)),
            frames_fallback=counters["frames_fallback"],
            modality=modality,
            convert_time_ms=float(stages.get("convert", 0.0)),
            registration_time_ms=float(stages.get("registration", 0.0)),
            preprocess_time_ms=float(stages.get("preprocess", 0.0)),
            postprocess_time_ms=float(stages.get("postprocess", 0.0)),
            publish_time_ms=float(stages.get("publish", 0.0)),
            callback_delay_ms=float(stages.get("callback_delay", 0.0)),
            registration_score=latest.score if latest is not None else nan,
            registration_score_startup=ref.score if ref is not None else nan,
            registration_shift_x_px=latest.shift_x if latest is not None else nan,
            registration_shift_y_px=latest.shift_y if latest is not None else nan,
            registration_drift_px=float(reg.get("drift_px", nan)),
            registration_level=1 if reg.get("level") == "warn" else 0)
        self.pub_info.publish(info)
