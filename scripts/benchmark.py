#!/usr/bin/env python3
"""Inference speed of a checkpoint: prints per-frame latency percentiles and throughput.

    .venv/bin/python scripts/benchmark.py [--checkpoint PATH] [--device cpu|cuda]
        [--size H W] [--camera H W] [--frames 30] [--threads N]

Times ``SegMiFPredictor.predict`` (resize in, network, resize out) on random camera-sized
frames, after 3 warm-up frames. A speed goal is checked by reading these numbers, not by a test.
"""
import argparse
import json
import platform
import time

import numpy as np
import torch

from segmif_core.evaluation import timing_summary
from segmif_core.inference import SegMiFPredictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="network input")
    ap.add_argument("--camera", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pred = SegMiFPredictor(args.checkpoint, args.device, args.size)
    rng = np.random.default_rng(0)
    h, w = args.camera
    vis = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (h, w), dtype=np.uint8)
    for _ in range(3):
        pred.predict(vis, ir)
    infer, total = [], []
    t0 = time.perf_counter()
    for _ in range(args.frames):
        p = pred.predict(vis, ir)
        infer.append(p.inference_ms)
        total.append(p.total_ms)
    wall = time.perf_counter() - t0
    params = sum(x.numel() for x in pred.model.parameters())
    print(json.dumps({
        "device": str(pred.device), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "camera": [h, w], "input_size": pred.input_size,
        "model": pred.info.get("model"), "parameters_M": round(params / 1e6, 2),
        "inference_ms": timing_summary(infer), "total_ms": timing_summary(total),
        "fps": round(args.frames / wall, 2)}, indent=2))


if __name__ == "__main__":
    main()
