"""Dataset folder layouts: where the visible, thermal and label files of a pair are, and how a pair
is read.

Layouts (``ROOT`` is the dataset root, ``NAME`` a pair name; ``.png`` below stands for any
accepted image format, see *File formats*):

- ``plain``: ``ROOT/vis/NAME.png``, ``ROOT/ir/NAME.png``, ``ROOT/label/NAME.png`` (label
  optional). The project's own layout (e.g. ``/work/shared/data/mfnet``, ``segmif bag``), and
  the benchmarks shipped as two folders of images (RoadScene ``vis/NAME.jpg``, ``ir/NAME.jpg``;
  TNO, LLVIP once their folders are named ``vis``/``ir``).
- ``fmb``: FMB as released with SegMiF (Liu et al., ICCV 2023; github.com/JinyuanLiu-CV/SegMiF,
  Google Drive / Baidu download): ``ROOT/{train,test}/Visible/STEM.png``,
  ``ROOT/{train,test}/Infrared/STEM.png``, ``ROOT/{train,test}/Label/STEM.png`` (uint8 class
  ids). The ``color`` folder beside them (labels rendered in colour) is not read.
- ``msrs``: MSRS as released by Tang et al. (github.com/Linfeng-Tang/MSRS):
  ``ROOT/{train,test}/vi/STEM.png``, ``ROOT/{train,test}/ir/STEM.png``,
  ``ROOT/{train,test}/Segmentation_labels/STEM.png`` (uint8 MFNet class ids).
- ``mfnet``: the original MFNet release (Ha et al., IROS 2017): ``ROOT/images/NAME.png`` are
  4-channel 8-bit PNGs whose channels are R, G, B, thermal in file (PIL) order -- OpenCV decodes
  them as B, G, R, thermal --, ``ROOT/labels/NAME.png`` uint8 class ids, and the split files
  ``ROOT/{train,val,test}.txt`` (some redistributions add ``test_day.txt``/``test_night.txt``).

Pair names: ``plain`` and ``mfnet``: the file stem. ``fmb`` and ``msrs``: ``SUBSET/STEM`` (e.g.
``train/00012``) as listed by :meth:`Layout.list_names`; a bare ``STEM`` is also accepted when
``ROOT`` is itself one subset folder (``ROOT/Visible`` resp. ``ROOT/vi`` exists) or when exactly
one subset holds it.

Splits (``split`` of :meth:`Layout.list_names` and :func:`segmif_core.data.pairs.list_pairs`):

- ``None``: every pair (``fmb``/``msrs``: every subset present, in the order train, test);
- ``fmb``/``msrs`` only: a subset name, ``"train"`` or ``"test"``, selects that subfolder;
- otherwise a text file with one name per line (blank lines and ``#`` comments skipped, the
  suffix of an accepted image format dropped: ``NAME.jpg`` -> ``NAME``). A relative path not found
  as given is looked up in ``ROOT``, then as ``ROOT/SPLIT.txt`` (so ``mfnet`` accepts ``"train"``
  for ``ROOT/train.txt``).

Thermal images may be 8 or 16 bit (one channel, or three equal channels); visible images are 8-bit
RGB (or gray, replicated); labels are 8-bit class ids (gray, palette indices or equal channels).

File formats (:data:`IMAGE_EXTENSIONS`): PNG, JPEG (``.jpg``/``.jpeg``), BMP and TIFF
(``.tif``/``.tiff``), extension matched case-insensitively (``NAME.JPG``). The files of a pair are
matched by stem (the file name without its extension), so formats may differ between folders
(``vis/NAME.jpg`` with ``ir/NAME.png``). Two files of one stem in one folder (``NAME.png`` and
``NAME.jpg``) are an error naming both (:class:`DatasetError`), never a silent choice. Images are
decoded as stored (OpenCV ``IMREAD_UNCHANGED``): a 16-bit PNG or TIFF thermal stays uint16, an
EXIF orientation tag is not applied. Labels must be lossless (:data:`LABEL_EXTENSIONS`: PNG, BMP,
TIFF): JPEG compression changes class ids near region borders (ringing blends neighbouring ids
into other, valid-looking ids), so a JPEG label is refused with an error saying so. A pair whose
file does not exist is given as ``STEM.png`` by :meth:`Layout.files`.

Training configuration keys (YAML ``data`` section; the trainer passes them on)::

    data:
      root: DIR            # dataset root (relative: to the config file)
      layout: auto         # plain | fmb | msrs | mfnet | auto (= detect_layout(root))
      classes: null        # class set: mfnet | msrs | fmb; null = the layout's (class_set_for)
      train_split: train   # a split as above: subset name, split file, or null (everything)
      val_split: test

``class_set_for(layout, classes)`` gives the class names and palettes: ``fmb`` -> FMB (15 classes),
``msrs`` and ``mfnet`` -> MFNet (9 classes), ``plain`` -> MFNet unless ``classes`` names another.
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from .classes import ClassSet, get_class_set

LAYOUT_NAMES = ("plain", "fmb", "msrs", "mfnet")
#: Accepted image file extensions (lower case; files match them case-insensitively), the default
#: (the name of a file that does not exist) first.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Lossy formats: accepted for visible and thermal images, refused for labels.
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
#: Accepted label file extensions (lossless formats only).
LABEL_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS if e not in LOSSY_EXTENSIONS)


class DatasetError(ValueError):
    """A dataset folder is missing files or holds unusable images."""


class PairPaths(NamedTuple):
    """Files of one pair: ``vis``, ``ir`` and ``label`` paths (``mfnet``: ``vis == ir``, the
    4-channel image). The label file may not exist (then its path is ``STEM.png``)."""

    vis: str
    ir: str
    label: str


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


def _check_sizes(name: str, arrays: dict) -> None:
    shapes = {k: a.shape[:2] for k, a in arrays.items() if a is not None}
    if len(set(shapes.values())) > 1:
        raise DatasetError(f"size mismatch {name} (HxW): " + ", ".join(
            f"{k} {h}x{w}" for k, (h, w) in shapes.items()))


def strip_image_extension(name: str) -> str:
    """``name`` without a trailing accepted image extension (any case): ``a.JPG`` -> ``a``."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


def _read_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = (ln.split("#", 1)[0].strip() for ln in f)
        return [strip_image_extension(ln) for ln in lines if ln]


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


@dataclass(frozen=True)
class Layout:
    """How a dataset is stored (base class; see the module docstring for the concrete layouts).

    Attributes:
        name: layout name (``plain``, ``fmb``, ``msrs``, ``mfnet``).
        classes: name of the dataset's class set (see :func:`~.classes.get_class_set`), or None
            when the layout does not imply one.
        subsets: subfolder names selectable as a split (``fmb``/``msrs``: ``train``, ``test``).
        roles: names of the files of one pair, in report order; the last one is ``label``.
    """

    name: str
    classes: str | None = None
    subsets: tuple[str, ...] = ()
    roles: tuple[str, ...] = ("vis", "ir", "label")

    def files(self, root: str, name: str) -> dict[str, str]:
        """``{role: path}`` of the pair ``name``, each file found by stem in any accepted format
        (see the module docstring); a file that does not exist is given as ``STEM.png`` (the
        label may not exist).

        Raises:
            DatasetError: the name cannot be placed (``fmb``/``msrs``: in no or several subsets),
                several files of the stem in one folder, or a JPEG label.
        """
        raise NotImplementedError

    def paths(self, root: str, name: str) -> PairPaths:
        """Visible, thermal and label paths of the pair ``name`` (see :meth:`files`)."""
        raise NotImplementedError

    def read(self, root: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Read one pair.

        Returns:
            ``(vis, ir, label)``: vis HxWx3 uint8 RGB; ir HxW uint8 or uint16 raw thermal; label
            HxW uint8 class ids, or None when the label file does not exist.
        Raises:
            DatasetError: missing/unreadable file, wrong bit depth or channels, sizes differ.
        """
        raise NotImplementedError

    def list_names(self, root: str, split: str | os.PathLike | None = None) -> list[str]:
        """Pair names of ``root`` for ``split`` (see the module docstring), sorted unless they
        come from a split file (file order kept).

        Raises:
            DatasetError: missing folder or split file, or no name found.
        """
        root = os.fspath(root)
        if split is None:
            names = self._all_names(root)
        elif os.fspath(split) in self.subsets:
            names = self._subset_names(root, os.fspath(split))
        else:
            names = _read_names(self._split_file(root, os.fspath(split)))
        if not names:
            raise DatasetError(f"no pairs found in {root}" + (f" for split {split}" if split
                                                               else ""))
        return names

    def detect(self, root: str) -> bool:
        """True when ``root`` has this layout's characteristic folders."""
        raise NotImplementedError

    def check_file(self, role: str, info: ImageInfo) -> str | None:
        """Problem with a file of ``role`` judged from its header, or None. Labels: 8 bit;
        visible: 8 bit; thermal: 8 or 16 bit."""
        if role in ("vis", "label") and info.bits != 8:
            return f"{'visible' if role == 'vis' else 'label'} must be 8 bit, got {info.bits} bit"
        return None

    # -- helpers
    def _all_names(self, root: str) -> list[str]:
        raise NotImplementedError

    def _subset_names(self, root: str, subset: str) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def _split_file(root: str, split: str) -> str:
        tried = [split]
        if not os.path.isabs(split):
            tried += [os.path.join(root, split), os.path.join(root, split + ".txt")]
        for path in tried:
            if os.path.isfile(path):
                return path
        raise DatasetError(f"split file {split} not found (also tried {', '.join(tried[1:])})"
                           if len(tried) > 1 else f"split file {split} not found")


@dataclass(frozen=True)
class FolderLayout(Layout):
    """Three parallel folders ``vis_dir``, ``ir_dir``, ``label_dir`` of ``STEM.EXT`` files (any
    accepted format, matched by stem), directly in the root or (with ``subsets``) in
    ``ROOT/SUBSET/``."""

    vis_dir: str = "vis"
    ir_dir: str = "ir"
    label_dir: str = "label"

    def _locate(self, root: str, name: str) -> tuple[str, str]:
        """(folder holding vis_dir/ir_dir/label_dir, stem) of a pair name."""
        if not self.subsets:
            return root, name
        head, sep, stem = name.partition("/")
        if sep and head in self.subsets:
            return os.path.join(root, head), stem
        if os.path.isdir(os.path.join(root, self.vis_dir)):
            return root, name
        hits = [s for s in self.subsets
                if find_image(os.path.join(root, s, self.vis_dir), name) is not None]
        if len(hits) == 1:
            return os.path.join(root, hits[0]), name
        where = os.path.join(root, "{" + ",".join(self.subsets) + "}", self.vis_dir)
        if hits:
            raise DatasetError(f"pair {name!r} is ambiguous: found in {where} for subsets "
                               f"{hits}; name it as SUBSET/{name}")
        raise DatasetError(f"pair {name!r}: "
                           + missing_message(os.path.join(where, name + IMAGE_EXTENSIONS[0])))

    def files(self, root, name):
        folder, stem = self._locate(os.fspath(root), name)
        return {role: image_path(os.path.join(folder, d), stem, role)
                for role, d in zip(self.roles, (self.vis_dir, self.ir_dir, self.label_dir))}

    def paths(self, root, name):
        f = self.files(root, name)
        return PairPaths(f["vis"], f["ir"], f["label"])

    def read(self, root, name):
        vis_path, ir_path, label_path = self.paths(root, name)
        for role, path in (("vis", vis_path), ("ir", ir_path)):
            if not os.path.isfile(path):
                raise DatasetError(f"pair {name!r}: {missing_message(path, role)}")
        vis = visible_rgb(read_image(vis_path), vis_path)
        ir = thermal_raw(read_image(ir_path), ir_path)
        label = read_label(label_path) if os.path.isfile(label_path) else None
        _check_sizes(name, {"vis": vis, "ir": ir, "label": label})
        return vis, ir, label

    def detect(self, root):
        root = os.fspath(root)
        return any(os.path.isdir(os.path.join(root, *sub, self.vis_dir))
                   for sub in [()] + [(s,) for s in self.subsets])

    def _all_names(self, root):
        if not self.subsets or os.path.isdir(os.path.join(root, self.vis_dir)):
            vis_dir = os.path.join(root, self.vis_dir)
            if not os.path.isdir(vis_dir):
                raise DatasetError(f"no visible folder {vis_dir}")
            return _stems(vis_dir)
        present = [s for s in self.subsets if os.path.isdir(os.path.join(root, s, self.vis_dir))]
        if not present:
            raise DatasetError(f"no visible folder {os.path.join(root, self.vis_dir)} nor "
                               + " nor ".join(os.path.join(root, s, self.vis_dir)
                                              for s in self.subsets))
        return [n for s in present for n in self._subset_names(root, s)]

    def _subset_names(self, root, subset):
        vis_dir = os.path.join(root, subset, self.vis_dir)
        if not os.path.isdir(vis_dir):
            raise DatasetError(f"no visible folder {vis_dir} for split {subset!r}")
        return [f"{subset}/{s}" for s in _stems(vis_dir)]


@dataclass(frozen=True)
class MFNetLayout(Layout):
    """The original MFNet release: ``images/NAME.png`` (R, G, B, thermal) + ``labels/NAME.png``
    (any accepted format, matched by stem; the 4-channel image needs one that holds 4 channels,
    PNG or TIFF)."""

    image_dir: str = "images"
    label_dir: str = "labels"

    def files(self, root, name):
        root = os.fspath(root)
        return {"image": image_path(os.path.join(root, self.image_dir), name, "image"),
                "label": image_path(os.path.join(root, self.label_dir), name, "label")}

    def paths(self, root, name):
        f = self.files(root, name)
        return PairPaths(f["image"], f["image"], f["label"])

    def read(self, root, name):
        image_file, _, label_path = self.paths(root, name)
        if not os.path.isfile(image_file):
            raise DatasetError(f"pair {name!r}: {missing_message(image_file, 'image')}")
        img = read_image(image_file)
        if img.ndim != 3 or img.shape[2] != 4 or img.dtype != np.uint8:
            raise DatasetError(f"{image_file}: MFNet image must be 8-bit with 4 channels (R, G, B, "
                               f"thermal), got {1 if img.ndim == 2 else img.shape[2]} channel(s) "
                               f"{img.dtype}")
        vis = np.ascontiguousarray(img[..., 2::-1])  # OpenCV gives B, G, R, thermal
        ir = np.ascontiguousarray(img[..., 3])
        label = read_label(label_path) if os.path.isfile(label_path) else None
        _check_sizes(name, {"image": vis, "label": label})
        return vis, ir, label

    def detect(self, root):
        root = os.fspath(root)
        return os.path.isdir(os.path.join(root, self.image_dir)) and (
            os.path.isdir(os.path.join(root, self.label_dir))
            or any(os.path.isfile(os.path.join(root, f"{s}.txt"))
                   for s in ("train", "val", "test")))

    def check_file(self, role, info):
        if role == "image" and (info.bits != 8 or info.channels != 4):
            return (f"MFNet image must be 8 bit with 4 channels (R, G, B, thermal), got "
                    f"{info.channels} channel(s) {info.bits} bit")
        return super().check_file(role, info)

    def _all_names(self, root):
        folder = os.path.join(root, self.image_dir)
        if not os.path.isdir(folder):
            raise DatasetError(f"no image folder {folder}")
        return _stems(folder)


PLAIN = FolderLayout("plain")
FMB = FolderLayout("fmb", classes="fmb", subsets=("train", "test"), vis_dir="Visible",
                   ir_dir="Infrared", label_dir="Label")
MSRS = FolderLayout("msrs", classes="msrs", subsets=("train", "test"), vis_dir="vi", ir_dir="ir",
                    label_dir="Segmentation_labels")
MFNET = MFNetLayout("mfnet", classes="mfnet", roles=("image", "label"))
_LAYOUTS = {"plain": PLAIN, "fmb": FMB, "msrs": MSRS, "mfnet": MFNET}


def get_layout(layout: str | Layout, root: str | os.PathLike | None = None) -> Layout:
    """The layout called ``layout`` (case-insensitive), ``"auto"`` = :func:`detect_layout` of
    ``root``, or ``layout`` itself when it already is a :class:`Layout`.

    Raises:
        ValueError: unknown name (the message lists the known ones), or ``"auto"`` without root.
    """
    if isinstance(layout, Layout):
        return layout
    key = layout.lower() if isinstance(layout, str) else layout
    if key == "auto":
        if root is None:
            raise ValueError("layout 'auto' needs the dataset root to detect the layout")
        return detect_layout(root)
    try:
        return _LAYOUTS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset layout {layout!r}; known: "
                         f"{', '.join(LAYOUT_NAMES)}, auto") from None


def detect_layout(root: str | os.PathLike) -> Layout:
    """Guess the layout of ``root`` from its folders, first match wins:

    ``plain`` if ``root/vis`` exists; ``fmb`` if ``Visible`` exists in root or in
    ``root/{train,test}``; ``msrs`` likewise with ``vi``; ``mfnet`` if ``root/images`` exists with
    ``root/labels`` or a ``{train,val,test}.txt``; otherwise ``plain`` (whose errors then name the
    missing folders). So a folder the plain reader handles is always detected as ``plain``.
    """
    for layout in (PLAIN, FMB, MSRS, MFNET):
        if layout.detect(root):
            return layout
    return PLAIN


def class_set_for(layout: str | Layout, classes: str | None = None,
                  root: str | os.PathLike | None = None) -> ClassSet:
    """Class names and palette for a dataset: ``classes`` when given (config ``data.classes``),
    else the layout's (``fmb`` -> FMB, ``msrs``/``mfnet`` -> MFNet), else MFNet (``plain``).

    Raises:
        ValueError: unknown class set or layout name.
    """
    if classes:
        return get_class_set(classes)
    return get_class_set(get_layout(layout, root).classes or "mfnet")
