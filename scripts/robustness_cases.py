"""The fuzz categories of scripts/robustness.py: what each sends and what the node must do.

Kinds (the expectation checked per category, from counter deltas over the category's block):

reject        single malformed messages: every one counted in ``messages_rejected`` when it
              arrives (reasons ``encoding`` / ``malformed``), none reaches the synchroniser.
stamp         single well-formed messages with junk stamps (0, far future, backwards): not
              rejected, they end up unmatched (``messages_unmatched``, at most ``2 * queue_size``
              still queued) and must not cost a valid pair.
pair_reject   a pair with one bad member (thermal of another size with the identity homography,
              a visible image whose step is too small): refused (``rejected`` at input or at
              processing), or dropped for a newer pair, never published.
pair_either   unusual but well-formed pairs (1x1, 1920x1080): published or refused, counted.
pair_accept   valid pairs in unusual form (padded step, longer data, big-endian mono16, stamps
              jumping back 60 s): every one answered.

Single messages of one unit all go to one input and carry stamps between the previous and the
next valid pair, more than ``slop`` from both, so they can never pair with anything.
"""
from __future__ import annotations

from robustness_lib import NS, compressed, encode, image, thermal16

W, H = 160, 128  # valid image size
VIS_ENC = ("rgb8", "bgr8", "mono8", "8UC1")
IR_ENC = ("mono16", "16UC1", "mono8", "8UC1")
BPP = {"mono8": 1, "8UC1": 1, "mono16": 2, "16UC1": 2, "rgb8": 3, "bgr8": 3}
UNKNOWN = ("yuv422", "rgba8", "bgra8", "32FC1", "", "RGB8", "bayer_rggb8", "jpeg", "x" * 300,
           "mono8 ", "16SC1", "8UC3", "64FC4", "nv21", "Mono16", "rgb16")
U32 = 0xFFFFFFFF


def valid(stream: str, k: int, stamp: int, width: int = W, height: int = H, **kw):
    """A valid image of ``stream`` (encodings rotating with ``k``)."""
    if stream == "visible":
        return image(width, height, VIS_ENC[k % len(VIS_ENC)], stamp_ns=stamp, **kw)
    enc = IR_ENC[k % len(IR_ENC)]
    if BPP[enc] == 2 and "data" not in kw and "step" not in kw:
        return image(width, height, enc, data=thermal16(width, height, k % 7),
                     stamp_ns=stamp, **kw)
    return image(width, height, enc, stamp_ns=stamp, **kw)


# ---------------------------------------------------------------- single messages: k -> (stream, msg)
def unknown_encoding(stream):
    def make(k, stamp):
        enc = UNKNOWN[k % len(UNKNOWN)]
        return stream, image(W, H, enc, stamp_ns=stamp)
    return make


def vis_16bit(k, stamp):
    return "visible", image(W, H, ("mono16", "16UC1")[k % 2], data=thermal16(W, H),
                            stamp_ns=stamp)


def ir_colour(k, stamp):
    return "thermal", image(W, H, ("rgb8", "bgr8")[k % 2], stamp_ns=stamp)


def zero_size(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    enc = (VIS_ENC if stream == "visible" else IR_ENC)[k % 4]
    w, h = ((0, H), (W, 0), (0, 0), (0, 1), (1, 0))[k % 5]
    variant = (k // 5) % 3  # step/data: consistent, nonzero step with no data, nonzero data
    step = w * BPP[enc] if variant != 1 else W * BPP[enc]
    data = b"" if variant != 2 else bytes(64)
    return stream, image(w, h, enc, step=step, data=data, stamp_ns=stamp)


def huge_declared(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    enc = (VIS_ENC if stream == "visible" else IR_ENC)[k % 4]
    w, h = ((100_000, 100_000), (U32, 1), (1, U32), (65_535, 65_535), (U32, U32),
            (W, 10_000_000))[k % 6]
    step = min(w * BPP[enc], U32)
    return stream, image(w, h, enc, step=step, nbytes=(0, 100, W * H * 3)[k % 3],
                         stamp_ns=stamp)


def short_data(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    enc = (VIS_ENC if stream == "visible" else IR_ENC)[k % 4]
    row = W * BPP[enc]
    full = row * H
    n = (full - 1, full - row, full // 2, 0, 1)[k % 5]
    return stream, image(W, H, enc, nbytes=n, stamp_ns=stamp)


def step_too_small(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    enc = (VIS_ENC if stream == "visible" else IR_ENC)[k % 4]
    row = W * BPP[enc]
    step = (row - 1, row // 2, 0, 1)[k % 4]
    return stream, image(W, H, enc, step=step, nbytes=step * H, stamp_ns=stamp)


def encoding_data_mismatch(k, stamp):
    """The encoding says more bytes per pixel than the data has (step and data of mono8)."""
    stream, enc = (("visible", "rgb8"), ("visible", "bgr8"), ("thermal", "mono16"),
                   ("thermal", "16UC1"))[k % 4]
    return stream, image(W, H, enc, step=W, nbytes=W * H, stamp_ns=stamp)


def stamped(kind):
    """Well-formed single messages with junk stamps (the stamp argument is ignored)."""
    def make(k, stamp_unused, now_ns=None):
        import time

        now = time.time_ns() if now_ns is None else now_ns
        stream = ("visible", "thermal")[(k // 20) % 2]  # one input per unit of 20
        if kind == "zero":
            ns = 0 if k % 2 == 0 else k % 1000  # 0 and a few ns after it
        elif kind == "future":
            ns = ((2 ** 31 - 1) * NS + k % 1000, now + 1_000_000 * NS + k, now + 60 * NS + k,
                  now + 3 * NS + k)[k % 4]
        else:  # backwards: an hour, 2 s (beyond the 1 s jump threshold), 0.5 s
            ns = (now - 3600 * NS + k, now - 2 * NS + k, now - NS // 2 + k)[k % 3]
        if stream == "thermal":  # never within slop of a visible junk stamp
            ns += NS // 4
        return stream, valid(stream, k, ns)
    return make


# ---------------------------------------------------------------- pairs: k -> (vis, ir)
def size_mismatch(k, stamp):
    v = valid("visible", k, stamp)
    w, h = ((W // 2, H // 2), (W + 1, H), (W, H - 1), (H, W), (1, 1), (W * 2, H * 2))[k % 6]
    return v, valid("thermal", k, stamp, width=w, height=h)


def bad_step_pair(k, stamp):
    enc = VIS_ENC[k % 4]
    step = W * BPP[enc] - 1
    return image(W, H, enc, step=step, nbytes=step * H, stamp_ns=stamp), \
        valid("thermal", k, stamp)


def bad_step_both(k, stamp):
    v, _ = bad_step_pair(k, stamp)
    step = W * 2 - 2
    return v, image(W, H, "mono16", step=step, nbytes=step * H, stamp_ns=stamp)


def one_by_one(k, stamp):
    return valid("visible", k, stamp, 1, 1), valid("thermal", k, stamp, 1, 1)


def huge_valid(k, stamp):
    return image(1920, 1080, ("rgb8", "bgr8")[k % 2], stamp_ns=stamp), \
        image(1920, 1080, "mono16", data=thermal16(1920, 1080), stamp_ns=stamp)


def padded_step(k, stamp):
    pad = (1, 3, 7, 64, 1000)[k % 5]
    ve, ie = VIS_ENC[k % 4], IR_ENC[k % 4]
    v = image(W, H, ve, step=W * BPP[ve] + pad, stamp_ns=stamp)
    if BPP[ie] == 2:  # the padding bytes after each row of real thermal data
        rows = thermal16(W, H)
        row = W * 2
        data = b"".join(rows[r * row:(r + 1) * row] + bytes(pad) for r in range(H))
        return v, image(W, H, ie, step=row + pad, data=data, stamp_ns=stamp)
    return v, image(W, H, ie, step=W + pad, stamp_ns=stamp)


def long_data(k, stamp):
    extra = (1, 17, 4096, W * H * 3)[k % 4]
    ve, ie = VIS_ENC[k % 4], "mono16"
    v = image(W, H, ve, nbytes=W * H * BPP[ve] + extra, stamp_ns=stamp)
    return v, image(W, H, ie, data=thermal16(W, H) + bytes(extra), stamp_ns=stamp)


def bigendian(k, stamp):
    """Big-endian mono16/16UC1 thermal (the same pixels as :func:`littleendian`)."""
    enc = ("mono16", "16UC1")[k % 2]
    return image(W, H, "rgb8", stamp_ns=stamp, fill=None), \
        image(W, H, enc, data=thermal16(W, H, k % 7, bigendian=True), bigendian=1,
              stamp_ns=stamp)


def littleendian(k, stamp):
    enc = ("mono16", "16UC1")[k % 2]
    return image(W, H, "rgb8", stamp_ns=stamp, fill=None), \
        image(W, H, enc, data=thermal16(W, H, k % 7), stamp_ns=stamp)


# name, kind, weight (share of the malformed messages), maker, extra
#   reasons: the rejection reasons expected; bad_per: malformed messages counted per item
CATEGORIES = [
    ("visible_unknown_encoding", "reject", 800, unknown_encoding("visible"), {"reasons": ["encoding"]}),
    ("thermal_unknown_encoding", "reject", 800, unknown_encoding("thermal"), {"reasons": ["encoding"]}),
    ("visible_16bit_encoding", "reject", 500, vis_16bit, {"reasons": ["encoding"]}),
    ("thermal_colour_encoding", "reject", 500, ir_colour, {"reasons": ["encoding"]}),
    ("zero_size", "reject", 800, zero_size, {"reasons": ["malformed"]}),
    ("huge_declared_size", "reject", 800, huge_declared,
     {"reasons": ["malformed", "step"]}),
    ("short_data", "reject", 1000, short_data, {"reasons": ["malformed"]}),
    ("step_too_small", "reject", 800, step_too_small, {"reasons": ["step"]}),
    ("encoding_data_mismatch", "reject", 600, encoding_data_mismatch,
     {"reasons": ["step", "malformed"]}),
    ("stamp_zero", "stamp", 500, stamped("zero"), {}),
    ("stamp_far_future", "stamp", 500, stamped("future"), {}),
    ("stamp_backwards", "stamp", 500, stamped("backwards"), {}),
    ("size_mismatch_pair", "pair_reject", 400, size_mismatch,
     {"reasons": ["size_mismatch"], "bad_per": 1}),
    ("step_too_small_in_pair", "pair_reject", 200, bad_step_pair,
     {"reasons": ["step", "malformed", "invalid"], "bad_per": 1}),
    ("step_too_small_both_in_pair", "pair_reject", 200, bad_step_both,
     {"reasons": ["step", "malformed", "invalid"], "bad_per": 2}),
    ("one_by_one_pair", "pair_either", 400, one_by_one, {"bad_per": 2}),
    ("huge_valid_pair_1920x1080", "pair_either", 40, huge_valid, {"bad_per": 2}),
    ("padded_step_pair", "pair_accept", 400, padded_step, {"bad_per": 2}),
    ("long_data_pair", "pair_accept", 300, long_data, {"bad_per": 2}),
    ("bigendian_mono16_pair", "pair_accept", 100, bigendian, {"bad_per": 1, "twin": littleendian}),
    ("pairs_stamps_back_60s", "pair_accept", 100, None, {"bad_per": 2, "jump_back_s": 60}),
]


# ---------------------------------------------------------------- CompressedImage (input_transport: compressed)
_ENCODED: dict = {}


def _enc(key, make):
    if key not in _ENCODED:
        _ENCODED[key] = make()
    return _ENCODED[key]


def _vis_array(w=W, h=H):
    import numpy as np

    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 3) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1).astype("uint8")


def _ir_array(w=W, h=H):
    import numpy as np

    return np.frombuffer(thermal16(w, h), "<u2").reshape(h, w)


def c_valid(stream, stamp, w=W, h=H):
    if stream == "visible":
        return compressed("bgr8; jpeg compressed bgr8",
                          _enc(("vj", w, h), lambda: encode(".jpg", _vis_array(w, h))), stamp)
    return compressed("mono16; png compressed mono16",
                      _enc(("ip", w, h), lambda: encode(".png", _ir_array(w, h))), stamp)


def c_valid_pair(k, stamp):
    return c_valid("visible", stamp), c_valid("thermal", stamp)


def c_corrupt(k, stamp):
    import numpy as np

    stream = ("visible", "thermal")[k % 2]
    fmt = ("bgr8; jpeg compressed bgr8", "mono16; png compressed mono16")[k % 2]
    data = np.random.default_rng(k % 50).integers(0, 256, 50 + 37 * (k % 50),
                                                  dtype=np.uint8).tobytes()
    if k % 4 >= 2:  # a valid signature, then garbage
        data = (b"\xff\xd8\xff\xe0" if stream == "visible" else b"\x89PNG\r\n\x1a\n") + data
    return stream, compressed(fmt, data, stamp)


def c_truncated(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    full = bytes(c_valid(stream, 0).data)
    cut = (len(full) // 2, 20, len(full) - 10, 8)[k % 4]
    msg = c_valid(stream, stamp)
    msg.data = msg.data[:cut]
    return stream, msg


def c_empty(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    msg = c_valid(stream, stamp)
    msg.data = msg.data[:0]
    return stream, msg


def c_unknown_format(k, stamp):
    stream = ("visible", "thermal")[k % 2]
    fmt = ("webp", "", "rgb8; theora", "x" * 200, "jpeg2000", "bmp")[k % 6]
    msg = c_valid(stream, stamp)
    msg.format = fmt
    import numpy as np
    msg.data = np.random.default_rng(k % 10).integers(0, 256, 300, dtype=np.uint8).tobytes()
    return stream, msg


def c_visible_16bit(k, stamp):
    return "visible", compressed("mono16; png compressed mono16",
                                 _enc(("ip", W, H), lambda: encode(".png", _ir_array())), stamp)


def c_thermal_colour(k, stamp):
    return "thermal", compressed("bgr8; jpeg compressed bgr8",
                                 _enc(("vj", W, H), lambda: encode(".jpg", _vis_array())), stamp)


def c_size_mismatch(k, stamp):
    w, h = ((W // 2, H // 2), (W + 8, H), (H, W))[k % 3]
    return c_valid("visible", stamp), c_valid("thermal", stamp, w, h)


def c_one_by_one(k, stamp):
    return c_valid("visible", stamp, 1, 1), c_valid("thermal", stamp, 1, 1)


def c_huge(k, stamp):
    import numpy as np

    side = 4096
    vis = _enc(("vz", side), lambda: encode(".jpg", np.zeros((side, side, 3), np.uint8)))
    ir = _enc(("iz", side), lambda: encode(".png", np.zeros((side, side), np.uint16)))
    return compressed("bgr8; jpeg compressed bgr8", vis, stamp), \
        compressed("mono16; png compressed mono16", ir, stamp)


COMPRESSED_CATEGORIES = [
    ("compressed_corrupt_bytes", "reject", 600, c_corrupt, {"reasons": None}),
    ("compressed_truncated", "reject", 400, c_truncated, {"reasons": None}),
    ("compressed_empty", "reject", 300, c_empty, {"reasons": None}),
    ("compressed_unknown_format", "reject", 300, c_unknown_format, {"reasons": None}),
    ("compressed_visible_16bit_png", "reject", 200, c_visible_16bit, {"reasons": None}),
    ("compressed_thermal_colour_jpeg", "reject", 200, c_thermal_colour, {"reasons": None}),
    ("compressed_size_mismatch_pair", "pair_reject", 150, c_size_mismatch,
     {"reasons": ["size_mismatch"], "bad_per": 1}),
    ("compressed_one_by_one_pair", "pair_either", 100, c_one_by_one, {"bad_per": 2}),
    ("compressed_4096x4096_pair", "pair_either", 20, c_huge, {"bad_per": 2}),
]
