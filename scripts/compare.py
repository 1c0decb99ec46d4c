"""TSJNet, SegMiF (any checkpoints) side by side in one table, on the MFNet val split and on the
fusion pairs (TNO, MSRS) by default.

    python scripts/compare.py --out runs/compare SegMiF=segmif.pt TSJNet=runs/tsjnet_cpu/best.pt
    python scripts/compare.py --out runs/cmp --data val=../shared/data/mfnet:val.txt A=a.pt B=b.pt

Rows: (dataset, model) then (dataset, fusion rule); columns: mIoU, mAP@0.5, mAP@0.5:0.95 (for
models with a detector, against boxes derived from the label images), fusion metrics (EN SD SF
AG MI SCD VIF Qabf SSIM at each pair's native size). Writes OUT/comparison.md, comparison.json
and each run's report under OUT/DATASET/MODEL/ (``segmif_core.compare``). Datasets without labels
(the fusion pairs) have no mIoU or mAP. ``--rules`` chooses the baseline fusion rules (default
average and maximum).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DATASETS = (f"val={DATA / 'mfnet'}:val.txt", f"tno={DATA / 'fusion_pairs' / 'tno'}",
                    f"msrs={DATA / 'fusion_pairs' / 'msrs'}")


def parse_dataset(spec: str) -> tuple[str, str, str | None]:
    """'NAME=ROOT[:SPLIT]' -> (NAME, ROOT, SPLIT or None); SPLIT relative to ROOT."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"dataset {spec!r}: expected NAME=ROOT[:SPLIT]")
    root, _, split = rest.partition(":")
    return name, root, split or None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/compare")
    ap.add_argument("--data", action="append", metavar="NAME=ROOT[:SPLIT]",
                    help="dataset (repeat; default: MFNet val, TNO, MSRS from ../shared/data)")
    ap.add_argument("--rules", nargs="*", default=["average", "maximum"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("runs", nargs="+", metavar="NAME=CHECKPOINT")
    args = ap.parse_args(argv)

    from segmif_core.compare import COMPARISON_MD, compare, render_comparison_markdown, \
        write_comparison
    from segmif_core.inference import SegMiFPredictor

    try:
        datasets = [parse_dataset(d) for d in (args.data or DEFAULT_DATASETS)]
        models = []
        for item in args.runs:
            name, sep, ckpt = item.partition("=")
            if not sep:
                raise ValueError(f"model {item!r}: expected NAME=CHECKPOINT")
            models.append((name, SegMiFPredictor(ckpt, args.device)))
        comp = compare(models, datasets, rules=args.rules, log=print)
    except (ValueError, FileNotFoundError) as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 2
    write_comparison(comp, args.out, title="TSJNet and SegMiF side by side")
    print(render_comparison_markdown(comp))
    print(f"-> {Path(args.out) / COMPARISON_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
