"""Image files of a dataset: the accepted formats, finding ``STEM.EXT`` in a folder, header facts
(size, bit depth, channels) without decoding, and decoding visible, thermal and label images.
(:mod:`.layouts` says where the files of a pair are.)

File formats (:data:`IMAGE_EXTENSIONS`): PNG, JPEG (``.jpg``/``.jpeg``), BMP and TIFF
(``.tif``/``.tiff``), extension matched case-insensitively (``NAME.JPG``). The files of a pair are
matched by stem (the file name without its extension), so formats may differ between folders
(``vis/NAME.jpg`` with ``ir/NAME.png``). Two files of one stem in one folder (``NAME.png`` and
``NAME.jpg``) are an error naming both (:class:`DatasetError`), never a silent choice. Images are
decoded as stored (OpenCV ``IMREAD_UNCHANGED``): a 16-bit PNG or TIFF thermal stays uint16, an
EXIF orientation tag is not applied. Labels must be lossless (:data:`LABEL_EXTENSIONS`: PNG, BMP,
TIFF): JPEG compression changes class ids near region borders (ringing blends neighbouring ids
into other, valid-looking ids), so a JPEG label is refused with an error saying so. A pair whose
file does not exist is given as ``STEM.png`` (:func:`image_path`, :meth:`.layouts.Layout.files`).
"""
from __future__ import annotations

import os
import struct
import time
from typing import NamedTuple

import cv2
import numpy as np

#: Accepted image file extensions (lower case; files match them case-insensitively), the default
#: (the name of a file that does not exist) first.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Lossy formats: accepted for visible and thermal images, refused for labels.
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
#: Accepted label file extensions (lossless formats only).
LABEL_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS if e not in LOSSY_EXTENSIONS)


class DatasetError(ValueError):
    """A dataset folder is missing files or holds unusable images."""


class ImageInfo(NamedTuple):
    """Header facts of an image file: ``width``, ``height`` in pixels, ``bits`` per sample (8 or
    16; PNG 1/2/4-bit gray counts as 8), ``channels`` as decoded (palette PNG: 1) and ``palette``
    (True for an indexed PNG)."""

    width: int
    height: int
    bits: int
    channels: int
    palette: bool


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
# Pillow modes whose channel count is the one OpenCV decodes (any format): mode -> (bits,
# channels, palette). TIFF bits come from its BitsPerSample tag (Pillow opens 16-bit RGB as
# "RGB"). Other modes (CMYK, 1-bit, LA, float, ...) are decoded instead.
_PIL_MODES = {"L": (8, 1, False), "RGB": (8, 3, False), "RGBA": (8, 4, False),
              "I;16": (16, 1, False), "I;16L": (16, 1, False), "I;16B": (16, 1, False),
              "P": (8, 1, True)}


def _pil_header(path: str) -> ImageInfo | None:
    """ImageInfo from the header of a JPEG, BMP or TIFF file read by Pillow (which decodes lazily),
    or None when Pillow is missing, cannot parse the file or has a mode not in ``_PIL_MODES``
    (or a TIFF sample size other than 8 or 16 bit)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with torchvision/matplotlib
        return None
    try:
        with Image.open(path) as im:
            if im.mode not in _PIL_MODES:
                return None
            bits, channels, palette = _PIL_MODES[im.mode]
            if im.format == "TIFF":
                bits = max(im.tag_v2.get(258, (1,)) or (1,))  # BitsPerSample
                if bits not in (8, 16):
                    return None
            return ImageInfo(im.width, im.height, bits, channels, palette)
    except Exception:  # noqa: BLE001 - any parse failure: let OpenCV decode and judge the file
        return None


def image_info(path: str) -> ImageInfo:
    """Size, bit depth and channel count of an image from its header when possible (PNG: parsed
    here; JPEG, BMP, TIFF: by Pillow, in the modes gray, RGB, 16-bit gray and palette), else by
    decoding the file with OpenCV.

    Raises:
        DatasetError: the file cannot be read or decoded.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError as e:
        raise DatasetError(f"cannot read image {path}: {e}") from None
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        depth, ctype = head[24], head[25]
        if ctype in _PNG_CHANNELS:
            return ImageInfo(w, h, 16 if depth == 16 else 8, _PNG_CHANNELS[ctype], ctype == 3)
    elif head[:2] in (b"\xff\xd8", b"BM") or head[:4] in (b"II*\x00", b"MM\x00*"):
        info = _pil_header(path)  # JPEG, BMP, TIFF
        if info is not None:
            return info
    img = read_image(path)
    return ImageInfo(img.shape[1], img.shape[0], 8 * img.dtype.itemsize,
                     1 if img.ndim == 2 else img.shape[2], False)


def read_image(path: str) -> np.ndarray:
    """Decode an image unchanged (OpenCV ``IMREAD_UNCHANGED``: HxW or HxWxC, colour in B, G, R(, A)
    order, the stored dtype, e.g. uint16 for a 16-bit PNG or TIFF; EXIF orientation not applied).
    Any format OpenCV reads; the layouts list :data:`IMAGE_EXTENSIONS`.

    Raises:
        DatasetError: missing or undecodable file.
    """
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return img


def single_channel(img: np.ndarray, path: str) -> np.ndarray:
    """HxW from HxW, HxWx1, or HxWxC (C = 3, 4) whose first three channels are equal.

    Raises:
        DatasetError: different colour channels (e.g. a pseudo-coloured thermal image).
    """
    if img.ndim == 2:
        return img
    if img.shape[2] == 1 or (img.shape[2] in (3, 4) and np.array_equal(img[..., 0], img[..., 1])
                             and np.array_equal(img[..., 0], img[..., 2])):
        return np.ascontiguousarray(img[..., 0])
    raise DatasetError(f"{path}: expected one channel or equal channels, got {img.shape[2]} "
                       "different channels")


def visible_rgb(img: np.ndarray, path: str) -> np.ndarray:
    """HxWx3 uint8 RGB from a decoded visible image (gray replicated, BGR(A) reordered, alpha
    dropped).

    Raises:
        DatasetError: not 8 bit.
    """
    if img.dtype != np.uint8:
        raise DatasetError(f"{path}: visible must be 8 bit, got {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def thermal_raw(img: np.ndarray, path: str) -> np.ndarray:
    """HxW uint8 or uint16 raw thermal from a decoded thermal image.

    Raises:
        DatasetError: different colour channels, or neither 8 nor 16 bit.
    """
    ir = single_channel(img, path)
    if ir.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: thermal must be 8 or 16 bit, got {ir.dtype}")
    return ir


def lossy_label_error(path: str) -> DatasetError:
    """The error for a label stored in a lossy format (JPEG): why it is refused."""
    return DatasetError(
        f"{path}: labels must be stored losslessly ({', '.join(LABEL_EXTENSIONS)}), not as "
        "JPEG: lossy compression changes class ids near region borders (ringing blends "
        "neighbouring ids into other, valid-looking ids); convert the labels from their source, "
        "not from this file")


def read_label(path: str) -> np.ndarray:
    """HxW uint8 class ids. Indexed (palette) PNG, BMP or TIFF files give their indices (needs
    Pillow), not colours.

    Raises:
        DatasetError: a JPEG file (lossy, see :func:`lossy_label_error`), unreadable file, not 8
            bit, or different colour channels.
    """
    if os.path.splitext(path)[1].lower() in LOSSY_EXTENSIONS:
        raise lossy_label_error(path)
    if image_info(path).palette:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow ships with torchvision/matplotlib
            raise DatasetError(f"{path}: palette labels need Pillow to read the indices")
        with Image.open(path) as im:
            label = np.array(im)
    else:
        label = single_channel(read_image(path), path)
    if label.dtype != np.uint8 or label.ndim != 2:
        raise DatasetError(f"{path}: label must be uint8 class ids, got {label.dtype}")
    return label


def strip_image_extension(name: str) -> str:
    """``name`` without a trailing accepted image extension (any case): ``a.JPG`` -> ``a``."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


# Folder listings {stem: (file names)} kept while the folder is unchanged: one listing serves every
# look-up of a dataset (check_pairs, PairDataset). A listing is reused only if the folder's mtime
# is unchanged and was already older than _RACY_S when it was taken; a folder modified just before
# (within the file system's timestamp granularity) is listed again at each look-up, so a file
# added right after a listing is never missed (git's "racy" timestamp rule).
_INDEX_CACHE: dict[str, tuple[tuple[int, int, int], dict[str, tuple[str, ...]]]] = {}
_INDEX_CACHE_MAX = 64
_RACY_S = 2.0


def _folder_index(folder: str) -> dict[str, tuple[str, ...]]:
    """``{stem: sorted file names}`` of the files in ``folder`` with an accepted image extension
    (case-insensitive); ``{}`` when the folder does not exist."""
    try:
        st = os.stat(folder)
    except OSError:
        return {}
    key, stamp = os.path.abspath(folder), (st.st_mtime_ns, st.st_ino, st.st_dev)
    hit = _INDEX_CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    listed_at = time.time()
    groups: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as it:
            for entry in it:
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in IMAGE_EXTENSIONS and stem and entry.is_file():
                    groups.setdefault(stem, []).append(entry.name)
    except OSError as e:
        raise DatasetError(f"cannot list {folder}: {e}") from None
    index = {stem: tuple(sorted(files)) for stem, files in groups.items()}
    _INDEX_CACHE.pop(key, None)
    if listed_at - st.st_mtime_ns / 1e9 > _RACY_S:
        while len(_INDEX_CACHE) >= _INDEX_CACHE_MAX:
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
        _INDEX_CACHE[key] = (stamp, index)
    return index


def _duplicate_error(folder: str, stem: str, files: tuple[str, ...]) -> DatasetError:
    return DatasetError(f"{len(files)} files share the stem {stem!r} in {folder}: "
                        + ", ".join(os.path.join(folder, f) for f in files)
                        + "; keep one (pairs are matched by file name without extension)")


def find_image(folder: str, stem: str, role: str = "vis") -> str | None:
    """Path of the image ``STEM.EXT`` in ``folder`` (EXT one of :data:`IMAGE_EXTENSIONS`, any
    case), or None when there is none (or no such folder).

    Args:
        folder: folder to look in; stem: file name without extension (case-sensitive).
        role: ``label`` refuses lossy formats (:data:`LABEL_EXTENSIONS` only); any other role
            accepts every format.
    Raises:
        DatasetError: several files of that stem (e.g. ``STEM.png`` and ``STEM.jpg``; the message
            names them), or a JPEG label (see :func:`lossy_label_error`).
    """
    files = _folder_index(folder).get(stem)
    if not files:
        return None
    if len(files) > 1:
        raise _duplicate_error(folder, stem, files)
    path = os.path.join(folder, files[0])
    if role == "label" and os.path.splitext(files[0])[1].lower() in LOSSY_EXTENSIONS:
        raise lossy_label_error(path)
    return path


def image_path(folder: str, stem: str, role: str = "vis") -> str:
    """:func:`find_image`, or ``folder/STEM.png`` (a path that does not exist) when none is found.

    Raises:
        DatasetError: as :func:`find_image`.
    """
    return find_image(folder, stem, role) or os.path.join(folder, stem + IMAGE_EXTENSIONS[0])


def missing_message(path: str, role: str = "vis") -> str:
    """``missing PATH (also tried .jpg, ...)`` for a file :func:`image_path` did not find."""
    exts = LABEL_EXTENSIONS if role == "label" else IMAGE_EXTENSIONS
    others = [e for e in exts if e != os.path.splitext(path)[1].lower()]
    return f"missing {path} (also tried {', '.join(others)}, any case)"


def _stems(folder: str) -> list[str]:
    """Sorted stems of the images in ``folder``.

    Raises:
        DatasetError: stems shared by several files (up to 10 named).
    """
    index = _folder_index(folder)
    dups = [(stem, files) for stem, files in sorted(index.items()) if len(files) > 1]
    if dups:
        msgs = [str(_duplicate_error(folder, stem, files)) for stem, files in dups[:10]]
        more = f"\n... and {len(dups) - 10} more" if len(dups) > 10 else ""
        raise DatasetError(f"{len(dups)} ambiguous pair name(s) in {folder}:\n"
                           + "\n".join(msgs) + more)
    return sorted(index)
