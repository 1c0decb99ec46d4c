"""The ``segmif`` command line.

    segmif fuse --vis DIR --ir DIR --out DIR [--checkpoint PATH] [--device cpu] [--labels]
                [--method model|laplacian|gff|average|maximum|visible|thermal]
    segmif evaluate --data DIR [--split FILE] [--checkpoint [NAME=]PATH ...] --out DIR
                    [--method model|visible|thermal|average|maximum|laplacian|gff] [--no-rules]
                    [--exclude-background] [--absent skip|zero|present]
    segmif train --config FILE [--set section.key=value ...]
    segmif bag make --data DIR --out BAG [--split FILE] [--rate 30] [--storage mcap]
    segmif bag info BAG
    segmif bag eval BAG [--out DIR] [--visible-topic T] [--thermal-topic T] [--gt-topic T]
                    [--rate R] [--start-node|--no-start-node] [--checkpoint PATH] [--namespace NS]
    segmif demo [--data DIR] [--split FILE] [--out runs/demo] [--rate 1] [--repeat 5]
    segmif export --onnx OUT.onnx [--checkpoint PATH] [--size H W] [--camera H W] [--dynamic]
                  [--int8 --calibration DIR [--calibration-pairs N] [--int8-part PART]]
    segmif benchmark [--device cpu|cuda] [--camera H W ...] [--backend torch onnxruntime]
                     [--precision fp32 bf16 fp16] [--compile] [--live] [--out runs/benchmark]
    segmif calibrate --vis IMG --ir IMG [--points FILE | --board COLSxROWS] --out FILE.yaml

Subcommands import what they need only: fuse, evaluate, train, export and benchmark (without
--live) need no ROS.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .evaluate_cmd import cmd_evaluate, print_detection, print_fusion as _print_fusion


def _predictor(args):
    from segmif_core.inference import SegMiFPredictor
    size = tuple(args.size) if args.size else None
    return SegMiFPredictor(args.checkpoint, args.device, size, fusion_scale=args.fusion_scale)


def cmd_fuse(args) -> int:
    import tempfile
    import time

    import cv2

    from segmif_core.data.pairs import read_pair

    from segmif_core.data.pairs import check_pairs, list_pairs

    vis_dir, ir_dir, out = Path(args.vis), Path(args.ir), Path(args.out)
    with tempfile.TemporaryDirectory() as root:  # the plain layout: root/{vis,ir}/NAME.EXT
        (Path(root) / "vis").symlink_to(vis_dir.resolve())
        (Path(root) / "ir").symlink_to(ir_dir.resolve())
        try:  # png, jpg/jpeg, bmp, tif(f), matched by stem (segmif_core.data.layouts)
            names = list_pairs(root, layout="plain")
            if names:
                check_pairs(root, names, require_labels=False, layout="plain")
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if not names:
            print(f"error: no pairs found: no image in {vis_dir} has a thermal image of the same "
                  f"name in {ir_dir} (png, jpg, jpeg, bmp, tif, tiff)", file=sys.stderr)
            return 2
        if args.method != "model" and args.labels:
            print("error: --labels needs --method model (a rule makes no labels)", file=sys.stderr)
            return 2
        pred = _predictor(args) if args.method == "model" else None
        out.mkdir(parents=True, exist_ok=True)
        if args.labels:
            (out / "labels").mkdir(exist_ok=True)
            (out / "color").mkdir(exist_ok=True)
        for i, name in enumerate(names):
            vis, ir, _ = read_pair(root, name, layout="plain")
            if pred is None:  # a classical rule at the pair's native size
                from segmif_core.evaluation import thermal8
                from segmif_core.fusion_rules import fuse_rgb

                t0 = time.perf_counter()
                fused = fuse_rgb(args.method, vis, thermal8(ir))
                cv2.imwrite(str(out / f"{name}.png"), cv2.cvtColor(fused, cv2.COLOR_RGB2BGR))
                print(f"{i + 1}/{len(names)} {name}: "
                      f"{(time.perf_counter() - t0) * 1e3:.0f} ms ({args.method})")
                continue
            p = pred.predict(vis, ir)
            cv2.imwrite(str(out / f"{name}.png"), cv2.cvtColor(p.fused, cv2.COLOR_RGB2BGR))
            if args.labels:
                cv2.imwrite(str(out / "labels" / f"{name}.png"), p.labels)
                color = pred.classes.colorize(p.labels)
                cv2.imwrite(str(out / "color" / f"{name}.png"),
                            cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
            print(f"{i + 1}/{len(names)} {name}: {p.total_ms:.0f} ms")
    return 0


def cmd_train(args) -> int:
    from segmif_core.training.trainer import load_config, parse_overrides, train

    cfg = load_config(args.config, parse_overrides(args.set))
    summary = train(cfg)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_bag(args) -> int:
    from .bag import bag_info
    from .bag_make import make_bag

    if args.bag_cmd == "eval":
        return _cmd_bag_eval(args)
    if args.bag_cmd == "make":
        split = args.split
        if split and not Path(split).is_file() and (Path(args.data) / split).is_file():
            split = str(Path(args.data) / split)
        summary = make_bag(args.data, args.out, names=split, rate_hz=args.rate,
                           jitter_ms=args.jitter_ms, storage=args.storage,
                           overwrite=args.overwrite)
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(json.dumps(bag_info(args.bag), indent=2, default=str))
    return 0


def _cmd_bag_eval(args) -> int:
    from segmif_core.report import protocol_sentence

    from .bag_eval import run_bag_eval

    params = _node_params(args.param)
    report = run_bag_eval(
        args.bag, args.out, visible_topic=args.visible_topic, thermal_topic=args.thermal_topic,
        gt_topic=args.gt_topic or None, rate=args.rate, start_node=args.start_node,
        checkpoint=args.checkpoint, device=args.device, namespace=args.namespace,
        node_params=params, include_background=not args.exclude_background, absent=args.absent,
        rules=() if args.no_rules else None, mosaics=args.mosaics,
        node_timeout_s=args.node_timeout, quiet_s=args.quiet, large_shm=args.large_shm)
    st = report["stream"]
    print(f"[bag eval] frames in {st['frames_in_visible']}, answered {st['frames_out']}, dropped "
          f"by node {st['pairs_dropped_by_node']}, never answered {st['pairs_never_answered']}")
    _print_latency("[bag eval]", report["timing"])
    if report["mIoU"] is not None:
        print(f"[bag eval] mIoU {report['mIoU']:.2f}  mAcc {report['mAcc']:.2f} over "
              f"{report['n_labelled']} labelled frames ({protocol_sentence(report['protocol'])})")
    print_detection(report, "[bag eval] ")
    _print_fusion(report)
    print(f"[bag eval] report: {Path(args.out) / 'report.md'}, {Path(args.out) / 'report.json'}")
    return 0


def _node_params(items) -> dict:
    """``--param name:=value`` items -> {name: value} (ValueError naming a bad item)."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition(":=")
        if not sep or not key:
            raise ValueError(f"--param needs name:=value, got {item!r}")
        params[key] = value
    return params


def cmd_export(args) -> int:
    from segmif_core.inference import export_onnx

    if args.int8 and not args.calibration:
        print("[export] --int8 needs --calibration DIR (registered pairs of your rig, or "
              "../shared/data/mfnet)", file=sys.stderr)
        return 2
    target = Path(args.onnx)
    fp32 = target.with_name(target.stem + ".fp32.onnx") if args.int8 else target
    meta = export_onnx(fp32, args.checkpoint, size=tuple(args.size) if args.size else None,
                       camera=tuple(args.camera), dynamic=args.dynamic,
                       fusion_scale=args.fusion_scale)
    if args.int8:
        from segmif_core.inference.onnx_quantize import quantize_onnx

        meta = quantize_onnx(fp32, target, args.calibration, pairs=args.calibration_pairs,
                             part=args.int8_part)
        q = meta["quantization"]
        print(f"[export] int8: {q['convolutions']} convolutions of the {q['part']} quantised, "
              f"calibrated on {q['calibration_pairs']} pairs of {q['calibration']} "
              f"(fp32 file kept: {fp32})")
    sizes = "any size (dynamic)" if meta["dynamic"] else (
        f"network {meta['input_size'][1]}x{meta['input_size'][0]}, camera "
        f"{meta['camera_size'][1]}x{meta['camera_size'][0]}")
    print(f"[export] {args.onnx}: {meta['model']}, {sizes}; run it with "
          f"-p backend:=onnxruntime -p checkpoint:={Path(args.onnx).resolve()}")
    return 0


def _print_latency(prefix: str, timing: dict) -> None:
    """Latency lines of bag eval and demo. Input-to-output (receive times of the visible input
    and of the output) holds at any replay rate; stamp-to-output only at rate 1, because the
    replay keeps the recorded stamp spacing."""
    for key, what in (("input_to_output_ms", "input-to-output"),
                      ("stamp_to_receive_ms", "stamp-to-output")):
        lat = timing.get(key) or {}
        if lat.get("n"):
            print(f"{prefix} {what} latency ms: p50 {lat['p50']:.0f}  p90 {lat['p90']:.0f}  "
                  f"max {lat['max']:.0f}")
    inf = timing.get("inference_ms") or {}
    if inf.get("n"):
        print(f"{prefix} inference ms: p50 {inf['p50']:.0f}")


def cmd_demo(args) -> int:
    from .demo import run_demo

    params = _node_params(args.param)
    report = run_demo(args.data, args.split, args.out, args.checkpoint, args.device, args.rate,
                      args.mosaics, repeat=args.repeat, node_params=params)
    st = report["stream"]
    fps = report["timing"].get("output_fps")
    print(f"\n[demo] frames in {st['frames_in_visible']} (replay rate {args.rate}), out "
          f"{st['frames_out']} ({'-' if fps is None else format(fps, '.1f')} per second), dropped "
          f"by node {st['pairs_dropped_by_node']}, never answered {st['pairs_never_answered']}")
    _print_latency("[demo]", report["timing"])
    print(f"[demo] mIoU {report['mIoU']:.2f}  mAcc {report['mAcc']:.2f} over {report['n_pairs']} "
          "frames (class 0 included)")
    for name, v in report["per_class"].items():
        print(f"         {name:12s} IoU {'-' if v['iou'] is None else format(v['iou'], '.2f')}")
    print(f"[demo] report: {Path(args.out) / 'report.md'}, {Path(args.out) / 'report.json'}; "
          f"mosaics: {', '.join(report['mosaics'])}")
    return 0


def protocol_args(p: argparse.ArgumentParser) -> None:
    """The segmentation protocol switches shared by ``evaluate`` and ``bag eval``."""
    p.add_argument("--exclude-background", action="store_true",
                   help="leave class 0 (unlabelled) out of mIoU/mAcc (default: included)")
    from segmif_core.metrics.segmentation import ABSENT_MODES  # numpy only
    p.add_argument("--absent", choices=ABSENT_MODES, default="skip",
                   help="classes whose metric is undefined (IoU: no ground truth and no "
                        "prediction; Acc: no ground truth): left out of the means (skip, "
                        "default) or counted as 0 (zero); present: average only over the "
                        "classes with ground-truth pixels in the split (a class predicted but "
                        "absent from the ground truth is left out instead of counting as 0)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="segmif", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def model_args(p, repeat=False):
        if repeat:  # evaluate: several checkpoints make a comparison table
            p.add_argument("--checkpoint", action="append", metavar="[NAME=]PATH",
                           help="checkpoint (default: shipped); repeat it to compare models in "
                                "one table (OUT/comparison.md; rows named NAME or the model's)")
        else:
            p.add_argument("--checkpoint", default=None,
                           help="checkpoint file (default: shipped)")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                       help="network input size (default: the checkpoint's)")
        p.add_argument("--fusion-scale", type=float, default=None, metavar="S",
                       help="SegMiF / TSJNet: fusion network resolution in (0, 1] (default: "
                            "the checkpoint's; segmif_node runs 0.5)")

    p = sub.add_parser("fuse", help="fuse folders of visible and thermal images")
    p.add_argument("--vis", required=True)
    p.add_argument("--ir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--labels", action="store_true", help="also write labels/ and color/")
    from segmif_core.fusion_rules import FUSION_RULES  # numpy + OpenCV: parsing stays light
    p.add_argument("--method", choices=("model",) + tuple(FUSION_RULES), default="model",
                   help="model (default: the checkpoint's fused image) or a classical rule "
                        "(laplacian, gff, average, maximum, ...) at each pair's native size, "
                        "its luma put back into the visible image's YCrCb")
    model_args(p)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("evaluate", help="segmentation and fusion metrics on DIR/{vis,ir[,label]}",
                       description="Writes OUT/report.json, report.md, fusion_violins.png and "
                       "(labelled data) confusion_matrix.png. Without label/ only fusion metrics "
                       "are computed.")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default=None, help="file of names (default: all pairs)")
    p.add_argument("--out", required=True)
    model_args(p, repeat=True)
    from segmif_core.fusion_rules import FUSION_RULES  # numpy only: parsing stays light
    p.add_argument("--method", choices=("model",) + tuple(FUSION_RULES), default="model",
                   help="model (default: the checkpoint plus every fusion rule as comparison "
                        "rows) or one fusion rule alone (no checkpoint, fusion metrics only)")
    p.add_argument("--no-rules", action="store_true",
                   help="model only, without the fusion-rule comparison rows")
    protocol_args(p)
    p.add_argument("--thermal-norm", choices=("percentile", "fixed"), default="percentile",
                   help="16-bit thermal scaling (8-bit thermal is /255 whatever this is)")
    p.add_argument("--thermal-percentiles", type=float, nargs=2, default=(1.0, 99.0),
                   metavar=("LOW", "HIGH"), help="percentile rule: per-frame percentiles -> 0, 1")
    p.add_argument("--thermal-range", type=float, nargs=2, default=(0.0, 65535.0),
                   metavar=("MIN", "MAX"), help="fixed rule: raw values -> 0, 1")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train from a YAML config")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. train.max_minutes=5")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bag", help="rosbag2 tools")
    bsub = p.add_subparsers(dest="bag_cmd", required=True)
    b = bsub.add_parser("make", help="write a bag from DIR/{vis,ir,label}")
    b.add_argument("--data", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--split", default=None)
    b.add_argument("--rate", type=float, default=30.0, help="visible frame rate (Hz)")
    b.add_argument("--jitter-ms", type=float, default=3.0, help="thermal stamp jitter (ms)")
    b.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    b.add_argument("--overwrite", action="store_true")
    b = bsub.add_parser("info", help="topics, types and counts of a bag")
    b.add_argument("bag")
    b = bsub.add_parser(
        "eval", help="replay a bag through segmif_node, record and evaluate its outputs",
        description="Replays BAG (visible, thermal and optionally ground-truth topics, remapped "
        "onto the node's inputs) through segmif_node, records its outputs and writes OUT/"
        "report.json, report.md, plots and mosaics: segmentation metrics (frames with ground "
        "truth, matched by stamp), fusion metrics of the node and of the baseline fusion rules, "
        "per-frame latency, pairs dropped and pairs never answered.")
    b.add_argument("bag")
    b.add_argument("--out", default="runs/bag_eval")
    b.add_argument("--visible-topic", default="/visible/image", help="visible topic in the bag")
    b.add_argument("--thermal-topic", default="/thermal/image", help="thermal topic in the bag")
    b.add_argument("--gt-topic", default="/ground_truth/labels",
                   help="ground-truth labels topic in the bag ('' = none)")
    b.add_argument("--rate", type=float, default=1.0,
                   help="replay speed factor (1 = recorded speed; 0 = as fast as possible)")
    b.add_argument("--start-node", action=argparse.BooleanOptionalAction, default=True,
                   help="start segmif_node here (default) or use one already running "
                        "(--no-start-node) in --namespace")
    b.add_argument("--checkpoint", default=None, help="checkpoint of the started node")
    b.add_argument("--device", default="cpu", help="device of the started node")
    b.add_argument("--namespace", default="", help="ROS namespace of the node")
    b.add_argument("--param", action="append", metavar="NAME:=VALUE",
                   help="extra parameter of the started node, e.g. input_height:=240")
    protocol_args(b)
    b.add_argument("--no-rules", action="store_true", help="no fusion-rule comparison rows")
    b.add_argument("--mosaics", type=int, default=4)
    b.add_argument("--node-timeout", type=float, default=180.0,
                   help="maximum wait for the node to come up (s)")
    b.add_argument("--quiet", type=float, default=10.0,
                   help="after the replay, stop waiting when no output came for this long (s)")
    b.add_argument("--large-shm", action="store_true",
                   help="every process uses config/fastdds_shm_large.xml (best-effort 640x480 "
                        "frames over shared memory)")
    p.set_defaults(func=cmd_bag)

    p = sub.add_parser("demo", help="bag -> live segmif_node -> recorded outputs -> report")
    p.add_argument("--data", default=None, help="pairs folder (default ../shared/data/mfnet)")
    p.add_argument("--split", default="val.txt")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rate", type=float, default=1.0,
                   help="replay speed factor (1 = the recorded 30 Hz, default)")
    p.add_argument("--repeat", type=int, default=5,
                   help="play the split this many times over (a longer stream to measure rates)")
    p.add_argument("--param", action="append", metavar="NAME:=VALUE",
                   help="extra node parameter, e.g. backend:=onnxruntime")
    p.add_argument("--mosaics", type=int, default=4)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (fused image, labels, "
                                      "confidence)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx")
    p.add_argument("--checkpoint", default=None, help="checkpoint (.pt; default: shipped)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="network input size (default: the checkpoint's)")
    p.add_argument("--camera", type=int, nargs=2, metavar=("H", "W"), default=(480, 640),
                   help="camera size of a fixed-size graph (default 480 640)")
    p.add_argument("--dynamic", action="store_true", help="any camera size (the network size stays --size: a graph traced at one network size fails at another)")
    p.add_argument("--fusion-scale", type=float, default=None,
                   help="SegMiF / TSJNet: fusion network resolution in (0, 1] (default: "
                        "checkpoint's)")
    p.add_argument("--int8", action="store_true",
                   help="static int8 quantisation of the --int8-part's convolutions (ONNX "
                        "Runtime QDQ), calibrated on --calibration pairs")
    p.add_argument("--int8-part", default="segmenter", choices=("segmenter", "fusion", "all"),
                   help="which convolutions --int8 quantises (default segmenter: measured "
                        "faster at no mIoU cost; see docs/speed.md, int8)")
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="folder of registered pairs for --int8 (its train.txt if present)")
    p.add_argument("--calibration-pairs", type=int, default=16, metavar="N",
                   help="calibration pairs for --int8 (default 16)")
    p.set_defaults(func=cmd_export)

    from .benchmark import add_parser as add_benchmark
    add_benchmark(sub)
    from .calibrate import add_parser as add_calibrate; add_calibrate(sub)  # noqa: E702
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"segmif {args.cmd}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
