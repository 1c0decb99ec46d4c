"""Segmentation with a camera missing: val mIoU of each checkpoint on the MFNet val split with
both cameras, with the visible camera only (thermal replaced by zeros) and with the thermal
camera only (visible replaced by the thermal image in gray): the substitutes of segmif_node's
``fallback`` modes (``segmif_core.data.modality``).

    python scripts/modality_eval.py [--out runs/modality] NAME=CHECKPOINT [NAME=CHECKPOINT ...]

Writes ``OUT/results.json`` (atomically) and prints a markdown table (mIoU over the 9 classes
with absent classes counted as 0, and over the classes present in val; person IoU).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from model_card_eval import protocols, val_confusion  # the model card's val protocols

from segmif_core.data.modality import MODALITIES, substitute
from segmif_core.data.thermal import normalize_thermal, to_uint8
from segmif_core.evaluation import write_json_atomic
from segmif_core.inference import SegMiFPredictor


def evaluate(pred: SegMiFPredictor, modality: str) -> dict:
    """mIoU (both protocols) and per-class IoU of ``pred`` on val with ``modality``."""
    def drop(vis, ir):
        if ir.dtype != np.uint8:  # the thermal image as the network sees it, in 8 bits
            ir = to_uint8(normalize_thermal(ir, pred.thermal_norm, *pred.thermal_percentiles,
                                            *pred.thermal_range))
        return substitute(vis, ir, modality)

    return protocols(val_confusion(pred, drop))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/modality")
    ap.add_argument("runs", nargs="+", metavar="NAME=CHECKPOINT")
    args = ap.parse_args(argv)
    results = {}
    for item in args.runs:
        name, ckpt = item.split("=", 1)
        pred = SegMiFPredictor(ckpt)
        results[name] = {m: evaluate(pred, m) for m in MODALITIES}
        print(name, {m: round(r["mIoU_9"], 2) for m, r in results[name].items()}, flush=True)
    write_json_atomic(results, Path(args.out) / "results.json")
    print("\n| run | " + " | ".join(f"{m}: mIoU (9) / (present) / person" for m in MODALITIES)
          + " |\n|---|" + "---|" * len(MODALITIES))
    for name, rows in results.items():
        cells = [f"{r['mIoU_9']:.2f} / {r['mIoU_present']:.2f} / "
                 f"{(r['per_class'].get('person') or 0):.1f}" for r in rows.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
