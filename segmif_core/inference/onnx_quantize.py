"""Static int8 quantisation of an exported segmif ONNX file (``segmif export --onnx --int8``).

ONNX Runtime's ``quantize_static`` in QDQ form: weights int8 per output channel, activations
uint8 per tensor, ranges from a calibration run (min/max of every quantised tensor) over real,
registered pairs. Only the convolutions of one part of the model are quantised, by default
Psi (``model.segmenter``: SegMiF's segmentation network, whose encoder also guides the fusion
network): measured on this project's 2-core AVX2 CPU (README "Speed"), that part lowers the
network time by 5-15 % (1 and 2 threads, machine shared) at no measurable mIoU cost (val 40.25 vs
40.22 at fusion_scale 0.5), whereas quantising every convolution (Phi, the guided upsampler's box
sums included) made it slower and dropped val mIoU to 19.3, and skipping ONNX Runtime's
pre-processing made it 6 % slower than fp32 (val 39.14). Gains are small on an AVX2 CPU without
VNNI (this project's); CPUs with VNNI / AMX or ARM dot-product units gain more. Weights that
are ONNX constants of unknown origin (the HIA and decoder projections, exported as Gemm/MatMul
with anonymous initialisers) stay fp32.

The output keeps the fp32 file's metadata (``segmif``) plus a ``quantization`` entry (method,
part, number of quantised convolutions, calibration pairs), so the ONNX Runtime backend loads
it like any exported file: ``-p checkpoint:=OUT.onnx``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2

from .. import atomic
from .onnx_io import METADATA_KEY, graph_feed
from ..choices import check_choice

#: parts of the model whose convolutions can be quantised (weight-name prefixes in the graph)
PARTS = {"segmenter": "model.segmenter.", "fusion": "model.fusion.", "all": "model."}


def _calibration_feeds(meta: dict, root, pairs: int, layout: str = "auto") -> list[dict]:
    """The ONNX inputs of up to ``pairs`` training pairs of ``root`` (evenly spread), built as
    the predictor builds them with its default thermal rule (``normalize_thermal`` 'percentile'
    1-99 %, then ``onnx_io.graph_feed`` at the file's network size ``meta['input_size']``); a
    fixed-size file's pairs are first resized to its camera size ``meta['camera_size']``."""
    from ..data.pairs import list_pairs, read_pair
    from ..data.thermal import normalize_thermal

    root = Path(root)
    split = root / "train.txt"
    names = list_pairs(str(root), str(split) if split.is_file() else None, layout=layout)
    if not names:
        raise ValueError(f"no calibration pairs in {root}")
    step = max(1, len(names) // max(1, pairs))
    names = names[::step][:pairs]
    size = tuple(int(v) for v in meta["input_size"])
    camera = meta.get("camera_size")  # a fixed-size file: pairs resized to its camera size
    feeds: list[dict] = []
    for name in names:
        vis, ir, _ = read_pair(str(root), name, layout=layout)
        if camera and vis.shape[:2] != tuple(camera):
            wh = (int(camera[1]), int(camera[0]))
            vis = cv2.resize(vis, wh, interpolation=cv2.INTER_AREA)
            ir = cv2.resize(ir, wh, interpolation=cv2.INTER_AREA)
        if vis.shape[:2] != ir.shape:
            raise ValueError(f"calibration pair {name}: visible {vis.shape[:2]} and thermal "
                             f"{ir.shape} sizes differ (registered pairs needed)")
        ir01 = normalize_thermal(ir, "percentile", 1.0, 99.0, 0.0, 65535.0)
        feeds.append(graph_feed(vis, ir01, size))
    return feeds


def quantize_onnx(src, out, calibration, *, pairs: int = 16, part: str = "segmenter",
                  layout: str = "auto") -> dict:
    """Quantise the exported fp32 file ``src`` into ``out`` (written atomically).

    Args:
        src: an ONNX file written by ``export_onnx`` (fp32).
        calibration: a folder of registered pairs (``data.pairs`` layouts; its ``train.txt``
            is used when present), e.g. ../shared/data/mfnet or your own rig's pairs.
        pairs: number of calibration pairs (>= 1).
        part: 'segmenter' (default, see the module docstring), 'fusion' or 'all'.
    Returns the metadata written (the source's plus 'quantization').
    Raises ValueError (unknown part, no pairs, ``src`` not an exported file), ImportError
    (onnxruntime or onnx missing).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_choice("part", part, sorted(PARTS))
    if int(pairs) < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    src, out = Path(src), Path(out)
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{src} has no '{METADATA_KEY}' metadata: export it with "
                         "`segmif export --onnx` first")
    meta = json.loads(props[METADATA_KEY])
    if "quantization" in meta:
        raise ValueError(f"{src} is already quantised")
    feeds = _calibration_feeds(meta, calibration, int(pairs), layout)

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    with atomic.atomic_path(out, keep_suffix=True) as tmp_path:
        tmp, pre = str(tmp_path), f"{tmp_path}.pre.onnx"
        try:
            # ONNX Runtime's pre-processing (shape inference, graph optimisation): measured, the
            # quantised graph is faster and closer to fp32 with it (README "Speed"). Convolutions
            # whose weights the optimiser rewrote (folded constants, new names) are not matched by
            # the part's prefix and stay fp32.
            quant_pre_process(str(src), pre, skip_symbolic_shape=True)
            prefix = PARTS[part]
            nodes = [n.name for n in onnx.load(pre).graph.node if n.op_type == "Conv"
                     and len(n.input) > 1 and n.input[1].startswith(prefix)]
            if not nodes:
                raise ValueError(f"{src}: no convolution of part {part!r} (weights named "
                                 f"{prefix}*)")
            quantize_static(pre, tmp, _Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, nodes_to_quantize=nodes, op_types_to_quantize=["Conv"],
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            quantised = onnx.load(tmp)
            meta["quantization"] = {
                "method": "static int8 QDQ (onnxruntime.quantization.quantize_static, MinMax)",
                "weights": "int8 per channel", "activations": "uint8 per tensor", "part": part,
                "convolutions": len(nodes), "calibration": str(calibration),
                "calibration_pairs": len(feeds), "source": str(src)}
            del quantised.metadata_props[:]
            for key, value in props.items():
                entry = quantised.metadata_props.add()
                entry.key, entry.value = key, json.dumps(meta) if key == METADATA_KEY else value
            onnx.save(quantised, tmp)
        finally:
            if os.path.exists(pre):
                os.remove(pre)
    return meta
