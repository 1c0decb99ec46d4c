"""segmif_node's ``/diagnostics``: a diagnostic_msgs/DiagnosticArray once a second.

diagnostic_updater is not installable here, so the node publishes the array itself (the same
message the updater would send, so rqt_robot_monitor, the diagnostic_aggregator and Foxglove
show it). Two statuses, named ``<node fully qualified name>: inputs`` and ``...: processing``,
``hardware_id`` = the inference device:

inputs
    OK while pairs match; WARN when a stream has sent nothing for more than ``stream_timeout_s``
    (message names the stream, and the fallback modality if one is used), or when no pair has
    matched for that long while both streams arrive (message: the synchroniser's diagnosis).
    Values: per stream rate (Hz), seconds since the last message, age of the newest header stamp
    (node clock, s), messages received; the rejected messages in total and per reason; pairs
    matched, messages unmatched, synchroniser resets and stamp jumps.
processing
    OK; ERROR when processing failed ``error_threshold`` times in a row (back to OK with the
    next published frame). Values: pairs processed / dropped, fallback frames, processing errors,
    mean inference and processing time (ms, last 30 frames), modality, device, backend, model,
    lifecycle state.

registration
    The registration health (parameters ``registration_*``, :mod:`segmif_core.registration_health`):
    OK ``aligned: ...`` (or ``measuring the start-up reference (k/n checks)``, or ``off``);
    WARN ``registration drifted: ...`` when the gradient correlation fell below
    ``registration_warn_score_ratio`` x its start-up value, or the thermal image moved more than
    ``registration_warn_shift_px`` from its start-up shift, for ``registration_warn_checks``
    checks in a row. Values: gradient correlation (latest, start-up), shift x / y (px), drift
    from start-up (px), match peak, checks.

While a lifecycle transition runs (a first configure exports, and for int8 quantises, the
model for minutes on a 2-core CPU, docs/speed.md; the node's executor keeps publishing), the processing status says which
(level OK, ``configuring for 23 s: exporting ... to ONNX once``), with the values ``transition``,
``transition step`` and ``transition time (s)`` (:class:`Progress`).

Counters go out every second, processed frames or not, so a stall is visible.
:func:`assess` (the levels) needs no ROS; :class:`Diagnostics` publishes.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional, Tuple

from .health import REJECT_REASONS, STREAMS

OK, WARN, ERROR = 0, 1, 2


class Progress:
    """The lifecycle transition in progress and its current step (thread safe): the transition
    calls :meth:`begin`, :meth:`step` for each slow step, :meth:`end`; /diagnostics reads
    :meth:`snapshot`. ``clock``: monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Optional[list] = None  # [transition, step, start time]

    def begin(self, transition: str) -> None:
        with self._lock:
            self._current = [transition, "", self._clock()]

    def step(self, text: str) -> None:
        with self._lock:
            if self._current is not None:
                self._current[1] = text

    def end(self) -> None:
        with self._lock:
            self._current = None

    def snapshot(self) -> Optional[Tuple[str, str, float]]:
        """(transition, step, seconds since it began), or None when none runs."""
        with self._lock:
            if self._current is None:
                return None
            transition, step, t0 = self._current
            return transition, step, self._clock() - t0


def assess(snap: dict, active: bool, fallback: str = "none",
           sync_diagnosis: str = "", state: str = "inactive",
           progress: Optional[Tuple[str, str, float]] = None
           ) -> Tuple[Tuple[int, str], Tuple[int, str]]:
    """Levels and messages of the (inputs, processing) statuses from a
    :meth:`Health.snapshot` ``snap``; ``active``: the node is subscribed and processing;
    ``fallback``: the modality published instead of pairs ("none", "visible_only",
    "thermal_only"); ``sync_diagnosis``: :meth:`sync.diagnose` for the no-pair message;
    ``state``: the lifecycle state (messages while not active); ``progress``: a
    :meth:`Progress.snapshot`."""
    if progress is not None:
        transition, step, elapsed = progress
        text = f"{transition} for {elapsed:.0f} s" + (f": {step}" if step else "")
        return (OK, f"{transition}: not subscribed"), (OK, text)
    if not active:
        return (OK, f"{state}: not subscribed"), (OK, f"{state}: not processing")
    timeout = snap["stream_timeout_s"]
    lost = [i for i, s in enumerate(snap["silent_s"]) if s > timeout]
    if len(lost) == len(STREAMS):
        inputs = (WARN, "no input: nothing on visible or thermal for "
                        f"{min(snap['silent_s']):.1f} s")
    elif lost:
        (i,) = lost
        verb = "stopped" if snap["seen"][i] else "has sent nothing"
        inputs = (WARN, f"{STREAMS[i]} stream {verb} ({snap['silent_s'][i]:.1f} s)"
                        + (f"; publishing {fallback.replace('_', '-')}" if fallback != "none"
                           else "; no output"))
    elif snap["since_pair_s"] > timeout:
        inputs = (WARN, f"no pair matched for {snap['since_pair_s']:.1f} s while both inputs "
                        f"arrive: {sync_diagnosis}")
    else:
        inputs = (OK, "receiving pairs")
    if snap["failing"]:
        processing = (ERROR, f"processing failed {snap['consecutive_errors']} times in a row")
    else:
        processing = (OK, f"{snap['counters']['pairs_processed']} pairs processed")
    return inputs, processing


def registration_status(status: Optional[dict]) -> Tuple[int, str, List[Tuple[str, object]]]:
    """(level, message, values) of the registration status from a
    ``RegistrationMonitor.status()`` (None: checks off)."""
    if status is None:
        return OK, "off (registration_check_every 0)", []
    m, ref = status["latest"], status["reference"]
    values = [("gradient correlation", m.score if m else None),
              ("gradient correlation at start-up", ref.score if ref else None),
              ("shift x (px)", m.shift_x if m else None),
              ("shift y (px)", m.shift_y if m else None),
              ("drift from start-up (px)", status["drift_px"] if ref and m else None),
              ("match peak", m.response if m else None),
              ("checks", status["checks"])]
    return (WARN if status["level"] == "warn" else OK), status["message"], values


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class Diagnostics:
    """Publisher of ``/diagnostics`` for ``node`` (an rclpy Node). Call :meth:`publish` (the
    node's 1 Hz timer does) with the current snapshot and context."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        self._node = node
        self._types = DiagnosticArray, DiagnosticStatus, KeyValue
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.last: Optional[object] = None  # the last array published (tests, introspection)

    def publish(self, snap: dict, *, active: bool, state: str, fallback: str = "none",
                sync_stats: Optional[dict] = None, sync_diagnosis: str = "",
                device: str = "", backend: str = "", model: str = "",
                progress: Optional[Tuple[str, str, float]] = None,
                registration: Optional[dict] = None) -> None:
        """Build and publish the array: see the module docstring for its content
        (``registration``: a ``RegistrationMonitor.status()``, None when the checks are off)."""
        DiagnosticArray, DiagnosticStatus, KeyValue = self._types
        sync_stats = sync_stats or {}
        (in_level, in_msg), (pr_level, pr_msg) = assess(snap, active, fallback, sync_diagnosis,
                                                        state, progress)
        now_ns = self._node.get_clock().now().nanoseconds
        c = snap["counters"]
        inputs: List[Tuple[str, object]] = []
        for i, name in enumerate(STREAMS):
            stamp = snap["newest_stamp_ns"][i]
            inputs += [(f"{name} rate (Hz)", snap["rate_hz"][i]),
                       (f"{name} last message (s ago)", snap["silent_s"][i]
                        if snap["seen"][i] else None),
                       (f"{name} newest stamp age (s)",
                        (now_ns - stamp) / 1e9 if stamp is not None else None),
                       (f"{name} received", c["received_" + name])]
        inputs += [("messages rejected", c["messages_rejected"])]
        inputs += [(f"rejected: {reason}", snap["rejected"].get(reason, 0))
                   for reason in REJECT_REASONS]
        inputs += [("pairs matched", c["pairs_matched"]),
                   ("messages unmatched", sync_stats.get("messages_unmatched", 0)),
                   ("sync resets", sync_stats.get("resets", 0)),
                   ("sync stamp jumps", sync_stats.get("stamp_jumps", 0))]
        processing = [("pairs processed", c["pairs_processed"]),
                      ("pairs dropped", c["pairs_dropped"]),
                      ("fallback frames", c["frames_fallback"]),
                      ("processing errors", c["processing_errors"]),
                      ("consecutive errors", snap["consecutive_errors"]),
                      ("inference time (ms)", snap["inference_ms"]),
                      ("processing time (ms)", snap["processing_ms"]),
                      ("modality", "pair" if fallback == "none" else fallback),
                      ("device", device), ("backend", backend), ("model", model),
                      ("lifecycle state", state)]
        if progress is not None:
            processing += [("transition", progress[0]), ("transition step", progress[1]),
                           ("transition time (s)", progress[2])]
        rg_level, rg_msg, reg_values = registration_status(registration)
        prefix = self._node.get_fully_qualified_name()
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        for task, level, text, values in (("inputs", in_level, in_msg, inputs),
                                          ("processing", pr_level, pr_msg, processing),
                                          ("registration", rg_level, rg_msg, reg_values)):
            array.status.append(DiagnosticStatus(
                level=bytes([level]), name=f"{prefix}: {task}", message=text,
                hardware_id=str(device),
                values=[KeyValue(key=k, value=_fmt(v)) for k, v in values]))
        self.pub.publish(array)
        self.last = array
