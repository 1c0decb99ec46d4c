"""Training: a few steps lower the joint loss; the loop checks data first and writes its files."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from segmif_core.checkpoint import load_checkpoint
from segmif_core.data.pairs import DatasetError
from segmif_core.models import build_model
from segmif_core.training.trainer import load_config, losses_for, train

TINY = {"fusion_width": 8, "drdb_growth": 4, "hia_heads": 2, "decoder_hidden_size": 32}
TC = {"eta": 1.0, "lambda_fusion": 1.0, "lambda_seg": 1.0}


def test_train_steps_lower_the_joint_loss():
    torch.manual_seed(0)
    model = build_model("segmif", dict(TINY, num_classes=3))
    vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    label = (ir[:, 0] * 3).long().clamp(max=2)  # classes readable from the thermal image
    batch = {"vis": vis, "ir": ir, "label": label}
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(10):
        parts = losses_for(model, model(vis, ir), batch, None, TC)
        assert {"seg", "fusion", "fusion_ssim", "fusion_mse", "fusion_grad"} <= set(parts)
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        losses.append(parts["total"].item())
    assert losses[-1] < 0.9 * losses[0], losses


def _dataset(root: Path, names, size=(48, 64), bad=None):
    rng = np.random.default_rng(0)
    for sub in ("vis", "ir", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n in names:
        h, w = size
        cv2.imwrite(str(root / "vis" / f"{n}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ir_h = h + 2 if n == bad else h
        cv2.imwrite(str(root / "ir" / f"{n}.png"), rng.integers(0, 256, (ir_h, w), dtype=np.uint8))
        cv2.imwrite(str(root / "label" / f"{n}.png"), rng.integers(0, 9, (h, w), dtype=np.uint8))
    (root / "train.txt").write_text("\n".join(names[:-1]) + "\n")
    (root / "val.txt").write_text(names[-1] + "\n")


def _config(tmp_path, root):
    cfg = {"out": str(tmp_path / "run"), "data": {"root": str(root), "size": [48, 64],
                                                   "crop": [32, 32]},
           "model": {"name": "segmif", "config": TINY},
           "train": {"batch_size": 2, "iterations": 2, "val_every": 2, "log_every": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_train_loop_writes_checkpoint_log_and_summary(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])
    summary = train(_config(tmp_path, root), log=lambda *_: None)
    run = tmp_path / "run"
    assert summary["iterations"] == 2 and 0 <= summary["best"]["mIoU"] <= 100
    assert json.loads((run / "summary.json").read_text())["iterations"] == 2
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "val_mIoU" in rows[0]
    model, classes, info = load_checkpoint(run / "best.pt")
    assert classes.names[1] == "car" and info["input_size"] == [48, 64]
    assert info["meta"]["val"]["iteration"] == 2


def test_bad_data_is_reported_before_training(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"], bad="b")
    (root / "ir" / "c.png").unlink()
    with pytest.raises(DatasetError) as err:
        train(_config(tmp_path, root), log=lambda *_: None)
    assert "b" in str(err.value) and "c" in str(err.value)
    assert not (tmp_path / "run" / "log.csv").exists()


def test_unknown_config_section_refused(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"data": {"root": "x"}, "trian": {}}))
    with pytest.raises(ValueError, match="trian"):
        load_config(path)
