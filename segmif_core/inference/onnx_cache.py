"""The ONNX file of a checkpoint for the ONNX Runtime backend, exported once and cached.

``cached_onnx(checkpoint, fusion_scale, size)`` returns ``CACHE/<key>.onnx``, exporting the
checkpoint first (``export_onnx(dynamic=True)``: any camera size, the network input ``size``; as
fast in ONNX Runtime as a fully fixed-size graph, measured 138 vs 142 ms on this CPU) when it is
not there yet. The key hashes the checkpoint file's bytes, the fusion_scale override, the network
size, the export format, the torch version and the source of the code that builds the graph
(``graph_source_digest``: ``segmif_core/models`` and the exporter), so a retrained checkpoint,
another exporter or changed model code never reuses a stale graph. CACHE is ``$SEGMIF_CACHE`` or ``$XDG_CACHE_HOME/segmif/onnx``
(default ``~/.cache/segmif/onnx``). The export takes minutes on a 2-core CPU (the shipped SegMiF
v7: 384 s, v6: 214 s; docs/speed.md); later starts load the cached file.

``cached_onnx(..., int8_calibration=DIR)`` returns ``CACHE/<key>.int8.onnx`` instead: the fp32
file above quantised once (``onnx_quantize.quantize_onnx``: static int8 of Psi's convolutions,
calibrated on ``int8_pairs`` registered pairs of DIR); its key adds the calibration folder, the
names of its pairs and the number used.
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


_SOURCE_DIGEST: str | None = None


def graph_source_digest(root: Path | None = None) -> str:
    """SHA-256 (hex) of the Python source that defines an exported graph: every ``.py`` file
    under ``ROOT/models`` and the exporter's modules (``ROOT/inference/onnx_export.py``,
    ``onnx_io.py``), by relative path and bytes. ``root``: a ``segmif_core`` folder (default
    this package's, whose digest is computed once per process: ~50 files, ~2 ms)."""
    global _SOURCE_DIGEST
    if root is None and _SOURCE_DIGEST is not None:
        return _SOURCE_DIGEST
    base = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    files = sorted(base.joinpath("models").rglob("*.py"))
    files += [base / "inference" / "onnx_export.py", base / "inference" / "onnx_io.py"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    if root is None:
        _SOURCE_DIGEST = h.hexdigest()
    return h.hexdigest()


def cache_key(checkpoint, fusion_scale: float | None, size=None) -> str:
    """Hex key of a checkpoint file's bytes plus the export settings and the graph's source
    (module docstring). Raises CheckpointError if the file does not exist."""
    path = Path(checkpoint or DEFAULT_CHECKPOINT)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    size = None if size is None else tuple(int(v) for v in size)
    h.update(f"|{fusion_scale}|{size}|{ONNX_FORMAT}|{torch.__version__}|"
             f"{graph_source_digest()}".encode())
    return h.hexdigest()[:24]


def cached_onnx(checkpoint=None, fusion_scale: float | None = None, log=None,
                size=None, int8_calibration=None, int8_pairs: int = 16) -> Path:
    """The cached ONNX file of ``checkpoint`` (None = the shipped one) for network input ``size``
    (h, w; None = the checkpoint's), exported now if needed; with ``int8_calibration`` (a folder
    of registered pairs) its int8 version (module docstring), quantised now if needed.
    ``log``: optional callable for one line before a (slow) export. Raises CheckpointError,
    ExportError (exporter packages missing or export failed), ValueError (no calibration
    pairs)."""
    if int8_calibration:
        fp32 = cached_onnx(checkpoint, fusion_scale, log, size)
        from ..data.pairs import list_pairs
        from .onnx_quantize import quantize_onnx
        root = Path(int8_calibration).resolve()
        if not root.is_dir():
            raise ValueError(f"int8 calibration folder not found: {root}")
        names = list_pairs(str(root))
        h = hashlib.sha256(f"{fp32.stem}|{root}|{int(int8_pairs)}|".encode())
        h.update("|".join(names).encode())
        q = cache_dir() / f"{h.hexdigest()[:24]}.int8.onnx"
        if not q.is_file():
            if log:
                log(f"quantising {fp32.name} to int8 once, calibrated on {root} (cached as {q})")
            quantize_onnx(fp32, q, root, pairs=int8_pairs)
        return q
    path = cache_dir() / f"{cache_key(checkpoint, fusion_scale, size)}.onnx"
    if not path.is_file():
        # a bad file (truncated, random bytes, a dict without 'model') fails here with the
        # checkpoint's one-line error, before the export line is logged
        load_checkpoint(checkpoint)
        if log:
            log(f"exporting {checkpoint or DEFAULT_CHECKPOINT} to ONNX once (cached as {path})")
        export_onnx(path, checkpoint, size=size, dynamic=True, fusion_scale=fusion_scale)
    return path
