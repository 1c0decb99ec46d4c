"""Evaluate segmif_node on a recorded bag (``segmif bag eval``; the demo is make_bag + this).

1. Replay the bag's visible, thermal and (if present) ground-truth topics into a live ROS 2
   graph, remapped onto the node's inputs ``NS/visible/image``, ``NS/thermal/image`` (and
   ``NS/ground_truth/labels``), restamped so that they look live. By default ``segmif_node`` is
   started as its own process (``--no-start-node``: an already running node in namespace NS).
2. Record the node's outputs (``fused/image``, ``segmentation/labels``, ``segmentation/color``,
   ``segmentation/info``, and ``detections`` when the node publishes it: a model with a
   detector) and the replayed inputs into ``OUT/output_bag``.
3. Match outputs to inputs and ground truth by header stamp and build the evaluation report
   (:func:`segmif_ros.tools.bag_analysis.analyse_output_bag`: segmentation and fusion metrics,
   the node's frame statistics, mosaics; mAP@0.5 and mAP@0.5:0.95 of the recorded detections
   against boxes derived from the ground-truth labels), written by :mod:`segmif_core.report`.

A visible frame the node never answered was either dropped by the node (it processes only the
newest pair) or lost on the way in: the node's default input QoS is best effort, and large images
over shared memory can be lost on a busy host. ``node_params={"input_qos": "reliable"}``
(``--param input_qos:=reliable``) rules the latter out.

Every ROS 2 process runs with Fast DDS over shared memory only, discovery on this host and a
domain id of its own (:func:`local_ros_env`).
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
from typing import Callable, Iterable, Mapping

from .bag_analysis import analyse_output_bag, thermal_rule_from_params

OUTPUT_TYPES = {
    "fused/image": "sensor_msgs/msg/Image",
    "segmentation/labels": "sensor_msgs/msg/Image",
    "segmentation/color": "sensor_msgs/msg/Image",
    "segmentation/info": "segmif_ros/msg/SegmentationInfo",
    "detections": "segmif_ros/msg/Detection2DArray",  # recorded only when the node has it
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


SHM_PROFILE = "fastdds_shm_large.xml"


def shm_profile_path() -> Path:
    """config/fastdds_shm_large.xml: the installed copy (share/segmif_ros/config, found through
    the ament index or under this Python's prefix) or the source tree's. Raises FileNotFoundError if neither exists."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory("segmif_ros")) / "config" / SHM_PROFILE)
    except Exception:  # noqa: BLE001 - no ament index, or the package is not installed there
        pass
    # the install prefix of this Python (make venv, pip install into a prefix) and the source tree
    candidates.append(Path(sys.prefix) / "share" / "segmif_ros" / "config" / SHM_PROFILE)
    candidates.append(Path(__file__).resolve().parents[2] / "config" / SHM_PROFILE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SHM_PROFILE} not found (looked in "
                            f"{', '.join(str(c) for c in candidates)})")


def local_ros_env(domain_id: int | None = None, large_shm: bool = False) -> dict:
    """Set (in os.environ, so that child processes inherit them) and return the variables that
    keep ROS 2 traffic on this host: Fast DDS shared-memory transport only, discovery on
    localhost only, and a ROS_DOMAIN_ID of this run's own (random 1-200 unless given or already
    set). ``large_shm`` also sets FASTDDS_DEFAULT_PROFILES_FILE to the 32 MiB shared-memory
    profile (:func:`shm_profile_path`): every process started afterwards, this one's ROS
    context included, can then carry 640x480 frames best effort. On a robot network do not use
    this: see the README."""
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "SHM"
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
    keys = ["FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID"]
    if large_shm:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(shm_profile_path())
        keys.append("FASTDDS_DEFAULT_PROFILES_FILE")
    return {k: os.environ[k] for k in keys}


# ------------------------------------------------------------------------------------ live run
def warm_onnx_cache(checkpoint, device: str, node_params: Mapping | None,
                    log: Callable[[str], None] = print):
    """Export ``checkpoint`` (a .pt file, None = the shipped one) to ONNX now, once (the
    ``segmif_core.inference.onnx_cache`` cache the node reads), when a node started with
    ``node_params`` (defaults: ``segmif_ros.node.parameters.PARAMETERS``) would run it on ONNX
    Runtime: the export then happens here, not inside the node's start-up wait (on a fresh
    machine it takes minutes on a 2-core CPU). The node's own mapping of its parameters
    (``segmif_ros.node.model.predictor_arguments``: fusion_scale, input size, int8_calibration)
    and the factory's choice for backend 'auto' decide what is exported.
    Returns the cached file's path, or None when nothing is exported (an .onnx checkpoint, the
    torch backend, or a model the exporter refuses: the node then falls back as it would).
    """
    import torch

    from segmif_core.inference.factory import choose_backend
    from segmif_core.inference.onnx_cache import cached_onnx
    from segmif_core.inference.onnx_export import ExportError

    from ..node.model import predictor_arguments
    from ..node.parameters import PARAMETERS

    p = {k: v[0] for k, v in PARAMETERS.items()}
    p.update(node_params or {})
    p.update(checkpoint=str(checkpoint or ""), device=device)
    (ckpt, _, size), kw = predictor_arguments(p)
    if str(ckpt or "").lower().endswith(".onnx"):
        return None
    precision = kw["precision"]
    if choose_backend(str(p["backend"]), ckpt, torch.device(device),
                      precision) != "onnxruntime":
        return None
    try:
        return cached_onnx(ckpt, kw["fusion_scale"], log, size=size,
                           int8_calibration=kw["int8_calibration"] if precision == "int8"
                           else None)
    except ExportError as err:
        log(f"[bag eval] no ONNX export before the node starts ({err})")
        return None


def run_bag_eval(bag, out="runs/bag_eval", *, visible_topic: str = "/visible/image",
                 thermal_topic: str = "/thermal/image",
                 gt_topic: str | None = "/ground_truth/labels", rate: float = 1.0,
                 start_node: bool = True, checkpoint=None, device: str = "cpu",
                 namespace: str = "", node_params: Mapping | None = None,
                 include_background: bool = True, absent: str = "skip",
                 rules: Iterable[str] | None = None, mosaics: int = 4,
                 node_timeout_s: float = 180.0, quiet_s: float = 10.0,
                 title: str = "segmif bag eval report", extra: Mapping | None = None,
                 large_shm: bool = False, log: Callable[[str], None] = print) -> dict:
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
        large_shm: every process (replay, node, recorder) uses the 32 MiB shared-memory Fast
            DDS profile (:func:`local_ros_env`), needed for best-effort 640x480 frames.
    Returns:
        the report dict (also written to ``out``).
    Raises:
        ValueError: topics missing from the bag, options that contradict each other;
        RuntimeError / TimeoutError: the node died or did not come up.
    """
    ros = local_ros_env(large_shm=large_shm)
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

    classes, method, det_classes = None, "segmif_node", ()
    if start_node and str(checkpoint or "").lower().endswith(".onnx"):
        from segmif_core.data.classes import ClassSet
        from segmif_core.inference.backends import read_onnx_metadata
        meta = read_onnx_metadata(checkpoint)  # fail early on a bad file (BackendError)
        classes = ClassSet.from_dict(meta["classes"])
        method = model_method_name(meta)
    elif start_node:
        from segmif_core.checkpoint import load_checkpoint
        model, classes, ck_info = load_checkpoint(checkpoint)  # fail early on a bad checkpoint
        method = model_method_name(ck_info)
        det_classes = tuple(getattr(model, "detection_classes", ()) or ())
        del model
    out.mkdir(parents=True, exist_ok=True)
    log(f"[bag eval] ROS env: {ros}; node inputs {live['visible']}, {live['thermal']}")
    t0 = time.monotonic()

    proc, node_log = None, None
    params = dict(node_params or {})
    # mAP needs every box the model keeps (its own score threshold), not the node's default
    # for planners (detection_min_score 0.5); the mirror types are what the recorder reads
    params.setdefault("detection_min_score", 0.0)
    params.setdefault("detection_messages", "segmif_ros")
    if start_node:
        # the one slow start-up step (a first ONNX export), before the node's start-up wait
        warm_onnx_cache(checkpoint, device, params,
                        lambda line: log(f"[bag eval] {line}"))
        # -P: no working directory on the child's sys.path, so that it imports the package
        # from PYTHONPATH below, the code this process runs (and exported with), not a checkout
        # in the directory it was started from (a different graph digest: a second export)
        cmd = [sys.executable, "-P", "-m", "segmif_ros.node", "--ros-args"]
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
        wanted = dict(OUTPUT_TYPES)
        until = time.monotonic() + (0.0 if start_node else 2.0)  # a running node: ask the graph
        while not node.count_publishers(live["detections"]) and time.monotonic() < until:
            time.sleep(0.1)  # a detector's publisher is created with the others
        if not (det_classes or node.count_publishers(live["detections"])):
            wanted.pop("detections")  # SegMiF: the node has no detections topic
        out_pubs = [i for k in wanted for i in node.get_publishers_info_by_topic(live[k])]
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in out_pubs)
        topics = {live[k]: t for k, t in wanted.items()}
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
        counters_since_node_start=start_node, replay_rate=rate,
        detection_classes=det_classes or None)
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
