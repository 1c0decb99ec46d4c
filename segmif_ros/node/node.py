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
shutdown    the same from any state (finalized); :func:`.runner.main` then exits (code 0).
/diagnostics is published in every state (level OK with "inactive" while not active), and
during a transition with its step (:class:`.diagnostics.Progress`). Under ``main`` the
autostart runs on a multi-threaded executor, so the lifecycle services answer meanwhile.

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

Publications (:mod:`.publishers`; QoS from ``output_qos``, reliable by default), all with the
visible image's header (acquisition stamp and frame_id, never now()): ``fused/image``,
``segmentation/labels``, ``segmentation/color``, ``segmentation/info`` (per frame: classes,
timings, counters, registration health), ``segmentation/label_info`` (once, transient local),
``fused/camera_info`` and ``segmentation/camera_info``, ``detections`` (models with a
detector: the boxes scoring at least ``detection_min_score``; vision_msgs types when
importable, :mod:`.detections`), and ``/diagnostics`` at 1 Hz (:mod:`.diagnostics`).
Robot-side conventions: docs/robot.md.

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

from segmif_core.checkpoint import CheckpointError
from segmif_core.inference import BackendError, SegMiFPredictor
from segmif_core.registration import Registration, RegistrationError

from .detections import message_types
from .diagnostics import Diagnostics, Progress
from .health import STREAMS, Health, Throttle
from .camera_info import CameraInfoRelay
from .model import build_monitor, build_predictor, start_up_line
from .params_check import warn_unknown_parameters
from .inputs import subscribe_inputs
from .qos import subscription_options
from .topics import input_topics
from .parameters import (ConfigurationError, declare_parameters, describe_qos,
                         dynamic_parameter_error, qos_profile)
from .pipeline import FALLBACKS, FrameProcessor, Worker
from .publishers import Outputs
from .sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer
from .intake import IntakeMixin
from .watch import WatchMixin

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class SegMiFNode(IntakeMixin, WatchMixin, LifecycleNode):
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
    ``MultiThreadedExecutor`` (:func:`.runner.main`, until the first configure has ended)
    ``get_state`` answers, and the node's other callbacks (default group: inputs, timers,
    parameters) run, while a transition is in progress (:attr:`progress` on /diagnostics).
    :attr:`started` (an rclpy Future) is done once the first configure (the autostart's
    configure and activate, or a lifecycle manager's configure) has ended, or the node has
    finished; :attr:`finished` gets the process's exit code: 0 after the shutdown transition,
    1 after a failed deferred autostart.

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
        self.started = Future()
        self.progress = Progress()
        self.p = p = declare_parameters(self)
        warn_unknown_parameters(self)  # a misspelt name in a params file, -p or an override
        self._debug = self.get_logger().get_effective_level() <= LoggingSeverity.DEBUG
        self._alpha = float(p["overlay_alpha"])
        self._min_score = float(p["detection_min_score"])
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
            self._mark_started()

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
            self._mark_started()
            return
        self.trigger_activate()
        self._mark_started()

    def _mark_started(self) -> None:
        """:attr:`started` done: the first configure (the autostart's configure and activate, or
        a lifecycle manager's configure) has ended, or the node is finished."""
        if not self.started.done():
            self.started.set_result(True)

    def _step(self, text: str) -> None:
        """A slow step of a transition (the ONNX export, the int8 quantisation): logged and
        shown on /diagnostics until the next step or the end of the transition."""
        self.progress.step(text)
        self.get_logger().info(text)

    def _load_predictor(self) -> None:
        self.predictor = build_predictor(self.p, self._predictor_factory, self._step)
        # the model's own selection threshold (what evaluation uses) is the floor
        self._det_floor = getattr(self.predictor, "detection_score_threshold", None)
        self._apply_min_score()
        if self.frames is not None:
            self.frames.predictor = self.predictor

    def _apply_min_score(self) -> None:
        """Boxes below ``detection_min_score`` are never published, so the detector's box
        selection starts there (the published boxes are the same, NMS is faster:
        ``SegMiFPredictor.detection_score_threshold``), never below the model's own."""
        floor = getattr(self, "_det_floor", None)
        if self.predictor is not None and floor is not None:
            self.predictor.detection_score_threshold = max(floor, self._min_score)

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
        elif not self._quiet:  # a lifecycle manager's configure (the autostart marks its own end)
            self._mark_started()
        return result

    def _configure(self) -> TransitionCallbackReturn:
        p = self.p
        try:
            self.registration = Registration(p["homography"], crop=p["crop"])
            types, messages = message_types(p["detection_messages"])
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
                                   self.predictor.detection_classes, warn=self._warn,
                                   types=types, min_score=self._min_score)
        except (InvalidQosOverridesError, ParameterException, ValueError) as err:
            self._clean()
            self.configure_error = f"QoS overrides of the outputs: {err}"
            if not self._quiet:
                self.get_logger().error(f"configure failed: {self.configure_error}")
            return FAILURE
        self.outputs.camera_info = CameraInfoRelay(self, out_qos, self.registration.crop_box,
                                                   self.outputs.create_publisher)
        self.class_names = self.outputs.class_names
        self.monitor = build_monitor(p)
        self.frames = FrameProcessor(self.predictor, self.registration, self.outputs,
                                     self.health, self.sync, self._reject,
                                     self.get_logger().debug if self._debug else None,
                                     self.monitor)
        self.get_logger().info(start_up_line(p, self.predictor, self.registration, describe_qos(
            self.outputs.pub_fused.qos_profile), messages))
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
        self._mark_started()
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
            elif prm.name == "detection_min_score":
                self._min_score = float(prm.value)
                if self.outputs is not None:
                    self.outputs.min_score = self._min_score
                self._apply_min_score()
        return SetParametersResult(successful=True)

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

