"""Evaluate segmif_node on a recorded bag (``segmif bag eval``; the demo is make_bag + this).

1. Replay the bag's visible, thermal and (if present) ground-truth topics into a live ROS 2
   graph, remapped onto the node's inputs ``NS/visible/image``, ``NS/thermal/image`` (and
   ``NS/ground_truth/labels``), restamped so that they look live. By default ``segmif_node`` is
   started as its own process (``--no-start-node``: an already running node in namespace NS).
2. Record the node's outputs (``fused/image``, ``segmentation/labels``, ``segmentation/color``,
   ``segmentation/info``) and the replayed inputs into ``OUT/output_bag``.
3. Match outputs to inputs and ground truth by header stamp (outputs carry the visible stamp) and
   write the evaluation report of :mod:`segmif_core.report`: segmentation metrics (labelled
   frames), fusion metrics of the recorded fused image and of the baseline fusion rules on the
   recorded visible/thermal pair (thermal found by ``SegmentationInfo.thermal_stamp``), plus the
   node's frame statistics: ``stream`` (frames in/out, pairs dropped by the node, pairs never
   answered, ...), ``frames`` (per-frame latency and timing lists) and ``timing`` summaries, and
   mosaics (visible | thermal | fused | colour labels | ground truth).

A visible frame the node never answered was either dropped by the node (it processes only the
newest pair) or lost on the way in: the node's default input QoS is best effort, and large images
over shared memory can be lost on a busy host. ``node_params={"input_qos": "reliable"}``
(``--param input_qos:=reliable``) rules the latter out.

Fusion metrics assume registered input (identity homography, no crop): a frame whose thermal
and fused sizes differ from the visible one is listed in ``fusion_skipped``. 16-bit thermal is
scaled with the node's default rule (per-frame percentiles 1/99) unless ``node_params`` say
otherwise. Every ROS 2 process runs with Fast DDS over shared memory only, discovery on this host
and a domain id of its own (:func:`segmif_ros.tools.demo.local_ros_env`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

import cv2
import numpy as np

OUTPUT_TYPES = {
    "fused/image": "sensor_msgs/msg/Image",
    "segmentation/labels": "sensor_msgs/msg/Image",
    "segmentation/color": "sensor_msgs/msg/Image",
    "segmentation/info": "segmif_ros/msg/SegmentationInfo",
}
INPUT_NAMES = {"visible": "visible/image", "thermal": "thermal/image",
               "ground_truth": "ground_truth/labels"}
_IMAGE = "sensor_msgs/msg/Image"


def normalize_namespace(namespace: str | None) -> str:
    """'' -> '', 'robot' or '/robot/' -> '/robot'."""
    ns = (namespace or "").strip().strip("/")
    return f"/{ns}" if ns else ""


def live_topics(namespace: str | None = "") -> dict:
    """Live topic names of the node's inputs and outputs in ``namespace``."""
    ns = normalize_namespace(namespace)
    names = {**INPUT_NAMES, **{k: k for k in OUTPUT_TYPES}}
    return {k: f"{ns}/{v}" for k, v in names.items()}


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


def thermal_rule_from_params(params: Mapping | None) -> dict:
    """The 16-bit thermal rule of a node started with ``params`` (node defaults otherwise)."""
    from segmif_core.evaluation import DEFAULT_THERMAL_RULE

    p = params or {}
    rule = dict(DEFAULT_THERMAL_RULE)
    for src, dst in (("thermal_norm", "mode"), ("thermal_percentile_low", "low"),
                     ("thermal_percentile_high", "high"), ("thermal_min", "vmin"),
                     ("thermal_max", "vmax")):
        if src in p:
            rule[dst] = p[src] if dst == "mode" else float(p[src])
    return rule


# ---------------------------------------------------------------------------------- analysis
def analyse_output_bag(output_bag, out_dir, topics: Mapping[str, str], *, classes=None,
                       method: str = "SegMiF", include_background: bool = True,
                       absent: str = "skip", rules: Iterable[str] | None = None,
                       thermal_rule: Mapping | None = None, n_mosaics: int = 4,
                       counters_since_node_start: bool = True) -> dict:
    """Evaluate a recorded output bag (see the module docstring); returns the report dict.

    Args:
        output_bag: bag recorded by :func:`run_bag_eval` (inputs and outputs).
        out_dir: folder for the mosaics.
        topics: live topic names (:func:`live_topics`).
        classes: ``ClassSet`` used when the bag has no ``segmentation/info`` (names and colours
            normally come from the node's ``SegmentationInfo``).
        method: row name of the node's fusion in the fusion table.
        rules: fusion rules scored on the same inputs (None = all).
        counters_since_node_start: the node was started for this run, so its cumulative
            counters (pairs dropped, ...) are this run's; otherwise the difference between the
            last and the first answered frame is reported.
    """
    from segmif_core.data.classes import ClassSet
    from segmif_core.evaluation import (RULE_NAMES, FusionTable, assemble_report, luma8,
                                        thermal8, timing_summary)
    from segmif_core.metrics import ConfusionMatrix

    from .bag import read_bag
    from ..node.encodings import image_to_numpy, to_rgb8, to_thermal

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    by_topic: dict[str, dict[int, tuple[int, object]]] = {}
    for topic, ts, msg in read_bag(output_bag):
        by_topic.setdefault(topic, {})[_stamp_ns(msg.header.stamp)] = (ts, msg)
    get = lambda key: by_topic.get(topics[key], {})  # noqa: E731
    vis_by, ir_by, gt = get("visible"), get("thermal"), get("ground_truth")
    labels, infos = get("segmentation/labels"), get("segmentation/info")
    fused_by, color_by = get("fused/image"), get("segmentation/color")

    if infos:
        first = infos[min(infos)][1]
        names = list(first.class_names)
        colors = tuple(tuple(int(round(255 * v)) for v in (c.r, c.g, c.b))
                       for c in first.class_colors)
        if len(colors) != len(names):
            colors = tuple((0, 0, 0) for _ in names)
        classes = ClassSet("node", tuple(names), colors)
    elif classes is None:
        from segmif_core.data.classes import MFNET_CLASSES
        classes = MFNET_CLASSES
    cm = ConfusionMatrix(classes.num_classes, class_names=list(classes.names))
    rules = list(RULE_NAMES if rules is None else rules)
    table = FusionTable([method], rules)
    ir_stamps = np.array(sorted(ir_by), np.int64)

    answered = sorted(labels)
    frames = {"stamp_ns": [], "latency_ms": [], "input_to_output_ms": [], "node_latency_ms": [],
              "inference_ms": [], "processing_ms": [], "ground_truth": []}
    n_labelled = 0
    for s in answered:
        ts, label_msg = labels[s]
        info = infos.get(s, (None, None))[1]
        frames["stamp_ns"].append(s)
        frames["latency_ms"].append((ts - s) / 1e6)
        # receive time of the visible input -> receive time of the output (same recorder clock):
        # the latency seen by a subscriber, whatever the replay rate did to the stamps
        frames["input_to_output_ms"].append((ts - vis_by[s][0]) / 1e6 if s in vis_by else None)
        frames["node_latency_ms"].append(float(info.latency_ms) if info else None)
        frames["inference_ms"].append(float(info.inference_time_ms) if info else None)
        frames["processing_ms"].append(float(info.processing_time_ms) if info else None)
        frames["ground_truth"].append(s in gt)
        if s in gt:
            cm.update(image_to_numpy(label_msg), image_to_numpy(gt[s][1]))
            n_labelled += 1
        # the thermal image of this pair: by the stamp the node reports, else the nearest one
        ir_msg = None
        if info is not None and _stamp_ns(info.thermal_stamp) in ir_by:
            ir_msg = ir_by[_stamp_ns(info.thermal_stamp)][1]
        elif ir_stamps.size:
            k = int(np.argmin(np.abs(ir_stamps - s)))
            if abs(int(ir_stamps[k]) - s) < 100_000_000:
                ir_msg = ir_by[int(ir_stamps[k])][1]
        vis_y = luma8(to_rgb8(vis_by[s][1])) if s in vis_by else None
        ir8 = thermal8(to_thermal(ir_msg), thermal_rule) if ir_msg is not None else None
        fused = {method: luma8(to_rgb8(fused_by[s][1])) if s in fused_by else None}
        reason = None
        if vis_y is None:
            reason = "visible input not recorded"
        elif ir8 is None:
            reason = "thermal input not recorded"
        table.add(str(s), vis_y, ir8, fused, reason=reason)

    answered_set = set(answered)
    unanswered = sorted(s for s in vis_by if s not in answered_set)
    last = infos[max(infos)][1] if infos else None
    first = infos[min(infos)][1] if infos else None

    def counter(name):
        if last is None:
            return None
        value = int(getattr(last, name))
        return value if counters_since_node_start else value - int(getattr(first, name))

    stream = {
        "frames_in_visible": len(vis_by),
        "frames_in_thermal": len(ir_by),
        "frames_in_ground_truth": len(gt),
        "frames_out": len(answered),
        "frames_with_ground_truth": n_labelled,
        "outputs_without_ground_truth": len(answered) - n_labelled,
        "pairs_never_answered": len(unanswered),
        "pairs_dropped_by_node": counter("pairs_dropped"),
        "messages_unmatched": counter("messages_unmatched"),
        "messages_rejected": counter("messages_rejected"),
        "node_counters": "since node start (node started for this run)"
                         if counters_since_node_start else
                         "between the first and the last answered frame (running node)",
        "unanswered_stamps_ns": unanswered,
    }
    infos_v = [i for _, i in infos.values()]
    report = assemble_report(
        cm if n_labelled else None, table, include_background=include_background,
        absent=absent, thermal_rule=thermal_rule, segmentation_method=method,
        n_pairs=len(answered), n_labelled=n_labelled, kind="bag_eval",
        stream=stream, frames=frames,
        timing={
            "stamp_to_receive_ms": timing_summary(frames["latency_ms"]),
            "input_to_output_ms": timing_summary(v for v in frames["input_to_output_ms"]
                                                 if v is not None),
            "node_latency_ms": timing_summary(i.latency_ms for i in infos_v),
            "inference_ms": timing_summary(i.inference_time_ms for i in infos_v),
            "processing_ms": timing_summary(i.processing_time_ms for i in infos_v),
        },
        mosaics=[], warnings=[])
    if not answered:
        report["warnings"].append("the node answered no frame")
    if table.skipped:
        report["warnings"].append(f"{len(table.skipped)} fusion entries skipped "
                                  "(see fusion_skipped)")

    chosen = [s for s in answered if s in vis_by and s in fused_by and s in color_by]
    if chosen and n_mosaics > 0:
        picks = [chosen[i] for i in np.linspace(0, len(chosen) - 1, n_mosaics).round().astype(int)]
        for k, s in enumerate(dict.fromkeys(picks)):
            info = infos.get(s, (None, None))[1]
            ir_stamp = _stamp_ns(info.thermal_stamp) if info is not None else None
            ir = to_thermal(ir_by[ir_stamp][1]) if ir_stamp in ir_by else None
            if ir is not None and ir.dtype == np.uint16:
                ir = thermal8(ir, thermal_rule)
            gt_rgb = classes.colorize(image_to_numpy(gt[s][1])) if s in gt else \
                np.zeros((240, 320, 3), np.uint8)
            row = [_tile(to_rgb8(vis_by[s][1]), "visible"),
                   _tile(ir if ir is not None else np.zeros((240, 320), np.uint8), "thermal"),
                   _tile(to_rgb8(fused_by[s][1]), f"fused - {method}"),
                   _tile(to_rgb8(color_by[s][1]), "labels - colour"),
                   _tile(gt_rgb, "ground truth" if s in gt else "no ground truth")]
            name = f"mosaic_{k:02d}.png"
            _write_png(out_dir / name, np.concatenate(row, axis=1))
            report["mosaics"].append(name)
    report["timing"]["analysis_s"] = round(time.perf_counter() - t0, 3)
    report["timing"]["fusion_metrics_s"] = round(table.seconds, 3)
    return report


# ------------------------------------------------------------------------------------ live run
def run_bag_eval(bag, out="runs/bag_eval", *, visible_topic: str = "/visible/image",
                 thermal_topic: str = "/thermal/image",
                 gt_topic: str | None = "/ground_truth/labels", rate: float = 1.0,
                 start_node: bool = True, checkpoint=None, device: str = "cpu",
                 namespace: str = "", node_params: Mapping | None = None,
                 include_background: bool = True, absent: str = "skip",
                 rules: Iterable[str] | None = None, mosaics: int = 4,
                 node_timeout_s: float = 180.0, quiet_s: float = 10.0,
                 title: str = "segmif bag eval report", extra: Mapping | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Replay ``bag`` through segmif_node, record, evaluate and write the report into ``out``.

    Args:
        bag: rosbag2 folder (or .mcap/.db3 file) with visible and thermal ``sensor_msgs/Image``
            topics and optionally ground-truth labels (mono8 class ids, visible stamps).
        out: output folder: report.json, report.md, fusion_violins.png, confusion_matrix.png,
            mosaics, output_bag/ (recording), node.log (when the node is started here).
        visible_topic, thermal_topic, gt_topic: topic names in the bag (remapped onto the
            node's inputs); a missing ``gt_topic`` means no segmentation metrics.
        rate: replay speed factor (1 = recorded speed; a slow CPU then drops pairs and the
            report counts them; 0 = as fast as possible).
        start_node: start segmif_node as its own process (with ``checkpoint``, ``device`` and
            ``node_params``); False: use the node already running in ``namespace``.
        namespace: ROS namespace of the node ('' = root).
        node_params: extra ``-p name:=value`` parameters of the started node.
        include_background, absent, rules: evaluation protocol (see ``evaluate_folder``).
        mosaics: number of mosaic images.
        node_timeout_s: maximum wait for the node to come up.
        quiet_s: after the replay, wait until every visible frame is answered or no output
            arrived for this long.
        extra: keys added to the report (e.g. the demo's data folder).
    Returns:
        the report dict (also written to ``out``).
    Raises:
        ValueError: topics missing from the bag, options that contradict each other;
        RuntimeError / TimeoutError: the node died or did not come up.
    """
    from .demo import local_ros_env

    ros = local_ros_env()
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import ReliabilityPolicy

    from segmif_core.evaluation import RULE_NAMES, model_method_name
    from segmif_core.report import write_report

    from .bag import bag_info
    from .recorder import BagRecorder
    from .replay import replay_bag

    if not start_node and checkpoint:
        raise ValueError("--checkpoint is only used when the node is started here "
                         "(without --no-start-node)")
    bag, out = Path(bag), Path(out)
    info = bag_info(bag)
    in_bag = info["topics"]
    for what, topic in (("visible", visible_topic), ("thermal", thermal_topic)):
        if topic not in in_bag:
            raise ValueError(f"{what} topic {topic!r} not in {bag}; topics: "
                             + ", ".join(f"{t} ({v['type']})" for t, v in sorted(in_bag.items())))
        if in_bag[topic]["type"] != _IMAGE:
            raise ValueError(f"{what} topic {topic} is {in_bag[topic]['type']}, not {_IMAGE}")
    has_gt = bool(gt_topic) and gt_topic in in_bag
    if gt_topic and not has_gt:
        log(f"[bag eval] no ground truth topic {gt_topic} in the bag: fusion metrics only")
    live = live_topics(namespace)
    remap = {visible_topic: live["visible"], thermal_topic: live["thermal"]}
    if has_gt:
        remap[gt_topic] = live["ground_truth"]

    classes, method = None, "segmif_node"
    if start_node:
        from segmif_core.checkpoint import load_checkpoint
        _, classes, ck_info = load_checkpoint(checkpoint)  # fail early on a bad checkpoint
        method = model_method_name(ck_info)
    out.mkdir(parents=True, exist_ok=True)
    log(f"[bag eval] ROS env: {ros}; node inputs {live['visible']}, {live['thermal']}")
    t0 = time.monotonic()

    proc, node_log = None, None
    params = dict(node_params or {})
    if start_node:
        cmd = [sys.executable, "-m", "segmif_ros.node", "--ros-args"]
        ns = normalize_namespace(namespace)
        if ns:
            cmd += ["-r", f"__ns:={ns}"]
        cmd += ["-p", f"device:={device}"]
        if checkpoint:
            cmd += ["-p", f"checkpoint:={Path(checkpoint).resolve()}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        env = os.environ.copy()
        src = str(Path(__file__).resolve().parents[2])  # the child runs this very code
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                   else "")
        node_log = open(out / "node.log", "w")
        proc = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=env)

    context = Context()
    rclpy.init(args=[], context=context)  # our CLI arguments are not ROS arguments
    node = rclpy.create_node("segmif_bag_eval", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    recorder = None
    try:
        deadline = time.monotonic() + node_timeout_s
        while not (node.count_publishers(live["segmentation/labels"])
                   and node.count_subscribers(live["visible"])):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"segmif_node exited with {proc.returncode}; see "
                                   f"{out / 'node.log'}")
            if time.monotonic() > deadline:
                hint = "" if start_node else (
                    f" (is it running in namespace {normalize_namespace(namespace) or '/'} and "
                    f"ROS_DOMAIN_ID {ros['ROS_DOMAIN_ID']}, on this host?)")
                raise TimeoutError(f"segmif_node not up after {node_timeout_s} s{hint}")
            time.sleep(0.2)
        log(f"[bag eval] segmif_node is up ({time.monotonic() - t0:.1f} s)")
        out_pubs = [i for k in OUTPUT_TYPES for i in node.get_publishers_info_by_topic(live[k])]
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in out_pubs)
        topics = {live[k]: t for k, t in OUTPUT_TYPES.items()}
        topics.update({live["visible"]: _IMAGE, live["thermal"]: _IMAGE})
        if has_gt:
            topics[live["ground_truth"]] = _IMAGE
        recorder = BagRecorder(node, out / "output_bag", topics,
                               qos="reliable" if reliable else "best_effort", overwrite=True)
        time.sleep(1.0)  # let the node's publishers match the recorder
        stats = replay_bag(bag, rate=rate, topics=list(remap), remap=remap, node=node)
        log(f"[bag eval] replayed {stats['published']} messages in "
            f"{stats['wall_time_s']:.1f} s (rate x{rate})")
        n_expected = stats["per_topic"].get(live["visible"], 0)
        quiet_since, last_count = time.monotonic(), -1
        while time.monotonic() - quiet_since < quiet_s:
            count = recorder.counts[live["segmentation/labels"]]
            if count >= n_expected:
                break
            if proc is not None and proc.poll() is not None:
                break
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()
            time.sleep(0.1)
        time.sleep(0.3)  # the other outputs of the last frame
        recorder.close()
    finally:
        if recorder is not None and not recorder.closed:
            recorder.abort()
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            node_log.close()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=5)

    report = analyse_output_bag(
        out / "output_bag", out, live, classes=classes, method=method,
        include_background=include_background, absent=absent,
        rules=RULE_NAMES if rules is None else rules,
        thermal_rule=thermal_rule_from_params(params), n_mosaics=mosaics,
        counters_since_node_start=start_node)
    report["stream"]["published_visible"] = n_expected
    report["stream"]["replay_all_acked"] = stats.get("all_acked")
    report["stream"]["replay_max_lag_ms"] = round(stats.get("max_lag_ms", 0.0), 1)
    report["stream"]["node_input_qos"] = (params.get("input_qos", "sensor_data") if start_node
                                          else "(running node)")
    if report["stream"]["pairs_never_answered"]:
        report["warnings"].append(
            f"{report['stream']['pairs_never_answered']} visible frames were never answered: "
            "dropped by the node (newest pair only), or lost in transport when the node's "
            "input QoS is best effort (sensor_data) and the host is busy; "
            "--param input_qos:=reliable or a lower --rate rules the latter out")
    report.update({
        "bag": str(bag), "checkpoint": (str(checkpoint) if checkpoint else "default")
        if start_node else "(running node)", "device": device if start_node else None,
        "replay_rate": rate, "node_started": bool(start_node),
        "namespace": normalize_namespace(namespace),
        "topics": {"bag_to_live": remap, "recorded": sorted(topics)}, "ros": ros,
        "node_params": params})
    report.update(extra or {})
    report["timing"]["wall_s"] = round(time.monotonic() - t0, 1)
    write_report(report, out, title=title)
    return report
