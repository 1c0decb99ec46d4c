"""Time the ONNX export of a checkpoint with free, multiple-of-64 or fixed camera sizes.

    .venv/bin/python scripts/export_timing.py --mode dynamic|fixed|mult64 [--checkpoint PT]
        [--fusion-scale 0.5] [--threads 1] [--out OUT.onnx]

``dynamic`` is what the node's first configure does (``onnx_cache`` -> ``export_onnx(dynamic=
True)``: camera H, W free); ``fixed`` a 480x640 graph (``segmif export`` without --dynamic);
``mult64`` a graph whose camera sizes are multiples of 64 (H = 64 a, W = 64 b; example 512x640),
which removes the nested ceil-divisions of the camera-size pyramid from the symbolic shapes.
Prints the exporter's own stages (``torch.onnx.export(..., verbose=True)``: graph capture,
decompositions, translation, optimisation), each line with the seconds since the start, and the
total. A measurement for docs/speed.md, not a test; the graph is written only with --out.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from segmif_core.checkpoint import load_checkpoint
from segmif_core.inference.onnx_export import (WholeModel, camera_dynamic_shapes, example_inputs,
                                               set_fusion_scale)
from segmif_core.inference.onnx_io import INPUT_NAMES


class _Stamped:
    """stdout with the seconds since ``t0`` in front of each line."""

    def __init__(self, stream, t0: float):
        self.stream, self.t0, self.start = stream, t0, True

    def write(self, text: str) -> int:
        for part in text.splitlines(keepends=True):
            if self.start:
                self.stream.write(f"[{time.time() - self.t0:7.1f} s] ")
            self.stream.write(part)
            self.start = part.endswith("\n")
        return len(text)

    def flush(self):
        self.stream.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("dynamic", "fixed", "mult64"), required=True)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped SegMiF")
    ap.add_argument("--fusion-scale", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _, info = load_checkpoint(args.checkpoint, "cpu")
    set_fusion_scale(model, args.fusion_scale)
    graph = WholeModel(model).eval()
    camera = (512, 640) if args.mode == "mult64" else (480, 640)
    inputs = example_inputs(tuple(info["input_size"]), camera)
    shapes = None
    if args.mode == "dynamic":  # as export_onnx(dynamic=True)
        shapes = camera_dynamic_shapes(model.min_size)
    elif args.mode == "mult64":
        shapes = camera_dynamic_shapes(model.min_size, multiple=64)
    t0 = time.time()
    out, sys.stdout = sys.stdout, _Stamped(sys.stdout, t0)
    try:
        program = torch.onnx.export(graph, inputs, dynamo=True, input_names=list(INPUT_NAMES),
                                    output_names=graph.output_names, dynamic_shapes=shapes,
                                    verbose=True)
    finally:
        sys.stdout = out
    print(f"{args.mode}: export {time.time() - t0:.1f} s (camera {camera[0]}x{camera[1]}, "
          f"torch {torch.__version__}, {args.threads} thread(s))", flush=True)
    if args.out:
        program.save(args.out, external_data=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
