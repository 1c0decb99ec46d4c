"""Rows of docs/model_card.md: every checkpoint on the MFNet val split (mIoU under both protocols,
per-class IoU) and on the fusion pairs (TNO, MSRS) at native resolution against the rules.

    python scripts/model_card_eval.py --out runs/model_card NAME=CHECKPOINT [NAME=CHECKPOINT ...]

Writes ``OUT/results.json`` (atomically) and prints the markdown tables. Protocols: "9 classes"
= mean IoU over the 9 MFNet classes with classes absent from val counted as 0; "present" = mean
over the classes with ground-truth pixels in val (7 of 9). Fusion metrics: see
``segmif_core.evaluation`` (8-bit luma at each pair's native size).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from segmif_core.data.pairs import list_pairs, read_pair
from segmif_core.evaluation import evaluate_folder, write_json_atomic
from segmif_core.inference import SegMiFPredictor
from segmif_core.metrics import ConfusionMatrix
from segmif_core.metrics.fusion import FUSION_METRIC_KEYS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RULES = ("average", "maximum", "laplacian", "gff")  # scored beside each fusion model


def val_confusion(pred: SegMiFPredictor, transform=None) -> ConfusionMatrix:
    """Confusion matrix of ``pred`` on the MFNet val split at the labels' native size;
    ``transform(vis, ir) -> (vis, ir)`` is applied to each pair first (e.g. a missing camera)."""
    root = str(DATA / "mfnet")
    cm = ConfusionMatrix(pred.classes.num_classes, class_names=list(pred.classes.names))
    for name in list_pairs(root, "val.txt"):
        vis, ir, label = read_pair(root, name)
        if transform is not None:
            vis, ir = transform(vis, ir)
        cm.update(pred.predict(vis, ir).labels, label)
    return cm


def protocols(cm: ConfusionMatrix) -> dict:
    zero, present = cm.summary(absent="zero"), cm.summary(absent="present")
    return {"mIoU_9": zero["mIoU"], "mIoU_present": present["mIoU"], "mAcc": zero["mAcc"],
            "per_class": {k: v["iou"] for k, v in zero["per_class"].items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/model_card")
    ap.add_argument("--fusion-scale", type=float, default=None,
                    help="Phi's resolution for the fused-image rows (the node's default is 0.5; "
                         "default: each checkpoint's own setting)")
    ap.add_argument("--no-fusion", dest="fusion", action="store_false",
                    help="segmentation rows only")
    ap.add_argument("runs", nargs="+", metavar="NAME=CHECKPOINT")
    args = ap.parse_args(argv)
    results = {}
    for item in args.runs:
        name, ckpt = item.split("=", 1)
        pred = SegMiFPredictor(ckpt)
        row = {"checkpoint": ckpt, "val": protocols(val_confusion(pred)), "fusion": {}}
        if args.fusion and pred.model.name in ("segmif", "tsjnet"):  # models with a fusion network
            if args.fusion_scale is not None:  # the fused-image rows at this setting
                pred = SegMiFPredictor(ckpt, fusion_scale=args.fusion_scale)
            for ds, root, split in (("val", DATA / "mfnet", "val.txt"),
                                    ("tno", DATA / "fusion_pairs" / "tno", None),
                                    ("msrs", DATA / "fusion_pairs" / "msrs", None)):
                r = evaluate_folder(pred, root, split, rules=RULES, log=print)
                row["fusion"][ds] = r["fusion"]
        results[name] = row
        v = row["val"]
        print(f"{name}: mIoU {v['mIoU_9']:.2f} (9 classes) / {v['mIoU_present']:.2f} (present)",
              flush=True)
    write_json_atomic(results, Path(args.out) / "results.json")
    classes = list(next(iter(results.values()))["val"]["per_class"])
    print("\n| run | mIoU (9) | mIoU (present) | " + " | ".join(classes) + " |")
    print("|---|---:|---:|" + "---:|" * len(classes))
    for name, row in results.items():
        v = row["val"]
        cells = ["-" if v["per_class"][c] is None else f"{v['per_class'][c]:.1f}" for c in classes]
        print(f"| {name} | {v['mIoU_9']:.2f} | {v['mIoU_present']:.2f} | " + " | ".join(cells) + " |")
    for ds in ("val", "tno", "msrs"):
        print(f"\nfusion metrics, {ds} (native resolution)\n| method | " + " | ".join(FUSION_METRIC_KEYS)
              + " |\n|---|" + "---:|" * len(FUSION_METRIC_KEYS))
        for name, row in results.items():
            for method, m in row["fusion"].get(ds, {}).items():
                label = method if method in RULES else name
                print(f"| {label} | " + " | ".join("-" if m.get(k) is None else f"{m[k]:.3f}"
                                                    for k in FUSION_METRIC_KEYS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
