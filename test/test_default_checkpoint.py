"""The shipped default checkpoint is a trained model, not random weights."""
import os

import numpy as np

from segmif_core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from segmif_core.data.pairs import read_pair
from segmif_core.inference import SegMiFPredictor
from segmif_core.metrics import ConfusionMatrix

from conftest import MFNET, model_card_number, needs_mfnet, val_miou_9


def test_default_checkpoint_is_small_fp16_with_its_config():
    import torch
    assert DEFAULT_CHECKPOINT.is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size < 30 * 2 ** 20
    model, classes, info = load_checkpoint()
    assert info["model"] == "segmif" and classes.name == "mfnet"
    assert info["meta"]["val"]["mIoU"] > 0 and "train_config" in info["meta"]
    # the pretrained encoder and its normalisation travel with the weights
    assert info["config"]["encoder"] == "efficientnet-lite0"
    assert info["config"]["normalization"] == {"mean": [0.485, 0.456, 0.406],
                                               "std": [0.229, 0.224, 0.225]}
    raw = torch.load(DEFAULT_CHECKPOINT, weights_only=True)["state_dict"]
    assert {v.dtype for v in raw.values() if v.is_floating_point()} == {torch.float16}


@needs_mfnet
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


@needs_mfnet
def test_default_checkpoint_fuses_rather_than_flattening():
    # a fused luminance must keep structure of its sources: its contrast (SD) may not collapse
    # far below that of both the visible luminance and the thermal image
    import cv2
    pred = SegMiFPredictor()
    vis, ir, _ = read_pair(MFNET, open(os.path.join(MFNET, "val.txt")).read().split()[0])
    fused_y = cv2.cvtColor(pred.predict(vis, ir).fused, cv2.COLOR_RGB2GRAY).astype(float)
    vis_y = cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY).astype(float)
    assert fused_y.std() > 0.5 * min(vis_y.std(), ir.astype(float).std())


def _spatial_frequency(y: np.ndarray) -> float:
    """SF (Eskicioglu & Fisher 1995): sqrt(RF^2 + CF^2) of first differences, 0-255 scale."""
    y = y.astype(np.float64)
    rf = np.sqrt(np.mean(np.diff(y, axis=1) ** 2))
    cf = np.sqrt(np.mean(np.diff(y, axis=0) ** 2))
    return float(np.hypot(rf, cf))


@needs_mfnet
def test_default_fused_image_is_made_at_the_camera_resolution_not_upscaled():
    import cv2
    pred = SegMiFPredictor()
    name = open(os.path.join(MFNET, "val.txt")).read().split()[0]
    vis, ir, _ = read_pair(MFNET, name)
    fused = pred.predict(vis, ir).fused
    assert fused.shape == vis.shape
    ih, iw = pred.input_size
    small = pred.predict(cv2.resize(vis, (iw, ih), interpolation=cv2.INTER_AREA),
                         cv2.resize(ir, (iw, ih), interpolation=cv2.INTER_AREA)).fused
    upscaled = cv2.resize(small, vis.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    gray = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)  # noqa: E731
    # full-resolution detail: clearly more spatial frequency than the upscaled network output
    assert _spatial_frequency(gray(fused)) > 1.3 * _spatial_frequency(gray(upscaled))
    # and the same picture: close to the upscaled image once both are blurred alike
    blur = lambda im: cv2.GaussianBlur(gray(im).astype(np.float32), (0, 0), 3)  # noqa: E731
    assert np.abs(blur(fused) - blur(upscaled)).mean() < 6.0


@needs_mfnet
def test_shipped_checkpoint_val_miou_is_the_model_cards():
    # the number users read: mean IoU over the 9 MFNet classes (a class absent from val counts
    # as 0) on all 24 val pairs at the labels' 640x480, the checkpoint's own settings (torch);
    # the IoUs are computed with numpy from the label images (conftest.val_miou_9)
    miou = val_miou_9(SegMiFPredictor(DEFAULT_CHECKPOINT))
    assert abs(miou - model_card_number(DEFAULT_CHECKPOINT.name)) <= 1.0, miou
