"""One frame through segmif_node: messages -> numpy -> registration -> predictor -> outputs,
and the worker thread that processes only the newest frame.

A :class:`Frame` is a visible/thermal pair, or, with the ``fallback`` parameter set and one
stream lost, a single modality whose missing image is replaced by a documented substitute:

``visible_only`` (``fallback: visible``, thermal lost)
    thermal = zeros (a blank, "cold" thermal image) of the visible size; the visible image goes
    through the registration's crop as usual. Output header: the visible image's.
``thermal_only`` (``fallback: thermal``, visible lost)
    the thermal image is warped onto the visible camera (the homography, at the size of the last
    visible image seen; the thermal size before any) and cropped; visible = that image scaled to
    8 bits by the node's thermal rule (``thermal_norm``, as the network sees it) and replicated
    to three channels (gray). Output header: the thermal stamp with the last visible frame_id
    (the thermal frame_id before any visible image).

Frames are flagged in segmentation/info (``modality``) and counted as ``frames_fallback``.

Every ``registration_check_every``-th pair the registered images also go to the registration
health monitor (:class:`segmif_core.registration_health.RegistrationMonitor`), before the
network; its state travels in segmentation/info and on /diagnostics.
No rclpy import here (the messages are duck-typed), so the substitutes are unit tested alone.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from segmif_core.data.thermal import normalize_thermal, to_uint8
from segmif_core.inference import SegMiFPredictor
from segmif_core.registration_health import HealthError

from .encodings import to_rgb8, to_thermal
from .sync import stamp_to_ns

MODALITIES = ("pair", "visible_only", "thermal_only")
FALLBACKS = {"none": None, "visible": "visible_only", "thermal": "thermal_only"}


class Frame(NamedTuple):
    """What the worker processes: ``modality`` (one of :data:`MODALITIES`) and the messages
    (``vis`` None for thermal_only, ``ir`` None for visible_only)."""
    modality: str
    vis: object
    ir: object


class SizeMismatch(ValueError):
    """Thermal and visible sizes differ while the homography is the identity."""


def blank_thermal(vis: np.ndarray) -> np.ndarray:
    """The visible-only substitute: an HxW uint8 zero image of the visible size."""
    return np.zeros(vis.shape[:2], np.uint8)


def thermal_as_visible(ir: np.ndarray, predictor) -> np.ndarray:
    """The thermal-only substitute: the registered thermal image ``ir`` (HxW uint8/uint16) in 8
    bits by the predictor's thermal rule, as an HxWx3 uint8 gray image."""
    gray = to_uint8(normalize_thermal(ir, predictor.thermal_norm, *predictor.thermal_percentiles,
                                      *predictor.thermal_range))
    return np.repeat(gray[:, :, None], 3, axis=2)


def _error(convert, msg) -> Optional[ValueError]:
    """The ValueError ``convert(msg)`` raises, None when it converts (or ``msg`` is None)."""
    if msg is None:
        return None
    try:
        convert(msg)
    except ValueError as err:
        return err
    return None


class FrameProcessor:
    """Processes frames and publishes their outputs.

    Args:
        predictor: SegMiFPredictor; registration: segmif_core Registration; outputs: the node's
        :class:`.publishers.Outputs`; health: :class:`.health.Health`; sync: the synchroniser
        (stats for segmentation/info); reject: ``reject(reason, text)`` for refused frames;
        debug: ``debug(text)`` for per-frame timings, or None; monitor: a
        ``RegistrationMonitor`` checking pairs, or None (checks off).
    """

    def __init__(self, predictor, registration, outputs, health, sync,
                 reject: Callable[[str, str], None], debug: Optional[Callable[[str], None]],
                 monitor=None):
        self.predictor, self.registration, self.outputs = predictor, registration, outputs
        self.health, self.sync, self._reject, self._debug = health, sync, reject, debug
        self.monitor = monitor
        self.callback_delay = {}  # visible stamp (ns) -> DDS receipt to callback (ms)
        self.last_visible = None  # (frame_id, height, width) of the last visible image seen

    def _images(self, frame: Frame):
        """(header, vis, ir, registration for predict, time.perf_counter() after the
        conversion) of a frame; ValueError if refused."""
        reg = self.registration
        if frame.modality == "thermal_only":
            ir = to_thermal(frame.ir)
            t_conv = time.perf_counter()
            header = copy.deepcopy(frame.ir.header)
            size = ir.shape[:2]
            if self.last_visible is not None:
                header.frame_id = self.last_visible[0]
                size = self.last_visible[1:]
            if reg.is_identity and ir.shape[:2] != size:
                raise SizeMismatch(f"thermal {ir.shape[1]}x{ir.shape[0]} and the last visible "
                                   f"{size[1]}x{size[0]} (WxH) differ and the homography is "
                                   "the identity")
            _, ir = reg.register(np.zeros((*size, 3), np.uint8), ir)
            return header, thermal_as_visible(ir, self.predictor), ir, None, t_conv
        vis = to_rgb8(frame.vis)
        ir = blank_thermal(vis) if frame.modality == "visible_only" else to_thermal(frame.ir)
        t_conv = time.perf_counter()
        if reg.is_identity and ir.shape[:2] != vis.shape[:2]:
            raise SizeMismatch(
                f"thermal {ir.shape[1]}x{ir.shape[0]} and visible {vis.shape[1]}x"
                f"{vis.shape[0]} (WxH) differ and the homography is the identity: set the "
                "homography parameter to how the thermal camera maps onto the visible one")
        if self.predictor.backend.device_registration:  # the CUDA path warps on the device
            return frame.vis.header, vis, ir, reg, t_conv
        vis, ir = reg.register(vis, ir)
        SegMiFPredictor.check_images(vis, ir)
        return frame.vis.header, vis, ir, None, t_conv

    def process(self, frame: Frame, alpha: float) -> bool:
        """Convert, register, predict and publish one frame (colour overlay weight ``alpha``).
        Returns False when the frame was refused (counted as rejected, reason size_mismatch or
        invalid); other exceptions propagate (the worker counts them as processing errors)."""
        t0 = time.perf_counter()
        try:
            header, vis, ir, on_device, t1 = self._images(frame)
        except SizeMismatch as err:
            self._reject("size_mismatch", f"{frame.modality} refused: {err}")
            return False
        except ValueError as err:
            # each bad message of the frame is counted (a pair of two bad ones: 2)
            bad = [(name, e) for name, e in (("visible", _error(to_rgb8, frame.vis)),
                                               ("thermal", _error(to_thermal, frame.ir))) if e]
            for name, e in bad or [("frame", err)]:
                self._reject("invalid", f"{frame.modality} refused: {name}: {e}")
            return False
        if frame.modality == "pair" and self.monitor is not None and self.monitor.due():
            self._check_registration(vis, ir, on_device)
        t2 = time.perf_counter()
        pred = self.predictor.predict(vis, ir, on_device)
        t3 = time.perf_counter()
        self.outputs.publish_images(header, pred, alpha)
        t4 = time.perf_counter()
        self.health.processed(pred.inference_ms, (t4 - t0) * 1e3,
                              fallback=frame.modality != "pair")
        st = pred.stages_ms
        stages = {"convert": (t1 - t0) * 1e3, "registration": (t2 - t1) * 1e3,
                  "preprocess": st.get("thermal", 0.0) + st.get("resize", 0.0),
                  "postprocess": st.get("download", 0.0) + st.get("postprocess", 0.0),
                  "publish": (t4 - t3) * 1e3,
                  "callback_delay": self.callback_delay.get(stamp_to_ns(header.stamp), 0.0)}
        thermal_stamp = frame.ir.header.stamp if frame.ir is not None else header.stamp
        self.outputs.publish_info(header, thermal_stamp, pred, t0,
                                  self.health.snapshot()["counters"], self.sync.stats(), stages,
                                  frame.modality, self.monitor.status()
                                  if self.monitor is not None else None)
        if self._debug is not None:
            self._debug("%s %d.%09d: " % (frame.modality, header.stamp.sec, header.stamp.nanosec)
                        + ", ".join(f"{k} {v:.1f} ms" for k, v in {
                            **stages, "network": pred.inference_ms,
                            "total": (t4 - t0) * 1e3}.items()))
        return True


    def _check_registration(self, vis, ir, on_device) -> None:
        """One registration health check (the CUDA path registers on the device: the check
        warps on the CPU itself); an image the check cannot use is skipped (debug line)."""
        try:
            if on_device is not None:
                vis, ir = on_device.register(vis, ir)
            self.monitor.update(vis, ir)
        except HealthError as err:
            if self._debug is not None:
                self._debug(f"registration check skipped: {err}")


class Worker:
    """The inference thread: :meth:`submit` replaces the waiting frame (newest wins), the thread
    hands each frame to ``handle(frame)``. ``handle`` must not raise."""

    def __init__(self, handle: Callable[[Frame], None], name: str = "segmif_inference"):
        self._handle = handle
        self.lock = threading.Condition()
        self.pending: Optional[Frame] = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, frame: Frame) -> bool:
        """Queue ``frame``; returns True when it replaced a frame not yet taken (dropped)."""
        with self.lock:
            replaced = self.pending is not None
            self.pending = frame
            self.lock.notify()
        return replaced

    def _run(self) -> None:
        while True:
            with self.lock:
                while self.pending is None and not self._stop:
                    self.lock.wait(0.5)
                if self._stop:
                    return
                frame, self.pending = self.pending, None
            self._handle(frame)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (after the frame in progress) and drop the waiting frame."""
        with self.lock:
            self._stop = True
            self.pending = None
            self.lock.notify_all()
        self._thread.join(timeout=timeout)
