"""Speed of the predictor alone: frames per second, latency percentiles, the time of each stage
and of each sub-network, with the hardware and software it ran on (``segmif benchmark``).

Every configuration runs ``frames`` predictions of one camera-sized pair after ``warmup``
ones, on one thread of control (batch 1, latency first). A configuration that the machine
cannot run (fp16 without CUDA, torch.compile failing, onnxruntime missing) is recorded with its
reason instead of numbers. Nothing here imports ROS: the live-graph half of the command is in
``segmif_ros.tools.benchmark``.

A speed goal is read from these numbers, never asserted in a test.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .evaluation import timing_summary
from .inference import SegMiFPredictor, export_onnx
from .inference.backends import BackendError
from .models.preprocessing import split_luminance


def hardware() -> dict:
    """CPU model, core count, memory, GPU names and the library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                                  1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def test_pair(camera, data=None) -> tuple[np.ndarray, np.ndarray]:
    """A visible/thermal pair of size ``camera`` (H, W): the first MFNet pair of ``data`` resized
    (a real scene, so that data-dependent work such as thermal percentiles is realistic), or
    seeded random noise without data."""
    h, w = camera
    if data is not None:
        from .data.pairs import list_pairs, read_pair
        vis, ir, _ = read_pair(str(data), list_pairs(str(data))[0])
        if ir.dtype != np.uint8:
            ir = (ir // 257).astype(np.uint8)
        return (cv2.resize(vis, (w, h), interpolation=cv2.INTER_LINEAR),
                cv2.resize(ir, (w, h), interpolation=cv2.INTER_LINEAR))
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            rng.integers(0, 256, (h, w), dtype=np.uint8))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def subnetwork_ms(predictor: SegMiFPredictor, vis: np.ndarray, ir: np.ndarray,
                  repeats: int = 5) -> dict | None:
    """Median time (ms) of each sub-network of a SegMiF model on the torch backend: the guidance
    pass of Psi's encoder (strides 4 and 8), Phi, Psi on the fused image, the full-resolution
    fused image (guided upsampler); None for other models or backends. Each is synchronised
    on its own, so they add up to a little more than the network time of a prediction."""
    backend = predictor.backend
    if getattr(backend, "name", "") != "torch" or getattr(backend.model, "name", "") != "segmif":
        return None
    model, dev = backend.model, backend.device
    h, w = predictor.input_size
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
    vis_hi = to_t(vis).permute(2, 0, 1)[None].float() / 255
    ir_hi = to_t(ir)[None, None].float() / 255
    vis_t = torch.nn.functional.interpolate(vis_hi, size=(h, w), mode="area")
    ir_t = torch.nn.functional.interpolate(ir_hi, size=(h, w), mode="area")
    scale = float(model.config.fusion_scale)
    size = (max(int(round(h * scale)), 32), max(int(round(w * scale)), 32))
    vis_f = torch.nn.functional.interpolate(vis_t, size=size, mode="area")
    ir_f = torch.nn.functional.interpolate(ir_t, size=size, mode="area")
    y_f, _ = split_luminance(vis_f)
    sem = model.segmenter.features(model.psi_input(vis_f, ir_f), stages=2) \
        if model.fusion.uses_semantics else None
    out = model(vis_t, ir_t)

    def timed(fn):
        times = []
        for _ in range(repeats + 1):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            times.append((time.perf_counter() - t0) * 1e3)
        return round(float(np.median(times[1:])), 3)

    result = {}
    if sem is not None:
        result["guidance_encoder"] = timed(
            lambda: model.segmenter.features(model.psi_input(vis_f, ir_f), stages=2))
    result["phi"] = timed(lambda: model.fusion(y_f, ir_f, sem))
    result["psi"] = timed(lambda: model.segment(out["fused_rgb"], ir_t))
    result["full_resolution_fusion"] = timed(
        lambda: model.full_resolution_fused(out, vis_t, ir_t, vis_hi, ir_hi))
    return result


def run_config(camera, *, checkpoint=None, device="cpu", backend="torch", precision="fp32",
               compile=False, threads=0, input_size=None, fusion_scale=None, frames=50,
               warmup=5, data=None, onnx_dir=None) -> dict:
    """Benchmark one configuration (see the module docstring). For backend 'onnxruntime' the
    checkpoint is exported first into ``onnx_dir`` (a fixed-size graph for this camera and
    network size); an .onnx checkpoint (e.g. ``segmif export --int8``) is used as it is.
    Returns a dict: the configuration, 'fps', 'latency_ms' (p50/p90/p99/max of the whole
    prediction), 'stages_ms' (per stage summaries), 'subnetworks_ms' or 'skipped'."""
    cfg = {"camera": list(camera), "device": device, "backend": backend, "precision": precision,
           "compile": bool(compile), "threads": threads or torch.get_num_threads(),
           "fusion_scale": fusion_scale}
    try:
        ckpt = checkpoint
        if backend == "onnxruntime":
            if precision != "fp32" or compile:
                raise BackendError("ONNX Runtime runs the exported fp32 graph only here")
            try:
                import onnxruntime  # noqa: F401
            except ImportError as err:
                raise BackendError("onnxruntime is not installed") from err
            onnx_dir = Path(onnx_dir or tempfile.mkdtemp(prefix="segmif_bench_"))
            given = checkpoint is not None and str(checkpoint).lower().endswith(".onnx")
            ckpt = Path(checkpoint) if given else \
                onnx_dir / f"model_{camera[0]}x{camera[1]}_{fusion_scale or 'ckpt'}.onnx"
            if not ckpt.is_file():
                export_onnx(ckpt, checkpoint, size=input_size, camera=camera,
                            fusion_scale=fusion_scale)
        pred = SegMiFPredictor(ckpt, device, input_size, backend=backend, precision=precision,
                               compile=compile, threads=threads,
                               fusion_scale=None if backend == "onnxruntime" else fusion_scale)
        vis, ir = test_pair(camera, data)
        for _ in range(warmup):
            pred.predict(vis, ir)
        results = []
        t0 = time.perf_counter()
        for _ in range(frames):
            results.append(pred.predict(vis, ir))
        wall = time.perf_counter() - t0
    except (BackendError, ValueError, RuntimeError) as err:
        return {**cfg, "skipped": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    except Exception as err:  # noqa: BLE001 - torch.compile and exporters raise anything
        return {**cfg, "skipped": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
    stages = {k: timing_summary(r.stages_ms.get(k, 0.0) for r in results)
              for k in results[0].stages_ms}
    return {**cfg, "input_size": list(pred.input_size), "frames": frames,
            "fps": round(frames / wall, 2),
            "latency_ms": timing_summary(r.total_ms for r in results),
            "stages_ms": stages, "subnetworks_ms": subnetwork_ms(pred, vis, ir),
            "providers": getattr(pred.backend, "providers", None)}


def model_description(checkpoint=None) -> dict:
    """Model name, config and parameter count of a checkpoint (for the benchmark's record); for
    an exported .onnx file its metadata (quantization included)."""
    from .checkpoint import load_checkpoint
    if checkpoint is not None and str(checkpoint).lower().endswith(".onnx"):
        from .inference.backends import read_onnx_metadata
        meta = read_onnx_metadata(checkpoint)
        return {"checkpoint": str(checkpoint), "model": meta.get("model"),
                "config": meta.get("config"), "input_size": meta.get("input_size"),
                "classes": list(meta["classes"]["names"]),
                "quantization": meta.get("quantization")}
    model, classes, info = load_checkpoint(checkpoint)
    return {"checkpoint": str(checkpoint) if checkpoint else "default", "model": info["model"],
            "config": info["config"], "input_size": info.get("input_size"),
            "classes": list(classes.names),
            "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}


def precisions_for(device: str) -> list[str]:
    """fp32 everywhere, bf16 where the CPU or GPU supports it, fp16 on CUDA."""
    out = ["fp32"]
    if device.startswith("cuda"):
        out.append("fp16")
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            out.append("bf16")
    elif hasattr(torch.backends, "mkldnn") and torch.backends.mkldnn.is_available():
        out.append("bf16")
    return out


def format_table(rows: list[dict]) -> str:
    """A Markdown table of benchmark rows (predictor or live)."""
    head = ("| camera | device | backend | precision | compile | fusion_scale | fps | p50 ms | "
            "p90 ms | p99 ms | max ms |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lat = r.get("latency_ms") or {}
        cells = [f"{r['camera'][1]}x{r['camera'][0]}", r["device"], r["backend"], r["precision"],
                 "yes" if r.get("compile") else "no", str(r.get("fusion_scale") or "ckpt")]
        if "skipped" in r:
            cells += [f"skipped: {r['skipped'][:60]}", "", "", "", ""]
        else:
            cells += [f"{r['fps']:.1f}"] + [f"{lat.get(k, float('nan')):.1f}"
                                            for k in ("p50", "p90", "p99", "max")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
