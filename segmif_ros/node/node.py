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

import threading
import time

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import ClockChange, JumpThreshold
from rclpy.duration import Duration
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from segmif_core.checkpoint import CheckpointError
import torch

from segmif_core.inference import BackendError, SegMiFPredictor
from segmif_core.registration import Registration, RegistrationError

from .encodings import THERMAL_ENCODINGS, VISIBLE_ENCODINGS, to_rgb8, to_thermal
from .parameters import (ConfigurationError, declare_parameters, describe_qos,
                         dynamic_parameter_error, qos_profile)
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
            raise ConfigurationError(f"segmif_node: invalid parameters: {err}") from err
        if p["input_qos"] == "sensor_data":
            in_qos = qos_profile_sensor_data

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

        self._lock = threading.Condition()
        self._callback_delay = {}
        self._pending = None
        self._stop = False
        self.counters = {"received_visible": 0, "received_thermal": 0, "pairs_matched": 0,
                         "pairs_processed": 0, "pairs_dropped": 0, "messages_rejected": 0,
                         "processing_errors": 0}
        self._last_pair_time = time.monotonic()
        self._last_input_time = -float("inf")
        self._worker = threading.Thread(target=self._work, name="segmif_inference", daemon=True)
        self._worker.start()
        self._watchdog = self.create_timer(1.0, self._check_inputs)

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

    # ---------------------------------------------------------------- inputs
    def _reject(self, what: str) -> None:
        self.counters["messages_rejected"] += 1
        self.get_logger().warning(f"{what} (rejected so far: {self.counters['messages_rejected']})",
                                  throttle_duration_sec=5.0)

    def _on_image(self, index: int, msg: Image, info=None) -> None:
        self._last_input_time = time.monotonic()
        if index == 0 and info is not None and info.get("received_timestamp"):
            # both clocks are the system clock (ns); keyed by the stamp, read when the pair is
            # processed (bounded: old entries go with the queue)
            delay = (time.time_ns() - int(info["received_timestamp"])) / 1e6
            self._callback_delay[stamp_to_ns(msg.header.stamp)] = delay
            while len(self._callback_delay) > 64:
                self._callback_delay.pop(next(iter(self._callback_delay)))
        key = ("received_visible", "received_thermal")[index]
        self.counters[key] += 1
        allowed = (VISIBLE_ENCODINGS, THERMAL_ENCODINGS)[index]
        topic = ("visible", "thermal")[index]
        if msg.encoding not in allowed:
            self._reject(f"{topic} image with unsupported encoding {msg.encoding!r} "
                         f"(accepted: {', '.join(allowed)})")
            return
        if msg.height < 1 or msg.width < 1 or len(msg.data) < msg.step * msg.height:
            self._reject(f"{topic} image {msg.width}x{msg.height} step {msg.step} with only "
                         f"{len(msg.data)} bytes of data")
            return
        self.sync.add(index, msg)

    def _on_pair(self, vis: Image, ir: Image) -> None:
        self._last_pair_time = time.monotonic()
        with self._lock:
            self.counters["pairs_matched"] += 1
            if self._pending is not None:
                self.counters["pairs_dropped"] += 1
            self._pending = (vis, ir)
            self._lock.notify()

    def _check_inputs(self) -> None:
        now = time.monotonic()
        idle = now - self._last_pair_time
        inputs_active = now - self._last_input_time < self._no_pair_warn_s
        if idle > self._no_pair_warn_s and inputs_active:
            c = self.counters
            self.get_logger().warning(
                f"no visible/thermal pair for {idle:.0f} s (received visible {c['received_visible']}"
                f", thermal {c['received_thermal']}, rejected {c['messages_rejected']}): "
                f"{self.sync.diagnose()}",
                throttle_duration_sec=max(self._no_pair_warn_s, 5.0))

    # ---------------------------------------------------------------- processing
    def _work(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._lock.wait(0.5)
                if self._stop:
                    return
                pair, self._pending = self._pending, None
            try:
                self._process(*pair)
            except Exception as err:  # noqa: BLE001 - the node must survive any bad frame
                self.counters["processing_errors"] += 1
                self.get_logger().error(f"frame skipped: {type(err).__name__}: {err}",
                                        throttle_duration_sec=5.0)

    def _process(self, vis_msg: Image, ir_msg: Image) -> None:
        t0 = time.perf_counter()
        try:
            vis = to_rgb8(vis_msg)
            ir = to_thermal(ir_msg)
            t1 = time.perf_counter()
            if self.registration.is_identity and ir.shape[:2] != vis.shape[:2]:
                raise ValueError(
                    f"thermal {ir.shape[1]}x{ir.shape[0]} and visible {vis.shape[1]}x"
                    f"{vis.shape[0]} (WxH) differ and the homography is the identity: set the "
                    "homography parameter to how the thermal camera maps onto the visible one")
            on_device = self.predictor.backend.device_registration  # the CUDA path warps there
            if not on_device:
                vis, ir = self.registration.register(vis, ir)
                SegMiFPredictor.check_images(vis, ir)
        except ValueError as err:
            self._reject(f"pair refused: {err}")
            return
        t2 = time.perf_counter()
        pred = self.predictor.predict(vis, ir, self.registration if on_device else None)
        t3 = time.perf_counter()
        header = vis_msg.header
        self.outputs.publish_images(header, pred, self._alpha)
        t4 = time.perf_counter()
        self.counters["pairs_processed"] += 1
        stats = self.sync.stats()
        st = pred.stages_ms
        stages = {"convert": (t1 - t0) * 1e3, "registration": (t2 - t1) * 1e3,
                  "preprocess": st.get("thermal", 0.0) + st.get("resize", 0.0),
                  "postprocess": st.get("download", 0.0) + st.get("postprocess", 0.0),
                  "publish": (t4 - t3) * 1e3,
                  "callback_delay": self._callback_delay.get(stamp_to_ns(header.stamp), 0.0)}
        self.outputs.publish_info(header, ir_msg.header.stamp, pred, t0, self.counters,
                                  stats["messages_unmatched"], stages)
        if self._debug:
            self.get_logger().debug(
                "frame %d.%09d: " % (header.stamp.sec, header.stamp.nanosec)
                + ", ".join(f"{k} {v:.1f} ms" for k, v in {**stages, "network": pred.inference_ms,
                                                            "total": (t4 - t0) * 1e3}.items()))

    def destroy_node(self):
        worker = getattr(self, "_worker", None)  # absent when construction failed
        if worker is not None:
            with self._lock:
                self._stop = True
                self._lock.notify_all()
            worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of ``ros2 run segmif_ros segmif_node``."""
    rclpy.init(args=args)
    node = None
    try:
        node = SegMiFNode()
        rclpy.spin(node)
    except ConfigurationError as err:
        rclpy.logging.get_logger("segmif_node").fatal(str(err))
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
