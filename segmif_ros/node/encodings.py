"""Conversion between ``sensor_msgs/Image`` and numpy arrays (a small cv_bridge replacement).

The official ``cv_bridge`` is not installable here and the PyPI ``cv-bridge`` maps 16-bit
encodings wrongly, so segmif carries its own converter for the few encodings it needs:

============  ============  ===============  =====================
encoding      bytes/pixel   numpy shape      numpy dtype
============  ============  ===============  =====================
``mono8``     1             ``(H, W)``       ``uint8``
``8UC1``      1             ``(H, W)``       ``uint8``
``mono16``    2             ``(H, W)``       ``uint16``
``16UC1``     2             ``(H, W)``       ``uint16``
``rgb8``      3             ``(H, W, 3)``    ``uint8``, R, G, B
``bgr8``      3             ``(H, W, 3)``    ``uint8``, B, G, R
============  ============  ===============  =====================

:func:`image_to_numpy` honours ``step`` (row padding) and ``is_bigendian``; it always returns a
fresh array in native byte order that does not alias the message buffer. :func:`numpy_to_image`
always writes little-endian data (``is_bigendian = 0``) with unpadded rows
(``step = width * bytes_per_pixel``), independently of the host byte order.

Importing this module does not import rclpy or sensor_msgs; :func:`numpy_to_image` imports
``sensor_msgs`` when called.
"""

from __future__ import annotations

import array as _array
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = [
    "UnsupportedEncodingError",
    "ENCODINGS",
    "VISIBLE_ENCODINGS",
    "THERMAL_ENCODINGS",
    "bytes_per_pixel",
    "image_to_numpy",
    "numpy_to_image",
    "to_rgb8",
    "to_thermal",
]


class UnsupportedEncodingError(ValueError):
    """Raised for an image encoding this module (or the requested role) does not handle."""


# encoding -> (channels, bytes per channel)
_LAYOUT: Dict[str, Tuple[int, int]] = {
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "mono16": (1, 2),
    "16UC1": (1, 2),
    "rgb8": (3, 1),
    "bgr8": (3, 1),
}

#: Every encoding understood by :func:`image_to_numpy` / :func:`numpy_to_image`.
ENCODINGS: Tuple[str, ...] = tuple(_LAYOUT)
#: Encodings accepted for the visible camera by :func:`to_rgb8`.
VISIBLE_ENCODINGS: Tuple[str, ...] = ("rgb8", "bgr8", "mono8", "8UC1")
#: Encodings accepted for the thermal camera by :func:`to_thermal`.
THERMAL_ENCODINGS: Tuple[str, ...] = ("mono8", "8UC1", "mono16", "16UC1")


def _layout(encoding: Any) -> Tuple[int, int]:
    try:
        return _LAYOUT[encoding]
    except (KeyError, TypeError):
        raise UnsupportedEncodingError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def bytes_per_pixel(encoding: str) -> int:
    """Bytes per pixel of ``encoding`` (1, 2 or 3).

    :raises UnsupportedEncodingError: if the encoding is not one of :data:`ENCODINGS`.
    """
    channels, depth = _layout(encoding)
    return channels * depth


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """1-D uint8 view (no copy when possible) of an Image ``data`` field."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"image data array must have dtype uint8, got {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, str):
        raise ValueError("image data must be bytes-like or a sequence of ints, not str")
    try:
        view = memoryview(data)
    except TypeError:
        view = None
    if view is not None:
        if view.itemsize != 1:
            raise ValueError(
                f"image data buffer must have 1-byte items, got format {view.format!r}"
            )
        return np.frombuffer(view.cast("B") if view.format != "B" else view, dtype=np.uint8)
    values = np.asarray(list(data))
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    if values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255:
        raise ValueError("image data sequence must contain integers in [0, 255]")
    return values.astype(np.uint8).reshape(-1)


def _nonneg_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"image {name} must be a non-negative integer, got {value!r}")
    try:
        number = value.__index__()
    except (AttributeError, TypeError):
        raise ValueError(f"image {name} must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"image {name} must be a non-negative integer, got {number}")
    return number


def image_to_numpy(msg: Any) -> np.ndarray:
    """Copy the pixels of a ``sensor_msgs/Image``-like message into a numpy array.

    :param msg: any object with attributes ``height``, ``width``, ``encoding``,
        ``is_bigendian``, ``step`` (bytes per row, may include padding) and ``data``
        (bytes, bytearray, array.array('B'), uint8 ndarray or a list of ints 0..255).
    :returns: a new C-contiguous array, native byte order: ``(H, W) uint8`` for mono8/8UC1,
        ``(H, W) uint16`` for mono16/16UC1 (big-endian data byte-swapped as needed),
        ``(H, W, 3) uint8`` for rgb8/bgr8 in the message's channel order. Row padding is
        dropped; bytes beyond ``step * height`` are ignored.
    :raises UnsupportedEncodingError: if ``msg.encoding`` is not one of :data:`ENCODINGS`.
    :raises ValueError: if height/width/step are not non-negative integers, if
        ``step < width * bytes_per_pixel``, if ``len(data) < step * height``, or if ``data``
        is not a byte buffer.
    """
    encoding = msg.encoding
    channels, depth = _layout(encoding)
    height = _nonneg_int(msg.height, "height")
    width = _nonneg_int(msg.width, "width")
    step = _nonneg_int(msg.step, "step")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ValueError(
            f"image step {step} is smaller than width * bytes_per_pixel = {width} * "
            f"{channels * depth} = {row_bytes} for encoding {encoding!r}"
        )
    buf = _as_uint8_buffer(msg.data)
    needed = step * height
    if buf.size < needed:
        raise ValueError(
            f"image data has {buf.size} bytes, expected at least step * height = "
            f"{step} * {height} = {needed}"
        )
    rows = buf[:needed].reshape(height, step)[:, :row_bytes]
    if depth == 1:
        out = np.array(rows, dtype=np.uint8, order="C", copy=True)
    else:
        src_dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        packed = np.array(rows, dtype=np.uint8, order="C", copy=True)  # owns its bytes
        out = packed.view(src_dtype).astype(np.uint16, copy=False)  # native byte order
    if channels == 1:
        return out.reshape(height, width)
    return out.reshape(height, width, channels)


def numpy_to_image(array: np.ndarray, encoding: str, header: Optional[Any] = None):
    """Build a ``sensor_msgs.msg.Image`` from a numpy array.

    :param array: ``(H, W) uint8`` for mono8/8UC1, ``(H, W) uint16`` (any byte order) for
        mono16/16UC1, ``(H, W, 3) uint8`` for rgb8/bgr8 (channels already in that order; no
        conversion is done). No implicit dtype cast.
    :param encoding: one of :data:`ENCODINGS`.
    :param header: optional ``std_msgs/Header``-like object (``stamp.sec``, ``stamp.nanosec``,
        ``frame_id``); its values are copied, the object itself is not kept.
    :returns: ``sensor_msgs.msg.Image`` with ``height``/``width`` from the array,
        ``step = width * bytes_per_pixel``, ``is_bigendian = 0`` (data always written
        little-endian, whatever the host) and a copy of the pixel bytes.
    :raises UnsupportedEncodingError: if ``encoding`` is not one of :data:`ENCODINGS`.
    :raises ValueError: if the dtype or shape does not fit the encoding.
    """
    channels, depth = _layout(encoding)
    array = np.asarray(array)
    expected_dtype = np.uint8 if depth == 1 else np.uint16
    if array.dtype.kind != "u" or array.dtype.itemsize != depth:
        raise ValueError(
            f"encoding {encoding!r} needs dtype {np.dtype(expected_dtype).name}, got {array.dtype}"
        )
    if channels == 1:
        if array.ndim != 2:
            raise ValueError(f"encoding {encoding!r} needs a (H, W) array, got shape {array.shape}")
    elif array.ndim != 3 or array.shape[2] != channels:
        raise ValueError(
            f"encoding {encoding!r} needs a (H, W, {channels}) array, got shape {array.shape}"
        )
    height, width = int(array.shape[0]), int(array.shape[1])
    little = np.ascontiguousarray(array, dtype=np.dtype("<u1" if depth == 1 else "<u2"))

    from sensor_msgs.msg import Image  # lazy: keep this module importable without ROS

    msg = Image()
    if header is not None:
        msg.header.stamp.sec = int(header.stamp.sec)
        msg.header.stamp.nanosec = int(header.stamp.nanosec)
        msg.header.frame_id = str(header.frame_id)
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = width * channels * depth
    # an array.array('B') serialises ~50x faster than bytes in rclpy (memcpy instead of a
    # per-element conversion): 1.3 ms instead of 54 ms for a 640x480 bgr8 image; filled from
    # the array's own buffer (one copy; through tobytes() it was two and 2 ms more per image)
    data = _array.array("B")
    data.frombytes(little.reshape(-1).view(np.uint8))
    msg.data = data
    return msg


def to_rgb8(msg: Any) -> np.ndarray:
    """Visible image message -> ``(H, W, 3) uint8`` array in RGB order (a new array).

    rgb8 is copied, bgr8 has its channels reversed, mono8/8UC1 is replicated to 3 channels.

    :raises UnsupportedEncodingError: for any encoding not in :data:`VISIBLE_ENCODINGS`;
        16-bit visible images (mono16/16UC1) are refused rather than silently rescaled.
    :raises ValueError: for a malformed message (see :func:`image_to_numpy`).
    """
    encoding = msg.encoding
    if encoding not in VISIBLE_ENCODINGS:
        if encoding in ("mono16", "16UC1"):
            raise UnsupportedEncodingError(
                f"16-bit visible image ({encoding!r}) is not supported: the visible input must "
                f"be 8-bit ({', '.join(VISIBLE_ENCODINGS)}); convert it upstream so the "
                "scaling is explicit"
            )
        raise UnsupportedEncodingError(
            f"unsupported visible image encoding {encoding!r}; supported: "
            f"{', '.join(VISIBLE_ENCODINGS)}"
        )
    pixels = image_to_numpy(msg)
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return np.repeat(pixels[:, :, None], 3, axis=2)


def to_thermal(msg: Any) -> np.ndarray:
    """Thermal image message -> ``(H, W)`` array, ``uint8`` (mono8/8UC1) or ``uint16``
    (mono16/16UC1, raw counts in native byte order). A new array; values are not rescaled.

    :raises UnsupportedEncodingError: for any encoding not in :data:`THERMAL_ENCODINGS`,
        in particular colour (rgb8/bgr8) thermal images, whose palette cannot be inverted.
    :raises ValueError: for a malformed message (see :func:`image_to_numpy`).
    """
    encoding = msg.encoding
    if encoding not in THERMAL_ENCODINGS:
        if encoding in ("rgb8", "bgr8"):
            raise UnsupportedEncodingError(
                f"colour thermal image ({encoding!r}) is not supported: publish the raw "
                f"single-channel thermal image ({', '.join(THERMAL_ENCODINGS)})"
            )
        raise UnsupportedEncodingError(
            f"unsupported thermal image encoding {encoding!r}; supported: "
            f"{', '.join(THERMAL_ENCODINGS)}"
        )
    return image_to_numpy(msg)
