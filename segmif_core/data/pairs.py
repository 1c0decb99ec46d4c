"""Registered visible/thermal pairs: listing, pre-flight checks, reading, and the
training/evaluation dataset.

Every function takes an optional ``layout`` (a name or a :class:`~.layouts.Layout`): ``plain``
(``root/vis/NAME.EXT``, ``root/ir/NAME.EXT``, optional ``root/label/NAME.EXT``), ``fmb``,
``msrs``, ``mfnet`` (the published layouts, see :mod:`segmif_core.data.layouts`, which also
documents the ``data.layout`` / ``data.classes`` config keys) or ``auto`` (default:
:func:`~.layouts.detect_layout`, which picks ``plain`` for every folder with ``root/vis`` and
falls back to ``plain``, so plain folders behave exactly as without the argument). Thermal is
8 or 16 bit (1 channel or 3 equal channels); same width and height within a pair.

Every layout reads PNG, JPEG (``.jpg``/``.jpeg``), BMP and TIFF (``.tif``/``.tiff``), extensions in
any case, and matches the files of a pair by stem, so ``vis/NAME.jpg`` pairs with ``ir/NAME.png``
(RoadScene and LLVIP ship ``.jpg``, TNO ``.bmp`` and ``.tif``). 16-bit TIFF or PNG
thermal is read as uint16, unchanged. Two files of one stem in one folder are an error naming both;
labels must be lossless (PNG, BMP, TIFF): a JPEG label is refused, with the reason. See
:mod:`segmif_core.data.layouts` (``IMAGE_EXTENSIONS``, ``LABEL_EXTENSIONS``).
"""
from __future__ import annotations

import copy
import os
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .modality import draw_modality, substitute
from .images import DatasetError, image_info, missing_message, read_label
from .layouts import Layout, get_layout
from .thermal import normalize_thermal

MODALITIES = ("vis", "ir", "label")  # roles of the plain layout's folders


def list_pairs(root: str, split: str | None = None, *, layout: str | Layout = "auto") -> list[str]:
    """Names of the pairs in ``root``.

    Args:
        root: dataset folder (plain layout: with ``vis/``, ``ir/`` and optionally ``label/``).
        split: ``None``: every pair (plain: the stems of the images in ``root/vis``, any accepted
            format, sorted). A text file with one name per line (blank lines and ``#`` comments
            skipped, an image suffix such as ``.png`` or ``.jpg`` is dropped); a relative path
            not found as given is looked up in ``root``, then as ``root/SPLIT.txt``.
            ``fmb``/``msrs``: also ``"train"`` or ``"test"``, the subfolder.
        layout: layout name, :class:`~.layouts.Layout`, or ``"auto"``.
    Returns:
        list of names (plain/mfnet: file stems; fmb/msrs: ``SUBSET/STEM``).
    Raises:
        DatasetError: the visible folder or the split file is missing, no name is found, or
            (``split=None``) a stem is shared by several files of the visible folder (e.g.
            ``a.png`` and ``a.jpg``; the message names them).
        ValueError: unknown layout name.
    """
    return get_layout(layout, root).list_names(root, split)


def check_pairs(root: str, names: Sequence[str], require_labels: bool, *,
                layout: str | Layout = "auto", full: bool = False, num_classes: int | None = None,
                ignore_index: int = 255) -> None:
    """Check that every pair is complete and consistent before a long run starts.

    By default only file headers are read (PNG, JPEG, BMP, TIFF; other encodings are decoded):
    every file must exist in one accepted format (the label only with
    ``require_labels``), have the right bit depth (visible and label 8 bit, thermal 8 or 16 bit;
    ``mfnet`` images 8-bit with 4 channels), and the files of a pair the same width and height
    (labels are checked whenever they exist). ``full=True`` also decodes every pair as training
    will (catching truncated files or pseudo-coloured thermal); ``num_classes`` decodes the labels
    and refuses ids ``>= num_classes`` other than ``ignore_index``.

    Args:
        root: dataset folder.
        names: pair names, e.g. from :func:`list_pairs`.
        require_labels: a missing label file is an error.
        layout: layout name, :class:`~.layouts.Layout`, or ``"auto"``.
        full: decode every pair (slower: about one read of the data set).
        num_classes: if given, check label ids are in ``[0, num_classes)`` or ``ignore_index``.
        ignore_index: label value allowed besides the class ids.
    Raises:
        DatasetError: listing every problem (at most 30 shown): missing files and size mismatches
            with the pair name and the WxH sizes, bad bit depths or channels, unreadable files,
            several files of one stem in a folder, JPEG labels, label ids out of range.
        ValueError: unknown layout name.
    """
    lay = get_layout(layout, root)
    if not names:
        raise DatasetError(f"no pairs to check in {root}")
    problems = []
    for name in names:
        try:
            files = lay.files(root, name)
        except DatasetError as e:
            problems.append(str(e))
            continue
        sizes, complete = {}, True
        for role, path in files.items():
            if not os.path.isfile(path):
                if role != "label" or require_labels:
                    problems.append(missing_message(path, role))
                    complete = False
                continue
            try:
                info = image_info(path)
            except DatasetError as e:
                problems.append(str(e))
                complete = False
                continue
            sizes[role] = (info.width, info.height)
            bad = lay.check_file(role, info)
            if bad:
                problems.append(f"{path}: {bad}")
                complete = False
        if len(set(sizes.values())) > 1:
            problems.append(f"size mismatch {name}: " + ", ".join(
                f"{role} {w}x{h}" for role, (w, h) in sizes.items()))
            complete = False
        if complete and (full or num_classes is not None):
            try:
                label = lay.read(root, name)[2] if full else _read_label_only(lay, root, name)
            except DatasetError as e:
                problems.append(str(e))
                continue
            if num_classes is not None and label is not None:
                ids = np.unique(label)
                bad_ids = ids[(ids >= num_classes) & (ids != ignore_index)]
                if bad_ids.size:
                    problems.append(f"label ids out of range in {name}: {bad_ids.tolist()} "
                                    f"(classes 0-{num_classes - 1}, ignore {ignore_index})")
    if problems:
        shown = problems[:30]
        if len(problems) > 30:
            shown.append(f"... and {len(problems) - 30} more")
        raise DatasetError(f"{len(problems)} problem(s) in {root} ({len(names)} pairs, sizes "
                           "WxH):\n  " + "\n  ".join(shown))


def _read_label_only(lay: Layout, root: str, name: str) -> np.ndarray | None:
    path = lay.paths(root, name).label
    return read_label(path) if os.path.isfile(path) else None


def read_pair(root: str, name: str, *, layout: str | Layout = "auto"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read one pair.

    Args:
        root: dataset folder; name: pair name (see :func:`list_pairs`).
        layout: layout name, :class:`~.layouts.Layout`, or ``"auto"``.
    Returns:
        ``(vis, ir, label)``: vis HxWx3 uint8 RGB (gray visible replicated to 3 channels, alpha
        dropped; ``mfnet``: channels 0-2 of the 4-channel image); ir HxW uint8 or uint16 raw
        thermal (3 equal channels reduced to one; ``mfnet``: the 4th channel); label HxW uint8
        class ids, or ``None`` when the pair has no label file. Files in any accepted format
        (module docstring); a 16-bit thermal PNG/TIFF gives its values unchanged.
    Raises:
        DatasetError: missing/unreadable file, several files of one stem in a folder, a JPEG
        label, visible not 8 bit, thermal not 8/16 bit or with different colour channels, label
        not 8 bit single channel, or sizes differ.
        ValueError: unknown layout name.
    """
    return get_layout(layout, root).read(root, name)


def _resize(img: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if img.shape[:2] == tuple(hw):
        return img
    return cv2.resize(img, (hw[1], hw[0]),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _check_hw(what: str, hw) -> None:
    """Raise ValueError unless ``hw`` is a (height, width) pair of sizes >= 1."""
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"{what} must be (height, width) >= 1, got {hw}")


def augment_pair(vis: np.ndarray, ir: np.ndarray, label: np.ndarray, base: tuple[int, int],
                 crop: tuple[int, int], rng: np.random.Generator,
                 scale_range: tuple[float, float] = (0.5, 2.0), brightness: float = 0.2,
                 flip: bool = True, ignore_index: int = 255,
                 thermal_gain: tuple[float, float] = (1.0, 1.0)):
    """Training augmentation of SegMiF (Sec. 3.4): random resize, random crop, horizontal flip,
    brightness jitter, and (ours) a thermal gain. The geometry is identical for the three images.

    1. resize to ``round(s * base)`` with ``s ~ U(scale_range)`` (bilinear images, nearest label);
    2. crop ``crop`` at a uniformly random offset; where the resized image is smaller it is padded
       at the bottom/right (images 0, label ``ignore_index``);
    3. flip left-right with probability 0.5 (if ``flip``);
    4. multiply the visible image only by ``b ~ U(1 - brightness, 1 + brightness)``, clip to [0, 1];
    5. multiply the thermal image by ``g``, log-uniform in ``thermal_gain`` (lo, hi), clip to
       [0, 1] (ours, not the paper's: thermal cameras differ in level; MFNet's 8-bit thermal
       averages 65-73 of 255, MSRS's 15-21, and a fusion network trained on one alone learns
       the level instead of comparing the two images; (1, 1) = off).

    Every random number is drawn whatever the options, so two calls with equally seeded ``rng``
    share their geometry even if ``brightness`` or ``flip`` differ.

    Args:
        vis: HxWx3 float32 in [0, 1]; ir: HxW float32 in [0, 1], or None (then returned as
            None: augmenting a single image, e.g. a fused one); label: HxW integer ids.
        base: (height, width) that scale 1 resizes to. crop: (height, width) of the output.
        rng: source of randomness.
    Returns:
        ``(vis, ir, label)`` of spatial size ``crop``, same dtypes.
    """
    s = rng.uniform(*scale_range)
    hw = (max(1, round(base[0] * s)), max(1, round(base[1] * s)))
    vis, label = _resize(vis, hw), _resize(label, hw, nearest=True)
    ir = None if ir is None else _resize(ir, hw)
    (ch, cw), (h, w) = crop, hw
    y0, x0 = int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))
    do_flip, b = rng.random() < 0.5, rng.uniform(1.0 - brightness, 1.0 + brightness)
    g = float(np.exp(rng.uniform(np.log(thermal_gain[0]), np.log(thermal_gain[1]))))

    def window(img: np.ndarray, fill) -> np.ndarray:
        out = np.full((ch, cw) + img.shape[2:], fill, img.dtype)
        part = img[y0:y0 + ch, x0:x0 + cw]
        out[:part.shape[0], :part.shape[1]] = part
        return out[:, ::-1] if flip and do_flip else out

    vis, label = window(vis, 0), window(label, ignore_index)
    ir = None if ir is None else np.ascontiguousarray(window(ir, 0))
    vis = np.clip(vis * np.float32(b), 0.0, 1.0).astype(np.float32)
    if ir is not None and g != 1.0:
        ir = np.clip(ir * np.float32(g), 0.0, 1.0).astype(np.float32)
    return vis, ir, np.ascontiguousarray(label)


class PairDataset(Dataset):
    """Visible/thermal(/label) pairs as network-ready tensors.

    Items are dicts: ``vis`` float32 3xHxW RGB in [0, 1]; ``ir`` float32 1xHxW in [0, 1] (see
    :func:`~segmif_core.data.thermal.normalize_thermal`, applied to the full frame before any
    resize); ``label`` int64 HxW class ids, ``ignore_index`` where padded by a crop or everywhere
    when the pair has no label file; ``name`` str.

    Evaluation (``train=False``): resize to ``size`` (bilinear images, nearest label), or keep the
    native size when ``size`` is None. Training: :func:`augment_pair` with scale relative to
    ``size`` (native size if None) and output ``crop`` (default ``size``). Randomness comes from a
    numpy generator seeded by one draw of torch's global RNG, which ``DataLoader`` seeds per worker,
    so a run is reproducible given ``torch.manual_seed`` (or the loader's ``generator``).

    Args:
        root: dataset folder; names: pair names (see :func:`list_pairs`).
        size: (height, width) network input size, or None.
        train: enable augmentation.
        thermal_mode, thermal_low, thermal_high, thermal_min, thermal_max: thermal normalisation.
        scale_range: (min, max) random resize factor, 0 < min <= max.
        crop: (height, width) of training crops; None = ``size``.
        brightness: visible brightness jitter amplitude in [0, 1).
        thermal_gain: (lo, hi), 0 < lo <= hi: range of the log-uniform thermal gain in training
            (:func:`augment_pair`); (1, 1) = off.
        flip: random horizontal flips in training.
        ignore_index: label value of pixels without ground truth, in [0, 255].
        layout: layout name, :class:`~.layouts.Layout`, or ``"auto"`` (detected once, here);
            the resolved :class:`~.layouts.Layout` is kept as ``self.layout``.
        cache: keep every decoded pair in memory after its first read (the files as stored:
            8-bit visible, 8/16-bit thermal, 8-bit label; about 2 MB per 640x480 pair; read-only
            arrays), so that later epochs skip image decoding. The process that reads holds the
            cache: the main process, and each ``DataLoader`` worker its own copy. Use it with
            few workers and a dataset that fits in memory.
    Raises:
        ValueError: invalid sizes or ranges, ``train`` with neither ``size`` nor ``crop``, or an
            unknown layout name.
        DatasetError: at item access, for unreadable or inconsistent files.
    """

    def __init__(self, root: str, names: Sequence[str], size: tuple[int, int] | None = None,
                 train: bool = False, thermal_mode: str = "percentile", thermal_low: float = 1.0,
                 thermal_high: float = 99.0, thermal_min: float = 0, thermal_max: float = 65535,
                 scale_range: tuple[float, float] = (0.5, 2.0),
                 crop: tuple[int, int] | None = None, brightness: float = 0.2, flip: bool = True,
                 ignore_index: int = 255, layout: str | Layout = "auto", cache: bool = False,
                 modality_dropout: float = 0.0,
                 thermal_gain: tuple[float, float] = (1.0, 1.0)):
        for what, hw in (("size", size), ("crop", crop)):
            if hw is not None:
                _check_hw(what, hw)
        if train and (crop or size) is None:
            raise ValueError("training needs a crop or size")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
        if not 0 <= brightness < 1:
            raise ValueError(f"brightness must be in [0, 1), got {brightness}")
        if len(thermal_gain) != 2 or not 0 < thermal_gain[0] <= thermal_gain[1]:
            raise ValueError(f"thermal_gain must be (lo, hi) with 0 < lo <= hi, got "
                             f"{thermal_gain}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must fit uint8 labels (0-255), got {ignore_index}")
        self.root, self.names, self.train = root, list(names), train
        self.size = tuple(size) if size is not None else None
        self.crop = tuple(crop) if crop is not None else self.size
        self.thermal = dict(mode=thermal_mode, low=thermal_low, high=thermal_high,
                            vmin=thermal_min, vmax=thermal_max)
        normalize_thermal(np.zeros((1, 1), np.uint16), **self.thermal)  # validate the arguments
        self.scale_range, self.brightness, self.flip = tuple(scale_range), brightness, flip
        self.thermal_gain = tuple(float(x) for x in thermal_gain)
        self.ignore_index = ignore_index
        self.layout = get_layout(layout, root)
        self._cache: dict[int, tuple] | None = {} if cache else None
        draw_modality(np.random.default_rng(0), modality_dropout)  # validate
        self.modality_dropout = float(modality_dropout)

    def __len__(self) -> int:
        return len(self.names)

    def augment(self, vis: np.ndarray, ir: np.ndarray | None, label: np.ndarray,
                rng: np.random.Generator):
        """:func:`augment_pair` with this dataset's settings (scale relative to ``size``, or to
        the image's own size when ``size`` is None; output ``crop``). ``ir`` may be None."""
        return augment_pair(vis, ir, label, self.size or label.shape[:2], self.crop, rng,
                            self.scale_range, self.brightness, self.flip, self.ignore_index,
                            self.thermal_gain)

    def with_crop(self, crop: tuple[int, int]) -> "PairDataset":
        """The same pairs and augmentation with output size ``crop`` (height, width), sharing
        this dataset's decode cache. Raises ValueError for a crop that is not two sizes >= 1."""
        _check_hw("crop", crop)
        other = copy.copy(self)
        other.crop = tuple(int(c) for c in crop)
        return other

    def without_augmentation(self) -> "PairDataset":
        """The same pairs as evaluation items (resized to ``size``, or at their native size when
        ``size`` is None; no augmentation), sharing this dataset's decode cache."""
        plain = copy.copy(self)
        plain.train = False
        return plain

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        if self._cache is None:
            vis, ir, label = self.layout.read(self.root, name)
        else:
            if index not in self._cache:
                arrays = self.layout.read(self.root, name)
                for a in arrays:
                    if a is not None:
                        a.setflags(write=False)
                self._cache[index] = arrays
            vis, ir, label = self._cache[index]  # read-only use below: every step copies
        vis = vis.astype(np.float32) / np.float32(255.0)
        ir = normalize_thermal(ir, **self.thermal)
        if label is None:
            label = np.full(ir.shape, self.ignore_index, np.uint8)
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            vis, ir, label = self.augment(vis, ir, label, rng)
            if self.modality_dropout:
                vis, ir = substitute(vis, ir, draw_modality(rng, self.modality_dropout))
        elif self.size is not None:
            vis, ir, label = (_resize(vis, self.size), _resize(ir, self.size),
                              _resize(label, self.size, nearest=True))
        return {"vis": torch.from_numpy(np.ascontiguousarray(vis.transpose(2, 0, 1))),
                "ir": torch.from_numpy(ir)[None],
                "label": torch.from_numpy(label.astype(np.int64)),
                "name": name}
