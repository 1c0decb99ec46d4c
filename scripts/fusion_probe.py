"""What a pyramid-head checkpoint's fusion network decides, and how its fused image scores.

For each checkpoint (SegMiF or TSJNet with ``fusion_head: pyramid``) and each data set (MFNet
train / val, TNO, MSRS under ``../shared/data``):
- ``map``: the mean of the weight map F over the first ``--pairs`` pairs at the network's input
  size (the brighter source's share of the pyramid's coarsest level for ``pyramid_base:
  brighter``), beside the mean of the visible and thermal images;
- ``grad`` (TSJNet): the gradient of each MFF term (``training.tsjnet_losses``: intensity,
  gradient, SSIM, each times its weight) with respect to F, summed over the map and averaged
  over the pairs: a negative value means that raising F lowers that term;
- ``wins``: the fused image at the camera's resolution (``--fusion-scale``, the node's 0.5 by
  default) against the Laplacian-pyramid and max rules on the 8 metrics (``evaluation.
  evaluate_folder``), the count of metrics it beats and, in brackets, how many of them are
  measured against the sources (MI, SCD, VIF, Qabf).

    python scripts/fusion_probe.py --sets val tno msrs NAME=CHECKPOINT ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from segmif_core.data.pairs import list_pairs, read_pair
from segmif_core.evaluation import evaluate_folder
from segmif_core.inference import SegMiFPredictor
from segmif_core.metrics.fusion import TARGET_METRIC_KEYS as KEYS, metrics_beaten
from segmif_core.models.preprocessing import split_luminance

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"train": (DATA / "mfnet", "train.txt"), "val": (DATA / "mfnet", "val.txt"),
        "tno": (DATA / "fusion_pairs" / "tno", None), "msrs": (DATA / "fusion_pairs" / "msrs", None)}


def network_pairs(ds: str, size: tuple[int, int], n: int):
    """Up to ``n`` pairs of ``ds`` spread over the set, resized to ``size`` (H, W): (vis (1, 3,
    H, W), ir (1, 1, H, W)) float in [0, 1]."""
    root, split = SETS[ds]
    names = list_pairs(str(root), split and str(root / split))
    for name in names[::max(1, len(names) // n)][:n]:
        vis, ir, _ = read_pair(str(root), name)
        ir = ir if ir.ndim == 2 else ir[..., 0]
        v = cv2.resize(vis, size[::-1], interpolation=cv2.INTER_AREA)
        t = cv2.resize(ir, size[::-1], interpolation=cv2.INTER_AREA)
        yield (torch.from_numpy(v).permute(2, 0, 1)[None].float() / 255.0,
               torch.from_numpy(t)[None, None].float() / 255.0)


def map_and_grads(model, ds: str, size, n: int) -> dict:
    from segmif_core.training.tsjnet_losses import (LOSS_WEIGHTS, gradient_loss, intensity_loss,
                                                    ssim_loss)
    maps, vis_m, ir_m, grads = [], [], [], {}
    for v, t in network_pairs(ds, size, n):
        out = model.fuse(v, t)
        fmap = out["fusion_map"]
        maps.append(fmap.mean().item())
        vis_m.append(v.mean().item())
        ir_m.append(t.mean().item())
        if model.name != "tsjnet":
            continue
        y = split_luminance(v)[0]
        terms = {k: LOSS_WEIGHTS[k] * fn(out["fused"], y, t) for k, fn in
                 (("intensity", intensity_loss), ("gradient", gradient_loss), ("ssim", ssim_loss))}
        for k, term in terms.items():
            g, = torch.autograd.grad(term, fmap, retain_graph=True)
            grads.setdefault(k, []).append(g.sum().item())
    return {"map": float(np.mean(maps)), "vis": float(np.mean(vis_m)),
            "ir": float(np.mean(ir_m)), "grads": {k: float(np.mean(g)) for k, g in grads.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["val", "tno", "msrs"], choices=list(SETS))
    ap.add_argument("--pairs", type=int, default=12, help="pairs per set for the map statistics")
    ap.add_argument("--fusion-scale", type=float, default=0.5)
    ap.add_argument("--no-wins", dest="wins", action="store_false",
                    help="the map statistics only (no fusion metrics)")
    ap.add_argument("runs", nargs="+", metavar="NAME=CHECKPOINT")
    args = ap.parse_args(argv)
    for item in args.runs:
        name, ckpt = item.split("=", 1)
        pred = SegMiFPredictor(ckpt, fusion_scale=args.fusion_scale)
        model = pred.model.float().eval()
        if getattr(model.config, "fusion_head", None) != "pyramid":
            raise SystemExit(f"{ckpt}: not a pyramid-head fusion model")
        for ds in args.sets:
            s = map_and_grads(model, ds, tuple(pred.input_size), args.pairs)
            line = (f"{name} {ds}: F mean {s['map']:.3f}, vis {s['vis']:.3f}, ir {s['ir']:.3f}"
                    + "".join(f"; dL/dF {k} {v:+.4f}" for k, v in s["grads"].items()))
            if args.wins and ds != "train":
                root, split = SETS[ds]
                r = evaluate_folder(pred, str(root), split, rules=("laplacian", "maximum"),
                                    log=lambda *a: None)["fusion"]
                m = next(v for k, v in r.items() if k not in ("laplacian", "maximum"))
                for rule in ("laplacian", "maximum"):
                    won, src = metrics_beaten(m, r[rule])
                    line += f"; vs {rule} {len(won)} ({src}) {','.join(won)}"
                line += "; " + " ".join(f"{k} {m[k]:.3f}" for k in KEYS)
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
