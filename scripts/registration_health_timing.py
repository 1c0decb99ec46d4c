"""Time one registration health check (segmif_core.registration_health.measure_alignment, the
node's default subsample of 320 px) on real 640x480 MFNet pairs.

    .venv/bin/python scripts/registration_health_timing.py [--data ../shared/data/mfnet]
        [--pairs 20] [--repeats 5] [--threads 1]

Prints the median and 90th percentile time per check (ms) over pairs x repeats.
"""
from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from segmif_core.registration_health import measure_alignment


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                   "shared", "data", "mfnet"))
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    ap.add_argument("--max-side", type=int, default=320)
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    names = sorted(os.listdir(os.path.join(args.data, "vis")))
    names = names[::max(1, len(names) // args.pairs)][:args.pairs]
    times = []
    for name in names:
        vis = cv2.cvtColor(cv2.imread(os.path.join(args.data, "vis", name)), cv2.COLOR_BGR2RGB)
        ir = cv2.imread(os.path.join(args.data, "ir", name), cv2.IMREAD_UNCHANGED)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            measure_alignment(vis, ir, args.max_side)
            times.append((time.perf_counter() - t0) * 1e3)
    print(f"{len(names)} pairs {vis.shape[1]}x{vis.shape[0]} x {args.repeats}, OpenCV threads "
          f"{cv2.getNumThreads()}, max_side {args.max_side}: median {np.median(times):.1f} ms, "
          f"p90 {np.percentile(times, 90):.1f} ms per check")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
