"""Execution backends of ``SegMiFPredictor``: torch (eager, optionally compiled) and ONNX Runtime.

A backend takes one camera-sized pair, visible ``vis`` (H, W, 3) uint8 RGB and registered thermal
``ir01`` (H, W) float32 in [0, 1], resizes it to the network input size h x w, runs the whole
model and returns ``Outputs``: fused (H, W, 3) uint8 RGB at the camera's size, labels (h, w)
uint8, confidence (h, w) float32, the time of each stage in ms, and for a model with a detector
(TSJNet) its detections with boxes in camera pixels.

- ``TorchBackend``: a checkpoint (.pt) on cpu or cuda. On the host (cpu), resizing is OpenCV's
  (area when shrinking). On a CUDA device the pair is copied once into pinned host buffers
  (reused across frames of one size), uploaded without blocking, resized (bilinear with
  antialiasing) and normalised there; the model runs in channels_last, optionally under autocast
  (fp16 / bf16) and ``torch.compile``; the only synchronisation is the download of the outputs,
  and the network's time comes from CUDA events.
- ``OnnxRuntimeBackend``: a ready .onnx file written by ``segmif export --onnx``
  (``inference.onnx_export``) with the CPU, CUDA or TensorRT execution provider; its inputs
  from ``onnx_io.graph_feed`` (resizing as for the torch CPU path); for a model with a detector
  (TSJNet) the graph's per-location boxes and scores are selected in numpy
  (``inference.detections``) and scaled to camera pixels.

Layers of ``segmif_core.inference`` (each imports only those above it in this list):
``onnx_io``, ``detections`` -> ``backends`` -> ``onnx_export``, ``onnx_quantize`` ->
``onnx_cache`` -> ``factory`` (backend choice, export / quantisation of a .pt checkpoint for
ONNX Runtime) -> ``predictor``. Backends never export or quantise.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointError, load_checkpoint
from ..data.classes import ClassSet
from .detections import select_detections
from .onnx_io import (DETECTION_OUTPUT_NAMES, INPUT_NAMES, METADATA_KEY, ONNX_FORMAT,
                      graph_feed, resize_host)
from ..choices import check_choice

BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16")     # the torch backend's
ORT_PRECISIONS = ("fp32", "int8")         # ONNX Runtime's (int8: ``onnx_quantize``)
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


class BackendError(ValueError):
    """A backend cannot be built: package missing, wrong file, unsupported option."""


@dataclass
class Outputs:
    fused: np.ndarray        # (H, W, 3) uint8
    labels: np.ndarray       # (h, w) uint8
    confidence: np.ndarray   # (h, w) float32
    stages_ms: dict = field(default_factory=dict)  # resize, network, download (ms)
    # models with a detector: {'boxes' (D, 4) float32 x1 y1 x2 y2 camera pixels, 'scores' (D,)
    # float32, 'classes' (D,) int64}; None otherwise (download includes their selection)
    detections: dict | None = None


def set_fusion_scale(model, scale: float) -> bool:
    """Set SegMiF's ``fusion_scale`` on a built model; returns False (and changes nothing) for
    a model without one (no fusion network: the baselines). ValueError if out of (0, 1]."""
    if not 0.0 < float(scale) <= 1.0:
        raise ValueError(f"fusion_scale must be in (0, 1], got {scale}")
    if not hasattr(model.config, "fusion_scale"):
        return False
    model.config.fusion_scale = float(scale)
    return True


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


class TorchBackend:
    """The checkpoint in PyTorch. Args: checkpoint (path or None = shipped), device
    (torch.device), precision ('fp32' | 'fp16' | 'bf16'; fp16 only on CUDA), compile
    (torch.compile the model), fusion_scale (override, see ``SegMiFConfig``),
    device_preprocess (resize and normalise with torch on the device; default: on CUDA only;
    on the CPU it runs the CUDA path's code without pinning, which the tests use).
    Raises CheckpointError / BackendError."""

    name = "torch"

    def __init__(self, checkpoint, device: torch.device, precision: str = "fp32",
                 compile: bool = False, fusion_scale: float | None = None,
                 device_preprocess: bool | None = None):
        check_choice("precision", precision, PRECISIONS, BackendError)
        if precision == "fp16" and device.type != "cuda":
            raise BackendError("precision fp16 needs a CUDA device (use bf16 or fp32 on cpu)")
        self.device, self.precision = device, precision
        self.model, self.classes, self.info = load_checkpoint(checkpoint, device)
        if fusion_scale is not None:
            set_fusion_scale(self.model, fusion_scale)
        self.min_size = self.model.min_size
        self.fixed_size = None            # any network input size works
        self.detection_classes = tuple(getattr(self.model, "detection_classes", ()) or ())
        self.cuda = device.type == "cuda"
        self.device_preprocess = self.cuda if device_preprocess is None else bool(device_preprocess)
        if self.device_preprocess:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._forward = self.model.predict
        if compile:
            self._forward = torch.compile(self.model.predict, dynamic=False,
                                          mode="reduce-overhead" if self.cuda else None)
        self._pinned: dict = {}

    # -- the host path (cpu) --------------------------------------------------------------
    def _host_inputs(self, vis, ir01, size):
        t0 = time.perf_counter()
        vis_in, ir_in = resize_host(vis, size), resize_host(ir01, size)
        vis_t = torch.from_numpy(np.ascontiguousarray(vis_in)).permute(2, 0, 1)[None].float()
        vis_t = vis_t.mul_(1.0 / 255.0)
        ir_t = torch.from_numpy(np.ascontiguousarray(ir_in, np.float32))[None, None]
        full = None
        if vis.shape[:2] != tuple(size):
            full = (torch.from_numpy(vis).permute(2, 0, 1)[None].float().mul_(1.0 / 255.0),
                    torch.from_numpy(np.ascontiguousarray(ir01, np.float32))[None, None])
        return vis_t, ir_t, full, _ms(t0)

    # -- the device path (cuda) -----------------------------------------------------------
    def _upload(self, key, arr: np.ndarray) -> torch.Tensor:
        if not self.cuda:
            return torch.from_numpy(arr)
        buf = self._pinned.get(key)
        if buf is None or tuple(buf.shape) != arr.shape or buf.numpy().dtype != arr.dtype:
            buf = torch.from_numpy(np.empty_like(arr)).pin_memory()
            self._pinned[key] = buf
        np.copyto(buf.numpy(), arr)
        return buf.to(self.device, non_blocking=True)

    def _device_inputs(self, vis, ir01, size, registration=None):
        t0 = time.perf_counter()
        vis_hi = self._upload("vis", vis).permute(2, 0, 1)[None].float().div_(255.0)
        ir_hi = self._upload("ir", np.ascontiguousarray(ir01, np.float32))[None, None]
        if registration is not None:  # thermal (its own size) onto the visible camera, crop
            ir_hi = registration.crop_torch(registration.warp_thermal_torch(ir_hi, vis.shape[:2]))
            vis_hi = registration.crop_torch(vis_hi)
        if tuple(vis_hi.shape[-2:]) != tuple(size):
            resize = lambda x: F.interpolate(x, size=size, mode="bilinear",  # noqa: E731
                                             align_corners=False, antialias=True)
            vis_t, ir_t, full = resize(vis_hi), resize(ir_hi), (vis_hi, ir_hi)
        else:
            vis_t, ir_t, full = vis_hi, ir_hi, None
        cl = torch.channels_last
        vis_t, ir_t = vis_t.contiguous(memory_format=cl), ir_t.contiguous(memory_format=cl)
        return vis_t, ir_t, full, _ms(t0)

    @property
    def device_registration(self) -> bool:
        """True when ``run`` takes a ``registration`` (the warp runs on the device)."""
        return self.device_preprocess

    @property
    def score_threshold(self) -> float | None:
        """The detector's box selection threshold (the model config's ``score_threshold``;
        None: no detector). Setting it changes which boxes the next runs keep before NMS."""
        return float(self.model.config.score_threshold) if self.detection_classes else None

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if self.detection_classes:
            self.model.config.score_threshold = float(value)

    def run(self, vis: np.ndarray, ir01: np.ndarray, size: tuple[int, int],
            registration=None) -> Outputs:
        """See the module docstring; ``registration`` (a ``segmif_core.registration.
        Registration``, device path only): ``ir01`` is the unregistered thermal image, warped and
        cropped with the visible image on the device; the outputs have the cropped size."""
        if self.device_preprocess:
            vis_t, ir_t, full, resize_ms = self._device_inputs(vis, ir01, size, registration)
        else:
            if registration is not None:
                raise ValueError("registration on the device needs device_preprocess")
            vis_t, ir_t, full, resize_ms = self._host_inputs(vis, ir01, size)
        t0 = time.perf_counter()
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        autocast = (torch.autocast(self.device.type, _AUTOCAST[self.precision])
                    if self.precision in _AUTOCAST else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = self._forward(vis_t, ir_t, full=full)
            fused = out["fused_rgb"][0].mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
            fused = fused.permute(1, 2, 0)
            labels = out["labels"][0].to(torch.uint8)
            conf = out["confidence"][0].float()
            # boxes of the network-size input, scaled by predict(full=...) to the camera's size
            dets = out.get("detections")
        if self.cuda:
            end.record()
        t1 = time.perf_counter()
        fused, labels, conf = fused.cpu().numpy(), labels.cpu().numpy(), conf.cpu().numpy()
        if dets is not None:
            dets = {"boxes": dets[0]["boxes"].float().cpu().numpy().reshape(-1, 4),
                    "scores": dets[0]["scores"].float().cpu().numpy(),
                    "classes": dets[0]["classes"].cpu().numpy().astype(np.int64)}
        if self.cuda:  # the download synchronised the stream
            network = start.elapsed_time(end)
            download = _ms(t0) - network
        else:
            network, download = (t1 - t0) * 1e3, _ms(t1)
        return Outputs(np.ascontiguousarray(fused), labels, conf,
                       {"resize": resize_ms, "network": network, "download": download}, dets)


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendError("backend 'onnxruntime' needs the onnxruntime package "
                           "(pip install onnxruntime, or onnxruntime-gpu for CUDA/TensorRT)"
                           ) from err
    return onnxruntime


def read_onnx_metadata(path) -> dict:
    """The ``segmif`` metadata of an exported file (BackendError if missing or not ours)."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"ONNX file not found: {path}")
    ort = _import_onnxruntime()
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - any ORT load failure is a bad file
        raise BackendError(f"cannot read ONNX file {path}: {str(err).splitlines()[0]}") from err
    return _metadata(sess, path)


def _metadata(sess, path) -> dict:
    raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
        raise BackendError(f"{path} was not written by `segmif export --onnx` "
                           f"(no {ONNX_FORMAT} metadata)")
    return meta


class OnnxRuntimeBackend:
    """An exported ONNX file in ONNX Runtime. Args: path (a ready .onnx file; a .pt checkpoint
    is exported above this layer, ``factory.make_backend``), device (cpu -> CPU provider;
    cuda -> TensorRT and CUDA providers where installed, then CPU), threads (intra-op threads,
    0 = ORT's default). A file with the detector outputs (``onnx_io.DETECTION_OUTPUT_NAMES``)
    gives detections selected with the thresholds of its metadata's model config
    (``score_threshold``, ``nms_threshold``, ``max_detections``; ``detections.
    select_detections``). Raises BackendError (package missing, file missing or not ours)."""

    name = "onnxruntime"
    device_registration = False

    def __init__(self, path, device: torch.device, threads: int = 0):
        ort = _import_onnxruntime()
        path = Path(path)
        if path.suffix.lower() != ".onnx":
            raise BackendError(f"backend 'onnxruntime' needs an .onnx file written by "
                               f"`segmif export --onnx`, got {path}")
        if not path.is_file():
            raise BackendError(f"ONNX file not found: {path}")
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if device.type == "cuda":
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                      if p in available] + wanted
            if len(wanted) == 1:
                raise BackendError("device cuda with backend onnxruntime needs onnxruntime-gpu "
                                   f"(available providers: {available})")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        # no busy-waiting between operators: on a CPU shared with the ROS graph (callbacks,
        # drivers, recorder) spinning threads take the cores the rest of the frame needs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=wanted)
        except Exception as err:  # noqa: BLE001
            raise BackendError(f"cannot load ONNX file {path}: {str(err).splitlines()[0]}"
                               ) from err
        # run-time failures come back as Python exceptions (the node counts and throttles them);
        # ORT's own per-run C++ log lines would repeat each one on stderr every frame
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4
        meta = _metadata(self.session, path)
        names = [i.name for i in self.session.get_inputs()]
        if names != list(INPUT_NAMES):
            raise BackendError(f"{path}: inputs {names}, expected {list(INPUT_NAMES)}")
        self.classes = ClassSet.from_dict(meta["classes"])
        self.info = {"format": meta["format"], "model": meta["model"], "config": meta["config"],
                     "input_size": meta["input_size"] or meta.get("trained_input_size"),
                     "meta": meta.get("checkpoint_meta", {}), "onnx": meta}
        self.device = device
        self.min_size = 32
        outputs = {o.name for o in self.session.get_outputs()}
        self.has_detector = set(DETECTION_OUTPUT_NAMES) <= outputs
        cfg = meta.get("config") or {}
        # names of the detector's classes (empty: no detector outputs in the graph)
        self.detection_classes = (tuple(cfg.get("detection_classes") or ())
                                  if self.has_detector else ())
        self.detection_options = {
            "score_threshold": float(cfg.get("score_threshold", 0.05)),
            "nms_threshold": float(cfg.get("nms_threshold", 0.6)),
            "max_detections": int(cfg.get("max_detections", 100))}
        self._outputs = ["labels", "confidence", "fused"] + (
            list(DETECTION_OUTPUT_NAMES) if self.has_detector else [])
        self.fixed_size = tuple(meta["input_size"]) if meta["input_size"] else None
        self.fixed_camera = tuple(meta["camera_size"]) if meta["camera_size"] else None
        self.providers = self.session.get_providers()

    @property
    def score_threshold(self) -> float | None:
        """The box selection threshold of ``select_detections`` (from the file's metadata;
        None: no detector outputs). Setting it changes which boxes the next runs keep."""
        return self.detection_options["score_threshold"] if self.has_detector else None

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if self.has_detector:
            self.detection_options = {**self.detection_options, "score_threshold": float(value)}

    def run(self, vis: np.ndarray, ir01: np.ndarray, size: tuple[int, int]) -> Outputs:
        if self.fixed_camera and vis.shape[:2] != self.fixed_camera:
            raise ValueError(f"the ONNX file was exported for a {self.fixed_camera[1]}x"
                             f"{self.fixed_camera[0]} camera, got {vis.shape[1]}x{vis.shape[0]}: "
                             "export again with --camera or --dynamic")
        t0 = time.perf_counter()
        feed = graph_feed(vis, ir01, size)
        resize_ms = _ms(t0)
        t1 = time.perf_counter()
        labels, conf, fused, *det = self.session.run(self._outputs, feed, self.run_options)
        network = _ms(t1)
        t2 = time.perf_counter()
        fused = _planes_to_u8(fused[0])
        dets = None
        if det:  # the box selection counts as 'download' (host work after the network)
            dets = select_detections(det[0][0], det[1][0], **self.detection_options)
            # network-size boxes to camera pixels (x by W / w, y by H / h), as the torch
            # backend's predict(full=...)
            sy, sx = vis.shape[0] / size[0], vis.shape[1] / size[1]
            dets["boxes"] = dets["boxes"] * np.array([sx, sy, sx, sy], np.float32)
        return Outputs(fused, labels[0], conf[0],
                       {"resize": resize_ms, "network": network, "download": _ms(t2)}, dets)


def _planes_to_u8(chw: np.ndarray) -> np.ndarray:
    """(C, H, W) float32 / float16 (0..1 the grey range) -> contiguous (H, W, C) uint8:
    x * 255 rounded to the nearest level and saturated to [0, 255] (within one level of numpy's
    round at exact halves). Raises ValueError unless ``chw`` is 3-D. One OpenCV pass per plane:
    about 1 ms for a 640x480 RGB image on one core of this project's CPU, against 7 ms for numpy's
    scale, round, clip and cast (whose result was also not contiguous, so the node's colour
    conversion copied it again)."""
    if np.ndim(chw) != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {np.shape(chw)}")
    planes = [cv2.multiply(np.ascontiguousarray(p, dtype=np.float32), 255.0, dtype=cv2.CV_8U)
              for p in chw]
    return cv2.merge(planes).reshape(chw.shape[1], chw.shape[2], len(planes))


__all__ = ["BACKENDS", "PRECISIONS", "ORT_PRECISIONS", "BackendError", "Outputs", "TorchBackend",
           "OnnxRuntimeBackend", "read_onnx_metadata", "resize_host", "set_fusion_scale",
           "CheckpointError"]
