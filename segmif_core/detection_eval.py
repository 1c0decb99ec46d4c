"""Detection part of the dataset evaluation (``evaluation.evaluate_folder``) for models with a
detector (TSJNet): ground-truth boxes per pair and the mAP keys of the report.

Ground truth (``GroundTruthBoxes``), one of
- ``'labels'`` (default): the connected components of the detection classes in each pair's label
  image at its native resolution (``data.boxes.boxes_from_labels``, 8-connected, components of
  at least ``min_area`` pixels; this project's choice for MFNet / MSRS, which ship no boxes,
  NOT the paper's data: touching objects of one class merge into one box);
- a folder of Pascal VOC files ``NAME.xml`` (M3FD; ``data.boxes.read_voc_xml``), NAME the pair's
  file stem;
- a COCO JSON file (``data.boxes.read_coco_json``), images matched by file stem.
Boxes from files are in pixels of the native images, as the predictor's detections (camera
pixels). Classes are matched by name (case-insensitive) to the model's ``detection_classes``;
objects of other classes are skipped. A pair without a label image (labels) or without a VOC
file / COCO entry contributes no image to the mAP.

Metric: ``metrics.detection.DetectionEvaluator`` (COCO-style matching, 101-point AP), reported
in percent (0-100, as mIoU): ``map50`` (AP at IoU 0.5), ``map50_95`` (mean over IoU
0.50:0.05:0.95), per class ``ap50``, ``ap50_95`` and ``positives`` (ground-truth boxes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.boxes import boxes_from_labels, detection_class_ids, read_coco_json, read_voc_xml
from .metrics.detection import DetectionEvaluator


def _pct(x):
    return None if x is None or not np.isfinite(x) else 100.0 * float(x)


class GroundTruthBoxes:
    """Ground-truth boxes of the pairs of a dataset (module docstring).

    Args:
        detection_classes: the detector's class names (index k = class k).
        class_names: the segmentation class names (label id i = class_names[i]); needed for
            ``source='labels'``.
        source: 'labels', a folder of VOC .xml files, or a COCO .json file.
        min_area: smallest labelled component boxed (pixels at native resolution).
    Raises:
        ValueError: a detection class that is not a segmentation class (labels), a source that
            is neither 'labels' nor an existing folder / .json file, or an unreadable COCO file.
    """

    def __init__(self, detection_classes, class_names=None, source: str | None = "labels",
                 min_area: int = 50):
        self.classes = tuple(detection_classes)
        self.source = "labels" if source in (None, "labels") else str(source)
        self.min_area = int(min_area)
        self._coco = None
        if self.source == "labels":
            self.class_ids = detection_class_ids(self.classes, list(class_names or ()))
        elif Path(self.source).is_dir():
            pass  # VOC files, read pair by pair
        elif Path(self.source).suffix.lower() == ".json" and Path(self.source).is_file():
            coco = read_coco_json(self.source, self.classes, unknown="skip")
            self._coco = {Path(k).stem: v for k, v in coco.items()}
        else:
            raise ValueError(f"boxes must be 'labels', a folder of VOC .xml files or a COCO "
                             f".json file, got {source!r}")

    def describe(self) -> str:
        if self.source == "labels":
            return (f"derived from the label images: 8-connected components of "
                    f"{', '.join(self.classes)} with >= {self.min_area} pixels at native "
                    "resolution (this project's choice; touching objects merge)")
        kind = "COCO JSON" if self._coco is not None else "VOC XML files"
        return f"{kind} {self.source}"

    def get(self, name: str, label: np.ndarray | None) -> dict | None:
        """Box set of pair ``name`` (``data.boxes`` format) or None when it has none."""
        if self.source == "labels":
            if label is None:
                return None
            return boxes_from_labels(np.asarray(label).astype(np.int32), self.class_ids,
                                     self.min_area)
        stem = Path(str(name)).name
        if self._coco is not None:
            return self._coco.get(stem)
        path = Path(self.source) / f"{stem}.xml"
        return read_voc_xml(path, self.classes, unknown="skip") if path.is_file() else None


class DetectionTable:
    """Accumulates one model's detections against ``GroundTruthBoxes`` pair by pair."""

    def __init__(self, method: str, truth: GroundTruthBoxes):
        self.method, self.truth = method, truth
        self.evaluator = DetectionEvaluator(len(truth.classes), list(truth.classes))
        self.n_boxes = 0
        self.skipped: list[str] = []

    def add(self, name: str, detections: dict | None, label: np.ndarray | None) -> None:
        """One pair: the predictor's ``Prediction.detections`` (camera pixels) and its label."""
        gt = self.truth.get(name, label)
        if gt is None or detections is None:
            self.skipped.append(str(name))
            return
        self.evaluator.add(detections["boxes"], detections["scores"], detections["classes"],
                           gt["boxes"], gt["labels"], gt["ignore"])
        self.n_boxes += int((~gt["ignore"]).sum())

    def report_part(self) -> dict:
        """{'map50', 'map50_95' (percent or None), 'detection': details} for the report."""
        s = self.evaluator.summary()
        part = {"method": self.method, "map50": _pct(s["map50"]),
                "map50_95": _pct(s["map50_95"]), "images": s["images"],
                "gt_boxes": self.n_boxes, "classes": list(self.truth.classes),
                "per_class": {k: {"ap50": _pct(v["ap50"]), "ap50_95": _pct(v["ap50_95"]),
                                  "positives": v["positives"]}
                              for k, v in s["per_class"].items()},
                "boxes": self.truth.describe(), "pairs_without_boxes": self.skipped,
                "protocol": "COCO-style greedy matching per image and class by score, AP = "
                            "mean of the precision envelope at 101 recalls; mAP over classes "
                            "with ground truth; IoU 0.5 and 0.50:0.05:0.95; percent"}
        return {"map50": part["map50"], "map50_95": part["map50_95"], "detection": part}


def empty_part() -> dict:
    """The detection keys of a report without a detector."""
    return {"map50": None, "map50_95": None, "detection": None}
