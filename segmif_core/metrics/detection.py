"""Detection metrics: average precision per class and its mean at IoU 0.5 (mAP@0.5) and averaged
over IoU 0.50:0.05:0.95 (COCO mAP@0.5:0.95), implemented here (numpy, no runtime dependency) and
tested equal to pycocotools' ``COCOeval`` (2.0.11, a test dependency) to 1e-6 per class and in
the mean, on hand-made and random cases and on a real val run of the shipped TSJNet
(``test/test_detection_coco.py``). Where the two differ by design: ignored ground truth (this
module uses the plain IoU for it, as VOC's 'difficult'; COCOeval gives 'iscrowd' boxes its crowd
IoU, intersection over the detection's area), and COCO's per-image cap of 100 detections per
class (not applied here; the TSJNet predictor returns at most 100 per image).

Matching (as COCO's evaluation, per image and class): detections in decreasing score order each
take the not-yet-matched ground-truth box of highest IoU >= the threshold; a detection whose best
match is an ignored box (VOC 'difficult', COCO 'iscrowd') counts neither as a true nor as a false
positive; ignored boxes are not counted as positives. COCO's area ranges and 100-detection cap
are not applied (every detection given counts).

AP per class from the precision/recall curve over all images (detections pooled, sorted by
score, ties in input order), precision made monotone (the envelope p(r) = max_{r' >= r} p(r')):
- ``'coco'`` (default): mean of the envelope at the 101 recalls 0, 0.01, ..., 1 (the precision at
  the first point with recall >= r; 0 beyond the largest recall);
- ``'voc'``: the area under the envelope at every recall change (VOC 2010+ "all points").
A class without ground truth has no AP and is left out of the mean; a class with ground truth
but no detection has AP 0.
"""
from __future__ import annotations

import numpy as np

from ..choices import check_choice

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
INTERPOLATIONS = ("coco", "voc")


def _np(x, dtype):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _area(x: np.ndarray) -> np.ndarray:
    return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) boxes (x1, y1, x2, y2) -> (N, M) float64."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def average_precision(tp: np.ndarray, scores: np.ndarray, num_positives: int,
                      interpolation: str = "coco") -> float:
    """AP of one class from pooled detections: tp (D,) bool, scores (D,), ``num_positives`` > 0
    ground-truth boxes. See the module docstring for the two interpolations."""
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(tp, bool)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / num_positives
    precision = ctp / np.maximum(ctp + cfp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if len(envelope) == 0:
        return 0.0
    if interpolation == "coco":
        idx = np.searchsorted(recall, np.linspace(0.0, 1.0, 101), side="left")
        values = np.zeros(101)
        reached = idx < len(envelope)
        values[reached] = envelope[idx[reached]]
        return float(values.mean())
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


class DetectionEvaluator:
    """Accumulates detections and ground truth image by image; ``summary()`` gives the mAPs.

    Args:
        num_classes: K, class indices 0 .. K-1; class_names: optional K names (keys of
            'per_class'); interpolation: 'coco' (101 points) or 'voc' (all points).
    Raises:
        ValueError: bad arguments, or ``add`` with class indices outside 0 .. K-1.
    """

    def __init__(self, num_classes: int, class_names=None, interpolation: str = "coco"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
        self.num_classes, self.interpolation = num_classes, interpolation
        self.class_names = list(class_names) if class_names is not None else None
        self.num_images = 0
        # per IoU threshold and class: lists of (score, tp) of the counted detections
        self._scores = [[[] for _ in range(num_classes)] for _ in IOU_THRESHOLDS]
        self._tp = [[[] for _ in range(num_classes)] for _ in IOU_THRESHOLDS]
        self._positives = np.zeros(num_classes, np.int64)

    def add(self, boxes, scores, classes, gt_boxes, gt_classes, gt_ignore=None) -> None:
        """One image: detections boxes (D, 4) pixels (x1, y1, x2, y2), scores (D,), classes (D,)
        int; ground truth gt_boxes (G, 4), gt_classes (G,), optional gt_ignore (G,) bool.
        numpy arrays, torch tensors or lists."""
        boxes, scores = _np(boxes, np.float64).reshape(-1, 4), _np(scores, np.float64).reshape(-1)
        classes = _np(classes, np.int64).reshape(-1)
        gt_boxes, gt_classes = _np(gt_boxes, np.float64).reshape(-1, 4), \
            _np(gt_classes, np.int64).reshape(-1)
        gt_ignore = (np.zeros(len(gt_classes), bool) if gt_ignore is None
                     else _np(gt_ignore, bool).reshape(-1))
        if not len(boxes) == len(scores) == len(classes) or len(gt_boxes) != len(gt_classes) \
                or len(gt_ignore) != len(gt_classes):
            raise ValueError("detections or ground truth of inconsistent lengths")
        for c in (classes, gt_classes):
            if len(c) and (c.min() < 0 or c.max() >= self.num_classes):
                raise ValueError(f"class indices must lie in 0..{self.num_classes - 1}")
        self.num_images += 1
        for k in range(self.num_classes):
            d, g = classes == k, gt_classes == k
            self._positives[k] += int((~gt_ignore[g]).sum())
            db, ds, gb, gi = boxes[d], scores[d], gt_boxes[g], gt_ignore[g]
            order = np.argsort(-ds, kind="stable")
            db, ds = db[order], ds[order]
            iou = iou_matrix(db, gb)
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(gb), bool)
                for j in range(len(db)):
                    # COCO: prefer unmatched real boxes; an ignored box can absorb detections
                    cand = np.where(~taken & ~gi & (iou[j] >= thr))[0]
                    if len(cand):
                        m = cand[np.argmax(iou[j, cand])]
                        taken[m] = True
                        self._scores[t][k].append(ds[j])
                        self._tp[t][k].append(True)
                    elif np.any(gi & (iou[j] >= thr)):
                        continue  # matched an ignored box: not counted
                    else:
                        self._scores[t][k].append(ds[j])
                        self._tp[t][k].append(False)

    def class_ap(self, threshold_index: int) -> list[float | None]:
        """AP per class at ``IOU_THRESHOLDS[threshold_index]`` (None: no ground truth)."""
        return [None if self._positives[k] == 0 else
                average_precision(np.array(self._tp[threshold_index][k], bool),
                                  np.array(self._scores[threshold_index][k]),
                                  int(self._positives[k]), self.interpolation)
                for k in range(self.num_classes)]

    def summary(self) -> dict:
        """{'map50', 'map50_95' (float, NaN when no class has ground truth), 'per_class':
        {name: {'ap50', 'ap50_95', 'positives'}}, 'interpolation', 'images'}. APs in [0, 1]."""
        per_t = [self.class_ap(t) for t in range(len(IOU_THRESHOLDS))]
        names = self.class_names or [str(k) for k in range(self.num_classes)]
        per_class, ap50, ap_all = {}, [], []
        for k, name in enumerate(names):
            if per_t[0][k] is None:
                per_class[name] = {"ap50": None, "ap50_95": None, "positives": 0}
                continue
            a50, a = per_t[0][k], float(np.mean([p[k] for p in per_t]))
            ap50.append(a50)
            ap_all.append(a)
            per_class[name] = {"ap50": a50, "ap50_95": a, "positives": int(self._positives[k])}
        return {"map50": float(np.mean(ap50)) if ap50 else float("nan"),
                "map50_95": float(np.mean(ap_all)) if ap_all else float("nan"),
                "per_class": per_class, "interpolation": self.interpolation,
                "images": self.num_images}


def mean_average_precision(detections, ground_truth, num_classes: int, class_names=None,
                           interpolation: str = "coco") -> dict:
    """``DetectionEvaluator.summary()`` of lists of per-image dicts: detections {'boxes',
    'scores', 'classes'}, ground truth {'boxes', 'labels'[, 'ignore']} (the box sets of
    ``data.boxes``)."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} images")
    ev = DetectionEvaluator(num_classes, class_names, interpolation)
    for d, g in zip(detections, ground_truth):
        ev.add(d["boxes"], d["scores"], d["classes"], g["boxes"], g["labels"], g.get("ignore"))
    return ev.summary()
