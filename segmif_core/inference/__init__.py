"""Inference: ``SegMiFPredictor`` (numpy pair in, fused image, class ids and confidence out) on
the torch or ONNX Runtime backend, and the ONNX export."""
from .backends import BACKENDS, PRECISIONS, BackendError, read_onnx_metadata
from .factory import make_backend
from .onnx_export import ExportError, export_onnx
from .predictor import Prediction, SegMiFPredictor, resolve_device

__all__ = ["BACKENDS", "PRECISIONS", "BackendError", "ExportError", "Prediction",
           "SegMiFPredictor", "export_onnx", "make_backend", "read_onnx_metadata",
           "resolve_device"]
