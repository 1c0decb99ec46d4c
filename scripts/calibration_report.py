"""Automatic registration (segmif_core.calibration_auto.estimate_ecc) on the MFNet pairs marked
aligned=no in manifest.csv, with the alignment before (identity, as shipped) and after.

    .venv/bin/python scripts/calibration_report.py [--data ../shared/data/mfnet] [--aligned no]
        [--model affine|homography] [--json runs/calibration_report.json]

Scores (see segmif_core/calibration_auto.py), both on the pixels the thermal image covers under
both transforms: edge_px = symmetric mean distance between the Canny edge maps of the two images
(visible pixels, capped at 20; lower is better; independent of what ECC optimises); grad_ncc =
correlation of the gradient-magnitude images (higher is better; close to ECC's own objective).
shift = mean distance the estimate moves the thermal image corners (pixels). The same run with
--aligned yes gives the scores of pairs the MSRS authors kept, as a reference.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segmif_core.calibration import CalibrationError, read_image  # noqa: E402
from segmif_core.calibration_auto import (compare_alignment, corner_shift,  # noqa: E402
                                          estimate_ecc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mfnet"))
    ap.add_argument("--aligned", default="no", choices=("no", "yes"))
    ap.add_argument("--limit", type=int, default=0, help="first N pairs only (0 = all)")
    ap.add_argument("--model", default="affine", choices=("affine", "homography"))
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    with open(data / "manifest.csv", newline="") as f:
        names = [r["name"] for r in csv.DictReader(f) if r["aligned"] == args.aligned]
    if args.limit:
        names = names[:args.limit]
    rows = []
    print(f"{'pair':8s} {'model':10s} {'shift':>6s}  {'edge_px before':>14s} -> after  "
          f"{'grad_ncc before':>15s} -> after  {'s':>4s}")
    for name in names:
        vis, ir = read_image(data / "vis" / f"{name}.png"), read_image(data / "ir" / f"{name}.png")
        t0 = time.perf_counter()
        try:
            est = estimate_ecc(vis, ir, model=args.model)
        except CalibrationError as err:
            print(f"{name:8s} failed: {err}")
            rows.append({"name": name, "error": str(err)})
            continue
        dt = time.perf_counter() - t0
        sc = compare_alignment(vis, ir, est.homography)
        shift = float(corner_shift(est.homography, np.eye(3), (ir.shape[1], ir.shape[0])).mean())
        b, a = sc["before"], sc["after"]
        print(f"{name:8s} {est.info['model']:10s} {shift:6.1f}  {b['edge_px']:14.2f} -> "
              f"{a['edge_px']:5.2f}  {b['grad_ncc']:15.3f} -> {a['grad_ncc']:5.3f}  {dt:4.1f}"
              + (f"  ({est.info['note']})" if est.info["note"] else ""))
        rows.append({"name": name, "model": est.info["model"], "corner_shift_px": shift,
                     "before": b, "after": a, "overlap": sc["overlap"], "seconds": dt,
                     "homography": est.homography.tolist(), "note": est.info["note"]})
    ok = [r for r in rows if "error" not in r]
    if ok:
        mean = {k: (np.mean([r["before"][k] for r in ok]), np.mean([r["after"][k] for r in ok]))
                for k in ("edge_px", "grad_ncc")}
        better = sum(r["after"]["edge_px"] < r["before"]["edge_px"] for r in ok)
        print(f"mean over {len(ok)}/{len(rows)} pairs: edge_px {mean['edge_px'][0]:.2f} -> "
              f"{mean['edge_px'][1]:.2f} (lower in {better}), grad_ncc {mean['grad_ncc'][0]:.3f}"
              f" -> {mean['grad_ncc'][1]:.3f}, corner shift "
              f"{np.mean([r['corner_shift_px'] for r in ok]):.1f} px")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
