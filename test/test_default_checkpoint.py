"""The shipped default checkpoint is a trained model, not random weights."""
import os

import numpy as np
import pytest

from segmif_core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from segmif_core.data.pairs import read_pair
from segmif_core.inference import SegMiFPredictor
from segmif_core.metrics import ConfusionMatrix

MFNET = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mfnet")


def test_default_checkpoint_is_small_fp16_with_its_config():
    assert DEFAULT_CHECKPOINT.is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size < 50 * 2 ** 20
    model, classes, info = load_checkpoint()
    assert info["model"] == "segmif" and classes.name == "mfnet"
    assert info["meta"]["val"]["mIoU"] > 0 and "train_config" in info["meta"]


@pytest.mark.skipif(not os.path.isdir(MFNET), reason="../shared/data/mfnet not present")
def test_default_checkpoint_beats_chance_on_val_pairs():
    pred = SegMiFPredictor()
    names = open(os.path.join(MFNET, "val.txt")).read().split()[:3]
    cm = ConfusionMatrix(pred.classes.num_classes)
    for name in names:
        vis, ir, label = read_pair(MFNET, name)
        cm.update(pred.predict(vis, ir).labels, label)
    summary = cm.summary()
    # a random 9-class labelling scores ~11% pixel accuracy; always "unlabelled" scores ~93% but
    # 0 IoU on every object class: require both high accuracy and some object recognised
    assert summary["pixel_acc"] > 50  # class-weighted training trades accuracy for recall
    objects = [v["iou"] for k, v in summary["per_class"].items()
               if k != "unlabelled" and v["iou"] is not None]
    assert max(objects) > 5


@pytest.mark.skipif(not os.path.isdir(MFNET), reason="../shared/data/mfnet not present")
def test_default_checkpoint_fuses_rather_than_flattening():
    # a fused luminance must keep structure of its sources: its contrast (SD) may not collapse
    # far below that of both the visible luminance and the thermal image
    import cv2
    pred = SegMiFPredictor()
    vis, ir, _ = read_pair(MFNET, open(os.path.join(MFNET, "val.txt")).read().split()[0])
    fused_y = cv2.cvtColor(pred.predict(vis, ir).fused, cv2.COLOR_RGB2GRAY).astype(float)
    vis_y = cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY).astype(float)
    assert fused_y.std() > 0.5 * min(vis_y.std(), ir.astype(float).std())
