"""What segmif_node builds from its parameters at configure: the model (predictor), the
registration health monitor, and the one start-up line that says what runs.

No rclpy here (the node passes its parameter values ``p``, a dict, and callables).
"""
from __future__ import annotations

from typing import Callable

import torch

from segmif_core.inference import BackendError
from segmif_core.inference.onnx_export import ExportError
from segmif_core.registration_health import RegistrationMonitor


def predictor_arguments(p: dict) -> tuple[tuple, dict]:
    """The node's parameters ``p`` as the predictor factory's arguments: ``args`` (checkpoint or
    None, device, input size (h, w) or None for the checkpoint's) and ``kwargs`` (thermal
    normalisation, precision, threads, fusion_scale (None: the checkpoint's; always None for an
    .onnx file, which has it built in), int8_calibration, fused_method), without ``log`` and
    ``backend``. Shared by ``build_predictor`` and the ONNX warm-up of ``segmif bag eval``."""
    size = (int(p["input_height"]), int(p["input_width"]))
    kwargs = dict(
        thermal_norm=p["thermal_norm"], thermal_range=(p["thermal_min"], p["thermal_max"]),
        thermal_percentiles=(p["thermal_percentile_low"], p["thermal_percentile_high"]),
        precision=p["precision"], threads=int(p["threads"]),
        # an exported .onnx file has its fusion_scale built in
        fusion_scale=None if str(p["checkpoint"]).lower().endswith(".onnx")
        else p["fusion_scale"] or None,
        int8_calibration=p["int8_calibration"] or None, fused_method=p["fused_image"])
    return (p["checkpoint"] or None, p["device"], size if all(size) else None), kwargs


def build_predictor(p: dict, factory: Callable, step: Callable[[str], None]):
    """The predictor for the node's parameters ``p``, built by ``factory`` (the
    ``SegMiFPredictor`` signature); ``step(text)`` reports each slow step (loading, the ONNX
    export, the int8 quantisation) to the log and /diagnostics.

    ``threads`` applies to every backend: torch's thread count is set (the torch backend, the
    torch fallback of ``auto``, and the pre- and post-processing of the others) and ONNX
    Runtime gets it as its intra-op threads. With ``backend: auto``, a model that cannot be
    exported (:class:`ExportError`) runs on the torch backend.

    Raises CheckpointError, BackendError (an export refused with an explicit backend) or
    ValueError, as the factory does.
    """
    if p["threads"]:
        torch.set_num_threads(int(p["threads"]))
    args, kwargs = predictor_arguments(p)
    kwargs["log"] = step
    step(f"loading the model ({p['checkpoint'] or 'default checkpoint'}, backend "
         f"{p['backend']}, {p['device']})")
    try:
        return factory(*args, backend=p["backend"], **kwargs)
    except ExportError as err:
        if p["backend"] != "auto":
            raise BackendError(str(err)) from err
        step(f"backend auto: {err}; using the torch backend")
        return factory(*args, backend="torch", **kwargs)


def build_monitor(p: dict):
    """The registration health monitor of the ``registration_*`` parameters (None: off)."""
    every = int(p["registration_check_every"])
    if not every:
        return None
    return RegistrationMonitor(
        every, int(p["registration_check_size"]), int(p["registration_baseline_checks"]),
        float(p["registration_warn_score_ratio"]), float(p["registration_warn_shift_px"]),
        int(p["registration_warn_checks"]), search_px=float(p["registration_search_px"]))


def start_up_line(p: dict, predictor, registration, outputs_qos: str, messages: str) -> str:
    """The configure line: model, device, backend, input size, classes, detector, checkpoint,
    output QoS, synchronisation, homography, fallback, message types, registration checks."""
    info = predictor.info
    det = predictor.detection_classes
    return (f"model {info.get('model')} {info.get('config', {}).get('encoder', '')} on "
            f"{predictor.device} ({predictor.backend.name}), input "
            f"{predictor.input_size[1]}x{predictor.input_size[0]}, "
            f"{len(predictor.classes.names)} classes"
            + (f", detector ({', '.join(det)}) on detections, min score "
               f"{p['detection_min_score']:g}" if det else "")
            + f", checkpoint {p['checkpoint'] or 'default'}; outputs QoS {outputs_qos}; sync "
            f"{'approximate, slop %.3f s' % p['slop'] if p['approximate_sync'] else 'exact'}"
            f", queue {p['queue_size']}; homography "
            f"{'identity' if registration.is_identity else 'set'}; fallback {p['fallback']}; "
            f"messages: {messages}; registration checks "
            + (f"every {p['registration_check_every']} pairs"
               if p["registration_check_every"] else "off"))
