"""``SegMiFPredictor``: numpy images in, fused image, class ids and confidence out."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..checkpoint import DEFAULT_CHECKPOINT
from ..data.thermal import THERMAL_MODES, normalize_thermal, to_uint8
from ..fusion_rules import FUSION_RULES, fuse_rgb
from .factory import make_backend
from ..choices import check_choice


#: Values of ``SegMiFPredictor(fused_method=...)``: the model's fused image, "auto" (the model's
#: where it has a fusion network, else the Laplacian-pyramid rule) or a classical rule.
FUSED_METHODS = ("model", "auto") + tuple(FUSION_RULES)


@dataclass
class Prediction:
    """Outputs for one visible/thermal pair, at the input resolution H x W.

    fused: HxWx3 uint8 RGB fused image; labels: HxW uint8 class ids; confidence: HxW float32
    softmax probability of the chosen class in [0, 1]; inference_ms: network time (ms);
    total_ms: preprocessing + network + postprocessing (ms); stages_ms: the time of each stage
    (ms): 'thermal' (16-bit scaling), 'resize' (to the network size, and the upload on CUDA),
    'network', 'download', 'postprocess' (labels and confidence back to H x W).
    detections: for a model with a detector (TSJNet, either backend) a dict 'boxes' (D, 4) float32
    (x1, y1, x2, y2) in pixels of the output images (the network-size boxes scaled by W / w and
    H / h), 'scores' (D,) float32 in [0, 1] (decreasing), 'classes' (D,) int64 indices into
    'names' (the model's ``detection_classes``); None for models without a detector.
    """

    fused: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    inference_ms: float
    total_ms: float
    stages_ms: dict = field(default_factory=dict)
    detections: dict | None = None


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' -> torch.device. Raises ValueError if unknown or unavailable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    return dev


class SegMiFPredictor:
    """Run a segmif checkpoint on numpy images.

    Args:
        checkpoint: path of a checkpoint file (.pt; an .onnx file from ``segmif export --onnx``
            with backend 'onnxruntime'); None = the default shipped checkpoint.
        device: 'cpu', 'cuda' or 'cuda:N'.
        input_size: (H, W) network input; None = the size stored in the checkpoint. Images are
            resized to it (area / bilinear); labels and confidence are resized back (nearest /
            bilinear), while the fused image is made at the camera's resolution from the
            full-resolution sources (``FusionSegModel.predict(full=...)``), never upscaled.
        thermal_norm, thermal_range, thermal_percentiles: rule for 16-bit thermal, see
            ``segmif_core.data.thermal.normalize_thermal`` (8-bit thermal is divided by 255).
        backend: 'torch', 'onnxruntime' (an .onnx file, or a .pt checkpoint exported once and
            cached) or 'auto' (ONNX Runtime on the CPU when installed, else torch); see
            ``inference.factory.choose_backend``.
        precision: 'fp32', 'bf16' or (CUDA) 'fp16' autocast (torch backend); 'int8' (ONNX
            Runtime: an int8 .onnx file, or the .pt checkpoint quantised once and cached, see
            ``inference.onnx_quantize``).
        compile: torch.compile the model (torch backend).
        threads: ONNX Runtime intra-op threads (0 = torch's thread count).
        fusion_scale: override SegMiF's ``fusion_scale`` (see ``SegMiFConfig``; for ONNX
            Runtime applied at the export; ignored by models without a fusion network).
        device_preprocess: resize on the device with torch (default: on CUDA; torch backend).
        log: callable for one line before a slow step (the ONNX export of a .pt checkpoint).
        int8_calibration: folder of registered pairs calibrating the int8 ranges (precision
            'int8' with a .pt checkpoint).

    Raises:
        CheckpointError: bad checkpoint; BackendError: bad backend, ONNX file or option;
        ValueError: bad device or sizes (a fixed-size ONNX file accepts only its own size).
    """

    def __init__(self, checkpoint=None, device: str = "cpu", input_size=None,
                 thermal_norm: str = "percentile", thermal_range=(0.0, 65535.0),
                 thermal_percentiles=(1.0, 99.0), backend: str = "torch",
                 precision: str = "fp32", compile: bool = False, threads: int = 0,
                 fusion_scale: float | None = None, device_preprocess: bool | None = None,
                 log=None, int8_calibration=None, fused_method: str = "model"):
        self.device = resolve_device(device)
        check_choice("fused_method", fused_method, FUSED_METHODS)
        check_choice("thermal_norm", thermal_norm, THERMAL_MODES)
        self.checkpoint_path = checkpoint or DEFAULT_CHECKPOINT
        self.backend = make_backend(backend, checkpoint, self.device, precision=precision,
                                    compile=compile, threads=threads or torch.get_num_threads(),
                                    fusion_scale=fusion_scale,
                                    device_preprocess=device_preprocess, log=log,
                                    input_size=tuple(input_size) if input_size else None,
                                    int8_calibration=int8_calibration)
        self.classes, self.info = self.backend.classes, self.backend.info
        #: names of the detector's classes (empty: no detector)
        self.detection_classes = tuple(getattr(self.backend, "detection_classes", ()))
        fixed = self.backend.fixed_size
        size = input_size or fixed or self.info.get("input_size") or (240, 320)
        if len(size) != 2 or min(size) < self.backend.min_size:
            raise ValueError(f"input_size must be (H, W) >= {self.backend.min_size}, got {size}")
        self.input_size = (int(size[0]), int(size[1]))
        if fixed and self.input_size != tuple(fixed):
            raise ValueError(f"the ONNX file {checkpoint} was exported for network input "
                             f"{fixed[0]}x{fixed[1]}, input_size {self.input_size[0]}x"
                             f"{self.input_size[1]} requested: export again with --size")
        if fused_method == "auto":  # the model's image where it has a fusion network
            fused_method = "model" if self.has_fusion_network else "laplacian"
        #: what ``Prediction.fused`` is: "model" or a rule of ``segmif_core.fusion_rules``
        self.fused_method = fused_method
        self.thermal_norm = thermal_norm
        self.thermal_range = tuple(thermal_range)
        self.thermal_percentiles = tuple(thermal_percentiles)

    @property
    def detection_score_threshold(self) -> float | None:
        """Lowest score, in [0, 1], of the (location, class) pairs the detector keeps before
        NMS (None: no detector). Starts at the model config's ``score_threshold`` (0.05: what
        mAP needs). A consumer that only uses boxes scoring at least s may raise it to s: greedy
        NMS lets a box suppress only lower-scoring boxes, so the boxes >= s are the same (unless
        more than ``pre_nms_top_k`` or ``max_detections`` of them score >= s), and the selection
        is faster (measured on MFNet val with TSJNet v3, ONNX Runtime: 16 ms at 0.05, 0.1 ms
        at 0.5; ``segmif_ros``'s node sets it from ``detection_min_score``). Raises ValueError
        outside [0, 1]."""
        return getattr(self.backend, "score_threshold", None)

    @detection_score_threshold.setter
    def detection_score_threshold(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"detection_score_threshold must be in [0, 1], got {value}")
        if getattr(self.backend, "score_threshold", None) is not None:
            self.backend.score_threshold = value

    @property
    def has_fusion_network(self) -> bool:
        """True when the checkpoint's model fuses (SegMiF, TSJNet); False for the baselines."""
        return str(self.info.get("model", "")) in ("segmif", "tsjnet")

    @property
    def model(self):
        """The torch model (torch backend only; AttributeError otherwise)."""
        try:
            return self.backend.model
        except AttributeError:
            raise AttributeError(f"backend {self.backend.name!r} has no torch model") from None

    @staticmethod
    def check_images(vis: np.ndarray, ir: np.ndarray, same_size: bool = True) -> None:
        """Raise ValueError naming the problem unless vis is HxWx3 uint8 and ir HxW uint8/uint16
        (of the same H, W unless ``same_size`` is False)."""
        if not isinstance(vis, np.ndarray) or vis.dtype != np.uint8 or vis.ndim != 3 \
                or vis.shape[2] != 3:
            raise ValueError("visible image must be an HxWx3 uint8 RGB array, got "
                             f"{getattr(vis, 'shape', None)} {getattr(vis, 'dtype', type(vis))}")
        if not isinstance(ir, np.ndarray) or ir.dtype not in (np.uint8, np.uint16) or ir.ndim != 2:
            raise ValueError("thermal image must be an HxW uint8 or uint16 array, got "
                             f"{getattr(ir, 'shape', None)} {getattr(ir, 'dtype', type(ir))}")
        if same_size and vis.shape[:2] != ir.shape:
            raise ValueError(f"visible {vis.shape[:2]} and thermal {ir.shape} sizes differ: "
                             "register thermal onto the visible camera first")

    def predict(self, vis: np.ndarray, ir: np.ndarray, registration=None) -> Prediction:
        """Fuse and segment one pair: vis HxWx3 uint8 RGB, ir uint8/uint16 thermal.

        Without ``registration`` ``ir`` must already be registered (HxW, the visible size).
        With one (a ``segmif_core.registration.Registration``) ``ir`` is the raw thermal image
        (any size): it is warped onto the visible camera and both are cropped, on the device
        when the backend can (the CUDA path), otherwise with OpenCV first ('registration' in
        ``stages_ms``); the outputs then have the cropped size.
        Raises ValueError (bad images), RegistrationError (the crop does not fit).
        """
        t0 = time.perf_counter()
        stages = {}
        # a classical rule fuses the registered pair on the host
        on_device = registration is not None and self.fused_method == "model" and getattr(
            self.backend, "device_registration", False)
        if registration is not None and not on_device:
            self.check_images(vis, ir, same_size=False)
            vis, ir = registration.register(vis, ir)
            stages["registration"] = (time.perf_counter() - t0) * 1e3
        t_reg = time.perf_counter()
        self.check_images(vis, ir, same_size=not on_device)
        ir01 = normalize_thermal(ir, self.thermal_norm, *self.thermal_percentiles,
                                 *self.thermal_range)
        t1 = time.perf_counter()
        out = self.backend.run(vis, ir01, self.input_size, registration) if on_device \
            else self.backend.run(vis, ir01, self.input_size)
        t2 = time.perf_counter()
        labels, prob = out.labels, out.confidence
        h, w = out.fused.shape[:2]
        if labels.shape != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        t3 = time.perf_counter()
        stages.update({"thermal": (t1 - t_reg) * 1e3, **out.stages_ms,
                       "postprocess": (t3 - t2) * 1e3})
        fused = out.fused
        if self.fused_method != "model":
            fused = fuse_rgb(self.fused_method, vis, to_uint8(ir01))
            stages["rule_fusion"] = (time.perf_counter() - t3) * 1e3
        dets = getattr(out, "detections", None)
        if dets is not None:
            dets = dict(dets, names=list(self.detection_classes))
        return Prediction(fused, labels, prob.astype(np.float32, copy=False),
                          out.stages_ms["network"], (time.perf_counter() - t0) * 1e3,
                          {k: round(v, 3) for k, v in stages.items()}, dets)
