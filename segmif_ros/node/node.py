"""segmif_node: visible + thermal in, SegMiF fused image and semantic labels out.

Subscriptions (relative names, remap them in launch): ``visible/image`` (rgb8, bgr8, mono8,
8UC1) and ``thermal/image`` (mono8, 8UC1, mono16, 16UC1), QoS from ``input_qos`` (sensor data,
best effort, by default). Pairs are formed by header stamp with an approximate-time policy (``slop``
seconds, ``queue_size`` messages per input; exact stamps with ``approximate_sync: false``).
Only the newest pair is processed: a matched pair that is replaced by a newer one before the
worker thread takes it is dropped and counted, so latency cannot grow with a queue of stale frames.

Publications (QoS from ``output_qos``, reliable by default), all with the visible image's header
(acquisition stamp and frame_id, never now()):
    fused/image          sensor_msgs/Image bgr8, the fused image
    segmentation/labels  sensor_msgs/Image mono8, class id per pixel
    segmentation/color   sensor_msgs/Image bgr8, class colours over the fused image (for people)
    segmentation/info    segmif_ros/SegmentationInfo, per frame: classes, timings, counters
    segmentation/label_info  segmif_ros/LabelInfo, the class map, once, transient local

Bad messages (unknown encoding, malformed data, size problems) are refused with a throttled
warning and counted; the node never dies on a message. Bad parameters (homography not 3x3 or
singular, missing checkpoint, unknown device) stop the node at construction with a clear message.

The parameters are declared in :mod:`.parameters`, the output messages built in :mod:`.publishers`.
"""
from __future__ import annotations

import time

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import ClockChange, JumpThreshold
from rclpy.duration import Duration
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from sensor_msgs.msg import Image

from segmif_core.checkpoint import CheckpointError
import torch

from segmif_core.inference import BackendError, SegMiFPredictor
from segmif_core.registration import Registration, RegistrationError

from .diagnostics import Diagnostics
from .encodings import THERMAL_ENCODINGS, VISIBLE_ENCODINGS
from .health import STREAMS, Health, Throttle
from .parameters import (ConfigurationError, declare_parameters, describe_qos,
                         dynamic_parameter_error, qos_profile)
from .pipeline import FALLBACKS, Frame, FrameProcessor, Worker
from .publishers import Outputs
from .sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, stamp_to_ns


class SegMiFNode(Node):
    """The SegMiF ROS 2 node (see the module docstring). Raises ConfigurationError on bad
    parameters."""

    def __init__(self, name: str = "segmif_node", **kwargs):
        super().__init__(name, **kwargs)
        p = declare_parameters(self)
        self._debug = self.get_logger().get_effective_level() <= LoggingSeverity.DEBUG
        self._alpha = float(p["overlay_alpha"])
        self._no_pair_warn_s = float(p["no_pair_warn_s"])
        self._fallback = FALLBACKS[p["fallback"]]  # modality published when a stream is lost
        self._fallback_input = {"visible_only": 0, "thermal_only": 1}.get(self._fallback)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        try:
            self.registration = Registration(p["homography"], crop=p["crop"])
            size = (p["input_height"], p["input_width"])
            if p["threads"] and p["backend"] == "torch":
                torch.set_num_threads(int(p["threads"]))
            self.predictor = SegMiFPredictor(
                p["checkpoint"] or None, p["device"], size if all(size) else None,
                thermal_norm=p["thermal_norm"],
                thermal_range=(p["thermal_min"], p["thermal_max"]),
                thermal_percentiles=(p["thermal_percentile_low"], p["thermal_percentile_high"]),
                backend=p["backend"], precision=p["precision"], threads=int(p["threads"]),
                fusion_scale=p["fusion_scale"] or None)
            in_qos = qos_profile(p["input_qos"], int(p["queue_size"]))
            out_qos = qos_profile(p["output_qos"], 5)
        except (RegistrationError, CheckpointError, BackendError, ValueError) as err:
            raise ConfigurationError(str(err)) from None

        sync_kw = {"names": ("visible", "thermal"),  # reset log lines: at most one per 5 s
                   "log": lambda line: self.get_logger().warning(line, throttle_duration_sec=5.0)}
        if p["approximate_sync"]:
            self.sync = ApproximateTimeSynchronizer(2, int(p["queue_size"]), float(p["slop"]),
                                                    **sync_kw)
        else:
            self.sync = ExactTimeSynchronizer(2, int(p["queue_size"]), **sync_kw)
        self.sync.register_callback(self._on_pair)
        # ROS time jumping back (bag loop, simulation reset) or changing source resets the sync.
        source_change = (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED)
        self._time_jump = self.get_clock().create_jump_callback(JumpThreshold(
            min_forward=None, min_backward=Duration(seconds=-self.sync.jump_threshold)),
            post_callback=lambda jump: self.sync.reset(
                "ROS time source changed" if jump.clock_change in source_change
                else f"ROS time jumped back {-jump.delta.nanoseconds / 1e9:.3f} s"))

        self.outputs = Outputs(self, self.predictor.classes, out_qos)
        self.class_names = self.outputs.class_names

        # (msg, info) callbacks: rclpy passes the rmw message info, whose received_timestamp
        # gives the time each message waited for the executor (callback_delay_ms)
        self.sub_vis = self.create_subscription(Image, "visible/image",
                                                lambda m, i: self._on_image(0, m, i), in_qos)
        self.sub_ir = self.create_subscription(Image, "thermal/image",
                                               lambda m, i: self._on_image(1, m, i), in_qos)

        # counters and stream state, shared by the executor thread and the worker (locked)
        self.health = Health(stream_timeout_s=float(p["stream_timeout_s"]))
        self._throttle = Throttle(5.0)  # log lines: one per key (reason, stream) per 5 s
        self._lost = set()  # streams reported lost (a line when they come back)
        self.frames = FrameProcessor(self.predictor, self.registration, self.outputs,
                                     self.health, self.sync, self._reject,
                                     self.get_logger().debug if self._debug else None)
        self.worker = Worker(self._handle)
        self._watchdog = self.create_timer(0.5, self._check_inputs)  # stream loss within 2 s
        self.diagnostics = Diagnostics(self)
        self._diag_timer = self.create_timer(1.0, self.publish_diagnostics)

        log = self.get_logger()
        info = self.predictor.info
        log.info(f"model {info.get('model')} {info.get('config', {}).get('encoder', '')} on "
                 f"{self.predictor.device} ({self.predictor.backend.name}), input {self.predictor.input_size[1]}x"
                 f"{self.predictor.input_size[0]}, {len(self.class_names)} classes, checkpoint "
                 f"{p['checkpoint'] or 'default'}")
        log.info(f"inputs {self.sub_vis.topic_name}, {self.sub_ir.topic_name}: QoS "
                 f"{describe_qos(in_qos)}; outputs QoS {describe_qos(out_qos)}; sync "
                 f"{'approximate, slop %.3f s' % p['slop'] if p['approximate_sync'] else 'exact'}"
                 f", queue {p['queue_size']}; homography "
                 f"{'identity' if self.registration.is_identity else 'set'}")

    # ---------------------------------------------------------------- parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        for prm in params:
            reason = dynamic_parameter_error(prm)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
            if prm.name == "overlay_alpha":
                self._alpha = float(prm.value)
            elif prm.name == "no_pair_warn_s":
                self._no_pair_warn_s = float(prm.value)
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- health
    @property
    def counters(self) -> dict:
        """A copy of the node's counters (see :data:`.health.COUNTERS`)."""
        return self.health.snapshot()["counters"]

    def _warn(self, key: str, text: str, period_s: float = 5.0) -> None:
        """A warning throttled per ``key`` (one line per ``period_s``), saying how many lines
        of that key were held back since the last one."""
        held = self._throttle(key, period_s)
        if held is not None:
            self.get_logger().warning(text + (f" [{held} more not logged]" if held else ""))

    def _reject(self, reason: str, what: str) -> None:
        total = self.health.reject(reason)
        self._warn("reject:" + reason, f"{what} (rejected so far: {total})")

    def publish_diagnostics(self) -> None:
        """Publish /diagnostics now (the 1 Hz timer calls it)."""
        info = self.predictor.info
        self.diagnostics.publish(
            self.health.snapshot(), active=True, state="active", fallback=self.modality(),
            sync_stats=self.sync.stats(), sync_diagnosis=self.sync.diagnose(),
            device=str(self.predictor.device), backend=self.predictor.backend.name,
            model=f"{info.get('model', '')} {info.get('config', {}).get('encoder', '')}".strip())

    # ---------------------------------------------------------------- inputs

    def _on_image(self, index: int, msg: Image, info=None) -> None:
        self.health.received(index, stamp_to_ns(msg.header.stamp))
        if index == 0 and info is not None and info.get("received_timestamp"):
            # both clocks are the system clock (ns); keyed by the stamp, read when the pair is
            # processed (bounded: old entries go with the queue)
            delay = (time.time_ns() - int(info["received_timestamp"])) / 1e6
            delays = self.frames.callback_delay
            delays[stamp_to_ns(msg.header.stamp)] = delay
            while len(delays) > 64:
                delays.pop(next(iter(delays)))
        allowed = (VISIBLE_ENCODINGS, THERMAL_ENCODINGS)[index]
        topic = ("visible", "thermal")[index]
        if msg.encoding not in allowed:
            self._reject("encoding", f"{topic} image with unsupported encoding {msg.encoding!r} "
                         f"(accepted: {', '.join(allowed)})")
            return
        if msg.height < 1 or msg.width < 1 or len(msg.data) < msg.step * msg.height:
            self._reject("malformed", f"{topic} image {msg.width}x{msg.height} step {msg.step} with only "
                         f"{len(msg.data)} bytes of data")
            return
        if index == 0:
            self.frames.last_visible = (msg.header.frame_id, msg.height, msg.width)
        self.sync.add(index, msg)
        if index == self._fallback_input and self.health.lost(1 - index):
            # the other camera is lost: this image alone, with the documented substitute
            frame = Frame(self._fallback, msg, None) if index == 0 else \
                Frame(self._fallback, None, msg)
            if self.worker.submit(frame):
                self.health.add("pairs_dropped")

    def _on_pair(self, vis: Image, ir: Image) -> None:
        self.health.add("pairs_matched")
        if self.worker.submit(Frame("pair", vis, ir)):
            self.health.add("pairs_dropped")

    def modality(self) -> str:
        """What the node publishes now: "pair", or the fallback modality while the other
        stream is lost."""
        if self._fallback_input is not None and self.health.lost(1 - self._fallback_input) \
                and not self.health.lost(self._fallback_input):
            return self._fallback
        return "pair"

    def _check_inputs(self) -> None:
        """Watchdog (every 0.5 s): a throttled warning when a stream stops or both do, a line
        when a stream comes back, and the no-pair warning with the synchroniser's diagnosis."""
        snap = self.health.snapshot()
        c, silent = snap["counters"], snap["silent_s"]
        lost = {i for i in range(len(STREAMS)) if silent[i] > snap["stream_timeout_s"]}
        for i in sorted(self._lost - lost):
            self.get_logger().info(f"{STREAMS[i]} stream is back")
        self._lost = lost
        received = f"received visible {c['received_visible']}, thermal {c['received_thermal']}"
        if len(lost) == len(STREAMS):
            if any(snap["seen"]):  # both stopped (a node that never got input: no-pair line)
                self._warn("no_input", f"no input: nothing on visible or thermal for "
                           f"{min(silent):.1f} s ({received})", 10.0)
        elif lost:
            (i,) = lost
            other = 1 - i
            self._warn(f"lost:{STREAMS[i]}", f"{STREAMS[i]} stream "
                       f"{'stopped' if snap['seen'][i] else 'has sent nothing'} "
                       f"({silent[i]:.1f} s) while {STREAMS[other]} arrives at "
                       f"{snap['rate_hz'][other]:.1f} Hz: "
                       + (f"publishing {self._fallback.replace('_', '-')} frames (fallback)"
                          if other == self._fallback_input else "no output")
                       + f" ({received})", 10.0)
        if snap["since_pair_s"] > self._no_pair_warn_s and any(snap["seen"]) \
                and len(lost) < len(STREAMS):
            self._warn("no_pair", f"no visible/thermal pair for {snap['since_pair_s']:.0f} s "
                       f"({received}, rejected {c['messages_rejected']}): "
                       f"{self.sync.diagnose()}", max(self._no_pair_warn_s, 5.0))

    # ---------------------------------------------------------------- processing
    def _handle(self, frame: Frame) -> None:
        """The worker's handler: process one frame; never raises (errors counted, logged)."""
        try:
            self.frames.process(frame, self._alpha)
        except Exception as err:  # noqa: BLE001 - the node must survive any bad frame
            failures = self.health.failed()
            if self._throttle("processing_error") is not None:
                self.get_logger().error(f"frame skipped ({failures} failures in a row): "
                                        f"{type(err).__name__}: {err}")

    def _process(self, vis_msg: Image, ir_msg: Image) -> bool:
        """Process one pair in the calling thread (tests); see :meth:`FrameProcessor.process`."""
        return self.frames.process(Frame("pair", vis_msg, ir_msg), self._alpha)

    def destroy_node(self):
        for timer in ("_watchdog", "_diag_timer"):
            if getattr(self, timer, None) is not None:
                self.destroy_timer(getattr(self, timer))
        worker = getattr(self, "worker", None)  # absent when construction failed
        if worker is not None:
            worker.stop()
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of ``ros2 run segmif_ros segmif_node``."""
    rclpy.init(args=args)
    node = None
    try:
        node = SegMiFNode()
        rclpy.spin(node)
    except ConfigurationError as err:  # one line, no traceback
        rclpy.logging.get_logger("segmif_node").fatal(f"cannot start: {err}")
        return 1
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
