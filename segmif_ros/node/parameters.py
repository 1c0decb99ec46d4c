"""The parameters of segmif_node: declarations (default, description, descriptor), the ones
that may change at run time and their checks, and the QoS profiles they name.

Every parameter is declared read only except those in :data:`DYNAMIC`; ranges and choices are
in the descriptors, so ``ros2 param describe`` shows them. ``config/segmif.yaml`` lists every
parameter with its default (test/test_launch.py compares the two).
"""
from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_CHOICES = ("sensor_data", "reliable", "default")


class ConfigurationError(ValueError):
    """A parameter value the node cannot run with."""


def qos_profile(name: str, depth: int) -> QoSProfile:
    """'sensor_data' (best effort, volatile), 'reliable' / 'default' (reliable, volatile)."""
    if name == "sensor_data":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if name in ("reliable", "default"):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    raise ConfigurationError(f"unknown QoS profile {name!r}; choose one of {QOS_CHOICES}")


def describe_qos(qos: QoSProfile) -> str:
    """One line for the log: reliability, durability, history and depth."""
    return (f"{qos.reliability.name.lower()}, {qos.durability.name.lower()}, "
            f"{qos.history.name.lower()} depth {qos.depth}")


# name: (default, description, extra descriptor fields)
PARAMETERS = {
    "autostart": (True, "Configure and activate the (lifecycle) node right after start; false: "
                  "wait in unconfigured for `ros2 lifecycle set <node> configure`.", {}),
    "checkpoint": ("", "Checkpoint file (.pt); empty = the default checkpoint shipped with "
                   "segmif_core.", {}),
    "device": ("cpu", "Torch device: cpu, cuda or cuda:N.", {}),
    "backend": ("auto", "Inference backend: torch (a .pt checkpoint), onnxruntime (an .onnx "
                "file from `segmif export --onnx`, or a .pt exported once and cached) or auto "
                "(ONNX Runtime on the CPU when installed, else torch).",
                {"additional_constraints": "one of: torch, onnxruntime, auto"}),
    "precision": ("fp32", "fp32; torch backend: bf16 or (CUDA) fp16 autocast; onnxruntime: "
                  "int8 (static int8 of Psi's convolutions: an .onnx file from `segmif export "
                  "--int8`, or the .pt checkpoint quantised once and cached, calibrated on "
                  "int8_calibration).",
                  {"additional_constraints": "one of: fp32, bf16, fp16, int8"}),
    "int8_calibration": ("", "precision int8 with a .pt checkpoint: folder of registered "
                         "visible/thermal pairs of your cameras (vis/, ir/; 16 used) that "
                         "calibrate the int8 ranges once.", {}),
    "threads": (0, "CPU threads of the network (torch intra-op threads, ONNX Runtime intra-op "
                "threads); 0 = the library's default.",
                {"integer_range": [IntegerRange(from_value=0, to_value=256, step=0)]}),
    "fusion_scale": (0.5, "SegMiF and TSJNet: resolution of the fusion network relative to "
                     "the network input, in (0, 1]: 0.5 (default) runs it at a quarter of the "
                     "pixels (SegMiF's pyramid head: Phi's weight map drives the pyramid of the "
                     "full-size sources; the direct head and TSJNet: the guided upsampler "
                     "carries the mix back); 1 = the paper's; 0 = the checkpoint's. Ignored by "
                     "models without a fusion network (docs/model_card.md).",
                     {"floating_point_range": [FloatingPointRange(from_value=0.0, to_value=1.0,
                                                                  step=0.0)]}),
    "fused_image": ("auto", "What fused/image carries: model (the network's fused image; the "
                    "visible image for a model without a fusion network), auto (model where the "
                    "checkpoint has a fusion network, else laplacian) or a classical rule at the "
                    "camera's resolution: laplacian (Laplacian pyramid), gff (guided filtering, "
                    "~6x slower), average, maximum, visible, thermal. Labels are unaffected.",
                    {"additional_constraints": "one of: auto, model, laplacian, gff, average, "
                     "maximum, visible, thermal"}),
    "input_height": (0, "Network input height in pixels (images are resized to it and the "
                     "outputs back); 0 = the size stored in the checkpoint.",
                     {"integer_range": [IntegerRange(from_value=0, to_value=4096, step=0)]}),
    "input_width": (0, "Network input width in pixels; 0 = the checkpoint's.",
                    {"integer_range": [IntegerRange(from_value=0, to_value=4096, step=0)]}),
    "thermal_norm": ("percentile", "16-bit thermal scaling: fixed (thermal_min..thermal_max -> "
                     "0..1) or percentile (per-frame percentiles -> 0..1). 8-bit thermal is /255.",
                     {"additional_constraints": "one of: fixed, percentile"}),
    "thermal_min": (0.0, "fixed: raw 16-bit value mapped to 0.", {}),
    "thermal_max": (65535.0, "fixed: raw 16-bit value mapped to 1.", {}),
    "thermal_percentile_low": (1.0, "percentile: lower percentile mapped to 0.",
                               {"floating_point_range": [FloatingPointRange(
                                   from_value=0.0, to_value=100.0, step=0.0)]}),
    "thermal_percentile_high": (99.0, "percentile: upper percentile mapped to 1.",
                                {"floating_point_range": [FloatingPointRange(
                                    from_value=0.0, to_value=100.0, step=0.0)]}),
    "homography": ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                   "Row-major 3x3 homography mapping thermal pixels to visible pixels.", {}),
    "crop": ([0, 0, 0, 0], "x, y, width, height crop applied to both images after warping "
             "(all 0 = no crop).", {}),
    "approximate_sync": (True, "Pair by approximate time (true) or exact stamps (false).", {}),
    "slop": (0.02, "Maximum stamp difference inside a pair (s), approximate sync only.",
             {"floating_point_range": [FloatingPointRange(from_value=1e-6, to_value=10.0,
                                                          step=0.0)]}),
    "queue_size": (5, "Messages kept per input while waiting for a partner.",
                   {"integer_range": [IntegerRange(from_value=1, to_value=1000, step=0)]}),
    "input_transport": ("raw", "Input messages: raw (sensor_msgs/Image on visible/image, "
                        "thermal/image) or compressed (sensor_msgs/CompressedImage, jpeg/png, "
                        "16-bit png for thermal, on visible/image/compressed, "
                        "thermal/image/compressed; decoded with OpenCV on arrival).",
                        {"additional_constraints": "one of: raw, compressed"}),
    "input_qos": ("sensor_data", "Subscription QoS: sensor_data (best effort) or reliable.",
                  {"additional_constraints": "one of: sensor_data, reliable"}),
    "output_qos": ("default", "Publisher QoS: default (reliable) or sensor_data (best effort).",
                   {"additional_constraints": "one of: default, reliable, sensor_data"}),
    "overlay_alpha": (0.5, "segmentation/color: weight of the class colours over the fused image.",
                      {"floating_point_range": [FloatingPointRange(from_value=0.0, to_value=1.0,
                                                                   step=0.0)]}),
    "no_pair_warn_s": (5.0, "Warn (throttled) when no pair has matched for this long (s).",
                       {"floating_point_range": [FloatingPointRange(from_value=0.1,
                                                                    to_value=3600.0, step=0.0)]}),
    "fallback": ("none", "With one camera lost (stream_timeout_s): none = publish nothing; "
                 "visible = keep publishing from the visible image with a blank (zero) thermal "
                 "image; thermal = from the thermal image, registered, as gray visible. Flagged "
                 "in segmentation/info (modality); pairs again as soon as the stream is back.",
                 {"additional_constraints": "one of: none, visible, thermal"}),
    "stream_timeout_s": (1.0, "An input stream that sends nothing for this long (s) is lost: "
                         "WARN on /diagnostics, a throttled warning, and the fallback modality "
                         "if one is set.",
                         {"floating_point_range": [FloatingPointRange(from_value=0.05,
                                                                      to_value=3600.0,
                                                                      step=0.0)]}),
    "registration_check_every": (30, "Registration health: measure how well the warped "
                                 "thermal image lines up with the visible one every N-th pair "
                                 "(gradient correlation and shift, segmif_core/"
                                 "registration_health.py; about 5-10 ms at 640x480 on a CPU "
                                 "core, in the worker); 0 = off.",
                                 {"integer_range": [IntegerRange(from_value=0, to_value=100000,
                                                                 step=0)]}),
    "registration_check_size": (320, "Registration health: longer side (px) of the subsample "
                                "the check runs on.",
                                {"integer_range": [IntegerRange(from_value=32, to_value=4096,
                                                                step=0)]}),
    "registration_search_px": (32.0, "Registration health: largest shift (px of the published "
                               "images) the check looks for.",
                               {"floating_point_range": [FloatingPointRange(
                                   from_value=1.0, to_value=512.0, step=0.0)]}),
    "registration_baseline_checks": (5, "Registration health: the start-up reference is the "
                                     "median of this many first checks (the rig is assumed "
                                     "well registered at start).",
                                     {"integer_range": [IntegerRange(from_value=1,
                                                                     to_value=1000, step=0)]}),
    "registration_warn_score_ratio": (0.5, "Registration health: WARN when the gradient "
                                      "correlation falls below this fraction of the start-up "
                                      "value.",
                                      {"floating_point_range": [FloatingPointRange(
                                          from_value=0.0, to_value=1.0, step=0.0)]}),
    "registration_warn_shift_px": (4.0, "Registration health: WARN when the thermal image has "
                                   "moved this far (px) from its start-up shift.",
                                   {"floating_point_range": [FloatingPointRange(
                                       from_value=0.1, to_value=512.0, step=0.0)]}),
    "registration_warn_checks": (3, "Registration health: consecutive checks past a threshold "
                                 "that raise the WARN (and within them that clear it): a drift "
                                 "is reported within registration_warn_checks x "
                                 "registration_check_every pairs.",
                                 {"integer_range": [IntegerRange(from_value=1, to_value=1000,
                                                                 step=0)]}),
    "detection_messages": ("auto", "Message types of detections and segmentation/label_info: "
                           "auto (vision_msgs when importable, else the segmif_ros mirror "
                           "types), vision_msgs (required) or segmif_ros (the mirror).",
                           {"additional_constraints": "one of: auto, vision_msgs, segmif_ros"}),
    "detection_min_score": (0.5, "Models with a detector: lowest score of the boxes published "
                            "on detections and drawn on segmentation/color (yolo_ros' threshold"
                            " default); the box selection starts there (the model's own "
                            "0.05, which evaluation uses, is the floor). Can change at run "
                            "time.",
                            {"floating_point_range": [FloatingPointRange(from_value=0.0,
                                                                         to_value=1.0,
                                                                         step=0.0)]}),
}
#: Parameters that may change while the node runs; the others are read only.
DYNAMIC = ("overlay_alpha", "no_pair_warn_s", "detection_min_score")


def _expected(default) -> str:
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a double (integers are accepted)"
    if isinstance(default, str):
        return "a string"
    if default and isinstance(default[0], float):
        return "a list of doubles (integers are accepted)"
    return "a list of integers"


def _number(value, want_float: bool):
    """``value`` as an int or (want_float: int or float ->) float; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if want_float else value
    if isinstance(value, float) and want_float:
        return value
    return None


def coerce(name: str, value):
    """The value of parameter ``name`` in the type of its default: integers are accepted where
    doubles are expected (``thermal_min: 0``, ``homography: [1, 0, 0, ...]``).

    :raises ConfigurationError: (one line) a value of another type.
    """
    default = PARAMETERS[name][0]
    out = None
    if isinstance(default, bool):
        out = value if isinstance(value, bool) else None
    elif isinstance(default, (int, float)):
        out = _number(value, isinstance(default, float))
    elif isinstance(default, str):
        out = value if isinstance(value, str) else None
    elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = [_number(v, isinstance(default[0], float)) for v in list(value)]
        out = None if any(v is None for v in items) else items
    if out is None:
        raise ConfigurationError(f"parameter {name}: expected {_expected(default)}, got "
                                 f"{type(value).__name__} {value!r}")
    return out


def check(name: str, value) -> None:
    """Range and choice of one (coerced) value, from its descriptor.

    :raises ConfigurationError: (one line) a value out of range or not one of the choices.
    """
    extra = PARAMETERS[name][2]
    ranges = extra.get("floating_point_range") or extra.get("integer_range")
    if ranges and not ranges[0].from_value <= value <= ranges[0].to_value:
        raise ConfigurationError(f"parameter {name}: {value!r} is out of range "
                                 f"[{ranges[0].from_value:g}, {ranges[0].to_value:g}]")
    choices = extra.get("additional_constraints", "")
    if choices.startswith("one of: "):
        allowed = [c.strip() for c in choices[len("one of: "):].split(",")]
        if value not in allowed:
            raise ConfigurationError(f"parameter {name}: {value!r} is not one of "
                                     f"{', '.join(allowed)}")


def check_together(values: dict) -> None:
    """Checks that involve several parameters (ConfigurationError, one line)."""
    if bool(values["input_height"]) != bool(values["input_width"]):
        raise ConfigurationError("parameters input_height and input_width: give both (or "
                                 f"neither), got {values['input_height']} x "
                                 f"{values['input_width']}")
    if not values["thermal_min"] < values["thermal_max"]:
        raise ConfigurationError(f"parameters thermal_min {values['thermal_min']:g} and "
                                 f"thermal_max {values['thermal_max']:g}: need min < max")
    if not values["thermal_percentile_low"] < values["thermal_percentile_high"]:
        raise ConfigurationError("parameters thermal_percentile_low and thermal_percentile_high:"
                                 " need low < high")
    if len(values["homography"]) != 9:
        raise ConfigurationError(f"parameter homography: 9 values (row-major 3x3) expected, "
                                 f"got {len(values['homography'])}")
    if len(values["crop"]) != 4:
        raise ConfigurationError(f"parameter crop: 4 integers (x, y, width, height) expected, "
                                 f"got {len(values['crop'])}")


def declare_parameters(node) -> dict:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` (read only unless in
    :data:`DYNAMIC`), check them and return their values, ``{name: value}``.

    Each parameter is first declared with dynamic typing to read the user's value (launch file,
    YAML, command line) whatever its type, converted by :func:`coerce` (an integer where a
    double is expected becomes a double) and checked (:func:`check`, :func:`check_together`),
    then declared again with its own type, descriptor and the converted value, so
    ``ros2 param get/describe`` show the declared type and range.

    :raises ConfigurationError: one line naming the parameter and what is wrong with it.
    """
    values = {}
    for pname, (default, text, extra) in PARAMETERS.items():
        try:
            node.declare_parameter(pname, default, ParameterDescriptor(dynamic_typing=True))
            value = node.get_parameter(pname).value
            node.undeclare_parameter(pname)
            value = coerce(pname, value)
            check(pname, value)
            node.declare_parameter(pname, value, ParameterDescriptor(
                description=text, read_only=pname not in DYNAMIC, **extra),
                ignore_override=True)
        except ParameterException as err:
            raise ConfigurationError(f"parameter {pname}: {err}") from None
        values[pname] = value
    check_together(values)
    return values


def dynamic_parameter_error(prm) -> str | None:
    """Why a new value of a :data:`DYNAMIC` parameter is refused, or None when it is accepted
    (no_pair_warn_s and detection_min_score are checked by their descriptors' ranges)."""
    if prm.name == "overlay_alpha":
        if prm.type_ != ParameterType.PARAMETER_DOUBLE or not 0 <= prm.value <= 1:
            return "overlay_alpha must be a double in [0, 1]"
    return None
