"""Dataset evaluation: segmentation and fusion metrics of a model and of baseline fusion rules.

The report dict (shared by ``segmif evaluate``, ``segmif bag eval`` and the demo; written by
:mod:`segmif_core.report`) has these keys:

* ``mIoU``, ``mAcc``, ``pixel_acc`` (percent, 0-100), ``per_class`` ``{name: {iou, acc,
  present}}``: segmentation of the model, or ``None`` when the data has no labels or no model was
  evaluated (a rule alone). ``confusion_matrix`` (``[gt][pred]`` pixel counts) and
  ``class_names`` go with them.
* ``n_pairs`` (pairs evaluated), ``n_labelled`` (pairs with a label file that went into the
  confusion matrix).
* ``protocol``: how the numbers were taken: the segmentation protocol of
  :meth:`~segmif_core.metrics.ConfusionMatrix.summary` (``include_background``, ``absent``,
  ``definition``, ...) plus ``resolution`` and, under ``fusion``, the fusion-metric conventions.
* ``methods``: the fusion methods in report order (the model first, then the rules);
  ``fusion``: ``{method: {metric: mean}}`` (EN SD SF AG MI SCD VIF Qabf SSIM, mean over the
  images where the metric is defined); ``fusion_per_image``: ``{method: {metric: [value per
  pair]}}`` aligned with ``pairs``; ``fusion_n``: ``{method: {metric: pairs where it is
  defined}}``; ``fusion_skipped``: pairs without fusion metrics and why.
* ``map50``, ``map50_95`` (percent, 0-100) and ``detection`` (per-class AP, ground-truth
  source, protocol; :mod:`segmif_core.detection_eval`): detection of a model with a detector
  (TSJNet), against boxes derived from the label images by default; ``None`` otherwise.
* ``checkpoint``, ``timing`` and a few descriptive keys (``data``, ``split``, ``device``, ...).

Segmentation protocol: one confusion matrix accumulated over all pixels of the split at the
labels' native resolution (predictions are resized back with nearest neighbour); by default class
0 (unlabelled) is included and classes absent from both ground truth and prediction are skipped
in the means (``include_background`` / ``absent`` change that).

Fusion protocol: per pair at the native resolution, on 8-bit images: the fused luminance is the
BT.601 luma of the fused RGB image, ``Y = round(0.299 R + 0.587 G + 0.114 B)`` (half up, exact
integer arithmetic); the sources are the visible luma (same formula) and the thermal image (8-bit
as stored; 16-bit normalised to [0, 1] by the predictor's rule, times 255, rounded). The rules of
:mod:`segmif_core.fusion_rules` are applied to the same two 8-bit sources, so every method is
scored on identical inputs. JSON has no NaN: undefined values are ``None``.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from . import atomic
from .data.pairs import check_pairs, list_pairs, read_pair
from .data.thermal import normalize_thermal, to_uint8
from .detection_eval import DetectionTable, GroundTruthBoxes, empty_part
from .fusion_rules import FUSION_RULES
from .metrics import ConfusionMatrix
from .metrics.segmentation import ABSENT_MODES, ABSENT_RULES
from .metrics.fusion import FUSION_METRIC_KEYS, QABF_CONSTANTS, fusion_metrics
from .choices import check_choice

#: Name of the model in ``segmif evaluate --method``.
MODEL_METHOD = "model"
#: Fusion rules, in report order.
RULE_NAMES = tuple(FUSION_RULES)
#: Default 16-bit thermal rule (the predictor's and the node's defaults).
DEFAULT_THERMAL_RULE = {"mode": "percentile", "low": 1.0, "high": 99.0,
                        "vmin": 0.0, "vmax": 65535.0}


def write_json_atomic(obj, path) -> None:
    """Write ``obj`` as indented JSON, atomically (:func:`segmif_core.atomic.write_json`).
    NaN/inf are written as ``null`` so that the file is valid JSON."""
    atomic.write_json(path, json_safe(obj), indent=2, allow_nan=False)


def json_safe(obj):
    """``obj`` with NaN/inf floats replaced by None, numpy scalars/arrays and paths converted."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def timing_summary(values_ms) -> dict:
    """{'n', 'mean', 'p50', 'p90', 'p99', 'max'} of a list of milliseconds (empty -> n = 0)."""
    v = np.asarray(list(values_ms), np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "max": float(v.max())}


# ------------------------------------------------------------------------------ 8-bit images
def luma8(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an HxWx3 uint8 RGB image as HxW uint8:
    ``round(0.299 R + 0.587 G + 0.114 B)``, ties rounded up, computed exactly in integers.
    An HxW uint8 image is returned as it is (already grey)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    if rgb.ndim == 2:
        return rgb
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    c = rgb.astype(np.int32)
    y1000 = 299 * c[..., 0] + 587 * c[..., 1] + 114 * c[..., 2]
    return ((y1000 + 500) // 1000).astype(np.uint8)


def thermal8(ir: np.ndarray, rule: Mapping | None = None) -> np.ndarray:
    """Thermal image on the 8-bit scale used by the fusion metrics: uint8 as it is; uint16
    normalised by ``rule`` (keys of :data:`DEFAULT_THERMAL_RULE`, as
    :func:`~segmif_core.data.thermal.normalize_thermal`) then ``round(x * 255)``."""
    ir = np.asarray(ir)
    if ir.dtype == np.uint8:
        return ir
    r = {**DEFAULT_THERMAL_RULE, **(rule or {})}
    return to_uint8(normalize_thermal(ir, r["mode"], r["low"], r["high"], r["vmin"], r["vmax"]))


def thermal_rule_of(predictor) -> dict:
    """The 16-bit thermal rule of a ``SegMiFPredictor`` (or the default for None)."""
    if predictor is None:
        return dict(DEFAULT_THERMAL_RULE)
    low, high = predictor.thermal_percentiles
    vmin, vmax = predictor.thermal_range
    return {"mode": predictor.thermal_norm, "low": float(low), "high": float(high),
            "vmin": float(vmin), "vmax": float(vmax)}


def model_method_name(info: Mapping | None) -> str:
    """Row name of a checkpoint's model: ``SegMiF``, ``TSJNet`` or ``baseline-<inputs>``."""
    info = info or {}
    model = info.get("model", "segmif")
    if model in ("segmif", "tsjnet"):
        return {"segmif": "SegMiF", "tsjnet": "TSJNet"}[model]
    inputs = (info.get("config") or {}).get("inputs")
    return f"{model}-{inputs}" if inputs else str(model)


# ---------------------------------------------------------------------------------- protocol
def segmentation_protocol(include_background: bool = True, absent: str = "skip",
                          ignore_index: int = 255) -> dict:
    """The segmentation protocol as stated in every report (also when nothing was labelled)."""
    return {
        "definition": "confusion matrix over all pixels of the split; "
                      "IoU_c = TP/(TP+FP+FN), Acc_c = TP/(TP+FN); means over classes",
        "include_background": bool(include_background),
        "absent": absent,
        "absent_rule": ABSENT_RULES[absent],
        "ignore_index": ignore_index,
        "resolution": "labels' native resolution (predictions resized back, nearest neighbour)",
    }


def fusion_conventions(thermal_rule: Mapping | None = None) -> dict:
    """The fusion-metric conventions as stated in every report."""
    r = {**DEFAULT_THERMAL_RULE, **(thermal_rule or {})}
    how16 = (f"percentiles {r['low']:g}-{r['high']:g} of each frame -> 0..1"
             if r["mode"] == "percentile" else f"raw {r['vmin']:g}..{r['vmax']:g} -> 0..1")
    return {
        "metrics": list(FUSION_METRIC_KEYS),
        "scale": "8-bit grey levels 0-255, native resolution of each pair",
        "fused": "BT.601 luma of the fused RGB: round(0.299 R + 0.587 G + 0.114 B)",
        "sources": "visible luma (same formula) and thermal: 8-bit as stored, 16-bit "
                   f"normalised ({how16}) then round(x * 255)",
        "thermal_rule": dict(r),
        "aggregation": "mean over pairs of the defined (finite) values",
        "EN": "Shannon entropy of the 256-bin histogram, bits",
        "SD": "standard deviation (ddof 0), grey levels",
        "SF": "sqrt(RF^2 + CF^2), squared first differences summed and divided by M*N",
        "AG": "mean of sqrt((dx^2 + dy^2) / 2), forward differences",
        "MI": "MI(vis, F) + MI(ir, F) from 256x256 joint histograms, in bits (log2)",
        "SCD": "corr(vis, F - ir) + corr(ir, F - vis)",
        "VIF": "VIFp(vis, F) + VIFp(ir, F) (Sheikh & Bovik 2006, pixel domain, 4 scales)",
        "Qabf": "Xydeas & Petrovic 2000, Sobel, " + ", ".join(
            f"{k}={v:g}" for k, v in QABF_CONSTANTS.items()),
        "SSIM": "SSIM(vis, F) + SSIM(ir, F), Gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, L 255",
    }


# ------------------------------------------------------------------------- fusion accumulator
class FusionTable:
    """Per-pair fusion metrics of several methods.

    ``add(pair, vis_y, ir8, fused={method: fused_y})`` scores the given fused images and every
    rule of ``rules`` on the same sources. Pairs whose metrics cannot be computed (an image under
    41 x 41 pixels, sources of different sizes) are recorded in :attr:`skipped` and get ``None``.
    """

    def __init__(self, methods: Sequence[str], rules: Iterable[str] = RULE_NAMES):
        self.rules = [r for r in rules]
        unknown = [r for r in self.rules if r not in FUSION_RULES]
        if unknown:
            raise ValueError(f"unknown fusion rule(s) {unknown}; known: {list(FUSION_RULES)}")
        self.methods = list(dict.fromkeys(list(methods) + self.rules))
        self.pairs: list[str] = []
        self.values = {m: {k: [] for k in FUSION_METRIC_KEYS} for m in self.methods}
        self.skipped: list[dict] = []
        self.seconds = 0.0

    def _append(self, method: str, metrics: Mapping | None) -> None:
        for k in FUSION_METRIC_KEYS:
            v = None if metrics is None else metrics.get(k)
            self.values[method][k].append(None if v is None or not math.isfinite(v) else float(v))

    def add(self, pair: str, vis_y: np.ndarray | None, ir8: np.ndarray | None,
            fused: Mapping[str, np.ndarray | None] | None = None, reason: str | None = None
            ) -> None:
        """Score one pair. ``vis_y``/``ir8``: HxW uint8 sources (None: skipped with ``reason``);
        ``fused``: ``{method: HxW uint8 fused luminance or None}`` for the non-rule methods."""
        t0 = time.perf_counter()
        self.pairs.append(str(pair))
        fused = dict(fused or {})
        why = reason
        if why is None and (vis_y is None or ir8 is None):
            why = "source image missing"
        if why is None and vis_y.shape != ir8.shape:
            why = f"visible {vis_y.shape} and thermal {ir8.shape} differ"
        if why is None and min(vis_y.shape) < 41:
            why = f"image {vis_y.shape[1]}x{vis_y.shape[0]} smaller than 41x41 (VIF)"
        for method in self.methods:
            f = FUSION_RULES[method](vis_y, ir8) if why is None and method in self.rules \
                else fused.get(method)
            if why is not None or f is None:
                self._append(method, None)
                if why is None:
                    self.skipped.append({"pair": str(pair), "method": method,
                                         "reason": "no fused image"})
                continue
            if f.shape != vis_y.shape:
                self._append(method, None)
                self.skipped.append({"pair": str(pair), "method": method, "reason":
                                     f"fused {f.shape} and sources {vis_y.shape} differ"})
                continue
            self._append(method, fusion_metrics(vis_y, ir8, f))
        if why is not None:
            self.skipped.append({"pair": str(pair), "method": "all", "reason": why})
        self.seconds += time.perf_counter() - t0

    def means(self) -> dict:
        """``{method: {metric: mean of the defined values, or None}}``."""
        out = {}
        for m in self.methods:
            out[m] = {}
            for k in FUSION_METRIC_KEYS:
                v = [x for x in self.values[m][k] if x is not None]
                out[m][k] = float(np.mean(v)) if v else None
        return out

    def counts(self) -> dict:
        """``{method: {metric: number of pairs where it is defined}}``."""
        return {m: {k: sum(v is not None for v in self.values[m][k]) for k in FUSION_METRIC_KEYS}
                for m in self.methods}

    def report_part(self) -> dict:
        """The fusion keys of the report."""
        return {"methods": list(self.methods), "fusion": self.means(),
                "fusion_n": self.counts(), "fusion_per_image": self.values,
                "pairs": list(self.pairs), "fusion_skipped": self.skipped}


# ------------------------------------------------------------------------------ report dict
def segmentation_part(cm: ConfusionMatrix | None, include_background: bool = True,
                      absent: str = "skip") -> dict:
    """The segmentation keys of the report from an accumulated confusion matrix (all None when
    ``cm`` is None or holds no pixel)."""
    protocol = segmentation_protocol(include_background, absent,
                                     cm.ignore_index if cm is not None else 255)
    if cm is None or int(cm.matrix.sum()) == 0:
        protocol["pixels"] = 0
        return {"mIoU": None, "mAcc": None, "pixel_acc": None, "per_class": None,
                "confusion_matrix": None,
                "class_names": list(cm.class_names or []) if cm is not None else None,
                "protocol": protocol}
    s = cm.summary(include_background=include_background, absent=absent)
    protocol.update(s["protocol"])
    return {"mIoU": s["mIoU"], "mAcc": s["mAcc"], "pixel_acc": s["pixel_acc"],
            "per_class": s["per_class"], "confusion_matrix": cm.matrix.tolist(),
            "class_names": list(cm.class_names or range(cm.num_classes)), "protocol": protocol}


def assemble_report(cm: ConfusionMatrix | None, table: FusionTable | None, *,
                    include_background: bool = True, absent: str = "skip",
                    thermal_rule: Mapping | None = None, segmentation_method: str | None = None,
                    **extra) -> dict:
    """Build the report dict (see the module docstring) from the accumulators; ``extra`` keys
    (n_pairs, checkpoint, timing, ...) are added as they are."""
    seg = segmentation_part(cm, include_background, absent)
    report = {k: seg[k] for k in ("mIoU", "mAcc", "pixel_acc", "per_class")}
    report["protocol"] = seg["protocol"]
    report["protocol"]["fusion"] = fusion_conventions(thermal_rule)
    report["segmentation_method"] = segmentation_method if seg["per_class"] is not None else None
    if table is not None:
        report.update(table.report_part())
    else:
        report.update({"methods": [], "fusion": {}, "fusion_n": {}, "fusion_per_image": {},
                       "pairs": [], "fusion_skipped": []})
    report["confusion_matrix"] = seg["confusion_matrix"]
    report["class_names"] = seg["class_names"]
    report.update(empty_part())
    report.update(extra)
    return report


# ---------------------------------------------------------------------------------- folders
def evaluate_folder(predictor, root, split=None, log=None, *, include_background: bool = True,
                    absent: str = "skip", rules: Iterable[str] | None = RULE_NAMES,
                    thermal_rule: Mapping | None = None, layout="auto",
                    boxes: str | None = "labels", box_min_area: int = 50) -> dict:
    """Evaluate ``predictor`` (a ``SegMiFPredictor``, or None for rules only) and the fusion
    ``rules`` on the pairs of ``root`` (``root/{vis,ir[,label]}`` or another layout).

    Args:
        predictor: the model, or None: only the rules are scored (fusion metrics only).
        root, split: dataset folder and optional split (see ``list_pairs``).
        log: callable for progress lines, or None.
        include_background, absent: segmentation protocol (see ``ConfusionMatrix.summary``).
        rules: names of fusion rules scored next to the model (None or () = none).
        thermal_rule: 16-bit thermal rule without a predictor (default: percentile 1/99);
            with a predictor its own rule is used.
        boxes, box_min_area: ground-truth boxes for a model with a detector: 'labels' (derived
            from the label images, components >= ``box_min_area`` pixels), a folder of VOC
            .xml files or a COCO .json file (``detection_eval.GroundTruthBoxes``).
    Returns:
        the report dict (module docstring). Unlabelled folders give ``None`` segmentation keys.
    Raises:
        DatasetError (before any inference) on missing files or size mismatches; ValueError
        on an unknown rule or protocol, a bad box source, or when there is nothing to evaluate.
    """
    check_choice("absent", absent, ABSENT_MODES)
    rules = list(rules or ())
    if predictor is None and not rules:
        raise ValueError("nothing to evaluate: no model and no fusion rule")
    names = list_pairs(str(root), split, layout=layout)
    check_pairs(str(root), names, require_labels=False, layout=layout)
    t_start = time.perf_counter()
    rule = thermal_rule_of(predictor) if predictor is not None else \
        {**DEFAULT_THERMAL_RULE, **(thermal_rule or {})}
    model_name = model_method_name(predictor.info) if predictor is not None else None
    cm = None
    if predictor is not None:
        classes = predictor.classes
        cm = ConfusionMatrix(classes.num_classes, class_names=list(classes.names))
    table = FusionTable([model_name] if model_name else [], rules)
    det_table = None
    if predictor is not None and getattr(predictor, "detection_classes", ()):
        det_table = DetectionTable(model_name, GroundTruthBoxes(
            predictor.detection_classes, list(predictor.classes.names), boxes, box_min_area))
    infer_ms, total_ms = [], []
    n_labelled = 0
    for i, name in enumerate(names):
        vis, ir, label = read_pair(str(root), name, layout=layout)
        fused = {}
        if predictor is not None:
            pred = predictor.predict(vis, ir)
            infer_ms.append(pred.inference_ms)
            total_ms.append(pred.total_ms)
            fused[model_name] = luma8(pred.fused)
            if label is not None:
                cm.update(pred.labels, label)
                n_labelled += 1
            if det_table is not None:
                det_table.add(name, pred.detections, label)
        table.add(name, luma8(vis), thermal8(ir, rule), fused)
        if log and ((i + 1) % 10 == 0 or i + 1 == len(names)):
            log(f"{i + 1}/{len(names)} pairs")
    warnings = []
    if predictor is not None and 0 < n_labelled < len(names):
        warnings.append(f"only {n_labelled} of {len(names)} pairs have labels: segmentation "
                        "metrics cover those pairs only")
    if table.skipped:
        warnings.append(f"{len(table.skipped)} fusion entries skipped (see fusion_skipped)")
    return assemble_report(
        cm if n_labelled else None, table, include_background=include_background, absent=absent,
        thermal_rule=rule, segmentation_method=model_name,
        n_pairs=len(names), n_labelled=n_labelled,
        kind="evaluate", data=str(root), split=None if split is None else str(split),
        checkpoint=str(predictor.checkpoint_path) if predictor is not None else None,
        input_size=list(predictor.input_size) if predictor is not None else None,
        device=str(predictor.device) if predictor is not None else None,
        warnings=warnings,
        **(det_table.report_part() if det_table is not None else {}),
        timing={"inference_ms": timing_summary(infer_ms), "total_ms": timing_summary(total_ms),
                "fusion_metrics_s": round(table.seconds, 3),
                "wall_s": round(time.perf_counter() - t_start, 3)})
