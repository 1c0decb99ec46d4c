"""Figures of docs/: val pairs through a checkpoint, side by side with the sources and the rules.

    python scripts/pairs_figure.py --checkpoint CKPT --out docs/images/pairs.jpg \
        [--names 00102D 01209N ...] [--overview docs/images/overview.jpg]

``--out``: one row per pair (default: two day and two night MFNet val pairs), columns visible |
thermal | laplacian rule | the model's fused image | the model's labels | ground truth, each tile
320x240 (the camera's 640x480 halved), written atomically (PNG or JPEG by the suffix). ``--overview``: one row,
visible | thermal | fused | labels, of the first pair (the README's picture). The model runs with
the node's defaults (``SegMiFPredictor`` with ``fusion_scale`` 0.5 unless ``--fusion-scale``).
A model with a detector (TSJNet) gets its boxes with score >= ``--min-score`` drawn on its fused
image, and the boxes derived from the labels (the evaluation's protocol) on the ground truth;
the columns are titled with ``--title`` (default: TSJNet for a model with a detector, else
SegMiF).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from segmif_core import atomic
from segmif_core.data.pairs import read_pair
from segmif_core.detection_eval import GroundTruthBoxes
from segmif_core.evaluation import thermal8
from segmif_core.fusion_rules import fuse_rgb
from segmif_core.inference import SegMiFPredictor
from segmif_ros.node.detections import draw_detections

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfnet"
DEFAULT_NAMES = ("00102D", "00510D", "01209N", "00733N")
TILE = (320, 240)  # width, height


def _tile(rgb: np.ndarray, title: str) -> np.ndarray:
    t = cv2.resize(rgb, TILE, interpolation=cv2.INTER_AREA)
    cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--overview", default=None)
    ap.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES))
    ap.add_argument("--fusion-scale", type=float, default=0.5)
    ap.add_argument("--min-score", type=float, default=0.3,
                    help="smallest score of the boxes drawn (models with a detector)")
    ap.add_argument("--title", default=None, help="the model's name in the column titles")
    args = ap.parse_args(argv)
    pred = SegMiFPredictor(args.checkpoint, fusion_scale=args.fusion_scale)
    detector = bool(pred.detection_classes)
    title = args.title or ("TSJNet" if detector else "SegMiF")
    # the evaluation's ground-truth boxes (segmif evaluate: derived from the labels)
    truth = GroundTruthBoxes(pred.detection_classes, pred.classes.names) if detector else None
    rows, overview = [], None
    for name in args.names:
        vis, ir, label = read_pair(str(DATA), name)
        ir8 = thermal8(ir)
        p = pred.predict(vis, ir)
        colors = pred.classes.colorize(p.labels)
        gt = pred.classes.colorize(label)
        fused = p.fused
        if detector:  # boxes in the colour of their class, on copies of the fused image / GT
            palette = [tuple(int(c) for c in pred.classes.colors[i]) for i in truth.class_ids]
            d = p.detections
            keep = np.asarray(d["scores"]) >= args.min_score
            fused = draw_detections(np.ascontiguousarray(fused).copy(), {
                "boxes": np.asarray(d["boxes"])[keep], "scores": np.asarray(d["scores"])[keep],
                "classes": np.asarray(d["classes"])[keep], "names": pred.detection_classes},
                palette)
            boxes = truth.get(name, label)
            gt = draw_detections(np.ascontiguousarray(gt).copy(), {
                "boxes": boxes["boxes"], "scores": np.ones(len(boxes["boxes"])),
                "classes": boxes["labels"], "names": pred.detection_classes},
                [(255, 255, 255)] * len(truth.classes))
        ir_rgb = np.repeat(ir8[..., None], 3, axis=2)
        tiles = [_tile(vis, f"{name} visible"), _tile(ir_rgb, "thermal"),
                 _tile(fuse_rgb("laplacian", vis, ir8), "laplacian rule"),
                 _tile(fused, f"{title} fused" + (" + boxes" if detector else "")),
                 _tile(colors, f"{title} labels"), _tile(gt, "ground truth")]
        rows.append(np.concatenate(tiles, axis=1))
        if overview is None:
            overview = np.concatenate([tiles[0], tiles[1], tiles[3], tiles[4]], axis=1)
    atomic.write_image(args.out, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")
    if args.overview:
        atomic.write_image(args.overview, cv2.cvtColor(overview, cv2.COLOR_RGB2BGR))
        print(f"wrote {args.overview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
