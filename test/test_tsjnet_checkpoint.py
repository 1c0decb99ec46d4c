"""The shipped TSJNet checkpoint is a trained model: small fp16 file with its config, it segments
and it finds the cars and people of real val pairs (boxes derived from the labels)."""
import os

import numpy as np

from segmif_core.checkpoint import TSJNET_CHECKPOINT, load_checkpoint
from segmif_core.data.boxes import boxes_from_labels
from segmif_core.data.pairs import read_pair
from segmif_core.inference import SegMiFPredictor
from segmif_core.metrics import ConfusionMatrix

from conftest import MFNET, model_card_number, needs_mfnet, val_miou_9


def test_tsjnet_checkpoint_is_small_fp16_with_its_config():
    import torch
    assert TSJNET_CHECKPOINT.is_file() and TSJNET_CHECKPOINT.stat().st_size < 30 * 2 ** 20
    model, classes, info = load_checkpoint(TSJNET_CHECKPOINT)
    assert info["model"] == "tsjnet" and classes.name == "mfnet"
    assert tuple(model.detection_classes) == ("car", "person", "bike")
    assert info["config"]["seg_encoder"] == "efficientnet-lite0"
    raw = torch.load(TSJNET_CHECKPOINT, weights_only=True)["state_dict"]
    assert {v.dtype for v in raw.values() if v.is_floating_point()} == {torch.float16}


def _iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, computed here independently of the project's code."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


@needs_mfnet
def test_tsjnet_checkpoint_segments_and_detects_on_val_pairs():
    pred = SegMiFPredictor(TSJNET_CHECKPOINT)
    names = open(os.path.join(MFNET, "val.txt")).read().split()[:6]
    cm = ConfusionMatrix(pred.classes.num_classes)
    hits = gts = 0
    for name in names:
        vis, ir, label = read_pair(MFNET, name)
        out = pred.predict(vis, ir)
        cm.update(out.labels, label)
        gt = boxes_from_labels(label.astype(np.int32), min_area=200)
        det = out.detections
        keep = np.asarray(det["scores"]) >= 0.3
        boxes, labels = np.asarray(det["boxes"])[keep], np.asarray(det["classes"])[keep]
        for box, cls in zip(gt["boxes"], gt["labels"]):
            gts += 1
            hits += any(c == cls and _iou(box, b) >= 0.5 for b, c in zip(boxes, labels))
    summary = cm.summary()
    objects = [v["iou"] for k, v in summary["per_class"].items()
               if k != "unlabelled" and v["iou"] is not None]
    assert summary["pixel_acc"] > 50 and max(objects) > 5
    # a random detector at score >= 0.3 finds (almost) none of them
    assert gts > 0 and hits >= 1, (hits, gts)


@needs_mfnet
def test_tsjnet_boxes_stay_inside_the_crop_of_a_padded_val_pair():
    """Val pair 01209N (a car at the right border) at 240 x 320, padded by replicating its last
    row and column to 256 x 352: with the valid size given, every box lies inside 320 x 240."""
    import cv2
    import torch
    import torch.nn.functional as F

    from segmif_core.data.thermal import normalize_thermal

    model, _, _ = load_checkpoint(TSJNET_CHECKPOINT)
    vis, ir, _ = read_pair(MFNET, "01209N")
    v = torch.from_numpy(cv2.resize(vis, (320, 240), interpolation=cv2.INTER_AREA))
    t = torch.from_numpy(cv2.resize(normalize_thermal(ir), (320, 240),
                                    interpolation=cv2.INTER_AREA))
    v = F.pad(v.permute(2, 0, 1)[None].float() / 255, (0, 32, 0, 16), mode="replicate")
    t = F.pad(t[None, None], (0, 32, 0, 16), mode="replicate")
    with torch.no_grad():
        raw = model.eval()(v, t)["detections"]
    (d,) = model.postprocess_detections(raw, (256, 352), valid_sizes=[(240, 320)])
    b = d["boxes"]
    assert len(b) > 0
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= 320).all() and (b[:, 3] <= 240).all()


@needs_mfnet
def test_tsjnet_checkpoint_on_onnxruntime_matches_torch_on_val_pairs():
    """The shipped checkpoint exported (once, cached) and run on ONNX Runtime: on the val pairs
    00102D and 01207N at 640 x 480 (01207N has two boxes whose scores differ by 3e-7, which
    come out in either order) the same detections as torch: the same number, each paired with
    one of the same class within 0.01 px and score 1e-5; every box inside the camera image."""
    pt = SegMiFPredictor(TSJNET_CHECKPOINT)
    po = SegMiFPredictor(TSJNET_CHECKPOINT, backend="onnxruntime")
    assert po.backend.name == "onnxruntime"
    for name in ("00102D", "01207N"):
        vis, ir, _ = read_pair(MFNET, name)
        a, b = pt.predict(vis, ir).detections, po.predict(vis, ir).detections
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        used = np.zeros(len(a["boxes"]), bool)
        for box, score, cls in zip(b["boxes"], b["scores"], b["classes"]):
            ok = (~used & (a["classes"] == cls) & (np.abs(a["scores"] - score) <= 1e-5)
                  & (np.abs(a["boxes"] - box).max(axis=1) <= 0.01))
            assert ok.any(), (name, box, score, cls)
            used[np.flatnonzero(ok)[0]] = True
        assert (b["boxes"] >= 0).all() and (b["boxes"][:, [0, 2]] <= 640).all() \
            and (b["boxes"][:, [1, 3]] <= 480).all()


@needs_mfnet
def test_tsjnet_checkpoint_val_miou_is_the_model_cards():
    # as the SegMiF test in test_default_checkpoint: the card's number for the shipped TSJNet,
    # all 24 val pairs, the checkpoint's own settings (torch), IoUs computed with numpy
    miou = val_miou_9(SegMiFPredictor(TSJNET_CHECKPOINT))
    assert abs(miou - model_card_number(TSJNET_CHECKPOINT.name)) <= 1.0, miou
