"""The Laplacian-pyramid rule at several depths against the issue's reference (4 levels) and the
max rule, on MFNet val, TNO and MSRS at native resolution (the model card's fused-image protocol:
8-bit luma of the visible image, 8-bit thermal, ``segmif_core.metrics.fusion``).

    python scripts/rule_levels.py [--levels 4 5 6 7] [--expand opencv|bilinear|binomial]
        [--sets val tno msrs] [--out runs/rule_levels/results.json]

``--expand``: how the compared pyramids are built: ``opencv`` (``fusion_rules.laplacian``,
pyrDown / pyrUp), or the models' pyramid head (``models.modules.pyramid.PyramidComposer`` with
its weight map at 1 and the brighter base, i.e. the same max-abs / max rule) with its
``bilinear`` or ``binomial`` expand step. The reference stays the OpenCV 4-level rule.

Prints, per depth and set, how many of EN SD SF AG MI SCD VIF Qabf beat the 4-level rule (and
how many of those are among MI SCD VIF Qabf) and the max rule, and writes the means atomically.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from segmif_core import fusion_rules as R
from segmif_core.data.pairs import list_pairs, read_pair
from segmif_core.evaluation import luma8, thermal8, write_json_atomic
from segmif_core.metrics.fusion import TARGET_METRIC_KEYS as KEYS, fusion_metrics, metrics_beaten

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"val": (DATA / "mfnet", "val.txt"), "tno": (DATA / "fusion_pairs" / "tno", None),
        "msrs": (DATA / "fusion_pairs" / "msrs", None)}


def composer_rule(levels: int, upsample: str):
    """The pyramid head's composition as a fixed rule (w = 1, brighter base = max rule at the
    coarsest level) on uint8 luma / thermal; returns uint8."""
    import torch

    from segmif_core.models.modules.pyramid import PyramidComposer
    composer = PyramidComposer()

    def rule(y, t):
        as_t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)[None, None]  # noqa: E731
        with torch.no_grad():
            u = composer(torch.ones(1, 1, 2, 2), as_t(y), as_t(t), levels, 0, "brighter", upsample)
        return np.round(u[0, 0].numpy() * 255.0).astype(np.uint8)
    return rule


def means(rule, pairs) -> dict:
    rows = [fusion_metrics(y, t, rule(y, t)) for y, t in pairs]
    return {k: float(np.nanmean([r[k] for r in rows])) for k in KEYS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[4, 5, 6, 7])
    ap.add_argument("--expand", choices=("opencv", "bilinear", "binomial"), default="opencv")
    ap.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    ap.add_argument("--out", default="runs/rule_levels/results.json")
    args = ap.parse_args(argv)
    results = {}
    for ds in args.sets:
        root, split = SETS[ds]
        pairs = []
        for name in list_pairs(str(root), split):
            vis, ir = read_pair(str(root), name)[:2]
            pairs.append((luma8(vis), thermal8(ir)))
        ref = {"laplacian4": means(lambda y, t: R.laplacian(y, t, levels=4), pairs),
               "maximum": means(R.maximum, pairs)}
        results[ds] = dict(ref)
        for n in args.levels:
            if args.expand == "opencv":
                m = ref["laplacian4"] if n == 4 else \
                    means(lambda y, t: R.laplacian(y, t, levels=n), pairs)
            else:
                m = means(composer_rule(n, args.expand), pairs)
            results[ds][f"laplacian{n}"] = m
            (lap, lap_src), (mx, _) = (metrics_beaten(m, ref[r]) for r in ("laplacian4", "maximum"))
            print(f"{ds:5s} laplacian ({args.expand}), {n} levels: beats the 4-level rule on {len(lap)} of 8 "
                  f"({lap_src} of MI SCD VIF Qabf), max on {len(mx)} ({' '.join(mx)})", flush=True)
    write_json_atomic(results, Path(args.out))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
