"""Segmentation class sets (names and display colours) as data.

Class ids are the pixel values of label images and of ``segmentation/labels``. Sources: MFNet
(Ha et al., IROS 2017; palette of the MFNet/MSRS tools, unlabelled black) and FMB (Liu et al.,
ICCV 2023, 15 labels; no official palette, so Cityscapes colours are used for the classes the two
share).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ClassSet:
    """An ordered set of classes: ``names[i]`` and ``colors[i]`` belong to class id ``i``.

    Attributes:
        name: identifier of the set, e.g. ``"mfnet"``.
        names: class names, index = class id.
        colors: display colours as ``(r, g, b)`` tuples of ints in [0, 255], same order as names.
    """

    name: str
    names: tuple[str, ...]
    colors: tuple[RGB, ...]

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.colors):
            raise ValueError(f"class set {self.name!r}: {len(self.names)} names but "
                             f"{len(self.colors)} colours")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.colors):
            raise ValueError(f"class set {self.name!r}: colours must be (r, g, b) in [0, 255]")

    @classmethod
    def from_dict(cls, d: dict) -> "ClassSet":
        """The class set stored in a checkpoint or an exported file's metadata: a dict with
        'name', 'names' and 'colors' (lists). Raises ValueError as the constructor, KeyError for
        a missing key."""
        return cls(d["name"], tuple(d["names"]), tuple(tuple(x) for x in d["colors"]))

    @property
    def num_classes(self) -> int:
        """Number of classes (ids ``0 .. num_classes - 1``)."""
        return len(self.names)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Colour a label image.

        Args:
            labels: HxW integer array of class ids (typically uint8).
        Returns:
            HxWx3 uint8 RGB image; ids outside ``[0, num_classes)`` (e.g. 255 = ignore) are black.
        Raises:
            ValueError: ``labels`` is not a 2-D integer array.
        """
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a 2-D integer array, got shape {labels.shape} "
                             f"dtype {labels.dtype}")
        n = self.num_classes
        lut = np.zeros((n + 1, 3), np.uint8)
        lut[:n] = self.colors
        ids = np.where((labels >= 0) & (labels < n), labels, n)
        return lut[ids]


MFNET_CLASSES = ClassSet(
    "mfnet",
    ("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone",
     "bump"),
    ((0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 192), (128, 128, 0),
     (64, 64, 128), (192, 128, 128), (192, 64, 0)),
)

FMB_CLASSES = ClassSet(
    "fmb",
    ("unlabelled", "road", "sidewalk", "building", "traffic_light", "traffic_sign", "vegetation",
     "sky", "person", "car", "truck", "bus", "motorcycle", "bicycle", "pole"),
    ((0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (250, 170, 30), (220, 220, 0),
     (107, 142, 35), (70, 130, 180), (220, 20, 60), (0, 0, 142), (0, 0, 70), (0, 60, 100),
     (0, 0, 230), (119, 11, 32), (153, 153, 153)),
)

_CLASS_SETS = {"mfnet": MFNET_CLASSES, "msrs": MFNET_CLASSES, "fmb": FMB_CLASSES}


def get_class_set(name: str) -> ClassSet:
    """Return the class set called ``name`` (case-insensitive): ``mfnet``, ``msrs`` (= MFNet
    labels) or ``fmb``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return _CLASS_SETS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown class set {name!r}; known: {', '.join(_CLASS_SETS)}") from None
