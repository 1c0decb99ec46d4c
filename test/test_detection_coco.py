"""The project's mAP (``metrics.detection``, COCO-style) equals pycocotools' COCOeval (the
reference implementation, a test dependency installed by ``make``) to 1e-6: per class AP at IoU
0.5 and averaged over 0.50:0.05:0.95, and their means, on hand-made cases, on random cases and on
a real run of the shipped TSJNet checkpoint over the MFNet val pairs (boxes from the labels).

Scope of the equality: no ignored ground truth (COCO treats 'iscrowd' boxes with its crowd IoU,
intersection over the detection's area; the project's ignored boxes - VOC 'difficult' - use the
plain IoU), every detection counted (at most 100 per image and class: COCO's largest maxDets),
area range 'all'."""
import contextlib
import io
import os

import numpy as np
import pytest

from segmif_core.metrics.detection import mean_average_precision

coco_mask = pytest.importorskip("pycocotools.mask")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from conftest import MFNET, needs_mfnet  # noqa: E402


def coco_reference(detections, ground_truth, num_classes):
    """Per class AP50 and AP50:95 (None: no ground truth) and the two means, from
    pycocotools on the same boxes (x1, y1, x2, y2 -> COCO's x, y, w, h; ids from 1)."""
    images, anns, dets = [], [], []
    for i, (d, g) in enumerate(zip(detections, ground_truth), start=1):
        images.append({"id": i, "width": 10_000, "height": 10_000})
        for box, c in zip(np.asarray(g["boxes"], float).reshape(-1, 4), g["labels"]):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1,
                         "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, s, c in zip(np.asarray(d["boxes"], float).reshape(-1, 4), d["scores"],
                             d["classes"]):
            dets.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [100]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, 0]          # (T, R, K), -1 where no ground truth
    per_class = []
    for k in range(num_classes):
        p = prec[:, :, k]
        per_class.append(None if (p < 0).all() else (float(p[0].mean()), float(p.mean())))
    valid = [v for v in per_class if v is not None]
    return per_class, (float(np.mean([v[0] for v in valid])) if valid else float("nan"),
                       float(np.mean([v[1] for v in valid])) if valid else float("nan"))


def assert_equal_to_coco(detections, ground_truth, num_classes):
    ours = mean_average_precision(detections, ground_truth, num_classes)
    per_class, (m50, m) = coco_reference(detections, ground_truth, num_classes)
    for k, ref in enumerate(per_class):
        got = ours["per_class"][str(k)]
        if ref is None:
            assert got["ap50"] is None
            continue
        assert got["ap50"] == pytest.approx(ref[0], abs=1e-6), (k, got, ref)
        assert got["ap50_95"] == pytest.approx(ref[1], abs=1e-6), (k, got, ref)
    assert ours["map50"] == pytest.approx(m50, abs=1e-6)
    assert ours["map50_95"] == pytest.approx(m, abs=1e-6)
    return ours


GT = [[0.0, 0.0, 10.0, 10.0]]


@pytest.mark.parametrize("case", [
    # a hit at IoU 1 and at IoU 0.72 (5 of 10 thresholds)
    ([{"boxes": GT, "scores": [0.9], "classes": [0]}], [{"boxes": GT, "labels": [0]}]),
    ([{"boxes": [[0, 0, 10, 7.2]], "scores": [0.9], "classes": [0]}],
     [{"boxes": GT, "labels": [0]}]),
    # TP, FP, TP; a duplicate ranked first; a miss ranked first
    ([{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]], "scores": [0.9, 0.8, 0.7],
       "classes": [0, 0, 0]}], [{"boxes": [[0, 0, 10, 10], [20, 0, 30, 10]], "labels": [0, 0]}]),
    ([{"boxes": [[0, 0, 10, 10], [0, 0, 10, 10]], "scores": [0.8, 0.9], "classes": [0, 0]}],
     [{"boxes": GT, "labels": [0]}]),
    ([{"boxes": [[40, 40, 50, 50], [0, 0, 10, 10]], "scores": [0.9, 0.8], "classes": [0, 0]}],
     [{"boxes": GT, "labels": [0]}]),
    # three classes: perfect, missed, detections without ground truth; an image with nothing
    ([{"boxes": [GT[0], [5, 5, 9, 9]], "scores": [0.9, 0.5], "classes": [0, 2]},
      {"boxes": [], "scores": [], "classes": []}],
     [{"boxes": [GT[0], [30, 30, 40, 40]], "labels": [0, 1]}, {"boxes": [], "labels": []}]),
    # two images pooled: the false positive of one outranks the hit of the other
    ([{"boxes": GT, "scores": [0.9], "classes": [0]},
      {"boxes": GT, "scores": [0.95], "classes": [0]}],
     [{"boxes": GT, "labels": [0]}, {"boxes": [[50, 50, 60, 60]], "labels": [0]}]),
])
def test_hand_made_cases_equal_pycocotools(case):
    dets, gts = case
    assert_equal_to_coco(dets, gts, 3)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_equal_pycocotools(seed):
    """Images with 0-8 objects of 3 classes; detections: jittered copies of the objects (IoU
    spread over 0.3-1, some with the wrong class), duplicates and random false positives, with
    distinct random scores."""
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(12):
        n = int(rng.integers(0, 9))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(8, 120, (n, 2))
        boxes = np.hstack([xy, xy + wh])
        labels = rng.integers(0, 3, n)
        gts.append({"boxes": boxes, "labels": labels})
        db, dc = [], []
        for b, c in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0, 0.15, 4) * np.r_[b[2] - b[0], b[3] - b[1]].repeat(2)
                db.append(b + jitter)
                dc.append(c if rng.random() < 0.85 else int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(0, 5))):
            xy = rng.uniform(0, 400, 2)
            db.append(np.r_[xy, xy + rng.uniform(8, 120, 2)])
            dc.append(int(rng.integers(0, 3)))
        db = np.asarray(db, float).reshape(-1, 4)
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dets.append({"boxes": db, "scores": rng.permutation(len(db)) / 100 + rng.random() * 1e-3
                     + 0.05, "classes": np.asarray(dc, int)})
    ours = assert_equal_to_coco(dets, gts, 3)
    assert 0 < ours["map50"] < 1 and ours["map50_95"] < ours["map50"]


@needs_mfnet
def test_real_val_run_of_the_shipped_tsjnet_equals_pycocotools():
    """The shipped TSJNet checkpoint on all MFNet val pairs (torch backend, the predictor's
    boxes in camera pixels), ground truth from the labels (the model card's protocol: 8-connected
    components of >= 50 px): the project's per class APs and mAPs equal pycocotools'."""
    from segmif_core.checkpoint import TSJNET_CHECKPOINT
    from segmif_core.data.pairs import read_pair
    from segmif_core.detection_eval import GroundTruthBoxes
    from segmif_core.inference import SegMiFPredictor

    pred = SegMiFPredictor(TSJNET_CHECKPOINT)
    truth = GroundTruthBoxes(pred.detection_classes, list(pred.classes.names))
    dets, gts = [], []
    for name in open(os.path.join(MFNET, "val.txt")).read().split():
        vis, ir, label = read_pair(MFNET, name)
        d = pred.predict(vis, ir).detections
        g = truth.get(name, label)
        assert not g["ignore"].any()
        dets.append(d)
        gts.append({"boxes": g["boxes"], "labels": g["labels"]})
    assert len(dets) >= 20 and sum(len(g["labels"]) for g in gts) > 50
    ours = assert_equal_to_coco(dets, gts, len(pred.detection_classes))
    assert 0 < ours["map50"] < 1
