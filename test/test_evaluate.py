"""``segmif evaluate`` end to end: report schema, protocol switches, fusion metrics, files.

Expectations are computed here independently: images are read back with cv2, the luminance is
computed with its own formula, 16-bit thermal is scaled with numpy percentiles, the fusion rules
are written out by hand, and the crafted segmentation case has its IoU/Acc worked out on paper.
Small images (at least 41 x 41, the VIF minimum) keep the CPU use low.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from segmif_core.data.classes import MFNET_CLASSES, ClassSet
from segmif_core.metrics.fusion import FUSION_METRIC_KEYS, fusion_metrics
from segmif_ros.tools import cli

from conftest import TNO, needs_tno

RULES = ["visible", "thermal", "average", "maximum", "laplacian", "gff"]
FILES = ["report.json", "report.md", "fusion_violins.png", "confusion_matrix.png"]


# ------------------------------------------------------------------------------------- helpers
def _textured(rng, h, w, channels=None):
    """Smooth random image (not pure noise, so that every metric is well defined)."""
    shape = (h // 8 + 2, w // 8 + 2) + ((channels,) if channels else ())
    small = rng.integers(0, 256, shape).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    big = big + rng.normal(0, 6, big.shape)
    return np.clip(big, 0, 255).astype(np.uint8)


def _write_dataset(root: Path, sizes, labels=True, gray_visible=False, ir3=False,
                   ir16_index=None, seed=0):
    """root/{vis,ir[,label]}/pNN.png; returns the names."""
    rng = np.random.default_rng(seed)
    for d in ("vis", "ir") + (("label",) if labels else ()):
        (root / d).mkdir(parents=True, exist_ok=True)
    names = []
    for i, (h, w) in enumerate(sizes):
        name = f"p{i:02d}"
        names.append(name)
        vis = _textured(rng, h, w) if gray_visible else _textured(rng, h, w, 3)
        if i == ir16_index:
            ir = (_textured(rng, h, w).astype(np.uint16) * 200 + 3000).astype(np.uint16)
        else:
            ir = _textured(rng, h, w)
            if ir3:
                ir = np.dstack([ir, ir, ir])
        assert cv2.imwrite(str(root / "vis" / f"{name}.png"), vis)
        assert cv2.imwrite(str(root / "ir" / f"{name}.png"), ir)
        if labels:
            lab = rng.integers(0, 9, (h // 8 + 1, w // 8 + 1)).astype(np.uint8)
            lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
            assert cv2.imwrite(str(root / "label" / f"{name}.png"), lab)
    return names


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma, rounded half up, from float64 with a tolerance-free integer check."""
    y = 0.299 * rgb[..., 0].astype(np.float64) + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.floor(y + 0.5 + 1e-9).astype(np.uint8)


def _read_sources(root: Path, name: str):
    """(visible luma uint8, thermal uint8) read with cv2 and scaled here."""
    vis = cv2.imread(str(root / "vis" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    if vis.ndim == 2:
        vis_y = vis
    else:
        vis_y = _luma(vis[..., ::-1])
    ir = cv2.imread(str(root / "ir" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    if ir.ndim == 3:
        ir = ir[..., 0]
    if ir.dtype == np.uint16:  # written as 3000 + 200 * v: the fixed rule 3000..54000 gives v
        ir = ((ir.astype(np.int64) - 3000) // 200).astype(np.uint8)
    return vis_y, ir


def _close(a, b, tol=1e-6):
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return (a is None) and (b is None or math.isnan(b))
    return abs(a - b) <= tol * max(1.0, abs(b))


def _evaluate(args) -> int:
    return cli.main(["evaluate"] + [str(a) for a in args])


def _load(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _no_temp_files(out: Path):
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------- the schema
def test_labelled_report_schema_and_files(tmp_path, tiny_checkpoint):
    data = tmp_path / "data"
    names = _write_dataset(data, [(48, 64), (56, 72), (48, 64)])
    out = tmp_path / "out"
    assert _evaluate(["--data", data, "--checkpoint", tiny_checkpoint, "--out", out]) == 0
    for f in FILES:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    _no_temp_files(out)
    r = _load(out)
    assert r["n_pairs"] == 3 and r["n_labelled"] == 3
    for key in ("mIoU", "mAcc", "pixel_acc"):
        assert isinstance(r[key], float) and 0.0 <= r[key] <= 100.0
    assert list(r["per_class"]) == list(MFNET_CLASSES.names)
    for v in r["per_class"].values():
        assert set(v) == {"iou", "acc", "present"}
        assert v["iou"] is None or 0.0 <= v["iou"] <= 100.0
    assert r["protocol"]["include_background"] is True and r["protocol"]["absent"] == "skip"
    assert "bits" in r["protocol"]["fusion"]["MI"]
    assert r["checkpoint"] == str(tiny_checkpoint)
    assert r["methods"] == ["SegMiF"] + RULES
    assert set(r["fusion"]) == set(r["methods"])
    for m in r["methods"]:
        assert list(r["fusion"][m]) == list(FUSION_METRIC_KEYS)
        for k in FUSION_METRIC_KEYS:
            assert len(r["fusion_per_image"][m][k]) == 3
    assert r["pairs"] == names
    cmx = np.array(r["confusion_matrix"])
    assert cmx.shape == (9, 9) and cmx.sum() == 48 * 64 * 2 + 56 * 72
    assert r["timing"]["inference_ms"]["n"] == 3
    md = (out / "report.md").read_text()
    assert "| SegMiF |" in md and "| average |" in md and "EN | SD | SF | AG | MI | SCD | VIF " \
        "| Qabf | SSIM" in md
    assert "class 0 (unlabelled) included" in md and "bits" in md
    # the model's fusion row from the predictor's own output, computed here
    from segmif_core.inference import SegMiFPredictor
    pred = SegMiFPredictor(tiny_checkpoint)
    for i, name in enumerate(names):
        vis = cv2.imread(str(data / "vis" / f"{name}.png"))[..., ::-1].copy()
        ir = cv2.imread(str(data / "ir" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        fused_y = _luma(pred.predict(vis, ir).fused)
        expect = fusion_metrics(_luma(vis), ir, fused_y)
        for k in FUSION_METRIC_KEYS:
            assert _close(r["fusion_per_image"]["SegMiF"][k][i], expect[k]), (name, k)


def test_no_rules_and_backward_compatible_call(tmp_path, tiny_checkpoint):
    from segmif_core.evaluation import evaluate_folder
    from segmif_core.inference import SegMiFPredictor

    data = tmp_path / "data"
    _write_dataset(data, [(48, 48)])
    out = tmp_path / "out"
    assert _evaluate(["--data", data, "--checkpoint", tiny_checkpoint, "--out", out,
                      "--no-rules"]) == 0
    assert _load(out)["methods"] == ["SegMiF"]
    r = evaluate_folder(SegMiFPredictor(tiny_checkpoint), str(data), None, None)  # old call
    assert r["methods"] == ["SegMiF"] + RULES and isinstance(r["mIoU"], float)


# ----------------------------------------------------------------------------- unlabelled data
def test_unlabelled_mixed_sizes_gray_visible_3ch_thermal(tmp_path, tiny_checkpoint):
    data = tmp_path / "tno_like"
    _write_dataset(data, [(48, 64), (64, 48), (72, 56)], labels=False, gray_visible=True,
                   ir3=True)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "confusion_matrix.png").write_bytes(b"stale")  # from an earlier labelled run
    assert _evaluate(["--data", data, "--checkpoint", tiny_checkpoint, "--out", out]) == 0
    r = _load(out)
    assert r["n_pairs"] == 3 and r["n_labelled"] == 0
    for key in ("mIoU", "mAcc", "pixel_acc", "per_class", "confusion_matrix"):
        assert r[key] is None
    assert r["protocol"]["include_background"] is True  # the protocol is stated anyway
    assert r["methods"] == ["SegMiF"] + RULES
    assert all(r["fusion"][m]["EN"] is not None for m in r["methods"])
    assert (out / "fusion_violins.png").is_file()
    assert not (out / "confusion_matrix.png").exists()
    assert r["files"] == ["report.json", "report.md", "fusion_violins.png"]
    assert "no ground-truth labels" in (out / "report.md").read_text()


@needs_tno
def test_real_unlabelled_tno_rule_only(tmp_path):
    root = Path(TNO)
    # the two smallest pairs (mixed sizes, gray visible, 3-channel thermal PNGs)
    sizes = {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).size
             for p in sorted((root / "vis").glob("*.png"))}
    names = sorted(sizes, key=sizes.get)[:2]
    split = tmp_path / "two.txt"
    split.write_text("\n".join(names) + "\n")
    out = tmp_path / "out"
    assert _evaluate(["--data", root, "--split", split, "--method", "maximum",
                      "--out", out]) == 0
    r = _load(out)
    assert r["methods"] == ["maximum"] and r["mIoU"] is None and r["n_pairs"] == 2
    for i, name in enumerate(names):
        a, b = _read_sources(root, name)
        expect = fusion_metrics(a, b, np.maximum(a, b))
        for k in FUSION_METRIC_KEYS:
            assert _close(r["fusion_per_image"]["maximum"][k][i], expect[k]), (name, k)


# ------------------------------------------------------------------------------ rule evaluation
def test_rule_only_equals_direct_fusion_metrics(tmp_path):
    data = tmp_path / "data"
    names = _write_dataset(data, [(48, 64), (52, 60), (48, 48)], ir16_index=1)
    out = tmp_path / "out"
    assert _evaluate(["--data", data, "--method", "average", "--out", out,
                      "--thermal-norm", "fixed", "--thermal-range", "3000", "54000"]) == 0
    r = _load(out)
    assert r["methods"] == ["average"] and r["checkpoint"] is None
    assert r["protocol"]["fusion"]["thermal_rule"]["mode"] == "fixed"
    assert r["mIoU"] is None and r["per_class"] is None  # rule alone: fusion metrics only
    per_image = {k: [] for k in FUSION_METRIC_KEYS}
    for i, name in enumerate(names):
        a, b = _read_sources(data, name)
        f = ((a.astype(np.int64) + b + 1) // 2).astype(np.uint8)
        expect = fusion_metrics(a, b, f)
        for k in FUSION_METRIC_KEYS:
            assert _close(r["fusion_per_image"]["average"][k][i], expect[k]), (name, k)
            per_image[k].append(expect[k])
    for k in FUSION_METRIC_KEYS:
        assert _close(r["fusion"]["average"][k], float(np.mean(per_image[k])))
    for f in ("report.json", "report.md", "fusion_violins.png"):
        assert (out / f).is_file()
    _no_temp_files(out)


def test_rule_only_refuses_checkpoint(tmp_path, capsys):
    data = tmp_path / "data"
    _write_dataset(data, [(48, 48)])
    assert _evaluate(["--data", data, "--method", "thermal", "--checkpoint", "x.pt",
                      "--out", tmp_path / "out"]) == 2
    assert "--checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- protocol switches
TOY = ClassSet("toy", ("unlabelled", "a", "b", "c"),
               ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)))
# 48 x 48 = 2304 pixels, gt row / pred column:
#   gt 0: 1000 -> 0, 200 -> 1, 104 -> 2        gt 1: 800 -> 1, 200 -> 0
# class 2 is predicted but never in the ground truth, class 3 appears nowhere.
GT_FLAT = [0] * 1304 + [1] * 1000
PRED_FLAT = [0] * 1000 + [1] * 200 + [2] * 104 + [1] * 800 + [0] * 200
IOU = [1000 / 1504, 800 / 1200, 0.0, None]
ACC = [1000 / 1304, 800 / 1000, None, None]


class FakePredictor:
    """Stands in for SegMiFPredictor: crafted labels, fused = the visible image with its
    channels reversed (so the model row differs from the visible rule)."""

    def __init__(self, checkpoint=None, device="cpu", input_size=None, **kw):
        self.classes, self.info = TOY, {"model": "segmif"}
        self.checkpoint_path, self.input_size, self.device = "fake.pt", (48, 48), "cpu"
        self.thermal_norm, self.thermal_range, self.thermal_percentiles = \
            "percentile", (0.0, 65535.0), (1.0, 99.0)

    def predict(self, vis, ir):
        from segmif_core.inference import Prediction
        labels = np.array(PRED_FLAT, np.uint8).reshape(48, 48)
        return Prediction(np.ascontiguousarray(vis[..., ::-1]), labels,
                          np.ones((48, 48), np.float32), 1.0, 1.0)


def _by_hand(include_background, absent):
    first = 0 if include_background else 1

    def mean(values):
        v = values[first:]
        if absent == "present":  # classes with ground-truth pixels: ids 0 and 1 (GT_FLAT)
            v = [x for c, x in enumerate(values) if c >= first and c in (0, 1)]
        v = [0.0 if x is None else x for x in v] if absent == "zero" else \
            [x for x in v if x is not None]
        return 100.0 * sum(v) / len(v)

    return mean(IOU), mean(ACC)


@pytest.mark.parametrize("flags,include_background,absent", [
    ([], True, "skip"),
    (["--exclude-background"], False, "skip"),
    (["--absent", "zero"], True, "zero"),
    (["--exclude-background", "--absent", "zero"], False, "zero"),
    (["--absent", "present"], True, "present"),
])
def test_protocol_switches(tmp_path, monkeypatch, flags, include_background, absent):
    import segmif_core.inference
    monkeypatch.setattr(segmif_core.inference, "SegMiFPredictor", FakePredictor)
    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    for d in ("vis", "ir", "label"):
        (data / d).mkdir(parents=True)
    vis = _textured(rng, 48, 48, 3)
    ir = _textured(rng, 48, 48)
    cv2.imwrite(str(data / "vis" / "x.png"), vis)
    cv2.imwrite(str(data / "ir" / "x.png"), ir)
    cv2.imwrite(str(data / "label" / "x.png"), np.array(GT_FLAT, np.uint8).reshape(48, 48))
    out = tmp_path / "out"
    assert _evaluate(["--data", data, "--out", out] + flags) == 0
    r = _load(out)
    miou, macc = _by_hand(include_background, absent)
    assert r["mIoU"] == pytest.approx(miou, abs=1e-9)
    assert r["mAcc"] == pytest.approx(macc, abs=1e-9)
    assert r["pixel_acc"] == pytest.approx(100.0 * 1800 / 2304)
    assert r["per_class"]["a"]["iou"] == pytest.approx(100 * 800 / 1200)
    assert r["per_class"]["c"]["iou"] is None and r["per_class"]["b"]["acc"] is None
    assert r["protocol"]["include_background"] is include_background
    assert r["protocol"]["absent"] == absent
    assert r["confusion_matrix"] == [[1000, 200, 104, 0], [200, 800, 0, 0], [0] * 4, [0] * 4]
    md = (out / "report.md").read_text()
    assert ("class 0 (unlabelled) included" if include_background
            else "class 0 (unlabelled) excluded") in md
    assert {"skip": "skipped in the means", "zero": "counted as 0",
            "present": "classes present in the ground truth only"}[absent] in md
    for f in FILES:
        assert (out / f).is_file()
    _no_temp_files(out)
    # the model row: fused = channel-reversed visible, scored on its own luma
    a, b = _luma(vis[..., ::-1]), ir
    expect = fusion_metrics(a, b, _luma(vis))
    for k in FUSION_METRIC_KEYS:
        assert _close(r["fusion"]["SegMiF"][k], expect[k]), k
    assert _close(r["fusion"]["visible"]["SSIM"], fusion_metrics(a, b, a)["SSIM"])
