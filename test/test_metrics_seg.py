import numpy as np
import pytest
import torch

from segmif_core.metrics import ConfusionMatrix

# gt:   0 0 1 1 2 2 255      rows = gt, cols = pred:  [[1 1 0]
# pred: 0 1 1 1 0 2 2                                  [0 2 0]
#                                                       [1 0 1]]
GT = np.array([0, 0, 1, 1, 2, 2, 255])
PRED = np.array([0, 1, 1, 1, 0, 2, 2])


def test_hand_computed():
    cm = ConfusionMatrix(3, class_names=["bg", "a", "b"])
    cm.update(PRED, GT)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 3, 1 / 2])  # TP/(TP+FP+FN)
    np.testing.assert_allclose(cm.acc(), [1 / 2, 1, 1 / 2])      # TP/(TP+FN)
    s = cm.summary()
    assert s["mIoU"] == pytest.approx(50.0)
    assert s["mAcc"] == pytest.approx(200 / 3)
    assert s["pixel_acc"] == pytest.approx(400 / 6)
    assert s["per_class"]["a"] == {"iou": pytest.approx(200 / 3), "acc": pytest.approx(100.0),
                                   "present": True}
    assert s["protocol"]["pixels"] == 6 and s["protocol"]["include_background"]
    nb = cm.summary(include_background=False)
    assert nb["mIoU"] == pytest.approx(100 * 7 / 12) and nb["mAcc"] == pytest.approx(75.0)
    assert nb["protocol"]["classes_in_mIoU"] == ["a", "b"]


def test_ignore_index_configurable():
    cm = ConfusionMatrix(3, ignore_index=2)
    cm.update(PRED, np.where(GT == 255, 1, GT))  # now the 2s are ignored, the former 255 is a 1
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 1], [0, 0, 0]])


def test_absent_class_protocol():
    cm = ConfusionMatrix(4)  # class 3 never appears
    cm.update(PRED, GT)
    s = cm.summary()
    assert s["mIoU"] == pytest.approx(50.0) and s["mAcc"] == pytest.approx(200 / 3)
    assert s["per_class"][3] == {"iou": None, "acc": None, "present": False}
    assert s["protocol"]["absent"] == "skip" and 3 not in s["protocol"]["classes_in_mIoU"]
    z = cm.summary(absent="zero")
    assert z["mIoU"] == pytest.approx(37.5) and z["mAcc"] == pytest.approx(50.0)


def test_predicted_but_absent_class():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]))
    s = cm.summary()
    # IoU: class 0 = 2/4, class 1 = 0 (false positives only, counted), class 2 undefined
    assert s["mIoU"] == pytest.approx(25.0)
    assert s["mAcc"] == pytest.approx(50.0)  # Acc only defined for class 0
    assert s["per_class"][1] == {"iou": 0.0, "acc": None, "present": False}
    z = cm.summary(absent="zero")
    assert z["mIoU"] == pytest.approx(50 / 3) and z["mAcc"] == pytest.approx(50 / 3)
    # classes present in the ground truth only: class 0 alone, IoU 2/4, Acc 2/4
    p = cm.summary(absent="present")
    assert p["mIoU"] == pytest.approx(50.0) and p["mAcc"] == pytest.approx(50.0)
    assert p["protocol"]["classes_in_mIoU"] == [0] == p["protocol"]["classes_in_mAcc"]
    assert p["per_class"][1]["iou"] == 0.0  # still reported per class


def test_present_protocol_by_hand():
    # GT 0: 3 px, GT 1: 2 px, class 2 only predicted, class 3 nowhere
    cm = ConfusionMatrix(4, class_names=["bg", "a", "b", "c"])
    cm.update(np.array([0, 0, 2, 1, 2]), np.array([0, 0, 0, 1, 1]))
    # IoU: bg 2/(3+0) ... TP 2, FN 1, FP 0 -> 2/3; a: TP 1, FN 1, FP 0 -> 1/2; b: 0; c: undefined
    p = cm.summary(absent="present")
    assert p["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert p["mAcc"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert p["protocol"]["classes_in_mIoU"] == ["bg", "a"]
    s = cm.summary(absent="skip")
    assert s["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)
    nb = cm.summary(include_background=False, absent="present")
    assert nb["mIoU"] == pytest.approx(50.0) and nb["protocol"]["classes_in_mIoU"] == ["a"]


def test_accumulation_equals_concatenation_and_torch_input():
    rng = np.random.default_rng(1)
    p1, p2 = rng.integers(0, 5, (2, 7, 9)), rng.integers(0, 5, (3, 4))
    t1, t2 = rng.integers(0, 5, (2, 7, 9)), rng.integers(0, 5, (3, 4))
    t1[0, 0, :4] = 255
    a = ConfusionMatrix(5)
    a.update(torch.from_numpy(p1), torch.from_numpy(t1).to(torch.uint8))
    a.update(p2, t2)
    b = ConfusionMatrix(5)
    b.update(np.concatenate([p1.ravel(), p2.ravel()]), np.concatenate([t1.ravel(), t2.ravel()]))
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.matrix.sum() == p1.size + p2.size - 4
    a.reset()
    assert not a.matrix.any()


def test_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError):
        cm.summary()  # nothing accumulated
    with pytest.raises(ValueError):
        cm.update(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError):
        cm.update(np.array([0, 3]), np.array([0, 1]))  # prediction out of range
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0, 7]))  # target neither class nor ignore
    with pytest.raises(ValueError):
        cm.update(np.zeros(2, np.float32), np.zeros(2, int))
    cm.update(np.array([0]), np.array([0]))
    with pytest.raises(ValueError):
        cm.summary(absent="nan")
    with pytest.raises(ValueError):
        ConfusionMatrix(3, class_names=["a", "b"])
