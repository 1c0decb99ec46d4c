"""``segmif benchmark``: the predictor alone and the whole live graph, on every configuration
asked for; prints a table and writes OUT/benchmark.json and OUT/benchmark.md.

Predictor alone (:mod:`segmif_core.benchmark`, no ROS): camera sizes x backends x precisions
(x torch.compile), batch 1.

Live graph (``--live``): a bag of real MFNet pairs resized to the camera size, ``seconds`` long
at 30 Hz, replayed at rate 1 (as a camera rig publishes) into a freshly started segmif_node
with its default best-effort input QoS, the recorder taking the outputs; every process uses the
large shared-memory Fast DDS profile. Reported: output frames per second (receive times of the
outputs), input-to-output latency, the node's time per stage (message to numpy, registration,
preprocessing, network, postprocessing, building and publishing the three images) and its
callback delay, the pairs it dropped (newest-pair policy) and the frames never answered, and
the ROS share: (conversion + registration + publishing) / processing time. Models with a
detector run at the node's default ``detection_min_score`` (0.5, what a robot publishes; the
box selection then starts there) unless ``--detection-min-score`` says otherwise (0: every box
the model keeps, as ``segmif bag eval`` records them for mAP).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

CAMERAS = ((480, 640), (600, 800))


def _resized_pairs(data: Path, camera, n: int, dest: Path) -> list[str]:
    """The first ``n`` val pairs of the MFNet folder ``data`` resized to ``camera`` (H, W) into
    ``dest/{vis,ir}`` (8-bit PNG); returns their names."""
    import cv2

    from segmif_core.data.pairs import list_pairs, read_pair

    split = data / "val.txt"
    names = list_pairs(str(data), str(split) if split.is_file() else None)[:n]
    (dest / "vis").mkdir(parents=True, exist_ok=True)
    (dest / "ir").mkdir(parents=True, exist_ok=True)
    h, w = camera
    for name in names:
        vis, ir, _ = read_pair(str(data), name)
        if ir.dtype != "uint8":
            ir = (ir // 257).astype("uint8")
        cv2.imwrite(str(dest / "vis" / f"{name}.png"),
                    cv2.resize(vis, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1])
        cv2.imwrite(str(dest / "ir" / f"{name}.png"),
                    cv2.resize(ir, (w, h), interpolation=cv2.INTER_LINEAR))
    return names


def run_live(camera, out: Path, *, checkpoint=None, device="cpu", backend="torch",
             precision="fp32", threads=0, fusion_scale=None, seconds=10.0, data=None,
             input_size=None, detection_min_score=None, log=print) -> dict:
    """One live-graph run (module docstring); returns its summary dict.
    ``detection_min_score`` None: the node's default."""
    from ..node.parameters import PARAMETERS
    from .bag_eval import run_bag_eval
    from .bag_make import make_bag
    from .demo import default_data

    data = Path(data) if data else default_data()
    out = Path(out)
    min_score = float(PARAMETERS["detection_min_score"][0] if detection_min_score is None
                      else detection_min_score)
    work = Path(tempfile.mkdtemp(prefix="segmif_live_"))
    cfg = {"camera": list(camera), "device": device, "backend": backend, "precision": precision,
           "threads": threads, "fusion_scale": fusion_scale, "mode": "live",
           "input_size": list(input_size) if input_size else None,
           "detection_min_score": min_score}
    try:
        names = _resized_pairs(data, camera, 24, work / "pairs")
        frames = max(1, int(round(seconds * 30)))
        make_bag(work / "pairs", work / "bag", names=(names * (frames // len(names) + 1))[:frames],
                 include_labels=False)
        params = {"backend": backend, "precision": precision, "threads": threads,
                  "detection_min_score": min_score}
        if input_size:
            params["input_height"], params["input_width"] = int(input_size[0]), int(input_size[1])
        if fusion_scale:
            params["fusion_scale"] = fusion_scale
        # run_bag_eval exports a .pt checkpoint to ONNX (once, cached) before starting the node
        report = run_bag_eval(work / "bag", out / f"live_{camera[0]}x{camera[1]}_{backend}",
                              gt_topic=None, rate=1.0, start_node=True, checkpoint=checkpoint,
                              device=device, node_params=params, rules=(), mosaics=0,
                              large_shm=True, quiet_s=5.0, log=log)
    except (ValueError, RuntimeError, TimeoutError) as err:
        return {**cfg, "skipped": f"{type(err).__name__}: {err}"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t, st = report["timing"], report["stream"]
    stages = {k: v.get("p50") for k, v in t.get("stages_ms", {}).items()}
    proc = (t.get("processing_ms") or {}).get("p50")
    ros = sum(stages.get(k) or 0.0 for k in ("convert", "registration", "publish"))
    return {**cfg, "frames_in": st["frames_in_visible"], "frames_out": st["frames_out"],
            "fps": t.get("output_fps"), "latency_ms": t.get("latency_ms"),
            "processing_ms": t.get("processing_ms"), "stages_ms_p50": stages,
            "callback_delay_ms": t.get("stages_ms", {}).get("callback_delay"),
            "ros_share": round(ros / proc, 4) if proc else None,
            "pairs_dropped_by_node": st["pairs_dropped_by_node"],
            "pairs_never_answered": st["pairs_never_answered"],
            "messages_unmatched": st["messages_unmatched"]}


def cmd_benchmark(args) -> int:
    """The ``segmif benchmark`` subcommand (see :func:`add_parser`)."""
    import torch

    from segmif_core import atomic, benchmark as bench
    from segmif_core.evaluation import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data is None:
        from .demo import default_data
        try:
            args.data = str(default_data())
        except FileNotFoundError:
            print("[benchmark] no MFNet data found: random test pairs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cameras = [tuple(args.camera[i:i + 2]) for i in range(0, len(args.camera), 2)] \
        if args.camera else list(CAMERAS)
    precisions = args.precision or bench.precisions_for(args.device)
    compiles = [False, True] if args.compile else [False]
    rows = []
    for camera in cameras:
        for backend in args.backend:
            for precision in (precisions if backend == "torch" else ["fp32"]):
                for comp in (compiles if backend == "torch" else [False]):
                    row = bench.run_config(
                        camera, checkpoint=args.checkpoint, device=args.device, backend=backend,
                        precision=precision, compile=comp, threads=args.threads,
                        input_size=tuple(args.size) if args.size else None,
                        fusion_scale=args.fusion_scale, frames=args.frames, data=args.data,
                        onnx_dir=out)
                    rows.append(row)
                    print(bench.format_table([row]).splitlines()[-1], flush=True)
    live = []
    if args.live:
        for camera in cameras:
            for backend in args.backend:
                row = run_live(camera, out, checkpoint=args.checkpoint, device=args.device,
                               backend=backend, threads=args.threads,
                               fusion_scale=args.fusion_scale, seconds=args.live_seconds,
                               data=args.data, input_size=tuple(args.size) if args.size else None,
                               detection_min_score=args.detection_min_score)
                live.append(row)
                print(json.dumps(row, default=str), flush=True)
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "hardware": bench.hardware(),
              "model": bench.model_description(args.checkpoint), "predictor": rows,
              "live": live}
    write_json_atomic(result, out / "benchmark.json")
    md = ["# segmif benchmark", "", f"Hardware: {json.dumps(result['hardware'])}", "",
          "## Predictor alone (batch 1)", "", bench.format_table(rows), ""]
    if live:
        md += ["## Live graph (bag at 30 Hz, rate 1 -> segmif_node -> recorder)", "",
               "| camera | backend | out fps | latency p50 / p99 ms | ROS share | dropped | "
               "never answered |", "|---|---|---|---|---|---|---|"]
        for r in live:
            if "skipped" in r:
                md.append(f"| {r['camera'][1]}x{r['camera'][0]} | {r['backend']} | skipped: "
                          f"{r['skipped'][:80]} | | | | |")
                continue
            lat = r["latency_ms"] or {}
            md.append(f"| {r['camera'][1]}x{r['camera'][0]} | {r['backend']} | {r['fps']} | "
                      f"{lat.get('p50', 0):.0f} / {lat.get('p99', 0):.0f} | "
                      f"{r['ros_share']} | {r['pairs_dropped_by_node']} | "
                      f"{r['pairs_never_answered']} |")
    atomic.write_text(out / "benchmark.md", "\n".join(md) + "\n")
    print(f"[benchmark] {out / 'benchmark.json'}, {out / 'benchmark.md'}")
    return 0


def add_parser(sub) -> None:
    """Register ``segmif benchmark`` on the subparsers ``sub``."""
    p = sub.add_parser("benchmark", help="speed of the predictor and of the live graph",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint (.pt; default: shipped)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--camera", type=int, nargs="+", metavar="H W",
                   help="camera sizes as H W pairs (default: 480 640 600 800)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="network input size (default: the checkpoint's)")
    p.add_argument("--backend", nargs="+", default=["torch", "onnxruntime"],
                   choices=["torch", "onnxruntime"])
    p.add_argument("--precision", nargs="+", choices=["fp32", "fp16", "bf16"],
                   help="default: every precision the device supports")
    p.add_argument("--compile", action="store_true", help="also torch.compile rows")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = default)")
    p.add_argument("--fusion-scale", type=float, default=None,
                   help="SegMiF fusion network resolution in (0, 1] (default: checkpoint's)")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--data", default=None, help="MFNet-layout folder for real test pairs "
                                                "(default ../shared/data/mfnet if found)")
    p.add_argument("--live", action="store_true", help="also run the live graph")
    p.add_argument("--live-seconds", type=float, default=10.0)
    p.add_argument("--detection-min-score", type=float, default=None,
                   help="live graph, models with a detector: the node's detection_min_score "
                        "(default: the node's default, 0.5; 0 publishes every box)")
    p.add_argument("--out", default="runs/benchmark")
    p.set_defaults(func=cmd_benchmark)


def _parse(argv=None):  # for tests: the parser alone
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="cmd"))
    return ap.parse_args(argv)
