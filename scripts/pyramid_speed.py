"""Time of the pyramid head's composition (``models.modules.pyramid.PyramidComposer``) with each
expand step, torch on the CPU: the decomposition of both sources, the per-level choice and the
collapse, at a camera size, with a weight map at a quarter of it.

    python scripts/pyramid_speed.py [--camera 480 640] [--levels 7] [--threads 1] [--reps 5]

Prints, per expand step, the best of ``reps`` medians of 10 calls (ms).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from segmif_core.models.modules.pyramid import PYRAMID_UPSAMPLES, PyramidComposer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--camera", type=int, nargs=2, default=[480, 640])
    ap.add_argument("--levels", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = args.camera
    gen = torch.Generator().manual_seed(0)
    y, t = torch.rand(1, 1, h, w, generator=gen), torch.rand(1, 1, h, w, generator=gen)
    weight = torch.rand(1, 1, h // 4, w // 4, generator=gen)
    composer = PyramidComposer()
    best = {up: float("inf") for up in PYRAMID_UPSAMPLES}
    with torch.no_grad():
        for _ in range(args.reps):
            for up in PYRAMID_UPSAMPLES:
                times = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    composer(weight, y, t, args.levels, 2, "visible", up)
                    times.append(time.perf_counter() - t0)
                best[up] = min(best[up], 1000.0 * float(np.median(times)))
    for up, ms in best.items():
        print(f"{up:9s} {h}x{w}, {args.levels} levels, {args.threads} thread(s): {ms:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
