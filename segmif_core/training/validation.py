"""Validation: confusion-matrix metrics and fused-image quality on the val split, and the
selection of ``best.pt`` on them (never on a test split): on val mIoU, for TSJNet too (its
val mAP@0.5 is logged and kept in ``best.pt``'s meta beside it)."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import save_checkpoint
from ..data.boxes import boxes_from_labels
from ..metrics import ConfusionMatrix
from ..metrics.detection import DetectionEvaluator
from ..metrics.fusion import qabf, spatial_frequency
from ..models.preprocessing import split_luminance
from .logs import write_plots


#: ``train.val_absent``'s default: how the validation mIoU treats a class without ground truth
#: in the val split (``ConfusionMatrix.summary``'s ``absent``)
VAL_ABSENT = "zero"


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device, class_names=None,
             box_class_ids=None, box_min_area: int = 50, absent: str = VAL_ABSENT) -> dict:
    """Confusion-matrix metrics over the whole loader (class 0 included; a class without
    ground truth in the loader by ``absent``, see ``ConfusionMatrix.summary``).

    ``absent``: 'zero' (the default, the model card's "9 classes" protocol: such a class counts
    as 0 whatever is predicted, so the mean moves only with the present classes' IoUs and ranks
    checkpoints as 'present' does), 'present' (mean over the classes with ground truth) or
    'skip' (the mean over the classes with ground truth or prediction: on MFNet's 24 val pairs,
    which have no guardrail or bump pixels, a single predicted pixel of those classes adds an IoU
    of 0 and moves the mean between /7, /8 and /9, about 12 points; measured in SegMiF v4's run:
    trainer val mIoU 54.6 at the selected step, 42.5 on the model card's 9-class protocol).

    For a model with a fusion network (attribute ``fusion``) the result also has ``fusion``:
    the mean Qabf (edge preservation, Xydeas and Petrovic 2000; in [0, 1]) and SF (spatial
    frequency, grey levels of 8-bit images) of the fused luminance against the visible luminance
    and the thermal image, at the loader's image size, so that a recipe that blurs the fused
    image shows up in the validation log (Qabf of the per-pixel average of the two sources is a
    useful floor: on the MFNet val split at 240x320 it is 0.41).

    For a model with a detector (``detection_classes``, TSJNet) and ``box_class_ids`` (label id
    of each detection class, ``tsjnet_steps.detection_class_ids``) the result also has
    ``detection``: ``DetectionEvaluator.summary()`` (mAP@0.5 and @0.5:0.95 in [0, 1], COCO
    101-point AP) of ``predict``'s boxes against the boxes of the loader's label images
    (``boxes_from_labels``, components of at least ``box_min_area`` pixels at the loader's size).
    """
    was = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, class_names=class_names)
    fuses = hasattr(model, "fusion")
    qabf_sum = sf_sum = 0.0
    n = 0
    dets = None
    if box_class_ids is not None and hasattr(model, "detection_classes"):
        names = list(model.detection_classes)
        dets = DetectionEvaluator(len(names), names)
    for batch in loader:
        vis, ir = batch["vis"].to(device), batch["ir"].to(device)
        out = model.predict(vis, ir)
        cm.update(out["labels"].cpu(), batch["label"])
        if dets is not None:
            for d, lab in zip(out["detections"], batch["label"].numpy()):
                gt = boxes_from_labels(lab.astype(np.int32), box_class_ids, int(box_min_area))
                dets.add(d["boxes"], d["scores"], d["classes"], gt["boxes"], gt["labels"],
                         gt["ignore"])
        if fuses:
            u = split_luminance(out["fused_rgb"])[0]
            x = split_luminance(vis.float())[0]
            for ui, xi, yi in zip(_to_u8(u), _to_u8(x), _to_u8(ir.float())):
                qabf_sum += qabf(xi, yi, ui)
                sf_sum += spatial_frequency(ui)
                n += 1
    model.train(was)
    summary = cm.summary(absent=absent)
    if fuses and n:
        summary["fusion"] = {"Qabf": qabf_sum / n, "SF": sf_sum / n}
    if dets is not None:
        summary["detection"] = dets.summary()
    return summary


def _to_u8(t: torch.Tensor) -> list[np.ndarray]:
    """(B, 1, H, W) float in [0, 1] -> B arrays (H, W) uint8 (rounded)."""
    return list((t[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def selection_score(summary: dict, select: str = "miou") -> float:
    """What ``best.pt`` is chosen on, from ``evaluate``'s summary: 'miou' = val mIoU (percent);
    'miou_map50' (models with a detector, ``train.joint.select``) = the mean of val mIoU and val
    mAP@0.5, both in percent (a split without ground-truth boxes counts mAP as 0)."""
    if select == "miou":
        return float(summary["mIoU"])
    if select == "miou_map50":
        det = summary.get("detection") or {}
        m = det.get("map50")
        m = 0.0 if m is None or m != m else 100.0 * float(m)
        return 0.5 * (float(summary["mIoU"]) + m)
    raise ValueError(f"unknown selection score {select!r}")


def best_score(entry: dict | None, default: float = float("-inf")) -> float:
    """The score to beat of a kept selection (``state['best']``, ``state['best_ema']``, a
    ``best.pt``'s ``meta['val']``): its ``selection_score`` ('score'), or its mIoU for one
    written before scores were kept; ``default`` when there is none."""
    if not entry:
        return default
    return float(entry.get("score", entry.get("mIoU", default)))


def val_entry(summary: dict, step: int, score: float) -> dict:
    """The record of one validation kept in the trainer's state and in a checkpoint's
    ``meta['val']``: mIoU and mAcc (percent), ``step``, the selection ``score``, per-class IoU,
    the fusion metrics when validated, and mAP@0.5, mAP@0.5:0.95 and per-class AP@0.5 (percent)
    for a model with a detector. ``summary`` is ``evaluation.evaluate``'s result."""
    entry = {"mIoU": summary["mIoU"], "mAcc": summary["mAcc"], "step": step, "score": score,
             "per_class": {k: v["iou"] for k, v in summary["per_class"].items()}}
    if "fusion" in summary:
        entry["fusion"] = summary["fusion"]
    det = summary.get("detection")
    if det is not None:
        entry["detection"] = {
            "map50": 100 * det["map50"], "map50_95": 100 * det["map50_95"],
            "per_class_ap50": {k: None if v["ap50"] is None else 100 * v["ap50"]
                               for k, v in det["per_class"].items()}}
    return entry


class ValidationMixin:
    """``Trainer``'s validation. It uses the attributes ``Trainer.__init__`` sets: ``distributed``,
    ``rank``, ``model``, ``ema`` (None: no moving average), ``classes``, ``device``, ``state``,
    ``out``, ``cfg`` and ``tc``."""

    def validate(self, val_loader, step: int):
        if self.distributed:
            dist.barrier()
        scores = {}
        if self.rank == 0:
            joint = getattr(self, "joint", False)

            def run(model):  # the trained weights, and the moving average the same way
                return evaluate(model, val_loader, self.classes.num_classes, self.device,
                                list(self.classes.names),
                                box_class_ids=self.box_class_ids if joint else None,
                                box_min_area=self.jc["box_min_area"] if joint else 50,
                                absent=self.tc.get("val_absent", VAL_ABSENT))

            s = run(self.model)
            scores["val_mIoU"] = round(s["mIoU"], 3)
            for k, v in s.get("fusion", {}).items():
                scores[f"val_{k}"] = round(v, 4)
            det = s.get("detection")
            if det is not None:  # percent, as mIoU (NaN: no ground-truth box in the split)
                scores["val_mAP50"] = round(100 * det["map50"], 3)
                scores["val_mAP50_95"] = round(100 * det["map50_95"], 3)
            ema = getattr(self, "ema", None)
            select = getattr(self, "jc", {}).get("select", "miou")
            if ema is not None:  # the moving average, validated and selected the same way
                e = run(ema.module)
                scores["val_mIoU_ema"] = round(e["mIoU"], 3)
                e_score = selection_score(e, select)
                self.state["last_val_ema"] = val_entry(e, step, e_score)
                if e_score > best_score(self.state.get("best_ema"), -1.0):
                    self.state["best_ema"] = val_entry(e, step, e_score)
                    save_checkpoint(self.out / "best_ema.pt", ema.module, self.classes,
                                    self.cfg["data"]["size"],
                                    meta={"val": self.state["best_ema"], "train_config": self.cfg,
                                          "run_id": self.state["run_id"],
                                          "ema": float(self.tc["ema"])})
            score = selection_score(s, select)
            # the latest validation of the trained weights (final.pt's meta when the run ends
            # at this step)
            self.state["last_val"] = val_entry(s, step, score)
            if score > best_score(self.state["best"]):
                self.state["best"] = val_entry(s, step, score)
                save_checkpoint(self.out / "best.pt", self.model, self.classes,
                                self.cfg["data"]["size"],
                                meta={"val": self.state["best"], "train_config": self.cfg,
                                      "run_id": self.state["run_id"]})
            write_plots(self.out / "log.csv", self.out / "plots")
        if self.distributed:
            dist.barrier()
        return scores
