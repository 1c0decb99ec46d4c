"""The end-to-end demo (``segmif demo``, ``make demo``).

1. Build a rosbag2 from a folder of labelled pairs (default: the MFNet val split in
   ../shared/data/mfnet): visible at 30 Hz, thermal with a few ms of stamp jitter, ground truth on
   its own topic.
2. Start ``segmif_node`` as its own process, replay the bag into the live graph and record the
   node's outputs (plus the replayed inputs and ground truth) into an output bag.
3. Match outputs to ground truth by stamp and write ``report.json`` (the keys of
   ``segmif evaluate`` plus stream statistics), ``report.md`` and mosaics
   (visible | thermal | fused | colour labels) under the output folder.

Every ROS 2 process runs with Fast DDS over shared memory only, discovery limited to this host and
a domain id of its own (see :func:`local_ros_env`).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfnet"
OUTPUT_TOPICS = {
    "/fused/image": "sensor_msgs/msg/Image",
    "/segmentation/labels": "sensor_msgs/msg/Image",
    "/segmentation/color": "sensor_msgs/msg/Image",
    "/segmentation/info": "segmif_ros/msg/SegmentationInfo",
}
INPUT_TOPICS = {"/visible/image": "sensor_msgs/msg/Image", "/thermal/image": "sensor_msgs/msg/Image",
                "/ground_truth/labels": "sensor_msgs/msg/Image"}


def local_ros_env(domain_id: int | None = None) -> dict:
    """Set (in os.environ, so that child processes inherit them) and return the variables that
    keep ROS 2 traffic on this host: Fast DDS shared-memory transport only, discovery on
    localhost only, and a ROS_DOMAIN_ID of this run's own (random 1-200 unless given or already
    set). On a robot network do not use this: see the README."""
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "SHM"
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
    return {k: os.environ[k] for k in ("FASTDDS_BUILTIN_TRANSPORTS",
                                       "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")}


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _tile(img_rgb: np.ndarray, title: str, size=(320, 240)) -> np.ndarray:
    if img_rgb.ndim == 2:
        img_rgb = cv2.cvtColor(img_rgb, cv2.COLOR_GRAY2RGB)
    tile = cv2.resize(img_rgb, size, interpolation=cv2.INTER_AREA)
    cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return tile


def _write_png(path: Path, rgb: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)


def analyse(output_bag: Path, classes, out_dir: Path, n_mosaics: int = 4) -> dict:
    """Evaluate a recorded demo bag: outputs vs ground truth by stamp, stream statistics,
    mosaics. Returns the report dict (see the module docstring)."""
    from segmif_core.evaluation import timing_summary
    from segmif_core.metrics import ConfusionMatrix

    from .bag import read_bag
    from .encodings import image_to_numpy, to_rgb8, to_thermal

    by_topic: dict[str, dict[int, tuple[int, object]]] = {}
    for topic, ts, msg in read_bag(output_bag):
        by_topic.setdefault(topic, {})[_stamp_ns(msg.header.stamp)] = (ts, msg)
    gt = by_topic.get("/ground_truth/labels", {})
    labels = by_topic.get("/segmentation/labels", {})
    infos = by_topic.get("/segmentation/info", {})
    cm = ConfusionMatrix(classes.num_classes, class_names=list(classes.names))
    matched = sorted(s for s in labels if s in gt)
    for s in matched:
        cm.update(image_to_numpy(labels[s][1]), image_to_numpy(gt[s][1]))
    summary = cm.summary()
    receive_latency = [(ts - s) / 1e6 for s, (ts, _) in labels.items()]
    last_info = infos[max(infos)][1] if infos else None
    frames_in = len(by_topic.get("/visible/image", {}))
    report = {
        "mIoU": summary["mIoU"], "mAcc": summary["mAcc"], "pixel_acc": summary["pixel_acc"],
        "per_class": summary["per_class"], "n_pairs": len(matched),
        "protocol": summary["protocol"],
        "stream": {
            "frames_in_visible": frames_in,
            "frames_in_thermal": len(by_topic.get("/thermal/image", {})),
            "frames_out": len(labels),
            "outputs_without_ground_truth": len(labels) - len(matched),
            "pairs_never_answered": frames_in - len(labels),
            "pairs_dropped_by_node": int(last_info.pairs_dropped) if last_info else None,
            "messages_unmatched": int(last_info.messages_unmatched) if last_info else None,
            "messages_rejected": int(last_info.messages_rejected) if last_info else None,
        },
        "timing": {
            "stamp_to_receive_ms": timing_summary(receive_latency),
            "node_latency_ms": timing_summary(i.latency_ms for _, i in infos.values()),
            "inference_ms": timing_summary(i.inference_time_ms for _, i in infos.values()),
            "processing_ms": timing_summary(i.processing_time_ms for _, i in infos.values()),
        },
        "mosaics": [],
    }
    vis_by, ir_by = by_topic.get("/visible/image", {}), by_topic.get("/thermal/image", {})
    fused_by, color_by = by_topic.get("/fused/image", {}), by_topic.get("/segmentation/color", {})
    chosen = [s for s in matched if s in vis_by and s in fused_by and s in color_by and s in infos]
    if chosen and n_mosaics > 0:
        picks = [chosen[i] for i in np.linspace(0, len(chosen) - 1, n_mosaics).round().astype(int)]
        for k, s in enumerate(dict.fromkeys(picks)):
            ir_stamp = _stamp_ns(infos[s][1].thermal_stamp)
            ir = to_thermal(ir_by[ir_stamp][1]) if ir_stamp in ir_by else None
            if ir is not None and ir.dtype == np.uint16:
                ir = (ir >> 8).astype(np.uint8)
            gt_rgb = classes.colorize(image_to_numpy(gt[s][1]))
            row = [_tile(to_rgb8(vis_by[s][1]), "visible"),
                   _tile(ir if ir is not None else np.zeros((240, 320), np.uint8), "thermal"),
                   _tile(to_rgb8(fused_by[s][1]), "fused - SegMiF"),
                   _tile(to_rgb8(color_by[s][1]), "labels - colour"),
                   _tile(gt_rgb, "ground truth")]
            name = f"mosaic_{k:02d}.png"
            _write_png(out_dir / name, np.concatenate(row, axis=1))
            report["mosaics"].append(name)
    return report


def _markdown(report: dict) -> str:
    t, st = report["timing"], report["stream"]
    lines = [
        "# segmif demo report", "",
        f"Checkpoint: `{report['checkpoint']}`; data: `{report['data']}` "
        f"(split `{report['split']}`); replay rate x{report['replay_rate']}; "
        f"ROS_DOMAIN_ID {report['ros']['ROS_DOMAIN_ID']}, shared-memory transport.", "",
        "## Segmentation (outputs matched to ground truth by stamp)", "",
        f"mIoU **{report['mIoU']:.2f}**, mAcc {report['mAcc']:.2f}, pixel accuracy "
        f"{report['pixel_acc']:.2f} over {report['n_pairs']} frames "
        "(class 0 included, absent classes skipped).", "",
        "| class | IoU | Acc | present |", "|---|---|---|---|"]
    for name, v in report["per_class"].items():
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(f"| {name} | {fmt(v['iou'])} | {fmt(v['acc'])} | {v['present']} |")
    lines += ["", "## Stream", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in st.items()]
    lines += ["", "## Timing (ms)", "", "| quantity | n | mean | p50 | p90 | p99 | max |",
              "|---|---|---|---|---|---|---|"]
    for k, v in t.items():
        if v.get("n"):
            lines.append(f"| {k} | {v['n']} | {v['mean']:.1f} | {v['p50']:.1f} | "
                         f"{v['p90']:.1f} | {v['p99']:.1f} | {v['max']:.1f} |")
    lines += ["", "## Mosaics", ""] + [f"![{m}]({m})" for m in report["mosaics"]]
    return "\n".join(lines) + "\n"


def run_demo(data=None, split="val.txt", out="runs/demo", checkpoint=None, device="cpu",
             rate=0.05, mosaics=4, node_timeout_s=180.0, log=print) -> dict:
    """Run the whole demo; returns the report dict (also written to ``out``).

    rate: replay speed factor; the default 0.05 plays the 30 Hz bag at 1.5 Hz so that a CPU
    keeps up with every frame (use 1.0 for real time: the node then drops stale pairs and the
    report counts them).
    """
    ros = local_ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from segmif_core.checkpoint import load_checkpoint
    from segmif_core.evaluation import write_json_atomic

    from .bag import make_bag
    from .recorder import BagRecorder
    from .replay import replay_bag

    data = Path(data) if data else REPO_DATA
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, classes, _ = load_checkpoint(checkpoint)  # fail early on a bad checkpoint
    split_path = (data / split) if split and not Path(split).is_file() else split
    log(f"[demo] ROS env: {ros}")
    t0 = time.monotonic()
    summary = make_bag(data, out / "input_bag", names=split_path, overwrite=True)
    log(f"[demo] input bag {out / 'input_bag'}: {summary.get('pairs', summary)} pairs "
        f"({time.monotonic() - t0:.1f} s)")

    cmd = [sys.executable, "-m", "segmif_ros.node", "--ros-args", "-p", f"device:={device}"]
    if checkpoint:
        cmd += ["-p", f"checkpoint:={Path(checkpoint).resolve()}"]
    node_log = open(out / "node.log", "w")
    proc = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=os.environ.copy())
    rclpy.init()
    node = rclpy.create_node("segmif_demo")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    recorder = None
    try:
        deadline = time.monotonic() + node_timeout_s
        while not (node.count_publishers("/segmentation/labels") and
                   node.count_subscribers("/visible/image")):
            if proc.poll() is not None:
                raise RuntimeError(f"segmif_node exited with {proc.returncode}; see "
                                   f"{out / 'node.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"segmif_node not up after {node_timeout_s} s")
            time.sleep(0.2)
        log("[demo] segmif_node is up")
        recorder = BagRecorder(node, out / "output_bag", {**OUTPUT_TOPICS, **INPUT_TOPICS},
                               qos="reliable", overwrite=True)
        time.sleep(1.0)
        stats = replay_bag(out / "input_bag", rate=rate, node=node)
        log(f"[demo] replayed {stats['published']} messages in {stats['wall_time_s']:.1f} s")
        # wait for the node to answer the last pair (or to go quiet)
        n_expected = stats["per_topic"].get("/visible/image", 0)
        quiet_since = time.monotonic()
        last_count = -1
        while time.monotonic() - quiet_since < 10.0:
            count = recorder.counts["/segmentation/labels"]
            if count >= n_expected:
                break
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()
            time.sleep(0.2)
        time.sleep(0.5)
        recorder.close()
    finally:
        if recorder is not None and not recorder.closed:
            recorder.abort()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        node_log.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()

    report = analyse(out / "output_bag", classes, out, mosaics)
    report.update({"checkpoint": checkpoint or "default", "data": str(data), "split": str(split),
                   "replay_rate": rate, "ros": ros, "wall_s": round(time.monotonic() - t0, 1)})
    write_json_atomic(report, out / "report.json")
    tmp = out / ".report.md.tmp"
    tmp.write_text(_markdown(report))
    os.replace(tmp, out / "report.md")
    return report
