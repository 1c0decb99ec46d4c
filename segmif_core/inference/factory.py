"""Backend choice and construction (``make_backend``), above the backends: the ONNX Runtime
backend takes a ready .onnx file, so a .pt checkpoint is exported (and for int8 quantised) here,
once, through the cache of ``onnx_cache``, before the backend is built."""
from __future__ import annotations

import torch

from .backends import (BACKENDS, ORT_PRECISIONS, BackendError, OnnxRuntimeBackend, TorchBackend,
                       _import_onnxruntime)
from .onnx_cache import cached_onnx


def onnxruntime_usable() -> bool:
    """onnxruntime and the exporter's packages (onnx, onnxscript) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(backend: str, checkpoint, device: torch.device, precision: str = "fp32",
                   compile: bool = False) -> str:
    """'auto' -> 'onnxruntime' for an .onnx file, or on the CPU in fp32 without compile when
    ONNX Runtime and the exporter are installed (about 1.8x faster than torch eager on this
    2-core CPU, see the README's benchmark), for every model (TSJNet's detector included:
    ``onnx_export``); 'torch' otherwise. Other names pass through."""
    if backend != "auto":
        return backend
    if checkpoint is not None and str(checkpoint).lower().endswith(".onnx"):
        return "onnxruntime"
    if precision == "int8":
        return "onnxruntime"
    if device.type == "cpu" and precision == "fp32" and not compile and onnxruntime_usable():
        return "onnxruntime"
    return "torch"


def make_backend(backend: str, checkpoint, device: torch.device, *, precision: str = "fp32",
                 compile: bool = False, threads: int = 0, fusion_scale: float | None = None,
                 device_preprocess: bool | None = None, log=None, input_size=None,
                 int8_calibration=None):
    """Build the backend ``backend`` ('auto' | 'torch' | 'onnxruntime'; see
    :func:`choose_backend` and the classes). For 'onnxruntime' the checkpoint is an .onnx file
    or a .pt checkpoint (None = the shipped one), which is exported once and cached
    (``inference.onnx_cache``, for the network ``input_size``, None = the checkpoint's; ``log``
    gets a line before the export). ``precision`` 'int8' (ONNX Runtime only): an .onnx file
    written by ``segmif export --int8``, or a .pt checkpoint quantised once and cached, which
    needs ``int8_calibration`` (a folder of registered pairs). Raises BackendError for
    an unknown backend or an option the backend does not take."""
    backend = choose_backend(backend, checkpoint, device, precision, compile)
    if backend == "torch":
        if checkpoint is not None and str(checkpoint).lower().endswith(".onnx"):
            raise BackendError(f"{checkpoint} is an ONNX file: use backend 'onnxruntime'")
        if precision == "int8":
            raise BackendError("precision 'int8' runs on backend 'onnxruntime' (a quantised "
                               "ONNX graph), not torch")
        return TorchBackend(checkpoint, device, precision, compile, fusion_scale,
                            device_preprocess)
    if backend == "onnxruntime":
        if precision not in ORT_PRECISIONS or compile or device_preprocess:
            raise BackendError(f"backend 'onnxruntime' takes precision {ORT_PRECISIONS} (got "
                               f"{precision!r}); compile and device preprocessing are torch "
                               "options")
        is_onnx = checkpoint is not None and str(checkpoint).lower().endswith(".onnx")
        if precision == "int8" and not is_onnx and not int8_calibration:
            raise BackendError("precision 'int8' with a .pt checkpoint needs int8_calibration: "
                               "a folder of registered pairs of your cameras (calibration of "
                               "the int8 ranges)")
        if is_onnx and fusion_scale is not None:
            raise BackendError("fusion_scale is fixed in an exported .onnx file (segmif export "
                               "--fusion-scale); give the .pt checkpoint to change it")
        if not is_onnx:
            if not onnxruntime_usable():
                _import_onnxruntime()  # the clear error when onnxruntime itself is missing
                raise BackendError("backend 'onnxruntime' with a .pt checkpoint exports it "
                                   "first, which needs the onnx and onnxscript packages")
            checkpoint = cached_onnx(checkpoint, fusion_scale, log, size=input_size,
                                     int8_calibration=int8_calibration
                                     if precision == "int8" else None)
        backend = OnnxRuntimeBackend(checkpoint, device, threads)
        if precision == "int8" and not backend.info["onnx"].get("quantization"):
            raise BackendError(f"{checkpoint} is an fp32 ONNX file: quantise it with "
                               "`segmif export --onnx OUT --int8 --calibration DIR`, or "
                               "give the .pt checkpoint with int8_calibration")
        return backend
    raise BackendError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


__all__ = ["choose_backend", "make_backend", "onnxruntime_usable"]
