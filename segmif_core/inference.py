"""``SegMiFPredictor``: numpy images in, fused image, class ids and confidence out."""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from .data.thermal import normalize_thermal


@dataclass
class Prediction:
    """Outputs for one visible/thermal pair, at the input resolution H x W.

    fused: HxWx3 uint8 RGB fused image; labels: HxW uint8 class ids; confidence: HxW float32
    softmax probability of the chosen class in [0, 1]; inference_ms: network time (ms);
    total_ms: preprocessing + network + postprocessing (ms).
    """

    fused: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    inference_ms: float
    total_ms: float


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
        checkpoint: path of a checkpoint file; None = the default shipped checkpoint.
        device: 'cpu', 'cuda' or 'cuda:N'.
        input_size: (H, W) network input; None = the size stored in the checkpoint. Images are
            resized to it (area / bilinear); labels and confidence are resized back (nearest /
            bilinear), while the fused image is made at the camera's resolution from the
            full-resolution sources (``FusionSegModel.predict(full=...)``), never upscaled.
        thermal_norm, thermal_range, thermal_percentiles: rule for 16-bit thermal, see
            ``segmif_core.data.thermal.normalize_thermal`` (8-bit thermal is divided by 255).

    Raises:
        CheckpointError: bad checkpoint; ValueError: bad device or sizes.
    """

    def __init__(self, checkpoint=None, device: str = "cpu", input_size=None,
                 thermal_norm: str = "percentile", thermal_range=(0.0, 65535.0),
                 thermal_percentiles=(1.0, 99.0)):
        self.device = resolve_device(device)
        self.checkpoint_path = checkpoint or DEFAULT_CHECKPOINT
        self.model, self.classes, self.info = load_checkpoint(checkpoint, self.device)
        size = input_size or self.info.get("input_size") or (240, 320)
        if len(size) != 2 or min(size) < self.model.min_size:
            raise ValueError(f"input_size must be (H, W) >= {self.model.min_size}, got {size}")
        self.input_size = (int(size[0]), int(size[1]))
        if thermal_norm not in ("fixed", "percentile"):
            raise ValueError(f"thermal_norm must be 'fixed' or 'percentile', got {thermal_norm!r}")
        self.thermal_norm = thermal_norm
        self.thermal_range = tuple(thermal_range)
        self.thermal_percentiles = tuple(thermal_percentiles)

    @staticmethod
    def check_images(vis: np.ndarray, ir: np.ndarray) -> None:
        """Raise ValueError naming the problem unless vis is HxWx3 uint8 and ir HxW uint8/uint16
        of the same H, W."""
        if not isinstance(vis, np.ndarray) or vis.dtype != np.uint8 or vis.ndim != 3 \
                or vis.shape[2] != 3:
            raise ValueError("visible image must be an HxWx3 uint8 RGB array, got "
                             f"{getattr(vis, 'shape', None)} {getattr(vis, 'dtype', type(vis))}")
        if not isinstance(ir, np.ndarray) or ir.dtype not in (np.uint8, np.uint16) or ir.ndim != 2:
            raise ValueError("thermal image must be an HxW uint8 or uint16 array, got "
                             f"{getattr(ir, 'shape', None)} {getattr(ir, 'dtype', type(ir))}")
        if vis.shape[:2] != ir.shape:
            raise ValueError(f"visible {vis.shape[:2]} and thermal {ir.shape} sizes differ: "
                             "register thermal onto the visible camera first")

    def predict(self, vis: np.ndarray, ir: np.ndarray) -> Prediction:
        """Fuse and segment one pair: vis HxWx3 uint8 RGB, ir HxW uint8/uint16 (registered)."""
        t0 = time.perf_counter()
        self.check_images(vis, ir)
        h, w = ir.shape
        ih, iw = self.input_size
        ir01 = normalize_thermal(ir, self.thermal_norm, *self.thermal_percentiles,
                                 *self.thermal_range)
        vis_in = cv2.resize(vis, (iw, ih), interpolation=cv2.INTER_AREA if ih < h else cv2.INTER_LINEAR)
        ir_in = cv2.resize(ir01, (iw, ih), interpolation=cv2.INTER_AREA if ih < h else cv2.INTER_LINEAR)
        vis_t = torch.from_numpy(vis_in).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        ir_t = torch.from_numpy(np.ascontiguousarray(ir_in, np.float32)).to(self.device)[None, None]
        full = None
        if (ih, iw) != (h, w):
            full = (torch.from_numpy(vis).to(self.device).permute(2, 0, 1)[None].float() / 255.0,
                    torch.from_numpy(np.ascontiguousarray(ir01, np.float32)
                                     ).to(self.device)[None, None])
        t1 = time.perf_counter()
        out = self.model.predict(vis_t, ir_t, full=full)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        prob = out["confidence"][0].cpu().numpy()
        labels = out["labels"][0].to(torch.uint8).cpu().numpy()
        fused = (out["fused_rgb"][0].permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        if (ih, iw) != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        t3 = time.perf_counter()
        return Prediction(fused, labels, prob.astype(np.float32), (t2 - t1) * 1e3, (t3 - t0) * 1e3)
