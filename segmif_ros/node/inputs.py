"""The arrival checks of segmif_node's inputs, raw and compressed (``input_transport``).

Every message is checked when it arrives, before it enters the synchroniser, so a bad message
is refused alone (counted once, under its own reason) and never pairs with, and so uses up, a
valid message of the other camera.

Raw ``sensor_msgs/Image`` (:func:`check_raw`): the encoding must be one the stream accepts
(reason ``encoding``), the size positive and the data at least ``step * height`` bytes
(``malformed``), and ``step`` at least ``width * bytes_per_pixel(encoding)`` (``step``: a step
of 0, 1, one byte short, or an rgb8/mono16 header on mono8-sized data).

Compressed ``sensor_msgs/CompressedImage`` (:func:`decode_compressed`, on the image topics +
``/compressed``, image_transport's convention, :mod:`.topics`): jpeg or png, decoded with
``cv2.imdecode(IMREAD_UNCHANGED)`` on arrival, whatever ``format`` says (OpenCV reads the
data's own signature). Visible: 8-bit, 1 channel (gray) or 3 (BGR; a 4-channel BGRA png has
its alpha dropped); thermal: 8- or 16-bit (png), 1 channel. Refused: data OpenCV cannot decode
(``undecodable``), another channel count (``channels``) or bit depth (``depth``, e.g. a 16-bit
visible png, which IMREAD_COLOR would have rescaled silently). The decoded pixels are wrapped
in a :class:`DecodedImage`, which has the fields of a raw Image (bgr8 / mono8 / mono16), so the
synchroniser and the pipeline handle both transports alike; size mismatches are refused by the
pipeline as for raw images (``size_mismatch``).

Why on arrival and not only for the processed pair: decoding only the pair the worker takes
would be cheaper (about 2-4 ms per 640x480 jpeg for each message that is dropped or unmatched),
but an undecodable message found at processing time would have been paired already and taken
its valid partner with it, which is the defect the raw arrival check removes.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from .encodings import bytes_per_pixel

TRANSPORTS = ("raw", "compressed")
_LITTLE = sys.byteorder == "little"


def note_callback_delay(delays: dict, msg: Any, info) -> None:
    """Record in ``delays`` (visible stamp ns -> ms) how long ``msg`` waited between its DDS
    receipt (``info["received_timestamp"]``, the system clock) and its callback; bounded to the
    64 newest stamps (read when the pair is processed)."""
    if info is not None and info.get("received_timestamp"):
        stamp = msg.header.stamp
        delays[stamp.sec * 1_000_000_000 + stamp.nanosec] = \
            (time.time_ns() - int(info["received_timestamp"])) / 1e6
        while len(delays) > 64:
            delays.pop(next(iter(delays)))


def check_raw(msg: Any, allowed, topic: str) -> Optional[Tuple[str, str]]:
    """(reason, text) when the raw Image ``msg`` must be refused, None when it is accepted.
    ``allowed``: the encodings this stream accepts; ``topic``: "visible" / "thermal"."""
    if msg.encoding not in allowed:
        return "encoding", (f"{topic} image with unsupported encoding {msg.encoding!r} "
                            f"(accepted: {', '.join(allowed)})")
    what = f"{topic} image {msg.encoding} {msg.width}x{msg.height} step {msg.step}"
    if msg.height < 1 or msg.width < 1:
        return "malformed", f"{what}: zero size"
    row = msg.width * bytes_per_pixel(msg.encoding)
    if msg.step < row:
        return "step", (f"{what}: step smaller than width x bytes per pixel = "
                        f"{msg.width} x {bytes_per_pixel(msg.encoding)} = {row}")
    if len(msg.data) < msg.step * msg.height:
        return "malformed", (f"{what} with only {len(msg.data)} bytes of data "
                             f"(step x height = {msg.step * msg.height})")
    return None


class DecodedImage:
    """A decoded CompressedImage with the fields of a raw ``sensor_msgs/Image`` (``header``,
    ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data`` as a flat uint8
    array), read by :func:`.encodings.to_rgb8` / :func:`.encodings.to_thermal`."""

    __slots__ = ("header", "height", "width", "encoding", "is_bigendian", "step", "data")

    def __init__(self, header, pixels: np.ndarray, encoding: str):
        pixels = np.ascontiguousarray(pixels)
        self.header = header
        self.height, self.width = int(pixels.shape[0]), int(pixels.shape[1])
        self.encoding = encoding
        self.is_bigendian = 0 if (_LITTLE or pixels.dtype.itemsize == 1) else 1
        self.step = self.width * bytes_per_pixel(encoding)
        self.data = pixels.view(np.uint8).reshape(-1)


def quiet_opencv_decoder_log() -> None:
    """OpenCV's own log at FATAL only, for this process: its image decoders print an ERROR or
    WARN line on stderr for every corrupt image (about 950 a minute in the compressed fuzz of
    ``scripts/robustness.py``), which the node's throttled, counted refusal already reports
    (:func:`decode_compressed`, reason ``undecodable``)."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


def decode_compressed(msg: Any, index: int) -> Tuple[Optional[DecodedImage],
                                                     Optional[Tuple[str, str]]]:
    """Decode the CompressedImage ``msg`` of stream ``index`` (0 visible, 1 thermal):
    (DecodedImage, None), or (None, (reason, text)) when it is refused."""
    topic = ("visible", "thermal")[index]
    what = f"{topic} compressed image (format {msg.format!r}, {len(msg.data)} bytes)"
    buf = np.frombuffer(bytes(msg.data), np.uint8) if len(msg.data) else None
    pixels = None
    if buf is not None:
        try:
            pixels = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        except cv2.error:
            pixels = None
    if pixels is None or pixels.size == 0:
        return None, ("undecodable", f"{what}: OpenCV cannot decode it (jpeg or png expected)")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if index == 0:
        if pixels.dtype != np.uint8:
            return None, ("depth", f"{what}: {pixels.dtype} visible image, 8-bit expected")
        if channels == 1:
            return DecodedImage(msg.header, pixels.reshape(pixels.shape[:2]), "mono8"), None
        if channels in (3, 4):
            return DecodedImage(msg.header, pixels[:, :, :3], "bgr8"), None
        return None, ("channels", f"{what}: {channels} channels, 1 or 3 expected")
    if channels != 1:
        return None, ("channels", f"{what}: {channels} channels, a single-channel thermal "
                      "image expected")
    if pixels.dtype == np.uint8:
        return DecodedImage(msg.header, pixels.reshape(pixels.shape[:2]), "mono8"), None
    if pixels.dtype == np.uint16:
        return DecodedImage(msg.header, pixels.reshape(pixels.shape[:2]), "mono16"), None
    return None, ("depth", f"{what}: {pixels.dtype} thermal image, 8 or 16 bit expected")


def subscribe_inputs(node, topics: dict, compressed: bool, qos, on_image, warn):
    """The two image subscriptions of ``node`` (visible, thermal) on ``topics["visible"]`` and
    ``topics["thermal"]`` (:func:`.topics.input_topics`: ``visible/image`` and
    ``thermal/image`` resolved, or with ``compressed`` their ``<base>/compressed`` topics):
    sensor_msgs/Image, or sensor_msgs/CompressedImage with ``compressed``; QoS ``qos`` with
    overrides (:mod:`.qos`); ``on_image(index, msg, info)`` is called with the rmw message
    info."""
    from sensor_msgs.msg import CompressedImage, Image

    from .qos import subscription_options

    msg_type = CompressedImage if compressed else Image
    if compressed:
        quiet_opencv_decoder_log()

    def subscribe(index, topic):
        return node.create_subscription(
            msg_type, topic, lambda msg, info: on_image(index, msg, info),
            **subscription_options(node, topic, qos, warn))

    return subscribe(0, topics["visible"]), subscribe(1, topics["thermal"])
