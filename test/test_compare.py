"""Several models side by side (segmif_core.compare, ``segmif evaluate --checkpoint A
--checkpoint B``): one table, rows = models then fusion rules, columns = mIoU, mAP@0.5,
mAP@0.5:0.95 and the fusion metrics.

Data: one 48 x 64 pair, ground truth car at rows 10-29, cols 20-39 (400 px, box
[20, 10, 40, 30]); the other 2672 px unlabelled (class 0). Two stand-in models:
    SegStub (no detector): labels all 0 -> IoU(0) = 2672 / 3072, IoU(car) = 0; the other classes
        appear nowhere (skipped) -> mIoU = 100 * (2672 / 3072) / 2 = 43.49.
    DetStub (detector car, person, bike): labels = ground truth -> mIoU 100; one car box 4 px
        right of the truth, [24, 10, 44, 30]: IoU = 16 * 20 / (400 + 400 - 320) = 2/3, a true
        positive at IoU 0.50-0.65 only -> mAP@0.5 100, mAP@0.5:0.95 = 4 / 10 = 40 (person and
        bike have no ground truth: left out).
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segmif_core.compare import COLUMNS, compare, render_comparison_markdown, write_comparison
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.evaluation import evaluate_folder
from segmif_core.metrics.fusion import FUSION_METRIC_KEYS

H, W = 48, 64
SEG_MIOU = 100.0 * (2672 / 3072) / 2
TINY = {"pretrained": None, "stem_channels": [8, 8, 16], "planes": 4, "reduce_channels": [8, 8, 8],
        "nat_dims": [8, 16, 32, 64], "nat_heads": [1, 1, 2, 4], "nat_head_hidden": 8,
        "det_width": 16, "det_convs": 1, "seg_width": 16, "seg_low_channels": 8}


def _label():
    lab = np.zeros((H, W), np.uint8)
    lab[10:30, 20:40] = 1
    return lab


class _Stub:
    thermal_norm, thermal_percentiles, thermal_range = "percentile", (1.0, 99.0), (0.0, 65535.0)
    classes, input_size, device = MFNET_CLASSES, (H, W), "cpu"

    def __init__(self, path=None, *a, **kw):
        self.detector = "det" in str(path)
        self.checkpoint_path = str(path)
        self.info = {"model": "tsjnet" if self.detector else "segmif"}
        self.detection_classes = ("car", "person", "bike") if self.detector else ()

    def predict(self, vis, ir):
        from segmif_core.inference.predictor import Prediction
        labels = _label() if self.detector else np.zeros((H, W), np.uint8)
        dets = None
        if self.detector:
            dets = {"boxes": np.array([[24, 10, 44, 30]], np.float32),
                    "scores": np.array([0.9], np.float32), "classes": np.array([0]),
                    "names": list(self.detection_classes)}
        fused = np.ascontiguousarray(vis[..., ::-1]) if self.detector else vis.copy()
        return Prediction(fused, labels, np.ones((H, W), np.float32), 1.0, 1.0, {}, dets)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    for d in ("vis", "ir", "label"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    vis = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (W, H))
    ir = cv2.resize(rng.integers(0, 256, (6, 8), dtype=np.uint8), (W, H))
    cv2.imwrite(str(root / "vis" / "p0.png"), vis)
    cv2.imwrite(str(root / "ir" / "p0.png"), ir)
    cv2.imwrite(str(root / "label" / "p0.png"), _label())
    return root


def test_table_rows_and_columns_by_hand(data, tmp_path):
    models = [("SegStub", _Stub("seg.pt")), ("DetStub", _Stub("det.pt"))]
    comp = compare(models, [("val", str(data), None)], rules=("visible", "average"))
    rows = comp["rows"]
    assert [(r["method"], r["kind"]) for r in rows] == [
        ("SegStub", "model"), ("DetStub", "model"), ("visible", "rule"), ("average", "rule")]
    assert comp["columns"] == ["mIoU", "map50", "map50_95", *FUSION_METRIC_KEYS]
    seg, det, vis_rule, _ = rows
    assert seg["mIoU"] == pytest.approx(SEG_MIOU) and seg["map50"] is None
    assert det["mIoU"] == pytest.approx(100.0)
    assert det["map50"] == pytest.approx(100.0) and det["map50_95"] == pytest.approx(40.0)
    assert vis_rule["mIoU"] is None and vis_rule["map50"] is None
    # the fusion columns are the single reports' means
    alone = evaluate_folder(_Stub("seg.pt"), str(data), rules=("visible",))
    for k in FUSION_METRIC_KEYS:
        assert seg[k] == alone["fusion"]["SegMiF"][k]
        assert vis_rule[k] == alone["fusion"]["visible"][k]
    # SegStub's fused image is the visible image: its row equals the visible rule's
    assert seg["EN"] == pytest.approx(vis_rule["EN"]) and seg["SD"] == pytest.approx(vis_rule["SD"])
    md = render_comparison_markdown(comp)
    assert "| data | method | mIoU | mAP@0.5 | mAP@0.5:0.95 | EN |" in md
    assert f"| val | SegStub | {SEG_MIOU:.1f} | - | - |" in md
    assert "| val | DetStub | 100.0 | 100.0 | 40.0 |" in md and "| val | visible (rule) | - |" in md
    files = write_comparison(comp, tmp_path / "out")
    assert "comparison.md" in files and (tmp_path / "out" / "val" / "DetStub" / "report.md").is_file()
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert "reports" not in saved and saved["rows"][1]["map50_95"] == pytest.approx(40.0)


def test_two_datasets_and_errors(data):
    models = [("A", _Stub("seg.pt")), ("B", _Stub("det.pt"))]
    comp = compare(models, [("val", str(data), None), ("pairs", str(data), None)], rules=())
    assert [(r["data"], r["method"]) for r in comp["rows"]] == [
        ("val", "A"), ("val", "B"), ("pairs", "A"), ("pairs", "B")]
    with pytest.raises(ValueError, match="unique"):
        compare([("A", _Stub("seg.pt")), ("A", _Stub("det.pt"))], [("val", str(data), None)])
    assert set(COLUMNS) >= {"mIoU", "map50", "map50_95", "Qabf"}


def test_cli_two_checkpoints(data, tmp_path, monkeypatch, capsys):
    import segmif_core.inference
    from segmif_ros.tools import cli

    monkeypatch.setattr(segmif_core.inference, "SegMiFPredictor", _Stub)
    out = tmp_path / "cmp"
    assert cli.main(["evaluate", "--data", str(data), "--out", str(out), "--checkpoint",
                     "seg.pt", "--checkpoint", "DET=det.pt"]) == 0
    text = capsys.readouterr().out
    assert "SegMiF" in text and "DET" in text and "mAP@0.5 100.00" in text
    saved = json.loads((out / "comparison.json").read_text())
    names = [r["method"] for r in saved["rows"]]
    assert names[:2] == ["SegMiF", "DET"] and "average" in names
    assert saved["rows"][0]["mIoU"] == pytest.approx(SEG_MIOU)
    # one checkpoint: the single report, with the mAP line for a detector
    assert cli.main(["evaluate", "--data", str(data), "--out", str(tmp_path / "one"),
                     "--checkpoint", "det.pt", "--no-rules"]) == 0
    text = capsys.readouterr().out
    assert "mAP@0.5 100.00  mAP@0.5:0.95 40.00" in text
    # two models of the same kind get their file stems
    assert cli.main(["evaluate", "--data", str(data), "--out", str(tmp_path / "same"),
                     "--checkpoint", "a.pt", "--checkpoint", "b.pt", "--no-rules"]) == 0
    saved = json.loads((tmp_path / "same" / "comparison.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["SegMiF-a", "SegMiF-b"]


def test_cli_real_tiny_checkpoints(data, tmp_path, tiny_checkpoint, capsys):
    import torch

    from segmif_core.checkpoint import save_checkpoint
    from segmif_core.models import build_model
    from segmif_ros.tools import cli

    torch.manual_seed(0)
    tsj = tmp_path / "tsj.pt"
    save_checkpoint(tsj, build_model("tsjnet", dict(TINY)), MFNET_CLASSES, input_size=(64, 64))
    out = tmp_path / "real"
    assert cli.main(["evaluate", "--data", str(data), "--out", str(out), "--checkpoint",
                     str(tiny_checkpoint), "--checkpoint", str(tsj), "--no-rules"]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    seg, det = saved["rows"]
    assert (seg["method"], det["method"]) == ("SegMiF", "TSJNet")
    assert seg["map50"] is None and det["map50"] is not None and 0 <= det["map50"] <= 100
    assert isinstance(seg["mIoU"], float) and isinstance(det["EN"], float)


def test_compare_script(data, tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    import segmif_core.inference

    path = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"
    spec = importlib.util.spec_from_file_location("compare_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.parse_dataset("val=/d/mfnet:val.txt") == ("val", "/d/mfnet", "val.txt")
    assert script.parse_dataset("tno=/d/tno") == ("tno", "/d/tno", None)
    monkeypatch.setattr(segmif_core.inference, "SegMiFPredictor", _Stub)
    out = tmp_path / "script"
    assert script.main(["--out", str(out), "--data", f"val={data}", "--data", f"pairs={data}",
                        "S=seg.pt", "T=det.pt", "--rules", "average"]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    assert [(r["data"], r["method"]) for r in saved["rows"]] == [
        ("val", "S"), ("val", "T"), ("val", "average"), ("pairs", "S"), ("pairs", "T"),
        ("pairs", "average")]
    assert saved["rows"][1]["map50_95"] == pytest.approx(40.0)
    assert "| pairs | T | 100.0 | 100.0 | 40.0 |" in capsys.readouterr().out
    assert script.main(["--out", str(out), "--data", "bad", "S=seg.pt"]) == 2
