"""Dataset folder layouts: where the visible, thermal and label files of a pair are, and how a pair
is read.

Layouts (``ROOT`` is the dataset root, ``NAME`` a pair name; ``.png`` below stands for any
accepted image format, see :mod:`.images`):

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

File formats (PNG, JPEG, BMP, TIFF; lossless labels only), matching the files of a pair by stem,
header checks and decoding: :mod:`.images`.

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
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .classes import ClassSet, get_class_set
from .images import (IMAGE_EXTENSIONS, DatasetError, ImageInfo, _stems, find_image, image_path,
                     missing_message, read_image, read_label, strip_image_extension, thermal_raw,
                     visible_rgb)
# names that moved to .images and are still imported from here (segmif_core.data.layouts)
from .images import LABEL_EXTENSIONS, LOSSY_EXTENSIONS, image_info  # noqa: F401,E402

LAYOUT_NAMES = ("plain", "fmb", "msrs", "mfnet")


class PairPaths(NamedTuple):
    """Files of one pair: ``vis``, ``ir`` and ``label`` paths (``mfnet``: ``vis == ir``, the
    4-channel image). The label file may not exist (then its path is ``STEM.png``)."""

    vis: str
    ir: str
    label: str


def _check_sizes(name: str, arrays: dict) -> None:
    shapes = {k: a.shape[:2] for k, a in arrays.items() if a is not None}
    if len(set(shapes.values())) > 1:
        raise DatasetError(f"size mismatch {name} (HxW): " + ", ".join(
            f"{k} {h}x{w}" for k, (h, w) in shapes.items()))


def _read_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = (ln.split("#", 1)[0].strip() for ln in f)
        return [strip_image_extension(ln) for ln in lines if ln]


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
