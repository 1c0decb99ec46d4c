"""The exported graph's interface, shared by the exporter (``onnx_export``), the ONNX Runtime
backend (``backends``) and the int8 quantiser (``onnx_quantize``): input and output names, the
metadata key and format, and the input feed of one camera pair. Pure numpy / OpenCV: no torch
model, no onnxruntime session (the lowest layer of ``segmif_core.inference``).

Inputs, float32 in [0, 1]: ``visible`` (1, 3, h, w) and ``thermal`` (1, 1, h, w), the pair
resized to the network input size h x w; ``visible_full`` (1, 3, H, W) and ``thermal_full``
(1, 1, H, W), the same pair at the camera's size H x W.
Outputs: ``logits``, ``labels``, ``confidence``, ``fused`` (see ``onnx_export``); a model with a
detector (TSJNet) adds ``DETECTION_OUTPUT_NAMES``: ``boxes`` (1, N, 4) float32 (x1, y1, x2, y2)
in pixels of the network input, one per detector location (N = the locations of all levels),
clipped to the image, and ``box_scores`` (1, N, K) float32 in [0, 1] per detection class
(``models.tsjnet.fcos.decode_all``); their selection (threshold, top-k, NMS) runs after the
graph in numpy (``inference.detections``).
"""
from __future__ import annotations

import cv2
import numpy as np

INPUT_NAMES = ("visible", "thermal", "visible_full", "thermal_full")
OUTPUT_NAMES = ("logits", "labels", "confidence", "fused")
DETECTION_OUTPUT_NAMES = ("boxes", "box_scores")
METADATA_KEY = "segmif"
ONNX_FORMAT = "segmif-onnx/1"


def resize_host(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV resize of an (H, W[, C]) image to ``size`` (h, w): area when shrinking, bilinear
    otherwise; the image itself when the size is already ``size``."""
    h, w = img.shape[:2]
    if (h, w) == tuple(size):
        return img
    inter = cv2.INTER_AREA if size[0] < h else cv2.INTER_LINEAR
    return cv2.resize(img, (size[1], size[0]), interpolation=inter)


def graph_feed(vis: np.ndarray, ir01: np.ndarray, size: tuple[int, int]) -> dict:
    """The graph's four inputs (module docstring) of one registered camera pair.

    Args:
        vis: (H, W, 3) uint8 RGB; ir01: (H, W) float32 thermal already scaled to [0, 1]
            (``data.thermal.normalize_thermal``); size: network input (h, w).
    Returns:
        {name: float32 array} for ``INPUT_NAMES`` (the network-size pair by ``resize_host``).
    Raises:
        ValueError: images that are not (H, W, 3) / (H, W) of one size.
    """
    if vis.ndim != 3 or vis.shape[2] != 3 or ir01.shape != vis.shape[:2]:
        raise ValueError(f"graph_feed needs an (H, W, 3) visible and an (H, W) thermal image, "
                         f"got {vis.shape} and {ir01.shape}")
    scale = np.float32(1.0 / 255.0)

    def chw(a):
        return np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32) * scale

    ir01 = np.ascontiguousarray(ir01, np.float32)
    return {"visible": chw(resize_host(vis, size)),
            "thermal": np.ascontiguousarray(resize_host(ir01, size), np.float32)[None, None],
            "visible_full": chw(vis), "thermal_full": ir01[None, None]}
