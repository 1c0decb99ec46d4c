"""Semantic segmentation metrics from a confusion matrix accumulated over a whole split.

IoU_c = TP / (TP + FP + FN) and Acc_c = TP / (TP + FN) per class c (SegMiF, Liu et al. ICCV 2023,
Sec. 4, as in MFNet/FMB evaluations); mIoU and mAcc are class means. Protocols differ between papers
(background included or not, absent classes skipped, counted as 0 or averaged only over the classes
present in the ground truth), so :meth:`summary` reports the protocol it used.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..choices import check_choice

ABSENT_RULES = {
    "skip": "classes with undefined metric left out of the mean",
    "zero": "classes with undefined metric count as 0",
    "present": "only classes with ground-truth pixels in the mean (a class without any is left "
               "out even when predicted; its false positives still lower the true class's IoU)",
}
ABSENT_MODES = tuple(ABSENT_RULES)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class ConfusionMatrix:
    """Pixel confusion matrix ``matrix[gt, pred]`` (int64 counts) for ``num_classes`` classes.

    Args:
        num_classes: number of classes, ids ``0 .. num_classes - 1``.
        ignore_index: ground-truth value whose pixels are not counted.
        class_names: optional names used as keys of ``summary()["per_class"]`` (default: ids).
    Raises:
        ValueError: ``num_classes < 1`` or ``class_names`` of another length.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 class_names: Sequence[str] | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.matrix[:] = 0

    def update(self, pred, target) -> None:
        """Accumulate one batch.

        Args:
            pred: predicted class ids, numpy array or torch tensor of any shape (integer).
            target: ground-truth ids, same shape; pixels equal to ``ignore_index`` are skipped.
        Raises:
            ValueError: shapes differ, non-integer input, or ids outside ``[0, num_classes)``.
        """
        pred, target = _as_numpy(pred), _as_numpy(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(target.dtype, np.integer)):
            raise ValueError(f"pred and target must be integer ids, got {pred.dtype}, "
                             f"{target.dtype}")
        keep = target != self.ignore_index
        p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
        n = self.num_classes
        for what, a in (("target", t), ("pred", p)):
            if a.size and (a.min() < 0 or a.max() >= n):
                raise ValueError(f"{what} ids must be in [0, {n}) (or ignore_index for target), "
                                 f"got range [{a.min()}, {a.max()}]")
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN) as float64 fractions in [0, 1]; NaN where the class
        has neither ground-truth pixels nor predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def acc(self) -> np.ndarray:
        """Per-class accuracy (recall) = TP / (TP + FN) in [0, 1]; NaN where the class has no
        ground-truth pixels."""
        tp = np.diag(self.matrix).astype(np.float64)
        gt = self.matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(gt > 0, tp / gt, np.nan)

    def summary(self, include_background: bool = True, absent: str = "skip") -> dict:
        """Report of the accumulated split.

        Args:
            include_background: average over class 0 (unlabelled) too.
            absent: a class whose metric is undefined (IoU: no GT and no prediction; Acc: no GT)
                is left out of the mean (``"skip"``) or counted as 0 (``"zero"``);
                ``"present"`` averages only over the classes with ground-truth pixels (a class
                that is predicted but has no ground truth, IoU 0 under ``"skip"``, is left out:
                the "classes present in the split" protocol, useful on small validation splits).
        Returns:
            dict with ``mIoU``, ``mAcc``, ``pixel_acc`` (percent, 0-100); ``per_class``:
            ``{name or id: {"iou": percent or None, "acc": percent or None, "present": GT pixels
            > 0}}`` for every class; ``protocol``: how the means were taken.
        Raises:
            ValueError: unknown ``absent`` mode, or no labelled pixel accumulated.
        """
        check_choice("absent", absent, ABSENT_MODES)
        total = int(self.matrix.sum())
        if total == 0:
            raise ValueError("no labelled pixels accumulated; call update() first")
        iou, acc = self.iou(), self.acc()
        first = 0 if include_background else 1
        if first >= self.num_classes:
            raise ValueError("no class left to average without the background")

        gt = self.matrix.sum(1)

        def used(v: np.ndarray) -> np.ndarray:
            """Mask of the classes (from ``first``) that enter the mean of ``v``."""
            keep = np.ones(self.num_classes, bool) if absent == "zero" else (
                gt > 0 if absent == "present" else ~np.isnan(v))
            keep[:first] = False
            return keep

        def mean(v: np.ndarray) -> float:
            v = np.nan_to_num(v, nan=0.0)[used(v)]
            return float(100.0 * v.mean()) if v.size else float("nan")

        keys = self.class_names or list(range(self.num_classes))
        pct = lambda x: None if np.isnan(x) else float(100.0 * x)  # noqa: E731
        return {
            "mIoU": mean(iou),
            "mAcc": mean(acc),
            "pixel_acc": 100.0 * float(np.trace(self.matrix)) / total,
            "per_class": {k: {"iou": pct(iou[c]), "acc": pct(acc[c]), "present": bool(gt[c] > 0)}
                          for c, k in enumerate(keys)},
            "protocol": {
                "definition": "confusion matrix over all pixels of the split; "
                              "IoU_c = TP/(TP+FP+FN), Acc_c = TP/(TP+FN); means over classes",
                "include_background": include_background,
                "absent": absent,
                "absent_rule": ABSENT_RULES[absent],
                "classes_in_mIoU": [keys[c] for c in np.flatnonzero(used(iou))],
                "classes_in_mAcc": [keys[c] for c in np.flatnonzero(used(acc))],
                "ignore_index": self.ignore_index,
                "pixels": total,
            },
        }
