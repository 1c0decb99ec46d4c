"""segmif_node: visible + thermal in, SegMiF fused image and semantic labels out.

A managed (lifecycle) node. With ``autostart`` (default true) it configures and activates
itself at start, so ``ros2 run`` / ``ros2 launch`` behave like a plain node; with
``autostart: false`` it waits in *unconfigured* for ``ros2 lifecycle set /segmif_node
configure`` (services ``segmif_node/change_state``, ``get_state``, ...):

configure   validates the parameters, loads the homography, the checkpoint (model on its
            device) and the class map, creates the publishers and the synchroniser, publishes
            segmentation/label_info. A failure leaves the node unconfigured, with one line.
activate    subscribes to the inputs and starts the inference worker (and reloads the model
            if deactivate released it).
deactivate  unsubscribes, stops the worker (the waiting frame is dropped) and releases the
            model's GPU memory (on CUDA the model is dropped and ``torch.cuda.empty_cache()``
            called; activate loads it again; on the CPU it stays loaded).
cleanup     drops the model, publishers and synchroniser (back to unconfigured).
shutdown    the same from any state (finalized).
/diagnostics is published in every state (level OK with "inactive" while not active).

Subscriptions (while active; relative names, remap them in launch): ``visible/image`` (rgb8,
bgr8, mono8, 8UC1) and ``thermal/image`` (mono8, 8UC1, mono16, 16UC1), QoS from ``input_qos``
(sensor data, best effort, depth ``queue_size``, by default; ``qos_overrides``: :mod:`.qos`),
or CompressedImage on ``<image topic>/compressed`` with ``input_transport: compressed``
(:mod:`.inputs`); the optional CameraInfo of the visible camera on the sibling of its image
topic after remapping (``/camera/color/image_raw`` -> ``/camera/color/camera_info``, image
transport's convention, :mod:`.topics`; :mod:`.camera_info`). Pairs are formed by
header stamp with an approximate-time policy (``slop`` s, ``queue_size`` per input; exact stamps
with ``approximate_sync: false``). Only the newest pair is processed: a matched pair that
is replaced by a newer one before the worker thread takes it is dropped and counted, so latency
cannot grow with a queue of stale frames. With ``fallback`` set, a lost camera does not stop the
output (see :mod:`.pipeline`).

Publications (QoS from ``output_qos``, reliable by default), all with the visible image's header
(acquisition stamp and frame_id, never now()):
    fused/image          sensor_msgs/Image bgr8, the fused image
    segmentation/labels  sensor_msgs/Image mono8, class id per pixel
    segmentation/color   sensor_msgs/Image bgr8, class colours over the fused image (for people)
    segmentation/info    segmif_ros/SegmentationInfo, per frame: classes, timings, counters
    segmentation/label_info  segmif_ros/LabelInfo, the class map (and the detector's
                         ``detection_classes``), once, transient local
    detections           segmif_ros/Detection2DArray (vision_msgs mirror), every processed
                         frame, boxes in pixels of the published images: only for a model with
                         a detector (TSJNet); with SegMiF the topic does not exist
    fused/camera_info, segmentation/camera_info  the latest visible CameraInfo, output header
    /diagnostics         diagnostic_msgs/DiagnosticArray, 1 Hz (:mod:`.diagnostics`)

Bad messages (unknown encoding, malformed data, size problems) are refused with a throttled
warning (one throttle per reason) and counted; the node never dies on a message. Bad parameters
stop the node with one line and exit code 1: wrong type or range at construction
(:mod:`.parameters`), homography, checkpoint, device or backend at configure.

Modules: parameters, inputs, sync, pipeline, publishers; health and diagnostics watch.
"""
from __future__ import annotations

import gc
from typing import Callable

import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import ClockChange, JumpThreshold
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.qos_overriding_options import InvalidQosOverridesError
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.lifecycle.node import LifecycleNodeMixin
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import Image

from segmif_core.checkpoint import CheckpointError
from segmif_core.inference import BackendError, SegMiFPredictor
from segmif_core.inference.onnx_export import ExportError
from segmif_core.registration import Registration, RegistrationError
from segmif_core.registration_health import RegistrationMonitor

from .diagnostics import Diagnostics, Progress
from .encodings import THERMAL_ENCODINGS, VISIBLE_ENCODINGS
from .health import STREAMS, Health, Throttle
from .camera_info import CameraInfoRelay
from .inputs import check_raw, decode_compressed, note_callback_delay, subscribe_inputs
from .qos import subscription_options
from .topics import input_topics
from .parameters import (ConfigurationError, declare_parameters, describe_qos,
                         dynamic_parameter_error, qos_profile)
from .pipeline import FALLBACKS, Frame, FrameProcessor, Worker
from .publishers import Outputs
from .sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, stamp_to_ns
from .watch import WatchMixin

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class SegMiFNode(WatchMixin, LifecycleNode):
    """The SegMiF ROS 2 node (see the module docstring).

    Args:
        name: node name; ``kwargs``: those of ``rclpy.node.Node`` (context, cli_args,
            parameter_overrides, ...).
        predictor_factory: builds the model at configure (and at activate after a release):
            called as ``SegMiFPredictor(checkpoint, device, input_size, backend=..., **options)``
            and returning one; :class:`SegMiFPredictor` by default. An application passes its
            own to wrap or cache the model.
        autostart_deferred: with ``autostart``, False (default): configure and activate in the
            constructor; True (:func:`.runner.main`): once an executor spins the node, so that
            the lifecycle services, parameters and /diagnostics answer during a slow first
            configure (a failure then logs one line and sets :attr:`finished` to 1).

    The lifecycle services are in a reentrant callback group of their own: under a
    ``MultiThreadedExecutor`` (:func:`.runner.main`) ``get_state`` answers, and the node's other
    callbacks (default group: inputs, timers, parameters) run, while a transition is in
    progress (:attr:`progress` on /diagnostics). :attr:`finished` (an rclpy Future) gets the
    process's exit code: 0 after the shutdown transition, 1 after a failed deferred autostart.

    Raises ConfigurationError (one line) on a parameter of the wrong type or out of range, and,
    with ``autostart`` in the constructor, when configure fails (homography, checkpoint,
    device, backend).
    """

    def __init__(self, name: str = "segmif_node", *,
                 predictor_factory: Callable[..., SegMiFPredictor] = SegMiFPredictor,
                 autostart_deferred: bool = False, **kwargs):
        Node.__init__(self, name, **kwargs)
        self._lifecycle_group = ReentrantCallbackGroup()
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True,
                                    callback_group=self._lifecycle_group)
        self._predictor_factory = predictor_factory
        self.finished = Future()
        self.progress = Progress()
        self.p = p = declare_parameters(self)
        self._debug = self.get_logger().get_effective_level() <= LoggingSeverity.DEBUG
        self._alpha = float(p["overlay_alpha"])
        self._compressed = p["input_transport"] == "compressed"
        self._no_pair_warn_s = float(p["no_pair_warn_s"])
        self._fallback = FALLBACKS[p["fallback"]]  # modality published when a stream is lost
        self._fallback_input = {"visible_only": 0, "thermal_only": 1}.get(self._fallback)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.state = "unconfigured"
        self.predictor = self.registration = self.sync = self.outputs = self.frames = None
        self.monitor = None  # registration health (configure; None: checks off)
        self.worker = self.sub_vis = self.sub_ir = self._watchdog = self._time_jump = None
        self.configure_error = ""
        self._quiet = False  # autostart: configure errors go to the caller (one line)
        # counters and stream state, shared by the executor thread and the worker (locked)
        self.health = Health(stream_timeout_s=float(p["stream_timeout_s"]))
        self._throttle = Throttle(5.0)  # log lines: one per key (reason, stream) per 5 s
        self.diagnostics = Diagnostics(self)
        self._diag_timer = self.create_timer(1.0, self.publish_diagnostics)
        self._autostart_timer = None
        if p["autostart"] and autostart_deferred:
            self._autostart_timer = self.create_timer(
                0.01, self._autostart, callback_group=MutuallyExclusiveCallbackGroup())
        elif p["autostart"]:
            self._quiet = True
            try:
                if self.trigger_configure() != SUCCESS:
                    raise ConfigurationError(self.configure_error)
            finally:
                self._quiet = False
            self.trigger_activate()

    # ---------------------------------------------------------------- lifecycle
    def _autostart(self) -> None:
        """``autostart_deferred``: configure and activate, once, from the executor."""
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        self._autostart_timer = None
        if self.state != "unconfigured":  # a lifecycle manager was faster
            return
        self._quiet = True
        try:
            configured = self.trigger_configure() == SUCCESS
        finally:
            self._quiet = False
        if not configured:
            self.get_logger().fatal(f"cannot start: {self.configure_error}")
            if not self.finished.done():
                self.finished.set_result(1)
            return
        self.trigger_activate()

    def _step(self, text: str) -> None:
        """A slow step of a transition (the ONNX export, the int8 quantisation): logged and
        shown on /diagnostics until the next step or the end of the transition."""
        self.progress.step(text)
        self.get_logger().info(text)

    def _load_predictor(self) -> None:
        p = self.p
        size = (p["input_height"], p["input_width"])
        if p["threads"]:  # every backend: torch runs the network (backend torch, or auto's
            # fallback) and the pre- and post-processing of the others
            torch.set_num_threads(int(p["threads"]))
        kwargs = dict(
            thermal_norm=p["thermal_norm"], thermal_range=(p["thermal_min"], p["thermal_max"]),
            thermal_percentiles=(p["thermal_percentile_low"], p["thermal_percentile_high"]),
            precision=p["precision"], threads=int(p["threads"]),
            # an exported .onnx file has its fusion_scale built in
            fusion_scale=None if str(p["checkpoint"]).lower().endswith(".onnx")
            else p["fusion_scale"] or None, log=self._step,
            int8_calibration=p["int8_calibration"] or None)
        args = (p["checkpoint"] or None, p["device"], size if all(size) else None)
        self._step(f"loading the model ({p['checkpoint'] or 'default checkpoint'}, backend "
                   f"{p['backend']}, {p['device']})")
        try:
            self.predictor = self._predictor_factory(*args, backend=p["backend"], **kwargs)
        except ExportError as err:
            if p["backend"] != "auto":
                raise BackendError(str(err)) from err
            # 'auto' chose ONNX Runtime but the model cannot be exported (TSJNet: its detector's
            # boxes have no place in the graph): the torch backend runs it, detections included
            self._step(f"backend auto: {err}; using the torch backend")
            self.predictor = self._predictor_factory(*args, backend="torch", **kwargs)
        if self.frames is not None:
            self.frames.predictor = self.predictor

    def on_configure(self, state) -> TransitionCallbackReturn:
        """Homography, model, publishers, synchroniser; FAILURE (one line) on bad values."""
        self.state = "configuring"
        self.progress.begin("configuring")
        try:
            result = self._configure()
        finally:
            self.progress.end()
        if result != SUCCESS:
            self.state = "unconfigured"
        return result

    def _configure(self) -> TransitionCallbackReturn:
        p = self.p
        try:
            self.registration = Registration(p["homography"], crop=p["crop"])
            self._load_predictor()
            self._in_qos = qos_profile(p["input_qos"], int(p["queue_size"]))
            out_qos = qos_profile(p["output_qos"], 5)
        except (RegistrationError, CheckpointError, BackendError, ValueError) as err:
            self.configure_error = str(err)
            self.predictor = self.registration = None
            if not self._quiet:
                self.get_logger().error(f"configure failed: {err}")
            return FAILURE
        sync_kw = {"names": STREAMS,  # reset log lines: at most one per 5 s
                   "log": lambda line: self._warn("sync_reset", line)}
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
        try:
            self.outputs = Outputs(self, self.predictor.classes, out_qos,
                                   self.predictor.detection_classes, warn=self._warn)
        except (InvalidQosOverridesError, ParameterException, ValueError) as err:
            self._clean()
            self.configure_error = f"QoS overrides of the outputs: {err}"
            if not self._quiet:
                self.get_logger().error(f"configure failed: {self.configure_error}")
            return FAILURE
        self.outputs.camera_info = CameraInfoRelay(self, out_qos, self.registration.crop_box,
                                                   self.outputs.create_publisher)
        self.class_names = self.outputs.class_names
        every = int(p["registration_check_every"])
        self.monitor = RegistrationMonitor(
            every, int(p["registration_check_size"]), int(p["registration_baseline_checks"]),
            float(p["registration_warn_score_ratio"]), float(p["registration_warn_shift_px"]),
            int(p["registration_warn_checks"]),
            search_px=float(p["registration_search_px"])) if every else None
        self.frames = FrameProcessor(self.predictor, self.registration, self.outputs,
                                     self.health, self.sync, self._reject,
                                     self.get_logger().debug if self._debug else None,
                                     self.monitor)
        info = self.predictor.info
        self.get_logger().info(
            f"model {info.get('model')} {info.get('config', {}).get('encoder', '')} on "
            f"{self.predictor.device} ({self.predictor.backend.name}), input "
            f"{self.predictor.input_size[1]}x{self.predictor.input_size[0]}, "
            f"{len(self.class_names)} classes"
            + (f", detector ({', '.join(self.predictor.detection_classes)}) on detections"
               if self.predictor.detection_classes else "") + f", checkpoint {p['checkpoint'] or 'default'}; "
            f"outputs QoS {describe_qos(self.outputs.pub_fused.qos_profile)}; sync "
            f"{'approximate, slop %.3f s' % p['slop'] if p['approximate_sync'] else 'exact'}"
            f", queue {p['queue_size']}; homography "
            f"{'identity' if self.registration.is_identity else 'set'}; fallback "
            f"{p['fallback']}")
        self.state = "inactive"
        return SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Subscribe and start the worker (the model is loaded again if deactivate dropped it)."""
        if self.predictor is None:
            self.progress.begin("activating")
            try:
                self._load_predictor()
            except (CheckpointError, BackendError, ValueError) as err:
                self.get_logger().error(f"activate failed: {err}")
                return FAILURE
            finally:
                self.progress.end()
        self.health.start()
        self.worker = Worker(self._handle)
        # (msg, info) callbacks: rclpy passes the rmw message info, whose received_timestamp
        # gives the time each message waited for the executor (callback_delay_ms)
        topics = input_topics(self.resolve_topic_name, self._compressed)
        try:
            self.sub_vis, self.sub_ir = subscribe_inputs(self, topics, self._compressed,
                                                         self._in_qos, self._on_image,
                                                         self._warn)
            self.outputs.camera_info.start(
                topics["camera_info"], self._in_qos,
                lambda msg_type, topic, callback, qos: self.create_subscription(
                    msg_type, topic, callback, **subscription_options(self, topic, qos,
                                                                      self._warn)))
        except (InvalidQosOverridesError, ParameterException, ValueError) as err:
            self.get_logger().error(f"activate failed: QoS overrides: {err}")
            return self._stop_processing() or FAILURE
        self._watchdog = self.create_timer(0.5, self._check_inputs)  # stream loss within 2 s
        self.get_logger().info(
            f"active: inputs ({'CompressedImage' if self._compressed else 'Image'}) "
            + ", ".join(f"{s.topic_name} QoS {describe_qos(s.qos_profile)}"
                        for s in (self.sub_vis, self.sub_ir))
            + f"; camera_info {self.outputs.camera_info.sub.topic_name} (optional)")
        self.state = "active"
        return super().on_activate(state)

    def _stop_processing(self) -> None:
        if self.outputs is not None and self.outputs.camera_info is not None:
            self.outputs.camera_info.stop()
        for sub in ("sub_vis", "sub_ir"):
            if getattr(self, sub) is not None:
                self.destroy_subscription(getattr(self, sub))
                setattr(self, sub, None)
        if self._watchdog is not None:
            self.destroy_timer(self._watchdog)
            self._watchdog = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def release_model(self) -> bool:
        """Free the model's GPU memory: on CUDA the predictor is dropped and the CUDA cache
        emptied (True); on the CPU nothing is done (False)."""
        if self.predictor is None or self.predictor.device.type != "cuda":
            return False
        self.predictor = None
        if self.frames is not None:
            self.frames.predictor = None
        gc.collect()
        torch.cuda.empty_cache()
        return True

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker, release the GPU memory."""
        self._stop_processing()
        if self.release_model():
            self.get_logger().info("inactive: model released from the GPU")
        self.state = "inactive"
        return super().on_deactivate(state)

    def _clean(self) -> None:
        self._stop_processing()
        if self.outputs is not None:
            self.outputs.destroy()
        if self._time_jump is not None:
            self._time_jump.unregister()
        self.release_model()
        self.predictor = self.registration = self.sync = self.outputs = self.frames = None
        self._time_jump = self.monitor = None

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Drop the model, publishers and synchroniser."""
        self._clean()
        self.state = "unconfigured"
        return SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """Clean up from any state; :attr:`finished` gets 0 (:func:`.runner.main` then exits,
        after the transition's service response has gone out)."""
        self._clean()
        self.state = "finalized"
        if not self.finished.done():
            self.finished.set_result(0)
        return SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        """A transition raised: clean up and go back to unconfigured."""
        self._clean()
        self.state = "unconfigured"
        return SUCCESS

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

    def _on_image(self, index: int, msg: Image, info=None) -> None:
        # a transition in another thread may tear these down while a callback is in flight
        frames, sync, worker = self.frames, self.sync, self.worker
        if frames is None or sync is None or worker is None:
            return
        self.health.received(index, stamp_to_ns(msg.header.stamp))
        if index == 0:
            note_callback_delay(frames.callback_delay, msg, info)
        if self._compressed:
            msg, refused = decode_compressed(msg, index)
        else:
            refused = check_raw(msg, (VISIBLE_ENCODINGS, THERMAL_ENCODINGS)[index],
                                STREAMS[index])
        if refused is not None:  # on arrival: a bad message never takes a valid partner
            self._reject(*refused)
            return
        if index == 0:
            frames.last_visible = (msg.header.frame_id, msg.height, msg.width)
        sync.add(index, msg)
        if index == self._fallback_input and self.health.lost(1 - index):
            # the other camera is lost: this image alone, with the documented substitute
            frame = Frame(self._fallback, msg, None) if index == 0 else \
                Frame(self._fallback, None, msg)
            if worker.submit(frame):
                self.health.add("pairs_dropped")

    def _on_pair(self, vis: Image, ir: Image) -> None:
        self.health.add("pairs_matched")
        worker = self.worker
        if worker is not None and worker.submit(Frame("pair", vis, ir)):
            self.health.add("pairs_dropped")

    def modality(self) -> str:
        """What the node publishes now: "pair", or the fallback modality while the other
        stream is lost."""
        if self._fallback_input is not None and self.health.lost(1 - self._fallback_input) \
                and not self.health.lost(self._fallback_input):
            return self._fallback
        return "pair"

    # ---------------------------------------------------------------- processing
    def _handle(self, frame: Frame) -> None:
        """The worker's handler: process one frame; never raises (errors counted, logged)."""
        frames = self.frames
        if frames is None:
            return
        try:
            frames.process(frame, self._alpha)
        except Exception as err:  # noqa: BLE001 - the node must survive any bad frame
            failures = self.health.failed()
            if self._throttle("processing_error") is not None:
                self.get_logger().error(f"frame skipped ({failures} failures in a row): "
                                        f"{type(err).__name__}: {err}")

    def destroy_node(self):
        if getattr(self, "_autostart_timer", None) is not None:
            self.destroy_timer(self._autostart_timer)
            self._autostart_timer = None
        if getattr(self, "_diag_timer", None) is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if getattr(self, "state", "finalized") != "finalized":
            self._clean()
        return super().destroy_node()

