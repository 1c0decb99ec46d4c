"""Tests of segmif_ros.node.encodings (the small cv_bridge replacement)."""

import array
import struct
import subprocess
import sys

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from segmif_ros.node.encodings import (
    ENCODINGS,
    THERMAL_ENCODINGS,
    VISIBLE_ENCODINGS,
    UnsupportedEncodingError,
    bytes_per_pixel,
    image_to_numpy,
    numpy_to_image,
    to_rgb8,
    to_thermal,
)

# encoding -> (dtype, channels), written out independently of the module's table
SPEC = {
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
}


class FakeImage:
    """Duck-typed Image with whatever fields a test wants."""

    def __init__(self, height, width, encoding, step, data, is_bigendian=0):
        self.height = height
        self.width = width
        self.encoding = encoding
        self.step = step
        self.data = data
        self.is_bigendian = is_bigendian


def _random(encoding, h=5, w=7, seed=0):
    dtype, channels = SPEC[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def test_module_does_not_import_ros():
    code = ("import sys, segmif_ros.node.encodings; "
            "sys.exit(1 if {'rclpy', 'sensor_msgs'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_encoding_tables():
    assert set(ENCODINGS) == set(SPEC)
    assert set(VISIBLE_ENCODINGS) == {"rgb8", "bgr8", "mono8", "8UC1"}
    assert set(THERMAL_ENCODINGS) == {"mono8", "8UC1", "mono16", "16UC1"}
    assert [bytes_per_pixel(e) for e in ("mono8", "8UC1", "mono16", "16UC1", "rgb8", "bgr8")] \
        == [1, 1, 2, 2, 3, 3]
    with pytest.raises(UnsupportedEncodingError):
        bytes_per_pixel("rgba8")


@pytest.mark.parametrize("encoding", sorted(SPEC))
def test_numpy_to_image_fields_and_bytes(encoding):
    arr = _random(encoding, h=4, w=6, seed=1)
    msg = numpy_to_image(arr, encoding)
    assert isinstance(msg, Image)
    dtype, channels = SPEC[encoding]
    bpp = np.dtype(dtype).itemsize * channels
    assert (msg.height, msg.width, msg.encoding) == (4, 6, encoding)
    assert msg.step == 6 * bpp
    assert msg.is_bigendian == 0
    # Expected bytes built by hand: row-major, channel-interleaved, little-endian.
    expected = bytearray()
    for value in arr.reshape(-1).tolist():
        expected += struct.pack("<H", value) if dtype == np.uint16 else bytes([value])
    assert bytes(msg.data) == bytes(expected)


@pytest.mark.parametrize("encoding", sorted(SPEC))
def test_round_trip_numpy_image_numpy(encoding):
    arr = _random(encoding, h=9, w=13, seed=2)
    out = image_to_numpy(numpy_to_image(arr, encoding))
    assert out.dtype == SPEC[encoding][0]
    assert out.dtype.isnative
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", sorted(SPEC))
def test_round_trip_image_numpy_image(encoding):
    dtype, channels = SPEC[encoding]
    h, w = 3, 4
    bpp = np.dtype(dtype).itemsize * channels
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=h * w * bpp, dtype=np.uint8).tobytes()
    msg = Image()
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian, msg.step = 0, w * bpp
    msg.data = raw
    back = numpy_to_image(image_to_numpy(msg), encoding, msg.header)
    assert (back.height, back.width, back.step, back.encoding, back.is_bigendian) == \
        (h, w, w * bpp, encoding, 0)
    assert bytes(back.data) == raw


def test_16bit_values_decoded_little_endian_by_hand():
    # 2x2 mono16, little-endian bytes written out by hand.
    raw = bytes([0x01, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0x34, 0x12])
    for enc in ("mono16", "16UC1"):
        out = image_to_numpy(FakeImage(2, 2, enc, 4, raw, is_bigendian=0))
        assert out.dtype == np.uint16 and out.dtype.isnative
        assert out.tolist() == [[1, 256], [65535, 0x1234]]


def test_big_endian_mono16():
    values = np.array([[0x0102, 0xA0B0, 7], [65535, 0, 0x1234]], dtype=np.uint16)
    raw = values.astype(">u2").tobytes()
    assert raw[:2] == b"\x01\x02"  # really big-endian
    for enc in ("mono16", "16UC1"):
        out = image_to_numpy(FakeImage(2, 3, enc, 6, raw, is_bigendian=1))
        assert out.dtype == np.uint16 and out.dtype.isnative
        assert out.tolist() == values.tolist()
    # The same bytes read as little-endian give the byte-swapped values.
    swapped = image_to_numpy(FakeImage(2, 3, "mono16", 6, raw, is_bigendian=0))
    assert swapped[0, 0] == 0x0201 and swapped[0, 1] == 0xB0A0


def test_big_endian_flag_is_ignored_for_8bit():
    out = image_to_numpy(FakeImage(1, 2, "mono8", 2, b"\x01\x02", is_bigendian=1))
    assert out.tolist() == [[1, 2]]


def test_step_padding_mono8():
    # 2 rows x 3 px, step 5: 2 padding bytes (0xEE) at the end of each row.
    raw = bytes([1, 2, 3, 0xEE, 0xEE, 4, 5, 6, 0xEE, 0xEE])
    out = image_to_numpy(FakeImage(2, 3, "mono8", 5, raw))
    assert out.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert out.flags["C_CONTIGUOUS"]


def test_step_padding_rgb8():
    # 2 rows x 2 px rgb8 (6 bytes of pixels), step 8.
    raw = bytes([10, 11, 12, 20, 21, 22, 0, 0,
                 30, 31, 32, 40, 41, 42, 0, 0])
    out = image_to_numpy(FakeImage(2, 2, "rgb8", 8, raw))
    expected = [[[10, 11, 12], [20, 21, 22]], [[30, 31, 32], [40, 41, 42]]]
    assert out.shape == (2, 2, 3)
    assert out.tolist() == expected


@pytest.mark.parametrize("bigendian", [0, 1])
def test_step_padding_mono16_odd_step(bigendian):
    # 2 rows x 2 px mono16, step 7 (3 padding bytes, odd so rows are not 2-byte aligned).
    values = [[0x0102, 0x0304], [0xFFFE, 0x0010]]
    fmt = ">H" if bigendian else "<H"
    raw = b""
    for row in values:
        raw += b"".join(struct.pack(fmt, v) for v in row) + b"\xAA\xBB\xCC"
    out = image_to_numpy(FakeImage(2, 2, "mono16", 7, raw, is_bigendian=bigendian))
    assert out.tolist() == values


def test_extra_trailing_bytes_are_ignored():
    out = image_to_numpy(FakeImage(1, 2, "mono8", 2, b"\x05\x06\x07\x08"))
    assert out.tolist() == [[5, 6]]


@pytest.mark.parametrize("data", [
    b"\x01\x02\x03\x04",
    bytearray(b"\x01\x02\x03\x04"),
    array.array("B", [1, 2, 3, 4]),
    [1, 2, 3, 4],
    np.array([1, 2, 3, 4], dtype=np.uint8),
])
def test_data_container_types(data):
    out = image_to_numpy(FakeImage(2, 2, "8UC1", 2, data))
    assert out.dtype == np.uint8
    assert out.tolist() == [[1, 2], [3, 4]]


def test_output_does_not_alias_message_buffer():
    for enc in ("mono8", "mono16", "rgb8"):
        arr = _random(enc, h=3, w=3, seed=4)
        msg = numpy_to_image(arr, enc)
        before = bytes(msg.data)
        out = image_to_numpy(msg)
        out[...] = 0
        assert bytes(msg.data) == before
        # And the other direction: changing the source array leaves the message alone.
        arr[...] = 0
        assert bytes(msg.data) == before
    buf = bytearray(b"\x01\x02\x03\x04")
    out = image_to_numpy(FakeImage(2, 2, "mono8", 2, buf))
    buf[0] = 99
    assert out[0, 0] == 1


def test_bgr8_vs_rgb8_channel_order():
    pixel = bytes([10, 20, 30])  # one pixel
    rgb_msg = FakeImage(1, 1, "rgb8", 3, pixel)
    bgr_msg = FakeImage(1, 1, "bgr8", 3, pixel)
    # image_to_numpy keeps the message's channel order...
    assert image_to_numpy(rgb_msg).tolist() == [[[10, 20, 30]]]
    assert image_to_numpy(bgr_msg).tolist() == [[[10, 20, 30]]]
    # ...to_rgb8 returns R, G, B: for bgr8 the first byte is blue.
    assert to_rgb8(rgb_msg).tolist() == [[[10, 20, 30]]]
    assert to_rgb8(bgr_msg).tolist() == [[[30, 20, 10]]]
    # numpy_to_image writes the channels as given.
    arr = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert bytes(numpy_to_image(arr, "bgr8").data) == b"\x01\x02\x03"


def test_to_rgb8_larger_image_and_mono():
    rgb = _random("rgb8", h=6, w=5, seed=5)
    bgr = rgb[:, :, [2, 1, 0]].copy()
    out = to_rgb8(numpy_to_image(bgr, "bgr8"))
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(to_rgb8(numpy_to_image(rgb, "rgb8")), rgb)
    for enc in ("mono8", "8UC1"):
        out = to_rgb8(FakeImage(1, 2, enc, 2, b"\x07\xF0"))
        assert out.shape == (1, 2, 3)
        assert out.tolist() == [[[7, 7, 7], [240, 240, 240]]]


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_to_rgb8_refuses_16bit(encoding):
    msg = FakeImage(1, 1, encoding, 2, b"\x00\x01")
    with pytest.raises(UnsupportedEncodingError, match="16-bit"):
        to_rgb8(msg)


def test_to_rgb8_refuses_unknown():
    with pytest.raises(UnsupportedEncodingError, match="rgba8"):
        to_rgb8(FakeImage(1, 1, "rgba8", 4, b"\x00" * 4))


def test_to_thermal():
    out8 = to_thermal(FakeImage(1, 2, "mono8", 2, b"\x01\xFF"))
    assert out8.dtype == np.uint8 and out8.tolist() == [[1, 255]]
    out8 = to_thermal(FakeImage(1, 2, "8UC1", 2, b"\x01\xFF"))
    assert out8.dtype == np.uint8 and out8.tolist() == [[1, 255]]
    for enc in ("mono16", "16UC1"):
        out16 = to_thermal(FakeImage(1, 2, enc, 4, b"\x10\x27\xFF\xFF"))  # 10000, 65535 LE
        assert out16.dtype == np.uint16 and out16.tolist() == [[10000, 65535]]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_to_thermal_refuses_colour(encoding):
    with pytest.raises(UnsupportedEncodingError, match="colour thermal"):
        to_thermal(FakeImage(1, 1, encoding, 3, b"\x00\x00\x00"))


def test_unsupported_encodings_raise():
    for enc in ("rgba8", "32FC1", "yuv422", "", "MONO8"):
        msg = FakeImage(1, 1, enc, 4, b"\x00" * 4)
        with pytest.raises(UnsupportedEncodingError):
            image_to_numpy(msg)
        with pytest.raises(UnsupportedEncodingError):
            to_thermal(msg)
        with pytest.raises(UnsupportedEncodingError):
            numpy_to_image(np.zeros((1, 1), np.uint8), enc)
    assert issubclass(UnsupportedEncodingError, ValueError)


def test_short_data_raises():
    with pytest.raises(ValueError, match="step \\* height"):
        image_to_numpy(FakeImage(2, 3, "mono8", 3, b"\x00" * 5))
    # The padding of the last row counts too: step * height bytes are required.
    with pytest.raises(ValueError, match="step \\* height"):
        image_to_numpy(FakeImage(2, 3, "mono8", 4, b"\x00" * 7))
    with pytest.raises(ValueError, match="step \\* height"):
        image_to_numpy(FakeImage(2, 2, "mono16", 4, b"\x00" * 7))


def test_step_too_small_raises():
    with pytest.raises(ValueError, match="step"):
        image_to_numpy(FakeImage(2, 3, "rgb8", 8, b"\x00" * 100))
    with pytest.raises(ValueError, match="step"):
        image_to_numpy(FakeImage(1, 3, "mono16", 5, b"\x00" * 100))


def test_bad_geometry_or_data_raises():
    with pytest.raises(ValueError):
        image_to_numpy(FakeImage(-1, 2, "mono8", 2, b"\x00" * 4))
    with pytest.raises(ValueError):
        image_to_numpy(FakeImage(1, 2, "mono8", 2, [1, 300]))
    with pytest.raises(ValueError):
        image_to_numpy(FakeImage(1, 2, "mono8", 2, array.array("H", [1, 2])))
    with pytest.raises(ValueError):
        image_to_numpy(FakeImage(1, 2, "mono8", 2, np.array([1, 2], dtype=np.int64)))


@pytest.mark.parametrize("encoding, array_", [
    ("mono8", np.zeros((2, 2), np.uint16)),
    ("mono8", np.zeros((2, 2, 1), np.uint8)),
    ("mono8", np.zeros((2, 2), np.int8)),
    ("mono16", np.zeros((2, 2), np.uint8)),
    ("16UC1", np.zeros((2, 2), np.int16)),
    ("16UC1", np.zeros((2, 2), np.float32)),
    ("rgb8", np.zeros((2, 2), np.uint8)),
    ("rgb8", np.zeros((2, 2, 4), np.uint8)),
    ("bgr8", np.zeros((2, 2, 3), np.float64)),
])
def test_numpy_to_image_validates_dtype_and_shape(encoding, array_):
    with pytest.raises(ValueError):
        numpy_to_image(array_, encoding)


def test_numpy_to_image_big_endian_input_written_little_endian():
    arr = np.array([[0x0102, 0xA0B0]], dtype=">u2")
    msg = numpy_to_image(arr, "mono16")
    assert msg.is_bigendian == 0
    assert bytes(msg.data) == b"\x02\x01\xB0\xA0"


def test_numpy_to_image_non_contiguous_input():
    base = _random("rgb8", h=6, w=8, seed=6)
    view = base[::2, 1::3]  # strided view
    msg = numpy_to_image(view, "rgb8")
    assert (msg.height, msg.width, msg.step) == (3, 3, 9)
    np.testing.assert_array_equal(image_to_numpy(msg), view)


def test_numpy_to_image_copies_header():
    header = Header()
    header.stamp.sec = 1_700_000_000
    header.stamp.nanosec = 123_456_789
    header.frame_id = "thermal_optical"
    msg = numpy_to_image(np.zeros((2, 3), np.uint16), "16UC1", header)
    assert msg.header.stamp.sec == 1_700_000_000
    assert msg.header.stamp.nanosec == 123_456_789
    assert msg.header.frame_id == "thermal_optical"
    # A copy, not the same object: later edits of the source do not leak in.
    header.frame_id = "changed"
    header.stamp.sec = 5
    assert msg.header.frame_id == "thermal_optical"
    assert msg.header.stamp.sec == 1_700_000_000
    # Without a header: default (zero) stamp and empty frame.
    plain = numpy_to_image(np.zeros((2, 3), np.uint8), "mono8")
    assert (plain.header.stamp.sec, plain.header.stamp.nanosec, plain.header.frame_id) == (0, 0, "")


def test_empty_image():
    msg = numpy_to_image(np.zeros((0, 4), np.uint8), "mono8")
    assert (msg.height, msg.width, msg.step, len(msg.data)) == (0, 4, 4, 0)
    assert image_to_numpy(msg).shape == (0, 4)
