"""ONNX export of a whole segmif model: fused image at the camera's size, labels, confidence.

The exported graph (``export_onnx``) has four inputs, float32 in [0, 1]:
    ``visible``  (1, 3, h, w)   the visible RGB image resized to the network input size h x w,
    ``thermal``  (1, 1, h, w)   the registered thermal image at that size,
    ``visible_full`` (1, 3, H, W), ``thermal_full`` (1, 1, H, W)  the same pair at the camera's
        size (``FusionSegModel.predict(full=...)``: the fused image is made there),
and four outputs:
    ``logits`` (1, K, h, w) float32, ``labels`` (1, h, w) uint8 class ids, ``confidence``
    (1, h, w) float32 softmax probability of the chosen class, ``fused`` (1, 3, H, W) float32 RGB
    in [0, 1].
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

INPUT_NAMES = ("visible", "thermal", "visible_full", "thermal_full")
OUTPUT_NAMES = ("logits", "labels", "confidence", "fused")
METADATA_KEY = "segmif"
ONNX_FORMAT = "segmif-onnx/1"


class ExportError(RuntimeError):
    """The model could not be exported (missing exporter packages, unsupported operation)."""


class WholeModel(nn.Module):
    """The graph that is exported: ``FusionSegModel`` forward + full-resolution fused image +
    softmax/argmax, with the input and output layout of the module docstring."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()

    def forward(self, visible, thermal, visible_full, thermal_full):
        out = self.model(visible, thermal)
        logits = out["logits"].float()
        fused = self.model.full_resolution_fused(out, visible, thermal, visible_full,
                                                 thermal_full).float()
        confidence, labels = torch.softmax(logits, dim=1).max(dim=1)
        return logits, labels.to(torch.uint8), confidence, fused


def example_inputs(size, camera) -> tuple[torch.Tensor, ...]:
    """Random inputs of the graph's layout: network size ``size`` (h, w), camera ``camera``."""
    g = torch.Generator().manual_seed(0)
    (h, w), (hh, ww) = size, camera
    return (torch.rand(1, 3, h, w, generator=g), torch.rand(1, 1, h, w, generator=g),
            torch.rand(1, 3, hh, ww, generator=g), torch.rand(1, 1, hh, ww, generator=g))


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
        failed or its packages (onnx, onnxscript) are missing, or the model has a detector
        (TSJNet: not exportable, see the message).
    """
    model, classes, info = load_checkpoint(checkpoint, "cpu")
    if hasattr(model, "detector"):
        raise ExportError(f"ONNX export of {model.name!r} models is not supported: the graph's "
                          "outputs (logits, labels, confidence, fused) have no place for the "
                          "detector's boxes, whose NMS is a data-dependent loop; use the torch "
                          "backend for this checkpoint")
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
    dynamic_shapes = None
    if dynamic:
        d = torch.export.Dim
        hh, ww = d("H", min=model.min_size, max=8192), d("W", min=model.min_size, max=8192)
        dynamic_shapes = (None, None, {2: hh, 3: ww}, {2: hh, 3: ww})
    meta = {"format": ONNX_FORMAT, "model": info.get("model"), "config": model.config_dict(),
            "classes": info.get("classes"), "input_size": list(size),
            "camera_size": None if dynamic else list(camera), "dynamic": bool(dynamic),
            "checkpoint": str(Path(checkpoint or DEFAULT_CHECKPOINT)),
            "checkpoint_meta": info.get("meta", {}), "trained_input_size": info.get("input_size")}
    out = Path(out)
    with atomic.atomic_path(out) as tmp:
        try:
            program = torch.onnx.export(graph, args, dynamo=True, input_names=list(INPUT_NAMES),
                                        output_names=list(OUTPUT_NAMES),
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


def set_fusion_scale(model, scale: float) -> bool:
    """Set SegMiF's ``fusion_scale`` on a built model; returns False (and changes nothing) for
    a model without one (no fusion network: the baselines). ValueError if out of (0, 1]."""
    if not 0.0 < float(scale) <= 1.0:
        raise ValueError(f"fusion_scale must be in (0, 1], got {scale}")
    if not hasattr(model.config, "fusion_scale"):
        return False
    model.config.fusion_scale = float(scale)
    return True
