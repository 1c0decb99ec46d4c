"""The ONNX file of a checkpoint for the ONNX Runtime backend, exported once and cached.

``cached_onnx(checkpoint, fusion_scale, size)`` returns ``CACHE/<key>.onnx``, exporting the
checkpoint first (``export_onnx(dynamic=True)``: any camera size, the network input ``size``; as
fast in ONNX Runtime as a fully fixed-size graph, measured 138 vs 142 ms on this CPU) when it is
not there yet. The key hashes the checkpoint file's bytes, the fusion_scale override, the network
size, the export format and the torch version, so a retrained checkpoint or another exporter never
reuses a stale graph. CACHE is ``$SEGMIF_CACHE`` or ``$XDG_CACHE_HOME/segmif/onnx``
(default ``~/.cache/segmif/onnx``). The export takes 20-70 s on a 2-core CPU; later starts load
the cached file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from .onnx_export import ONNX_FORMAT, export_onnx


def cache_dir() -> Path:
    """The folder of cached ONNX files (see the module docstring); not created here."""
    if os.environ.get("SEGMIF_CACHE"):
        return Path(os.environ["SEGMIF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "segmif" / "onnx"


def cache_key(checkpoint, fusion_scale: float | None, size=None) -> str:
    """Hex key of a checkpoint file's bytes plus the export settings. Raises CheckpointError if
    the file does not exist."""
    path = Path(checkpoint or DEFAULT_CHECKPOINT)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    size = None if size is None else tuple(int(v) for v in size)
    h.update(f"|{fusion_scale}|{size}|{ONNX_FORMAT}|{torch.__version__}".encode())
    return h.hexdigest()[:24]


def cached_onnx(checkpoint=None, fusion_scale: float | None = None, log=None,
                size=None) -> Path:
    """The cached ONNX file of ``checkpoint`` (None = the shipped one) for network input ``size``
    (h, w; None = the checkpoint's), exported now if needed.
    ``log``: optional callable for one line before a (slow) export. Raises CheckpointError,
    ExportError (exporter packages missing or export failed)."""
    path = cache_dir() / f"{cache_key(checkpoint, fusion_scale, size)}.onnx"
    if not path.is_file():
        # a bad file (truncated, random bytes, a dict without 'model') fails here with the
        # checkpoint's one-line error, before the export line is logged
        load_checkpoint(checkpoint)
        if log:
            log(f"exporting {checkpoint or DEFAULT_CHECKPOINT} to ONNX once (cached as {path})")
        export_onnx(path, checkpoint, size=size, dynamic=True, fusion_scale=fusion_scale)
    return path
