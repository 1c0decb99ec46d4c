"""The analysis of ``segmif bag eval`` (step 3 of :mod:`segmif_ros.tools.bag_eval`): a recorded
output bag -> the evaluation report.

Match outputs to inputs and ground truth by header stamp (outputs carry the visible stamp) and
build the evaluation report of :mod:`segmif_core.report`: segmentation metrics (labelled frames),
fusion metrics of the recorded fused image and of the baseline fusion rules on the recorded
visible/thermal pair (thermal found by ``SegmentationInfo.thermal_stamp``), plus the node's frame
statistics: ``stream`` (frames in/out, pairs dropped by the node, pairs never answered, ...),
``frames`` (per-frame latency and timing lists) and ``timing`` summaries, and mosaics (visible |
thermal | fused | colour labels | ground truth).

Detection (a node with a detector, TSJNet): the recorded ``detections``
(segmif_ros/Detection2DArray) of each frame are matched to the ground-truth boxes derived from
the ground-truth label message of the same stamp (``segmif_core.data.boxes.boxes_from_labels``,
components of at least ``box_min_area`` pixels, as ``segmif evaluate``) and scored with
``segmif_core.metrics.detection.DetectionEvaluator``: ``map50``, ``map50_95`` (percent) and
``detection`` in the report, next to mIoU. Frames with ground truth but no recorded detections
message are listed in ``detection.pairs_without_boxes``.

Fusion metrics assume registered input (identity homography, no crop): a frame whose thermal
and fused sizes differ from the visible one is listed in ``fusion_skipped``. 16-bit thermal is
scaled with the node's default rule (per-frame percentiles 1/99) unless the node's parameters
say otherwise (:func:`thermal_rule_from_params`). The bag is read with ``rosbags``
(:mod:`segmif_ros.tools.bag`); no rclpy.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Mapping

import cv2
import numpy as np

from segmif_core import atomic


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
    atomic.write_image(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # OSError if not written


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


def detections_from_message(msg, names) -> dict:
    """A recorded ``segmif_ros/Detection2DArray`` (rosbags dataclass or rclpy message) -> the
    ``Prediction.detections`` dict: 'boxes' (D, 4) float64 x1, y1, x2, y2 in pixels (centre -/+
    half size), 'scores' (D,), 'classes' (D,) int64 indices into ``names`` (list of str, the
    detector's classes), 'names'. The first hypothesis of each detection is used; detections
    without one or of a class not in ``names`` are left out."""
    index = {str(n): k for k, n in enumerate(names)}
    boxes, scores, classes = [], [], []
    for det in msg.detections:
        if not len(det.results) or det.results[0].hypothesis.class_id not in index:
            continue
        hyp, b = det.results[0].hypothesis, det.bbox
        cx, cy = float(b.center.position.x), float(b.center.position.y)
        hw, hh = float(b.size_x) / 2.0, float(b.size_y) / 2.0
        boxes.append([cx - hw, cy - hh, cx + hw, cy + hh])
        scores.append(float(hyp.score))
        classes.append(index[hyp.class_id])
    return {"boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
            "scores": np.asarray(scores, np.float64), "classes": np.asarray(classes, np.int64),
            "names": list(names)}


def detection_part(dets_by: Mapping, gt: Mapping, answered, classes, method: str,
                   detection_classes=None, box_min_area: int = 50) -> dict | None:
    """The report's detection keys ({'map50', 'map50_95', 'detection'}, see
    ``segmif_core.detection_eval.DetectionTable.report_part``) of the recorded detections
    ``dets_by`` ``{stamp_ns: (receive_ns, Detection2DArray)}`` against the boxes of the
    ground-truth label messages ``gt`` (same form, mono8 class ids of ``classes``, a ClassSet)
    of the ``answered`` stamps. ``detection_classes``: the detector's class names (default: the
    MFNet car, person, bike, plus any other name found in the messages). None when nothing was
    recorded on ``detections`` and no class is given."""
    from segmif_core.data.boxes import MFNET_DETECTION_CLASSES
    from segmif_core.detection_eval import DetectionTable, GroundTruthBoxes

    from ..node.encodings import image_to_numpy

    if not dets_by and not detection_classes:
        return None
    names = list(detection_classes or [n for n, _ in MFNET_DETECTION_CLASSES])
    if not detection_classes:
        seen = {d.results[0].hypothesis.class_id for _, m in dets_by.values()
                for d in m.detections if len(d.results)}
        names += sorted(seen - set(names))
    table = DetectionTable(method, GroundTruthBoxes(names, list(classes.names), "labels",
                                                    box_min_area))
    for s in answered:
        if s in gt:
            dets = detections_from_message(dets_by[s][1], names) if s in dets_by else None
            table.add(str(s), dets, image_to_numpy(gt[s][1]))
    return table.report_part()


# ---------------------------------------------------------------------------------- analysis
#: per-stage fields of segmif_ros/SegmentationInfo (ms) -> names in the report's stages_ms
STAGE_FIELDS = {"convert": "convert_time_ms", "registration": "registration_time_ms",
                "preprocess": "preprocess_time_ms", "network": "inference_time_ms",
                "postprocess": "postprocess_time_ms", "publish": "publish_time_ms",
                "callback_delay": "callback_delay_ms"}


def output_rate(labels: Mapping) -> float | None:
    """Outputs per second from the receive times (ns) of ``{stamp: (receive_ns, msg)}``:
    (n - 1) / (last - first); None with fewer than two outputs."""
    times = sorted(t for t, _ in labels.values())
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / ((times[-1] - times[0]) / 1e9), 3)


def analyse_output_bag(output_bag, out_dir, topics: Mapping[str, str], *, classes=None,
                       method: str = "SegMiF", include_background: bool = True,
                       absent: str = "skip", rules: Iterable[str] | None = None,
                       thermal_rule: Mapping | None = None, n_mosaics: int = 4,
                       counters_since_node_start: bool = True,
                       replay_rate: float = 1.0, detection_classes=None,
                       box_min_area: int = 50) -> dict:
    """Evaluate a recorded output bag (see the module docstring); returns the report dict.

    Args:
        output_bag: bag recorded by :func:`segmif_ros.tools.bag_eval.run_bag_eval` (inputs and
            outputs).
        out_dir: folder for the mosaics.
        topics: live topic names (:func:`segmif_ros.tools.bag_eval.live_topics`).
        classes: ``ClassSet`` used when the bag has no ``segmentation/info`` (names and colours
            normally come from the node's ``SegmentationInfo``).
        method: row name of the node's fusion in the fusion table.
        rules: fusion rules scored on the same inputs (None = all).
        counters_since_node_start: the node was started for this run, so its cumulative
            counters (pairs dropped, ...) are this run's; otherwise the difference between the
            last and the first answered frame is reported.
        replay_rate: the replay's speed factor. Away from 1 the replayed stamps keep the
            recorded spacing while frames arrive ``1 / rate`` times slower (or faster), so
            stamp-based latencies (stamp to receive, the node's ``latency_ms``) grow or shrink
            with the frame index and are not reported (None, with a warning); the
            input-to-output latency (receive times of the visible input and of the output, one
            clock) is real at any rate and is the report's ``latency_ms``.
        detection_classes, box_min_area: the detector's class names and the smallest boxed
            component (pixels) for the detection part (see :func:`detection_part`).
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
    dets_by = by_topic.get(topics["detections"], {}) if "detections" in topics else {}

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
    stamps_real = abs(float(replay_rate) - 1.0) < 1e-9
    report = assemble_report(
        cm if n_labelled else None, table, include_background=include_background,
        absent=absent, thermal_rule=thermal_rule, segmentation_method=method,
        n_pairs=len(answered), n_labelled=n_labelled, kind="bag_eval",
        stream=stream, frames=frames,
        timing={
            "latency_ms": timing_summary(v for v in frames["input_to_output_ms"]
                                         if v is not None),
            "input_to_output_ms": timing_summary(v for v in frames["input_to_output_ms"]
                                                 if v is not None),
            "stamp_to_receive_ms": timing_summary(frames["latency_ms"]) if stamps_real
            else None,
            "node_latency_ms": timing_summary(i.latency_ms for i in infos_v) if stamps_real
            else None,
            "inference_ms": timing_summary(i.inference_time_ms for i in infos_v),
            "processing_ms": timing_summary(i.processing_time_ms for i in infos_v),
            "stages_ms": {k: timing_summary(getattr(i, f, 0.0) for i in infos_v)
                          for k, f in STAGE_FIELDS.items()},
            "output_fps": output_rate(labels),
        },
        mosaics=[], warnings=[])
    det = detection_part(dets_by, gt, answered, classes, method, detection_classes,
                         box_min_area)
    if det is not None:
        report.update(det)
        if not n_labelled:
            report["warnings"].append("detections recorded but no ground truth: no mAP")
    if not answered:
        report["warnings"].append("the node answered no frame")
    if not stamps_real:
        report["warnings"].append(
            f"replay rate {replay_rate}: stamp-based latencies are left out (the stamps keep the "
            "recorded spacing); latency_ms is input-to-output (receive times, one clock)")
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
