"""Where TSJNet's false boxes at the image borders come from (issue 23 item 2): measurements.

    .venv/bin/python scripts/tsjnet_border_boxes.py [--checkpoint PT] [--data DIR] [--score 0.3]

Prints, on the val pairs of an MFNet-layout folder (boxes derived from the labels, >= 50 px):
1. the detector's locations outside the network input (the FCOS point of a map cell beyond the
   image; they would give boxes clamped onto the border);
2. detections >= ``--score`` that match no ground-truth box of their class at IoU 0.5 (false
   positives), and those touching the left / right / top / bottom border (within 8 px), for
   a) the frames as they are, b) the frames mirrored left-right (a border artefact of the
   network or of the resize stays on its side; content moves to the other side), c) the
   detector's input padded by 32 px left and right (zeros / replicated edge; boxes shifted back
   and clipped): if the border boxes came from the network's own zero padding, they would go;
3. the share of ground-truth boxes touching the left or right border: in the val frames, and in
   training crops as the CPU recipe makes them (random resize 0.75-1.5 of 240 x 320, crops
   192 x 256 for the task steps and 96 x 128 for the joint steps; labels of 136 train pairs),
   and the share of those crops that are padded.
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segmif_core.checkpoint import TSJNET_CHECKPOINT
from segmif_core.data.boxes import boxes_from_labels
from segmif_core.data.pairs import augment_pair, read_pair
from segmif_core.data.thermal import normalize_thermal
from segmif_core.inference import SegMiFPredictor
from segmif_core.inference.onnx_io import resize_host
from segmif_core.metrics.detection import iou_matrix
from segmif_core.models.tsjnet.fcos import all_points

MFNET = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mfnet")


def _false_positives(boxes, classes, gt, h, w):
    """Counts of false positives and of those touching each border (within 8 px)."""
    iou = iou_matrix(boxes, gt["boxes"])
    same = classes[:, None] == gt["labels"][None]
    fp = ~((iou >= 0.5) & same).any(axis=1) if len(gt["boxes"]) else np.ones(len(boxes), bool)
    sides = {"left": boxes[:, 0] <= 8, "right": boxes[:, 2] >= w - 8,
             "top": boxes[:, 1] <= 8, "bottom": boxes[:, 3] >= h - 8}
    return {"all": len(boxes), "fp": int(fp.sum()),
            **{k: int((fp & m).sum()) for k, m in sides.items()}}


def _detect(model, size, vis, ir, pad=0, mode="constant"):
    """Detections (camera pixels) of one pair, the detector's input optionally padded left and
    right by ``pad`` pixels."""
    h, w = size
    ir01 = normalize_thermal(ir)
    v = torch.from_numpy(resize_host(vis, size)).permute(2, 0, 1)[None].float() / 255
    t = torch.from_numpy(resize_host(ir01, size))[None, None]
    with torch.no_grad():
        fused = model(v, t, phase="fusion")["fused"]
        if pad:
            fused = F.pad(fused, (pad, pad, 0, 0), mode=mode)
        raw = model.tasks(fused)["detections"]
    (d,) = model.postprocess_detections(raw, (h, w + 2 * pad))
    b = d["boxes"].numpy().copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - pad).clip(0, w)
    keep = b[:, 2] > b[:, 0]
    sy, sx = vis.shape[0] / h, vis.shape[1] / w
    return b[keep] * [sx, sy, sx, sy], d["scores"].numpy()[keep], d["classes"].numpy()[keep]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(TSJNET_CHECKPOINT))
    ap.add_argument("--data", default=MFNET)
    ap.add_argument("--score", type=float, default=0.3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pred = SegMiFPredictor(args.checkpoint)
    model, size = pred.model.eval(), pred.input_size
    ids = tuple(i for i, n in enumerate(pred.classes.names) if n in pred.detection_classes)
    names = open(os.path.join(args.data, "val.txt")).read().split()

    with torch.no_grad():
        raw = model.tasks(torch.zeros(1, 1, *size))["detections"]
    pts, _, _, _ = all_points([m.shape[-2:] for m in raw["cls_logits"]], raw["strides"])
    outside = int(((pts[:, 0] >= size[1]) | (pts[:, 1] >= size[0])).sum())
    print(f"1. network input {size[0]}x{size[1]}: {outside} of {len(pts)} detector locations "
          "lie outside it")

    print(f"2. detections >= {args.score} on {len(names)} val pairs: all, false positives, and "
          "false positives touching each border")
    variants = {"as is": dict(), "mirrored": dict(flip=True),
                "detector input zero-padded 32 px": dict(pad=32, mode="constant"),
                "detector input edge-padded 32 px": dict(pad=32, mode="replicate")}
    gt_touch = gt_all = 0
    for label, opt in variants.items():
        total = {}
        for name in names:
            vis, ir, lab = read_pair(args.data, name)
            if opt.get("flip"):
                vis, ir, lab = (np.ascontiguousarray(a[:, ::-1]) for a in (vis, ir, lab))
            gt = boxes_from_labels(lab.astype(np.int32), ids, 50)
            if label == "as is":
                gt_all += len(gt["boxes"])
                gt_touch += int(((gt["boxes"][:, 0] <= 0) |
                                 (gt["boxes"][:, 2] >= lab.shape[1])).sum())
            b, s, c = _detect(model, size, vis, ir, opt.get("pad", 0), opt.get("mode"))
            k = s >= args.score
            for key, v in _false_positives(b[k], c[k], gt, *lab.shape).items():
                total[key] = total.get(key, 0) + v
        print(f"   {label:34s} {total}")

    print("3. ground-truth boxes touching the left or right border")
    print(f"   val frames: {gt_touch} of {gt_all} ({100 * gt_touch / max(gt_all, 1):.1f} %)")
    train = open(os.path.join(args.data, "train.txt")).read().split()
    labels = [cv2.resize(read_pair(args.data, n)[2], (320, 240), interpolation=cv2.INTER_NEAREST)
              for n in train]
    rng = np.random.default_rng(0)
    for crop, area in (((192, 256), 12), ((96, 128), 12)):
        touch = count = padded = 0
        for i in range(600):
            lab = labels[i % len(labels)]
            _, _, out = augment_pair(np.zeros(lab.shape + (3,), np.float32), None, lab,
                                     (240, 320), crop, rng, (0.75, 1.5))
            g = boxes_from_labels(out.astype(np.int32), ids, area)["boxes"]
            count += len(g)
            touch += int(((g[:, 0] <= 0) | (g[:, 2] >= crop[1])).sum())
            padded += int((out == 255).any())
        print(f"   training crops {crop[0]}x{crop[1]} (600 drawn): {touch} of {count} "
              f"({100 * touch / max(count, 1):.1f} %); padded crops {100 * padded / 600:.1f} %")


if __name__ == "__main__":
    main()
