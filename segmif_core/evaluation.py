"""Dataset evaluation: run a predictor over a folder of pairs and build the report dict.

Report keys (shared by ``segmif evaluate`` and the demo): mIoU, mAcc, pixel_acc (percent, 0-100),
per_class {name: {iou, acc, present}}, n_pairs, protocol, checkpoint, timing. Protocol: one
confusion matrix accumulated over all pixels of the split at the label's native resolution
(predictions are resized back with nearest neighbour), class 0 (unlabelled) included, classes
absent from both ground truth and prediction skipped in the means.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .data.pairs import check_pairs, list_pairs, read_pair
from .metrics import ConfusionMatrix


def write_json_atomic(obj, path) -> None:
    """Write ``obj`` as indented JSON, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def timing_summary(values_ms) -> dict:
    """{'n', 'mean', 'p50', 'p90', 'p99', 'max'} of a list of milliseconds (empty -> n = 0)."""
    v = np.asarray(list(values_ms), np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "max": float(v.max())}


def evaluate_folder(predictor, root, split=None, log=None) -> dict:
    """Evaluate ``predictor`` (a ``SegMiFPredictor``) on ``root/{vis,ir,label}`` pairs.

    Raises DatasetError (before any inference) on missing files or size mismatches.
    """
    names = list_pairs(str(root), split)
    check_pairs(str(root), names, require_labels=True)
    classes = predictor.classes
    cm = ConfusionMatrix(classes.num_classes, class_names=list(classes.names))
    infer_ms, total_ms = [], []
    for i, name in enumerate(names):
        vis, ir, label = read_pair(str(root), name)
        pred = predictor.predict(vis, ir)
        cm.update(pred.labels, label)
        infer_ms.append(pred.inference_ms)
        total_ms.append(pred.total_ms)
        if log and (i + 1) % 10 == 0:
            log(f"{i + 1}/{len(names)} pairs")
    summary = cm.summary()
    return {"mIoU": summary["mIoU"], "mAcc": summary["mAcc"], "pixel_acc": summary["pixel_acc"],
            "per_class": summary["per_class"], "n_pairs": len(names),
            "protocol": summary["protocol"], "data": str(root), "split": split,
            "checkpoint": str(predictor.checkpoint_path),
            "input_size": list(predictor.input_size), "device": str(predictor.device),
            "timing": {"inference_ms": timing_summary(infer_ms),
                       "total_ms": timing_summary(total_ms)}}
