"""Object boxes for detection training and evaluation: derived from label images, or read from
VOC XML (M3FD, per-image files) and COCO JSON files, and the authors' JSON class files.

A box set is a dict ``{'boxes': (N, 4) float32 (x1, y1, x2, y2) pixels, 'labels': (N,) int64
class indices, 'ignore': (N,) bool}`` ('ignore': VOC 'difficult' / COCO 'iscrowd' objects, left
out of the AP counts by ``metrics.detection``). Class indices are positions in a list of class
names (the detector's ``detection_classes``).

Derived boxes (``boxes_from_labels``) are this project's choice, NOT the paper's data: MFNet /
MSRS ship no boxes, so each 8-connected component of the car, person and bike pixels of a label
map becomes one box (touching objects of a class merge into one box; components smaller than
``min_area`` pixels are dropped). TSJNet's paper trains its detector on M3FD's (and, per the
code, MSRS's unpublished) annotated boxes.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

#: MFNet / MSRS detection classes: (name, label id in ``data.classes.MFNET_CLASSES``).
MFNET_DETECTION_CLASSES = (("car", 1), ("person", 2), ("bike", 3))
#: M3FD's classes in the order of the authors' ``pascal_voc_classes.json`` (ids 1..6).
M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")


def empty_boxes() -> dict:
    """A box set with no boxes."""
    return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
            "ignore": np.zeros(0, bool)}


def _box_set(boxes, labels, ignore) -> dict:
    if not boxes:
        return empty_boxes()
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, np.int64), "ignore": np.asarray(ignore, bool)}


def detection_class_ids(detection_classes, class_names) -> tuple[int, ...]:
    """Label id of every detection class (by name, case-insensitive) in the segmentation class
    set. Raises ValueError for a detection class that is not a segmentation class (its boxes
    cannot come from the label images)."""
    lookup = {str(n).lower(): i for i, n in enumerate(class_names)}
    missing = [n for n in detection_classes if n.lower() not in lookup]
    if missing:
        raise ValueError(f"detection classes {missing} are not segmentation classes "
                         f"{list(class_names)}: boxes from label images need them")
    return tuple(lookup[n.lower()] for n in detection_classes)


def boxes_from_labels(labels: np.ndarray, class_ids=tuple(i for _, i in MFNET_DETECTION_CLASSES),
                      min_area: int = 50, connectivity: int = 8) -> dict:
    """Boxes of the connected components of some classes of a label map.

    Args:
        labels: (H, W) integer label image (class ids; other values, e.g. 255, are ignored).
        class_ids: label ids to box; detection class index k is ``class_ids[k]`` (default MFNet
            car 1, person 2, bike 3 -> 0, 1, 2).
        min_area: smallest component kept, in pixels (of the component, not of its box).
        connectivity: 8 or 4.
    Returns:
        a box set (see the module docstring); a component covering columns c0..c1 and rows
        r0..r1 gives (c0, r0, c1 + 1, r1 + 1) (pixel edges); ordered by class, then by
        OpenCV's component order (top-to-bottom scan); 'ignore' all False.
    Raises:
        ValueError: labels not a 2-D integer array, connectivity not 4 or 8, min_area < 1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got shape {labels.shape} "
                         f"dtype {labels.dtype}")
    if connectivity not in (4, 8) or min_area < 1:
        raise ValueError(f"connectivity must be 4 or 8 and min_area >= 1, got {connectivity}, "
                         f"{min_area}")
    boxes, out_labels = [], []
    for k, cid in enumerate(class_ids):
        mask = (labels == cid).astype(np.uint8)
        if not mask.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=connectivity)
        for x, y, w, h, area in stats[1:n]:
            if area >= min_area:
                boxes.append((x, y, x + w, y + h))
                out_labels.append(k)
    return _box_set(boxes, out_labels, [False] * len(boxes))


def _class_index(name: str, class_names, unknown: str):
    lookup = {c.lower(): i for i, c in enumerate(class_names)}
    idx = lookup.get(name.strip().lower())
    if idx is None and unknown == "error":
        raise ValueError(f"unknown class {name!r}; known: {list(class_names)}")
    return idx


def read_voc_xml(path, class_names=M3FD_CLASSES, unknown: str = "error") -> dict:
    """Boxes of one Pascal VOC annotation file (M3FD's format).

    Each ``<object>`` gives ``<name>`` (matched to ``class_names`` case-insensitively),
    ``<bndbox>`` xmin, ymin, xmax, ymax (taken as the pixel coordinates x1, y1, x2, y2 as
    written) and an optional ``<difficult>`` flag (-> 'ignore').

    Args:
        unknown: 'error' raises for a name not in ``class_names``; 'skip' drops the object.
    Raises:
        ValueError: unreadable XML, a missing box field, or an unknown class with 'error'.
    """
    if unknown not in ("error", "skip"):
        raise ValueError(f"unknown must be 'error' or 'skip', got {unknown!r}")
    try:
        root = ET.parse(str(path)).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"cannot read VOC annotation {path}: {err}") from err
    boxes, labels, ignore = [], [], []
    for obj in root.iter("object"):
        idx = _class_index(obj.findtext("name", ""), class_names, unknown)
        if idx is None:
            continue
        bb = obj.find("bndbox")
        try:
            coords = [float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: object without a complete bndbox") from err
        boxes.append(coords)
        labels.append(idx)
        ignore.append(obj.findtext("difficult", "0").strip() == "1")
    return _box_set(boxes, labels, ignore)


def read_coco_json(path, class_names=None, unknown: str = "error") -> dict[str, dict]:
    """Boxes of a COCO detection file, by image file name.

    ``bbox`` [x, y, w, h] becomes (x, y, x + w, y + h); ``iscrowd`` 1 -> 'ignore'. Categories
    are matched by name to ``class_names`` (None = the file's categories in id order). Every
    image of the file gets an entry (possibly empty).

    Raises:
        ValueError: unreadable file, missing keys, or an unknown category with 'error'.
    """
    try:
        data = json.loads(Path(path).read_text())
        cats = {c["id"]: c["name"] for c in data["categories"]}
        images = {im["id"]: im["file_name"] for im in data["images"]}
        anns = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot read COCO file {path}: {err}") from err
    if class_names is None:
        class_names = [cats[i] for i in sorted(cats)]
    per_image = {iid: ([], [], []) for iid in images}
    for a in anns:
        idx = _class_index(cats.get(a.get("category_id"), "?"), class_names, unknown)
        if idx is None:
            continue
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            target = per_image[a["image_id"]]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: bad annotation {a!r}") from err
        target[0].append((x, y, x + w, y + h))
        target[1].append(idx)
        target[2].append(bool(a.get("iscrowd", 0)))
    return {images[iid]: _box_set(*v) for iid, v in per_image.items()}


def read_class_file(path) -> tuple[str, ...]:
    """Class names of the authors' JSON class files ({"name": id, ...}, ids from 1), in id order
    (``pascal_voc_classes.json`` -> M3FD_CLASSES). Raises ValueError for another layout."""
    try:
        mapping = json.loads(Path(path).read_text())
        items = sorted((int(i), str(n)) for n, i in mapping.items())
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise ValueError(f"cannot read class file {path}: {err}") from err
    return tuple(n for _, n in items)


def to_tensors(box_set: dict, device=None) -> dict:
    """A box set as torch tensors (the detection loss's target format): 'boxes' (N, 4) float32,
    'labels' (N,) int64 (ignored objects dropped: the loss has no ignore regions)."""
    import torch

    keep = ~np.asarray(box_set.get("ignore", np.zeros(len(box_set["labels"]), bool)))
    return {"boxes": torch.as_tensor(box_set["boxes"][keep], dtype=torch.float32, device=device),
            "labels": torch.as_tensor(box_set["labels"][keep], dtype=torch.int64, device=device)}
