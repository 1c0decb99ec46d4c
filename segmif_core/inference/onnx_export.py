"""ONNX export of a whole segmif model: fused image at the camera's size, labels, confidence.

The exported graph (``export_onnx``) has four inputs, float32 in [0, 1]:
    ``visible``  (1, 3, h, w)   the visible RGB image resized to the network input size h x w,
    ``thermal``  (1, 1, h, w)   the registered thermal image at that size,
    ``visible_full`` (1, 3, H, W), ``thermal_full`` (1, 1, H, W)  the same pair at the camera's
        size (``FusionSegModel.predict(full=...)``: the fused image is made there),
and four outputs:
    ``logits`` (1, K, h, w) float32, ``labels`` (1, h, w) uint8 class ids, ``confidence``
    (1, h, w) float32 softmax probability of the chosen class, ``fused`` (1, 3, H, W) float32 RGB
    in [0, 1];
a model with a detector (TSJNet) has two more, its decoded boxes before selection:
    ``boxes`` (1, N, 4) float32 (x1, y1, x2, y2) in pixels of the network input, one per
    detector location, clipped to the image, and ``box_scores`` (1, N, K') float32 in [0, 1]
    (``models.tsjnet.fcos.decode_all``; 0 for locations outside the image).
Thresholding, top-k and the class-wise NMS (a data-dependent loop) run after the graph, in numpy
(``inference.detections.select_detections``, the same rules as ``fcos.postprocess``), with the
thresholds of the model config in the metadata.
Sizes are fixed by default (h x w from the checkpoint or ``size``, H x W from ``camera``);
``dynamic=True`` leaves the camera size H, W free (one file for every camera); the network size
stays fixed even then, because torch.export bakes shapes derived from it into reshapes (a graph
traced at 240x320 fails at 192x256 in ONNX Runtime): export once per network size.

The checkpoint's description travels in the file's metadata (key ``segmif``, JSON: model name,
config, classes, input size, camera size, source checkpoint), so the ONNX Runtime backend
(``inference.backends``) needs nothing else. When the camera size equals the network size, the
graph still runs the guided upsampler (the torch backend then shows Phi's output directly); the
two differ by the guided filter's fit error (see the tests).

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export, opset 18), which needs the ``onnx``
and ``onnxscript`` packages.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .. import atomic
from ..checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from ..models.base import confidence_and_labels
from ..models.tsjnet.fcos import decode_all
from .backends import set_fusion_scale
from .onnx_io import (DETECTION_OUTPUT_NAMES, INPUT_NAMES, METADATA_KEY, ONNX_FORMAT,
                      OUTPUT_NAMES)

__all__ = ["DETECTION_OUTPUT_NAMES", "ExportError", "INPUT_NAMES", "METADATA_KEY", "ONNX_FORMAT",
           "OUTPUT_NAMES", "WholeModel", "example_inputs", "export_onnx", "set_fusion_scale"]


class ExportError(RuntimeError):
    """The model could not be exported (missing exporter packages, unsupported operation)."""


class WholeModel(nn.Module):
    """The graph that is exported: ``FusionSegModel`` forward + full-resolution fused image +
    softmax/argmax (+ the detector's decoded boxes and scores), with the input and output
    layout of the module docstring."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        self.has_detector = hasattr(model, "detector")

    @property
    def output_names(self) -> list[str]:
        return list(OUTPUT_NAMES) + (list(DETECTION_OUTPUT_NAMES) if self.has_detector else [])

    def forward(self, visible, thermal, visible_full, thermal_full):
        out = self.model(visible, thermal)
        logits = out["logits"].float()
        fused = self.model.full_resolution_fused(out, visible, thermal, visible_full,
                                                 thermal_full).float()
        confidence, labels = confidence_and_labels(logits)
        if not self.has_detector:
            return logits, labels.to(torch.uint8), confidence, fused
        boxes, scores = decode_all(out["detections"], tuple(visible.shape[-2:]))
        return logits, labels.to(torch.uint8), confidence, fused, boxes, scores


def example_inputs(size, camera) -> tuple[torch.Tensor, ...]:
    """Random inputs of the graph's layout: network size ``size`` (h, w), camera ``camera``."""
    g = torch.Generator().manual_seed(0)
    (h, w), (hh, ww) = size, camera
    return (torch.rand(1, 3, h, w, generator=g), torch.rand(1, 1, h, w, generator=g),
            torch.rand(1, 3, hh, ww, generator=g), torch.rand(1, 1, hh, ww, generator=g))


MAX_CAMERA_SIDE = 8192  # largest camera height or width a dynamic-size graph accepts, pixels


def camera_dynamic_shapes(min_size: int, multiple: int | None = None) -> tuple:
    """``dynamic_shapes`` for :class:`WholeModel`'s four inputs with the camera size free.

    The network-size inputs (visible, thermal) stay fixed; the camera-size ones (visible_full,
    thermal_full) share one height H and one width W.

    Args:
        min_size: smallest camera side the graph accepts, pixels (the model's ``min_size``).
        multiple: if set, H and W are constrained to multiples of it in [min_size,
            ``MAX_CAMERA_SIDE``] (8192; rounded inwards to multiples); None leaves them free in
            that range.
    Returns:
        a 4-tuple for ``torch.onnx.export(..., dynamic_shapes=...)``.
    Raises:
        ValueError: ``min_size`` < 1, ``multiple`` < 1, or fewer than two multiples of
            ``multiple`` in [min_size, ``MAX_CAMERA_SIDE``].
    """
    if min_size < 1 or (multiple is not None and multiple < 1):
        raise ValueError(f"min_size and multiple must be >= 1, got {min_size}, {multiple}")
    dim = torch.export.Dim
    if multiple is None:
        h, w = (dim("H", min=min_size, max=MAX_CAMERA_SIDE),
                dim("W", min=min_size, max=MAX_CAMERA_SIDE))
    else:
        low, top = -(-min_size // multiple), MAX_CAMERA_SIDE // multiple
        if low >= top:  # torch.export refuses a Dim with min == max
            raise ValueError(f"fewer than two multiples of {multiple} lie in "
                             f"[{min_size}, {MAX_CAMERA_SIDE}]: export a fixed-size graph instead")
        h, w = (multiple * dim("a", min=low, max=top), multiple * dim("b", min=low, max=top))
    return (None, None, {2: h, 3: w}, {2: h, 3: w})


def export_onnx(out, checkpoint=None, size=None, camera=(480, 640), dynamic: bool = False,
                fusion_scale: float | None = None) -> dict:
    """Export ``checkpoint`` (default: the shipped one) to the ONNX file ``out`` (written
    atomically).

    Args:
        size: network input (h, w); None = the checkpoint's input size.
        camera: camera size (H, W) of the fixed-size graph (only the example with ``dynamic``).
        dynamic: leave the camera size free (the network size stays ``size``).
        fusion_scale: override SegMiF's ``fusion_scale`` (see ``SegMiFConfig``).
    Returns the metadata dict written into the file.
    Raises:
        CheckpointError: bad checkpoint; ValueError: bad sizes; ExportError: the exporter
        failed or its packages (onnx, onnxscript) are missing.
    """
    model, classes, info = load_checkpoint(checkpoint, "cpu")
    if fusion_scale is not None:
        set_fusion_scale(model, fusion_scale)
    size = tuple(int(s) for s in (size or info.get("input_size") or (240, 320)))
    camera = tuple(int(s) for s in camera)
    if len(size) != 2 or len(camera) != 2 or min(size) < model.min_size or min(camera) < 1:
        raise ValueError(f"size must be (h, w) >= {model.min_size} and camera (H, W) >= 1, "
                         f"got {size}, {camera}")
    for mod in ("onnx", "onnxscript"):
        try:
            __import__(mod)
        except ImportError as err:
            raise ExportError(f"ONNX export needs the {mod} package (pip install onnx onnxscript; "
                              "the versions are pinned in the Makefile)") from err
    graph = WholeModel(model).eval()
    args = example_inputs(size, camera)
    dynamic_shapes = camera_dynamic_shapes(model.min_size) if dynamic else None
    meta = {"format": ONNX_FORMAT, "model": info.get("model"), "config": model.config_dict(),
            "classes": info.get("classes"), "input_size": list(size),
            "camera_size": None if dynamic else list(camera), "dynamic": bool(dynamic),
            "checkpoint": str(Path(checkpoint or DEFAULT_CHECKPOINT)),
            "checkpoint_meta": info.get("meta", {}), "trained_input_size": info.get("input_size")}
    out = Path(out)
    with atomic.atomic_path(out) as tmp:
        try:
            program = torch.onnx.export(graph, args, dynamo=True, input_names=list(INPUT_NAMES),
                                        output_names=graph.output_names,
                                        dynamic_shapes=dynamic_shapes, verbose=False)
        except Exception as err:  # noqa: BLE001 - report any exporter failure in one line
            raise ExportError(f"torch.onnx.export failed: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from err
        program.save(tmp, external_data=False)
        import onnx
        proto = onnx.load(tmp)
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.save(proto, tmp)
    return meta
