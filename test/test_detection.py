"""Detection pieces of TSJNet (issue 15): FCOS target assignment and decoding, NMS, boxes from
label images and annotation files, and mAP on hand-made cases with hand-computed answers."""
import json
import math

import numpy as np
import pytest
import torch

from segmif_core.data.boxes import (M3FD_CLASSES, boxes_from_labels, read_class_file,
                                    read_coco_json, read_voc_xml, to_tensors)
from segmif_core.metrics.detection import (DetectionEvaluator, average_precision, iou_matrix,
                                           mean_average_precision)
from segmif_core.models.tsjnet.box_ops import batched_nms, box_iou, generalized_iou, nms
from segmif_core.models.tsjnet.fcos import (all_points, assign_targets, centerness_target,
                                            decode_boxes, level_points, postprocess)


# ---------------------------------------------------------------- FCOS assignment / decoding
def test_level_points():
    pts = level_points((2, 3), 8)
    assert pts.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]


def _positives(cls, points):
    return {tuple(p) for p in points[cls >= 0].int().tolist()}


def test_assignment_inside_box_and_decoding_round_trip():
    # 32x32 image, one level of stride 8: points at 4, 12, 20, 28 in x and y
    points, strides, lower, upper = all_points([(4, 4)], (8,))
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    cls, reg, matched = assign_targets(points, strides, lower, upper, boxes,
                                       torch.tensor([2]), center_radius=None)
    assert _positives(cls, points) == {(4, 4), (12, 4), (4, 12), (12, 12)}
    assert set(cls[cls >= 0].tolist()) == {2} and set(matched[cls >= 0].tolist()) == {0}
    i = points.tolist().index([4.0, 4.0])
    assert reg[i].tolist() == [4, 4, 12, 12]
    assert centerness_target(reg[i:i + 1]).item() == pytest.approx(1 / 3)
    decoded = decode_boxes(points[cls >= 0], reg[cls >= 0])
    torch.testing.assert_close(decoded, boxes.expand(4, -1))
    assert torch.all(reg[cls < 0] == 0) and torch.all(matched[cls < 0] == -1)


def test_assignment_prefers_the_smaller_box_and_respects_level_ranges():
    # 128x128 image, strides 8 / 16 / 32; level ranges (0, 64], (64, 128], (128, inf)
    points, strides, lower, upper = all_points([(16, 16), (8, 8), (4, 4)], (8, 16, 32))
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0],       # small: stride 8 only
                          [0.0, 0.0, 60.0, 60.0],       # contains the small box
                          [0.0, 0.0, 128.0, 128.0]])    # large
    cls, reg, matched = assign_targets(points, strides, lower, upper, boxes,
                                       torch.tensor([0, 1, 2]), center_radius=None)
    at = {(int(p[0]), int(p[1]), int(s)): int(m) for p, s, m in zip(points, strides, matched)}
    assert at[(4, 4, 8)] == 0        # inside both small boxes, both extents <= 64: smaller one
    assert at[(44, 44, 8)] == 1      # inside the 60-box only: extent 44 <= 64
    assert at[(60, 60, 8)] == -1     # on the 60-box's edge; large box extent 68 > 64
    assert at[(68, 68, 8)] == -1
    assert at[(8, 8, 16)] == 2       # large box extent 120 in (64, 128]; the small boxes'
    assert at[(24, 24, 16)] == 2     # extents (32, 52 / 16, 36) are not
    assert at[(16, 16, 32)] == -1    # extent 112 <= 128: not stride 32
    assert at[(112, 112, 32)] == -1  # extent 112
    assert at[(48, 48, 32)] == -1    # extent 80
    assert sum(1 for (x, y, s), m in at.items() if s == 32 and m >= 0) == 0
    # every positive decodes exactly to its box
    pos = matched >= 0
    torch.testing.assert_close(decode_boxes(points[pos], reg[pos]), boxes[matched[pos]])


def test_centre_sampling():
    points, strides, lower, upper = all_points([(8, 8)], (8,))
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    cls, _, _ = assign_targets(points, strides, lower, upper, boxes, torch.tensor([0]),
                               center_radius=1.5)
    # |x - 32| < 12 and |y - 32| < 12: x, y in {28, 36}
    assert _positives(cls, points) == {(28, 28), (36, 28), (28, 36), (36, 36)}


def test_assignment_without_boxes():
    points, strides, lower, upper = all_points([(2, 2)], (8,))
    cls, reg, matched = assign_targets(points, strides, lower, upper, torch.zeros(0, 4),
                                       torch.zeros(0, dtype=torch.int64))
    assert cls.tolist() == [-1] * 4 and reg.abs().sum() == 0 and matched.tolist() == [-1] * 4


def test_postprocess_decodes_scores_and_suppresses_per_class():
    """32x32 image, one stride-8 level, 2 classes. Point (12, 12) predicts class 0 at logit 4
    and point (20, 12) class 0 at logit 2 with a box overlapping the first (suppressed); point
    (20, 12) also predicts class 1 at logit 3 (same box, other class: kept)."""
    big = -20.0
    cls = torch.full((1, 2, 4, 4), big)
    cls[0, 0, 1, 1], cls[0, 0, 1, 2], cls[0, 1, 1, 2] = 4.0, 2.0, 3.0
    reg = torch.zeros(1, 4, 4, 4)
    reg[0, :, 1, 1] = torch.tensor([8.0, 8.0, 8.0, 8.0])     # (4, 4, 20, 20)
    reg[0, :, 1, 2] = torch.tensor([14.0, 8.0, 4.0, 8.0])    # (6, 4, 24, 20)
    ctr = torch.full((1, 1, 4, 4), 20.0)                      # sigmoid ~ 1
    raw = {"cls_logits": [cls], "box_regression": [reg], "centerness": [ctr], "strides": (8,)}
    (d,) = postprocess(raw, (32, 32), score_threshold=0.05, nms_threshold=0.5)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert d["classes"].tolist() == [0, 1]
    assert d["scores"].tolist() == pytest.approx([math.sqrt(sig(4)), math.sqrt(sig(3))],
                                                 rel=1e-4)
    assert d["boxes"].tolist() == [[4, 4, 20, 20], [6, 4, 24, 20]]


def _raw_for(size, strides=(8, 16, 32), classes=2, logit=-20.0, reg=1.0):
    """Head outputs of an input of ``size`` (H, W) with ceil(H / s) x ceil(W / s) maps (the
    encoder's 'same' padding), every location at ``logit`` and regression ``reg`` pixels."""
    h, w = size
    cls, box, ctr = [], [], []
    for s in strides:
        shape = (1, -(-h // s), -(-w // s))
        cls.append(torch.full((shape[0], classes) + shape[1:], logit))
        box.append(torch.full((shape[0], 4) + shape[1:], reg))
        ctr.append(torch.full((shape[0], 1) + shape[1:], 20.0))
    return {"cls_logits": cls, "box_regression": box, "centerness": ctr, "strides": strides}


def test_locations_outside_the_image_give_no_boxes():
    """70 x 90 input: the stride-8 map has 12 columns (points x = 4 ... 92) and the stride-32
    map 3 rows (y = 16, 48, 80): the points x = 92 and y = 80 lie outside the image. Only they
    score high, with boxes reaching far outside: no box may come out (before the guard they
    came out clamped onto the image border)."""
    raw = _raw_for((70, 90), reg=500.0)
    raw["cls_logits"][0][0, 0, :, 11] = 5.0     # stride 8, column x = 92 > 90
    raw["cls_logits"][2][0, 1, 2, :] = 5.0      # stride 32, row y = 80 > 70
    (d,) = postprocess(raw, (70, 90))
    assert len(d["boxes"]) == 0
    # one column inside (x = 84) scores too: its boxes come out, inside the image
    raw["cls_logits"][0][0, 0, :, 10] = 5.0
    (d,) = postprocess(raw, (70, 90), max_detections=1000)
    assert len(d["boxes"]) > 0
    b = d["boxes"]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 90).all() \
        and (b[:, 3] <= 70).all()


@pytest.mark.parametrize("reg", [3.0, 1000.0])
def test_no_box_leaves_the_image_or_the_valid_crop_of_a_padded_input(reg):
    """Every location scores (random logits) with tiny or huge distances: all boxes lie in the
    image and have an area; for a padded batch (valid 50 x 60 and 70 x 90 regions of a 70 x 90
    input) each image's boxes lie in its own valid region, and none comes from a location of
    the padding (each box contains the point that predicted it)."""
    g = torch.Generator().manual_seed(0)
    raw = _raw_for((70, 90), reg=reg)
    raw = {**raw, "cls_logits": [torch.randn(2, *m.shape[1:], generator=g) for m in
                                 raw["cls_logits"]],
           "box_regression": [torch.rand(2, *m.shape[1:], generator=g) * reg for m in
                              raw["box_regression"]],
           "centerness": [m.expand(2, -1, -1, -1) for m in raw["centerness"]]}
    for valid in (None, [(50, 60), (70, 90)]):
        dets = postprocess(raw, (70, 90), score_threshold=0.0, max_detections=10_000,
                           valid_sizes=valid)
        for d, (h, w) in zip(dets, valid or [(70, 90)] * 2):
            b = d["boxes"]
            assert len(b) > 0
            assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
            assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
            assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
    # the padded image's boxes: a box reaching the valid region's right edge came from a point
    # left of it (x < 60), never from the padding
    d = postprocess(raw, (70, 90), score_threshold=0.0, max_detections=10_000,
                    valid_sizes=[(50, 60), (70, 90)])[0]
    assert (d["boxes"][:, 0] < 60).all() and (d["boxes"][:, 1] < 50).all()
    # zero distances: boxes without area, none kept
    flat = {**raw, "box_regression": [m * 0 for m in raw["box_regression"]]}
    assert all(len(d["boxes"]) == 0 for d in postprocess(flat, (70, 90), score_threshold=0.0))
    with pytest.raises(ValueError, match="valid_sizes"):
        postprocess(raw, (70, 90), valid_sizes=[(80, 90), (70, 90)])
    with pytest.raises(ValueError, match="valid_sizes"):
        postprocess(raw, (70, 90), valid_sizes=[(50, 60)])


# ---------------------------------------------------------------- IoU / NMS
def test_box_iou_and_giou_hand_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])
    # disjoint boxes: IoU 0, enclosing box 30 x 30 = 900, union 200
    g = generalized_iou(a, b[1:])
    assert g.item() == pytest.approx(0 - (900 - 200) / 900, abs=1e-6)


def test_nms_hand_cases():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # A 0.9
                          [1.0, 0.0, 11.0, 10.0],    # B 0.8, IoU(A, B) = 90 / 110
                          [20.0, 20.0, 30.0, 30.0],  # C 0.7, disjoint
                          [0.0, 0.0, 10.0, 5.0]])    # E 0.6, IoU(A, E) = 0.5 exactly
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]     # IoU 0.5 is not > 0.5
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]
    assert nms(boxes, scores, 0.85).tolist() == [0, 1, 2, 3]
    # B scored above A: B is kept, A suppressed; E vs B: inter 45, union 105 -> kept at 0.5
    assert nms(boxes, torch.tensor([0.8, 0.9, 0.7, 0.6]), 0.5).tolist() == [1, 2, 3]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_batched_nms_keeps_other_classes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0],
                          [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.95])
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist() == [2, 0]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [2]


# ---------------------------------------------------------------- boxes from data
def test_boxes_from_a_hand_drawn_label_image():
    lab = np.zeros((20, 30), np.uint8)
    lab[2:6, 3:9] = 1                   # car: rows 2-5, cols 3-8 -> (3, 2, 9, 6), 24 px
    lab[10:13, 20:22] = 2               # person A: rows 10-12, cols 20-21 -> 6 px
    lab[13:15, 22:24] = 2               # person B touches A diagonally (8-connected), 4 px
    lab[0, 29] = 3                      # bike: 1 px, dropped (min_area 3)
    lab[15:20, 0:5] = 4                 # curve: not a detection class
    lab[8, 8] = 255                     # ignore value
    got = boxes_from_labels(lab, min_area=3)
    assert got["boxes"].tolist() == [[3, 2, 9, 6], [20, 10, 24, 15]]
    assert got["labels"].tolist() == [0, 1] and got["boxes"].dtype == np.float32
    four = boxes_from_labels(lab, min_area=3, connectivity=4)
    assert four["boxes"].tolist() == [[3, 2, 9, 6], [20, 10, 22, 13], [22, 13, 24, 15]]
    assert boxes_from_labels(lab, min_area=5)["labels"].tolist() == [0, 1]  # A+B = 10 px
    assert len(boxes_from_labels(np.zeros((4, 4), np.uint8))["boxes"]) == 0
    with pytest.raises(ValueError):
        boxes_from_labels(np.zeros((4, 4), np.float32))


VOC = """<annotation><filename>00001.png</filename>
<object><name>People</name><difficult>0</difficult>
<bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>60</ymax></bndbox></object>
<object><name>car</name><difficult>1</difficult>
<bndbox><xmin>100.5</xmin><ymin>50</ymin><xmax>180</xmax><ymax>90</ymax></bndbox></object>
<object><name>Tree</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>
</bndbox></object></annotation>"""


def test_read_voc_xml(tmp_path):
    path = tmp_path / "00001.xml"
    path.write_text(VOC)
    with pytest.raises(ValueError, match="Tree"):
        read_voc_xml(path)
    got = read_voc_xml(path, unknown="skip")
    assert got["boxes"].tolist() == [[10, 20, 30, 60], [100.5, 50, 180, 90]]
    assert got["labels"].tolist() == [0, 1] and got["ignore"].tolist() == [False, True]
    t = to_tensors(got)
    assert t["boxes"].tolist() == [[10, 20, 30, 60]] and t["labels"].dtype == torch.int64
    with pytest.raises(ValueError):
        (tmp_path / "bad.xml").write_text("<annotation>")
        read_voc_xml(tmp_path / "bad.xml")


def test_read_coco_json_and_class_file(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "a.png"}, {"id": 8, "file_name": "b.png"}],
            "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
            "annotations": [{"image_id": 7, "category_id": 1, "bbox": [10, 20, 5, 8]},
                            {"image_id": 7, "category_id": 3, "bbox": [0, 0, 4, 4],
                             "iscrowd": 1}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    got = read_coco_json(path)                      # classes in id order: person, car
    assert got["a.png"]["boxes"].tolist() == [[10, 20, 15, 28], [0, 0, 4, 4]]
    assert got["a.png"]["labels"].tolist() == [0, 1]
    assert got["a.png"]["ignore"].tolist() == [False, True]
    assert len(got["b.png"]["boxes"]) == 0
    assert read_coco_json(path, ["car", "person"])["a.png"]["labels"].tolist() == [1, 0]
    classes = tmp_path / "pascal_voc_classes.json"
    classes.write_text(json.dumps({"Car": 2, "People": 1, "Bus": 3, "Motorcycle": 4, "Lamp": 5,
                                   "Truck": 6}))
    assert read_class_file(classes) == M3FD_CLASSES


# ---------------------------------------------------------------- mAP
GT = [[0.0, 0.0, 10.0, 10.0]]


def test_map_perfect_and_iou_072():
    r = mean_average_precision([{"boxes": GT, "scores": [0.9], "classes": [0]}],
                               [{"boxes": GT, "labels": [0]}], 1)
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)
    # IoU 72 / 100 = 0.72: a hit at 0.50 ... 0.70 (5 of the 10 thresholds)
    r = mean_average_precision([{"boxes": [[0, 0, 10, 7.2]], "scores": [0.9], "classes": [0]}],
                               [{"boxes": GT, "labels": [0]}], 1)
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(0.5)


def test_ap_hand_computed_tp_fp_tp():
    """2 ground-truth boxes; detections 0.9 TP, 0.8 FP, 0.7 TP: precision 1, 1/2, 2/3 at recall
    1/2, 1/2, 1. VOC all points: 1/2 * 1 + 1/2 * 2/3. COCO: 51 recall points <= 0.5 at 1, 50
    above at 2/3."""
    gt = [{"boxes": [[0, 0, 10, 10], [20, 0, 30, 10]], "labels": [0, 0]}]
    det = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]],
            "scores": [0.9, 0.8, 0.7], "classes": [0, 0, 0]}]
    assert mean_average_precision(det, gt, 1, interpolation="voc")["map50"] == \
        pytest.approx(0.5 + 1 / 3)
    assert mean_average_precision(det, gt, 1)["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert average_precision(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 2,
                             "voc") == pytest.approx(0.5 + 1 / 3)


def test_duplicates_misses_and_classes_without_ground_truth():
    # a duplicate scored above the true hit: precision 0 then 1/2 at recall 0, 1 -> AP 1/2
    det = [{"boxes": [[0, 0, 10, 10], [0, 0, 10, 10]], "scores": [0.8, 0.9],
            "classes": [0, 0]}]
    gt = [{"boxes": GT, "labels": [0]}]
    # the 0.9 box matches first (highest score), the 0.8 one is the duplicate -> AP 1
    assert mean_average_precision(det, gt, 1)["map50"] == pytest.approx(1.0)
    det = [{"boxes": [[40, 40, 50, 50], [0, 0, 10, 10]], "scores": [0.9, 0.8],
            "classes": [0, 0]}]
    for mode in ("coco", "voc"):
        assert mean_average_precision(det, gt, 1, interpolation=mode)["map50"] == \
            pytest.approx(0.5)
    # class 0 perfect, class 1 missed (AP 0), class 2 only false positives and no ground truth
    det = [{"boxes": [GT[0], [5, 5, 9, 9]], "scores": [0.9, 0.5], "classes": [0, 2]}]
    gt = [{"boxes": [GT[0], [30, 30, 40, 40]], "labels": [0, 1]}]
    r = mean_average_precision(det, gt, 3, class_names=["car", "person", "bike"])
    assert r["map50"] == pytest.approx(0.5)
    assert r["per_class"]["bike"]["ap50"] is None and r["per_class"]["person"]["ap50"] == 0


def test_ignored_ground_truth_is_neither_hit_nor_miss():
    gt = [{"boxes": [GT[0], [20, 20, 30, 30]], "labels": [0, 0], "ignore": [False, True]}]
    det = [{"boxes": [[20, 20, 30, 30], GT[0]], "scores": [0.9, 0.8], "classes": [0, 0]}]
    r = mean_average_precision(det, gt, 1)
    assert r["map50"] == pytest.approx(1.0) and r["per_class"]["0"]["positives"] == 1
    # without the flag the 0.9 box is a true positive too and there are 2 positives
    gt[0]["ignore"] = [False, False]
    assert mean_average_precision(det, gt, 1)["map50"] == pytest.approx(1.0)
    det[0]["boxes"][0] = [60, 60, 70, 70]     # now a false positive ranked first, 1 of 2 found
    gt[0]["ignore"] = [False, True]
    assert mean_average_precision(det, gt, 1, interpolation="voc")["map50"] == \
        pytest.approx(0.5)


def test_evaluator_pools_images_and_checks_inputs():
    ev = DetectionEvaluator(1, interpolation="voc")
    ev.add([[0, 0, 10, 10]], [0.9], [0], [[0, 0, 10, 10]], [0])
    ev.add([[0, 0, 10, 10]], [0.95], [0], [[50, 50, 60, 60]], [0])   # FP ranked first overall
    # pooled: 0.95 FP, 0.9 TP; 2 positives -> precision 0, 1/2 at recall 0, 1/2 -> AP 1/4
    assert ev.summary()["map50"] == pytest.approx(0.25) and ev.summary()["images"] == 2
    with pytest.raises(ValueError):
        ev.add([[0, 0, 1, 1]], [0.5], [3], [], [])
    assert math.isnan(DetectionEvaluator(2).summary()["map50"])
    assert iou_matrix(np.array(GT), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)
