"""camera_info pass-through of segmif_node.

The node subscribes to the optional CameraInfo of the visible camera (sensor_msgs/CameraInfo,
QoS of the image inputs) and keeps the latest message. Its topic is the sibling of the visible
image topic after remapping, image_transport's convention (:mod:`.topics`):
``visible/image:=/camera/color/image_raw`` -> ``/camera/color/camera_info``, for raw and
compressed inputs; an explicit ``visible/camera_info`` remapping wins. With every processed
frame it republishes it as ``fused/camera_info`` and ``segmentation/camera_info``, its header
replaced by the output header (the visible image's stamp and frame_id), so ``image_geometry``
/ depth projection downstream pairs each output image with a calibration of the same stamp.
Nothing is published before a camera_info has been received.

The outputs have the size of the visible image after the registration's ``crop``
(x, y, width, height): with a crop set, the calibration is moved to the crop, as
``image_proc``'s crop does: ``width``/``height`` become the crop's, the principal point moves by
the crop's corner (K: cx -= x, cy -= y; P: cx -= x, cy -= y, the ``Tx``/``Ty`` terms are
unchanged; the distortion, R and the focal lengths are unchanged), ``binning`` and ``roi`` are
reset (the crop is applied to full-resolution images). Without a crop the message is passed
through unchanged except for its header.
"""
from __future__ import annotations

import copy
import threading
from typing import Optional, Sequence

from sensor_msgs.msg import CameraInfo

TOPICS = ("fused/camera_info", "segmentation/camera_info")


def cropped_camera_info(info: CameraInfo, crop: Optional[Sequence[int]]) -> CameraInfo:
    """A copy of ``info`` for images cropped to ``crop`` = (x, y, width, height) (None: no
    crop; the copy is unchanged)."""
    out = copy.deepcopy(info)
    if crop is None:
        return out
    x, y, w, h = (int(v) for v in crop)
    out.width, out.height = w, h
    k, p = list(out.k), list(out.p)
    k[2] -= x
    k[5] -= y
    p[2] -= x
    p[6] -= y
    out.k, out.p = k, p
    out.binning_x = out.binning_y = 0
    out.roi.x_offset = out.roi.y_offset = out.roi.height = out.roi.width = 0
    out.roi.do_rectify = False
    return out


class CameraInfoRelay:
    """The publishers of :data:`TOPICS` (``advertise(type, topic, qos)``, at configure); the
    CameraInfo subscription comes with :meth:`start` (activate) and goes with :meth:`stop`;
    :meth:`publish` sends the latest one with an output header."""

    def __init__(self, node, out_qos, crop, advertise):
        self._node = node
        self._crop = crop
        self._lock = threading.Lock()
        self._latest: Optional[CameraInfo] = None  # already cropped
        self.received = 0
        self.sub = None
        self.pubs = [advertise(CameraInfo, t, out_qos) for t in TOPICS]

    def start(self, topic: str, qos, subscribe) -> None:
        """Subscribe to ``topic`` (the visible camera's CameraInfo, :func:`.topics.input_topics`)
        with ``subscribe(type, topic, callback, qos)``."""
        self.sub = subscribe(CameraInfo, topic, self._on_info, qos)

    def _on_info(self, msg: CameraInfo) -> None:
        info = cropped_camera_info(msg, self._crop)
        with self._lock:
            self._latest = info
            self.received += 1

    def publish(self, header) -> bool:
        """Publish the latest camera_info with ``header``; False when none was received."""
        with self._lock:
            info = self._latest
        if info is None:
            return False
        out = copy.deepcopy(info)
        out.header = copy.deepcopy(header)
        for pub in self.pubs:
            pub.publish(out)
        return True

    def stop(self) -> None:
        """Unsubscribe (deactivate); the latest camera_info is kept."""
        if self.sub is not None:
            self._node.destroy_subscription(self.sub)
            self.sub = None

    def destroy(self) -> None:
        """Unsubscribe and destroy the publishers (cleanup)."""
        self.stop()
        for pub in self.pubs:
            self._node.destroy_publisher(pub)
        self.pubs = []
