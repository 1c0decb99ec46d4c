"""Registered visible/thermal pairs stored as plain folders, and the training/evaluation dataset.

Layout: ``root/vis/NAME.png`` (visible, RGB or gray), ``root/ir/NAME.png`` (thermal registered
onto the visible camera, 8 or 16 bit, 1 channel or 3 equal channels) and optionally
``root/label/NAME.png`` (uint8 class ids). Same width and height within a pair.
"""
from __future__ import annotations

import os
import struct
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .thermal import normalize_thermal

MODALITIES = ("vis", "ir", "label")


class DatasetError(ValueError):
    """A dataset folder is missing files or holds unusable images."""


def _path(root: str, modality: str, name: str) -> str:
    return os.path.join(root, modality, name + ".png")


def list_pairs(root: str, split: str | None = None) -> list[str]:
    """Names of the pairs in ``root``.

    Args:
        root: dataset folder with ``vis/``, ``ir/`` and optionally ``label/``.
        split: text file with one name per line (blank lines and ``#`` comments skipped, a
            ``.png`` suffix is dropped); a relative path not found as given is looked up in
            ``root``. ``None``: every ``*.png`` in ``root/vis``, sorted.
    Returns:
        list of names (file stems).
    Raises:
        DatasetError: ``root/vis`` or the split file is missing, or no name is found.
    """
    if split is None:
        vis_dir = os.path.join(root, "vis")
        if not os.path.isdir(vis_dir):
            raise DatasetError(f"no visible folder {vis_dir}")
        names = sorted(f[:-4] for f in os.listdir(vis_dir) if f.endswith(".png"))
    else:
        path = split
        if not os.path.isfile(path) and not os.path.isabs(path):
            path = os.path.join(root, split)
        if not os.path.isfile(path):
            raise DatasetError(f"split file {split} not found (also tried {path})")
        with open(path, encoding="utf-8") as f:
            lines = (ln.split("#", 1)[0].strip() for ln in f)
            names = [ln[:-4] if ln.endswith(".png") else ln for ln in lines if ln]
    if not names:
        raise DatasetError(f"no pairs found in {root}" + (f" for split {split}" if split else ""))
    return names


def _image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image; read from the PNG header without decoding when possible."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return img.shape[1], img.shape[0]


def check_pairs(root: str, names: Sequence[str], require_labels: bool) -> None:
    """Check that every pair is complete and size-consistent before a long run starts.

    Only file headers are read. Labels are size-checked whenever they exist.

    Args:
        root: dataset folder.
        names: pair names, e.g. from :func:`list_pairs`.
        require_labels: a missing ``label/NAME.png`` is an error.
    Raises:
        DatasetError: listing every missing file and every size mismatch (name and WxH sizes).
    """
    if not names:
        raise DatasetError(f"no pairs to check in {root}")
    problems = []
    for name in names:
        sizes = {}
        for mod in MODALITIES:
            path = _path(root, mod, name)
            if os.path.isfile(path):
                sizes[mod] = _image_size(path)
            elif mod != "label" or require_labels:
                problems.append(f"missing {path}")
        if len(set(sizes.values())) > 1:
            problems.append(f"size mismatch {name}: " + ", ".join(
                f"{mod} {w}x{h}" for mod, (w, h) in sizes.items()))
    if problems:
        shown = problems[:30]
        if len(problems) > 30:
            shown.append(f"... and {len(problems) - 30} more")
        raise DatasetError(f"{len(problems)} problem(s) in {root} ({len(names)} pairs, sizes "
                           "WxH):\n  " + "\n  ".join(shown))


def _read(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return img


def _single_channel(img: np.ndarray, path: str) -> np.ndarray:
    """HxW from HxW, or from HxWxC with equal colour channels."""
    if img.ndim == 2:
        return img
    if img.shape[2] == 1 or (img.shape[2] in (3, 4) and np.array_equal(img[..., 0], img[..., 1])
                             and np.array_equal(img[..., 0], img[..., 2])):
        return np.ascontiguousarray(img[..., 0])
    raise DatasetError(f"{path}: expected one channel or equal channels, got {img.shape[2]} "
                       "different channels")


def read_pair(root: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read one pair.

    Returns:
        ``(vis, ir, label)``: vis HxWx3 uint8 RGB (gray visible replicated to 3 channels, alpha
        dropped); ir HxW uint8 or uint16 raw thermal (3 equal channels reduced to one); label HxW
        uint8 class ids, or ``None`` when ``root/label/NAME.png`` does not exist.
    Raises:
        DatasetError: missing/unreadable file, visible not 8 bit, thermal not 8/16 bit or with
        different colour channels, label not 8 bit single channel, or sizes differ.
    """
    vis_path, ir_path, label_path = (_path(root, m, name) for m in MODALITIES)
    vis = _read(vis_path)
    if vis.dtype != np.uint8:
        raise DatasetError(f"{vis_path}: visible must be 8 bit, got {vis.dtype}")
    if vis.ndim == 2 or vis.shape[2] == 1:
        vis = cv2.cvtColor(vis.reshape(vis.shape[:2]), cv2.COLOR_GRAY2RGB)
    else:
        vis = cv2.cvtColor(vis, cv2.COLOR_BGRA2RGB if vis.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    ir = _single_channel(_read(ir_path), ir_path)
    if ir.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{ir_path}: thermal must be 8 or 16 bit, got {ir.dtype}")
    label = None
    if os.path.isfile(label_path):
        label = _single_channel(_read(label_path), label_path)
        if label.dtype != np.uint8:
            raise DatasetError(f"{label_path}: label must be uint8 class ids, got {label.dtype}")
    shapes = [a.shape[:2] for a in (vis, ir, label) if a is not None]
    if len(set(shapes)) > 1:
        raise DatasetError(f"size mismatch {name} (HxW): {shapes}")
    return vis, ir, label


def _resize(img: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if img.shape[:2] == tuple(hw):
        return img
    return cv2.resize(img, (hw[1], hw[0]),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def augment_pair(vis: np.ndarray, ir: np.ndarray, label: np.ndarray, base: tuple[int, int],
                 crop: tuple[int, int], rng: np.random.Generator,
                 scale_range: tuple[float, float] = (0.5, 2.0), brightness: float = 0.2,
                 flip: bool = True, ignore_index: int = 255):
    """Training augmentation of SegMiF (Sec. 3.4): random resize, random crop, horizontal flip,
    brightness jitter. The geometry is identical for the three images.

    1. resize to ``round(s * base)`` with ``s ~ U(scale_range)`` (bilinear images, nearest label);
    2. crop ``crop`` at a uniformly random offset; where the resized image is smaller it is padded
       at the bottom/right (images 0, label ``ignore_index``);
    3. flip left-right with probability 0.5 (if ``flip``);
    4. multiply the visible image only by ``b ~ U(1 - brightness, 1 + brightness)``, clip to [0, 1].

    Every random number is drawn whatever the options, so two calls with equally seeded ``rng``
    share their geometry even if ``brightness`` or ``flip`` differ.

    Args:
        vis: HxWx3 float32 in [0, 1]; ir: HxW float32 in [0, 1]; label: HxW integer ids.
        base: (height, width) that scale 1 resizes to. crop: (height, width) of the output.
        rng: source of randomness.
    Returns:
        ``(vis, ir, label)`` of spatial size ``crop``, same dtypes.
    """
    s = rng.uniform(*scale_range)
    hw = (max(1, round(base[0] * s)), max(1, round(base[1] * s)))
    vis, ir, label = _resize(vis, hw), _resize(ir, hw), _resize(label, hw, nearest=True)
    (ch, cw), (h, w) = crop, hw
    y0, x0 = int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))
    do_flip, b = rng.random() < 0.5, rng.uniform(1.0 - brightness, 1.0 + brightness)

    def window(img: np.ndarray, fill) -> np.ndarray:
        out = np.full((ch, cw) + img.shape[2:], fill, img.dtype)
        part = img[y0:y0 + ch, x0:x0 + cw]
        out[:part.shape[0], :part.shape[1]] = part
        return out[:, ::-1] if flip and do_flip else out

    vis, ir, label = window(vis, 0), window(ir, 0), window(label, ignore_index)
    vis = np.clip(vis * np.float32(b), 0.0, 1.0).astype(np.float32)
    return vis, np.ascontiguousarray(ir), np.ascontiguousarray(label)


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
        flip: random horizontal flips in training.
        ignore_index: label value of pixels without ground truth, in [0, 255].
    Raises:
        ValueError: invalid sizes or ranges, or ``train`` with neither ``size`` nor ``crop``.
        DatasetError: at item access, for unreadable or inconsistent files.
    """

    def __init__(self, root: str, names: Sequence[str], size: tuple[int, int] | None = None,
                 train: bool = False, thermal_mode: str = "percentile", thermal_low: float = 1.0,
                 thermal_high: float = 99.0, thermal_min: float = 0, thermal_max: float = 65535,
                 scale_range: tuple[float, float] = (0.5, 2.0),
                 crop: tuple[int, int] | None = None, brightness: float = 0.2, flip: bool = True,
                 ignore_index: int = 255):
        for what, hw in (("size", size), ("crop", crop)):
            if hw is not None and (len(hw) != 2 or min(hw) < 1):
                raise ValueError(f"{what} must be (height, width) >= 1, got {hw}")
        if train and (crop or size) is None:
            raise ValueError("training needs a crop or size")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
        if not 0 <= brightness < 1:
            raise ValueError(f"brightness must be in [0, 1), got {brightness}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must fit uint8 labels (0-255), got {ignore_index}")
        self.root, self.names, self.train = root, list(names), train
        self.size = tuple(size) if size is not None else None
        self.crop = tuple(crop) if crop is not None else self.size
        self.thermal = dict(mode=thermal_mode, low=thermal_low, high=thermal_high,
                            vmin=thermal_min, vmax=thermal_max)
        normalize_thermal(np.zeros((1, 1), np.uint16), **self.thermal)  # validate the arguments
        self.scale_range, self.brightness, self.flip = tuple(scale_range), brightness, flip
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        vis, ir, label = read_pair(self.root, name)
        vis = vis.astype(np.float32) / np.float32(255.0)
        ir = normalize_thermal(ir, **self.thermal)
        if label is None:
            label = np.full(ir.shape, self.ignore_index, np.uint8)
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            vis, ir, label = augment_pair(vis, ir, label, self.size or ir.shape, self.crop, rng,
                                          self.scale_range, self.brightness, self.flip,
                                          self.ignore_index)
        elif self.size is not None:
            vis, ir, label = (_resize(vis, self.size), _resize(ir, self.size),
                              _resize(label, self.size, nearest=True))
        return {"vis": torch.from_numpy(np.ascontiguousarray(vis.transpose(2, 0, 1))),
                "ir": torch.from_numpy(ir)[None],
                "label": torch.from_numpy(label.astype(np.int64)),
                "name": name}
