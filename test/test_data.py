import json
import os
import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch

from segmif_core.data import (FMB_CLASSES, MFNET_CLASSES, DatasetError, PairDataset, check_pairs,
                              get_class_set, list_pairs, normalize_thermal, read_pair, to_uint8)

from conftest import MFNET, TNO, needs_mfnet, needs_tno


# ---------------------------------------------------------------- classes
def test_class_sets():
    assert MFNET_CLASSES.num_classes == 9 and FMB_CLASSES.num_classes == 15
    assert MFNET_CLASSES.names[5] == "car_stop" and FMB_CLASSES.names[14] == "pole"
    assert get_class_set("MSRS") is MFNET_CLASSES and get_class_set("fmb") is FMB_CLASSES
    rgb = MFNET_CLASSES.colorize(np.array([[0, 1], [2, 255]], np.uint8))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [64, 0, 128]
    assert rgb[1, 0].tolist() == [64, 64, 0] and rgb[1, 1].tolist() == [0, 0, 0]  # 255 -> black
    with pytest.raises(ValueError):
        get_class_set("cityscapes")


# ---------------------------------------------------------------- thermal
def test_uint8_thermal_divided_by_255_whatever_mode():
    img = np.array([[0, 51, 255]], np.uint8)
    for kw in ({}, dict(mode="fixed", vmin=100, vmax=200), dict(low=40, high=60)):
        out = normalize_thermal(img, **kw)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, [[0, 0.2, 1]], atol=1e-7)


def test_uint16_fixed():
    img = np.array([[500, 1000, 1500, 2000, 3000]], np.uint16)
    out = normalize_thermal(img, mode="fixed", vmin=1000, vmax=2000)
    np.testing.assert_allclose(out, [[0, 0, 0.5, 1, 1]], atol=1e-7)
    assert out.dtype == np.float32


def test_uint16_percentile():
    img = np.arange(101, dtype=np.uint16).reshape(1, 101) * 10 + 3000  # P10 = 3100, P90 = 3900
    out = normalize_thermal(img[..., None], low=10, high=90)           # HxWx1 accepted
    assert out.shape == (1, 101)
    np.testing.assert_allclose(out[0, [0, 10, 50, 90, 100]], [0, 0, 0.5, 1, 1], atol=1e-6)


def test_percentile_degenerate_frames():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero warning
        out = normalize_thermal(np.full((4, 5), 7777, np.uint16))
    assert out.dtype == np.float32 and out.shape == (4, 5) and not out.any()
    img = np.full((1, 1000), 7, np.uint16)  # P1 == P99: falls back to min/max
    img[0, 0] = 1007
    out = normalize_thermal(img)
    assert out[0, 0] == 1 and out[0, 1] == 0


@pytest.mark.parametrize("img,kw,match", [
    (np.zeros((4, 4), np.float32), {}, "float32"), (np.zeros((4, 4), np.int16), {}, "int16"),
    (np.zeros((4, 4, 3), np.uint16), {}, r"\(4, 4, 3\)"), (np.zeros(4, np.uint8), {}, r"\(4,\)"),
    (np.zeros((4, 4), np.uint16), dict(mode="minmax"), "minmax"),
    (np.zeros((4, 4), np.uint16), dict(low=50, high=50), "50"),
    (np.zeros((4, 4), np.uint16), dict(mode="fixed", vmin=10, vmax=10), "vmin"),
])
def test_thermal_refusals(img, kw, match):
    with pytest.raises(ValueError, match=match):
        normalize_thermal(img, **kw)


def test_to_uint8():
    assert to_uint8(np.array([-0.1, 0, 0.2, 1, 1.3])).tolist() == [0, 0, 51, 255, 255]


# ---------------------------------------------------------------- reading real files
@needs_mfnet
@needs_tno
def test_list_pairs_real():
    assert len(list_pairs(MFNET)) == 160
    val = list_pairs(MFNET, "val.txt")
    assert len(val) == 24 and val[0] == "00102D"
    assert list_pairs(MFNET, os.path.join(MFNET, "train.txt"))[:1] != val[:1]
    assert len(list_pairs(TNO)) == 25
    check_pairs(MFNET, val, require_labels=True)
    check_pairs(TNO, list_pairs(TNO), require_labels=False)


@needs_mfnet
def test_read_pair_mfnet():
    vis, ir, label = read_pair(MFNET, "00102D")
    bgr = cv2.imread(f"{MFNET}/vis/00102D.png")
    np.testing.assert_array_equal(vis, bgr[..., ::-1])
    assert ir.shape == (480, 640) and ir.dtype == np.uint8
    np.testing.assert_array_equal(ir, cv2.imread(f"{MFNET}/ir/00102D.png", cv2.IMREAD_GRAYSCALE))
    assert label.shape == (480, 640) and label.dtype == np.uint8 and label.max() < 9


@needs_tno
def test_read_pair_tno_gray_visible_and_3ch_thermal():
    vis, ir, label = read_pair(TNO, "01")
    raw_vis = cv2.imread(f"{TNO}/vis/01.png", cv2.IMREAD_UNCHANGED)
    raw_ir = cv2.imread(f"{TNO}/ir/01.png", cv2.IMREAD_UNCHANGED)
    assert raw_ir.ndim == 3 and label is None
    assert vis.shape == raw_vis.shape[:2] + (3,) and ir.shape == raw_ir.shape[:2]
    for c in range(3):
        np.testing.assert_array_equal(vis[..., c], raw_vis[..., 0])
    np.testing.assert_array_equal(ir, raw_ir[..., 0])


# ---------------------------------------------------------------- synthetic folders
def write_pair(root, name, vis, ir, label=None):
    for mod, img in (("vis", vis), ("ir", ir), ("label", label)):
        if img is not None:
            os.makedirs(root / mod, exist_ok=True)
            assert cv2.imwrite(str(root / mod / f"{name}.png"), img)


def test_check_pairs_reports_missing_and_mismatch(tmp_path):
    write_pair(tmp_path, "a", np.zeros((6, 8, 3), np.uint8), np.zeros((6, 8), np.uint8))
    write_pair(tmp_path, "b", np.zeros((6, 8, 3), np.uint8), None)
    write_pair(tmp_path, "c", np.zeros((6, 8, 3), np.uint8), np.zeros((5, 8), np.uint16))
    names = list_pairs(tmp_path)
    assert names == ["a", "b", "c"]
    with pytest.raises(DatasetError) as e:
        check_pairs(tmp_path, names, require_labels=False)
    msg = str(e.value)
    assert "2 problem" in msg and os.path.join(str(tmp_path), "ir", "b.png") in msg
    assert "size mismatch c: vis 8x6, ir 8x5" in msg and "label" not in msg
    check_pairs(tmp_path, ["a"], require_labels=False)
    with pytest.raises(DatasetError, match="label"):
        check_pairs(tmp_path, ["a"], require_labels=True)
    (tmp_path / "split.txt").write_text("# held out\na.png\n\nc  # mismatched\n")
    assert list_pairs(tmp_path, "split.txt") == ["a", "c"]
    with pytest.raises(DatasetError):
        list_pairs(tmp_path, "nope.txt")


def test_read_pair_refuses_pseudocolour_thermal(tmp_path):
    ir = np.zeros((6, 8, 3), np.uint8)
    ir[..., 2] = 9
    write_pair(tmp_path, "a", np.zeros((6, 8, 3), np.uint8), ir)
    with pytest.raises(DatasetError, match="channels"):
        read_pair(tmp_path, "a")


# ---------------------------------------------------------------- PairDataset
def check_item(item, hw):
    assert item["vis"].shape == (3,) + hw and item["vis"].dtype == torch.float32
    assert item["ir"].shape == (1,) + hw and item["ir"].dtype == torch.float32
    assert item["label"].shape == hw and item["label"].dtype == torch.int64
    for k in ("vis", "ir"):
        assert 0 <= item[k].min() and item[k].max() <= 1


@needs_mfnet
@needs_tno
def test_dataset_eval_mfnet():
    names = list_pairs(MFNET, "val.txt")[:2]
    ds = PairDataset(MFNET, names, size=(240, 320))
    item = ds[0]
    check_item(item, (240, 320))
    assert item["name"] == names[0]
    _, _, label = read_pair(MFNET, names[0])
    np.testing.assert_array_equal(item["label"].numpy(), label[::2, ::2])  # nearest at 1/2
    native = PairDataset(MFNET, names)[1]
    check_item(native, (480, 640))
    tno = PairDataset(TNO, ["01"], size=(64, 80))[0]
    check_item(tno, (64, 80))
    assert (tno["label"] == 255).all()  # no label file: everything ignored


@needs_mfnet
def test_dataset_train_mfnet_shapes_and_determinism():
    ds = PairDataset(MFNET, list_pairs(MFNET, "val.txt")[:1], size=(120, 160), train=True,
                     crop=(64, 96))
    torch.manual_seed(3)
    a = ds[0]
    check_item(a, (64, 96))
    assert a["label"].max() < 9 or (a["label"] == 255).any()
    torch.manual_seed(3)
    b = ds[0]
    for k in ("vis", "ir", "label"):
        assert torch.equal(a[k], b[k])
    assert any(not torch.equal(ds[0]["ir"], a["ir"]) for _ in range(5))


H, W, B = 64, 96, 16  # synthetic pattern: 4x6 blocks of 16 px, neighbouring blocks differ


@pytest.fixture
def synthetic(tmp_path):
    y, x = np.mgrid[0:H, 0:W]
    label = ((y // B + 3 * (x // B)) % 9).astype(np.uint8)
    vis_rgb = np.stack([label * 25, 255 - label * 25, np.full_like(label, 128)], -1)
    write_pair(tmp_path, "p", vis_rgb[..., ::-1].copy(), label * 25, label)  # vis stored BGR
    return tmp_path


def decode(item):
    """Class ids encoded by the augmented vis (R, G) and ir, and the pixels where they must agree
    with the label: 5x5 neighbourhood of one class (bilinear sampling stays inside the block)."""
    lab = item["label"].numpy()
    pad = np.pad(lab, 2, constant_values=255)
    interior = lab != 255
    for dy in range(5):
        for dx in range(5):
            interior &= pad[dy:dy + lab.shape[0], dx:dx + lab.shape[1]] == lab
    vis, ir = item["vis"].numpy() * 255, item["ir"].numpy()[0] * 255
    ids = [np.rint(ir / 25), np.rint(vis[0] / 25), np.rint((255 - vis[1]) / 25)]
    return lab, interior, ids


def test_train_geometry_identical_across_modalities(synthetic):
    ds = PairDataset(synthetic, ["p"], size=(H, W), train=True, crop=(48, 48), brightness=0.0)
    torch.manual_seed(0)
    for _ in range(20):
        item = ds[0]
        check_item(item, (48, 48))
        lab, interior, ids = decode(item)
        assert interior.sum() > 0.1 * (lab != 255).sum()
        for v in ids:
            np.testing.assert_array_equal(v[interior], lab[interior])
        assert (item["vis"][2][torch.from_numpy(interior)] == 128 / 255).all()


def test_train_flip_and_padding(synthetic):
    ds = PairDataset(synthetic, ["p"], size=(H, W), train=True, scale_range=(1, 1), brightness=0)
    _, _, label = read_pair(synthetic, "p")
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        lab = ds[0]["label"].numpy()
        flipped = np.array_equal(lab, label[:, ::-1])
        assert flipped or np.array_equal(lab, label)
        seen.add(flipped)
    assert seen == {True, False}
    half = PairDataset(synthetic, ["p"], size=(H, W), train=True, scale_range=(0.5, 0.5),
                       flip=False)[0]
    check_item(half, (H, W))  # resized to 32x48, padded at the bottom/right
    np.testing.assert_array_equal(half["label"][:H // 2, :W // 2].numpy(), label[::2, ::2])
    assert (half["label"][H // 2:] == 255).all() and (half["label"][:, W // 2:] == 255).all()
    assert not half["ir"][0, H // 2:].any() and not half["vis"][:, :, W // 2:].any()


def test_brightness_jitter_only_changes_visible(synthetic):
    plain = PairDataset(synthetic, ["p"], size=(H, W), train=True, brightness=0.0)
    jitter = PairDataset(synthetic, ["p"], size=(H, W), train=True, brightness=0.5)
    changed = 0
    for seed in range(5):
        torch.manual_seed(seed)
        a = plain[0]
        torch.manual_seed(seed)
        b = jitter[0]
        assert torch.equal(a["ir"], b["ir"]) and torch.equal(a["label"], b["label"])
        blue = a["vis"][2] > 0  # constant 128/255 where not padded, never clipped by b <= 1.5
        ratio = b["vis"][2][blue] / a["vis"][2][blue]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)
        assert 0.5 <= ratio[0] <= 1.5
        changed += abs(float(ratio[0]) - 1) > 1e-3
    assert changed >= 4


def test_thermal_gain_scales_only_thermal_within_its_range(synthetic):
    plain = PairDataset(synthetic, ["p"], size=(H, W), train=True, brightness=0.0)
    gained = PairDataset(synthetic, ["p"], size=(H, W), train=True, brightness=0.0,
                         thermal_gain=(0.25, 1.0))
    gains = []
    for seed in range(8):
        torch.manual_seed(seed)
        a = plain[0]
        torch.manual_seed(seed)
        b = gained[0]
        # same geometry and visible image; the thermal image times one factor in [0.25, 1]
        assert torch.equal(a["vis"], b["vis"]) and torch.equal(a["label"], b["label"])
        warm = a["ir"] > 0.05
        ratio = b["ir"][warm] / a["ir"][warm]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-4)
        gains.append(float(ratio[0]))
    assert min(gains) >= 0.25 - 1e-4 and max(gains) <= 1.0 + 1e-4
    assert max(gains) - min(gains) > 0.1  # it varies


def test_dataset_argument_errors():
    for kw in (dict(size=(0, 10)), dict(train=True), dict(scale_range=(2, 1), size=(8, 8)),
               dict(brightness=1.5), dict(thermal_mode="auto"), dict(ignore_index=-100),
               dict(thermal_gain=(0.0, 1.0)), dict(thermal_gain=(2.0, 1.0))):
        with pytest.raises(ValueError):
            PairDataset(MFNET, ["00102D"], **kw)


# ---------------------------------------------------------------- RoadScene-style folders
def roadscene_folder(root, names, label_ext=None):
    """``root/vis/NAME.jpg`` + ``root/ir/NAME.jpg`` (RoadScene as shipped; thermal as 3-channel
    gray JPEG) from crops of real MFNet pairs, optional lossless labels; returns the decoded
    thermal (HxW uint8, as OpenCV reads the written file) and label crops by name."""
    decoded = {}
    for name in names:
        crop = (slice(100, 196), slice(200, 328))  # 96x128
        bgr = cv2.imread(f"{MFNET}/vis/{name}.png", cv2.IMREAD_COLOR)[crop]
        ir = cv2.imread(f"{MFNET}/ir/{name}.png", cv2.IMREAD_GRAYSCALE)[crop]
        label = cv2.imread(f"{MFNET}/label/{name}.png", cv2.IMREAD_GRAYSCALE)[crop]
        for sub in ("vis", "ir") + (("label",) if label_ext else ()):
            os.makedirs(root / sub, exist_ok=True)
        assert cv2.imwrite(str(root / "vis" / f"{name}.jpg"), bgr)
        assert cv2.imwrite(str(root / "ir" / f"{name}.jpg"), np.dstack([ir] * 3))
        if label_ext:
            assert cv2.imwrite(str(root / "label" / f"{name}.{label_ext}"), label)
        back = cv2.imread(str(root / "ir" / f"{name}.jpg"), cv2.IMREAD_UNCHANGED)
        assert back.shape == (96, 128, 3)
        decoded[name] = (np.ascontiguousarray(back[..., 0]), label)
    return decoded


def entropy_bits(img):
    p = np.bincount(img.ravel(), minlength=256) / img.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


@needs_mfnet
def test_evaluate_cli_on_roadscene_jpg_folder(tmp_path):
    """`segmif evaluate --data DIR` on vis/NAME.jpg + ir/NAME.jpg finds and scores every pair
    (it used to stop with "no pairs found": only .png was listed)."""
    from segmif_ros.tools import cli

    names = ["00102D", "00545D", "00723N"]
    data = tmp_path / "roadscene"
    decoded = roadscene_folder(data, names)
    assert list_pairs(data) == names
    out = tmp_path / "out"
    assert cli.main(["evaluate", "--data", str(data), "--out", str(out),
                     "--method", "thermal"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["n_pairs"] == 3 and r["pairs"] == names and r["mIoU"] is None
    # the thermal rule's fused image is the thermal image as decoded: its entropy is that of the
    # JPEG we wrote, read back here by OpenCV directly
    for i, name in enumerate(names):
        assert abs(r["fusion_per_image"]["thermal"]["EN"][i]
                   - entropy_bits(decoded[name][0])) < 1e-9


@needs_mfnet
def test_evaluate_cli_model_on_jpg_pairs_with_bmp_labels(tmp_path, tiny_checkpoint):
    from segmif_ros.tools import cli

    names = ["00102D", "00723N"]
    data = tmp_path / "roadscene"
    decoded = roadscene_folder(data, names, label_ext="bmp")
    out = tmp_path / "out"
    assert cli.main(["evaluate", "--data", str(data), "--out", str(out), "--checkpoint",
                     str(tiny_checkpoint), "--no-rules"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["n_pairs"] == 2 and r["n_labelled"] == 2
    # ground-truth rows of the confusion matrix: the class histogram of the labels written
    gt = np.array(r["confusion_matrix"]).sum(axis=1)
    want = sum(np.bincount(decoded[n][1].ravel(), minlength=9) for n in names)
    np.testing.assert_array_equal(gt, want)


@needs_mfnet
def test_evaluate_cli_refuses_duplicate_stems_and_jpeg_labels(tmp_path, capsys):
    from segmif_ros.tools import cli

    data = tmp_path / "roadscene"
    roadscene_folder(data, ["00102D"])
    shutil.copy(data / "vis" / "00102D.jpg", data / "vis" / "00102D.png")
    assert cli.main(["evaluate", "--data", str(data), "--out", str(tmp_path / "o"),
                     "--method", "average"]) == 2
    err = capsys.readouterr().err
    assert str(data / "vis" / "00102D.jpg") in err and str(data / "vis" / "00102D.png") in err
    os.remove(data / "vis" / "00102D.png")
    os.makedirs(data / "label")
    shutil.copy(data / "ir" / "00102D.jpg", data / "label" / "00102D.jpg")
    assert cli.main(["evaluate", "--data", str(data), "--out", str(tmp_path / "o"),
                     "--method", "average"]) == 2
    assert "labels must be stored losslessly" in capsys.readouterr().err


@needs_tno
def test_read_pair_real_tno_as_bmp_and_16bit_tif(tmp_path):
    """TNO ships .bmp/.tif: the pair converted from the PNG copy reads back identically; a 16-bit
    TIFF thermal (8-bit x 257) keeps its exact values."""
    raw_vis = cv2.imread(f"{TNO}/vis/01.png", cv2.IMREAD_UNCHANGED)
    raw_ir = cv2.imread(f"{TNO}/ir/01.png", cv2.IMREAD_UNCHANGED)[..., 0]
    for sub in ("vis", "ir"):
        os.makedirs(tmp_path / sub)
    assert cv2.imwrite(str(tmp_path / "vis" / "01.bmp"), raw_vis)
    assert cv2.imwrite(str(tmp_path / "ir" / "01.tif"), raw_ir.astype(np.uint16) * 257)
    assert list_pairs(tmp_path) == ["01"]
    check_pairs(tmp_path, ["01"], require_labels=False)
    vis, ir, label = read_pair(tmp_path, "01")
    assert label is None and vis.shape == raw_vis.shape[:2] + (3,)
    for c in range(3):
        np.testing.assert_array_equal(vis[..., c], raw_vis[..., 0])
    assert ir.dtype == np.uint16 and ir.shape == raw_ir.shape
    np.testing.assert_array_equal(ir, raw_ir.astype(np.uint16) * 257)


@needs_mfnet
def test_fuse_cli_on_roadscene_jpg_folder_writes_full_size_fused_images(tmp_path,
                                                                          tiny_checkpoint):
    """`segmif fuse --vis DIR/vis --ir DIR/ir` on jpg pairs fuses every pair at its own size."""
    import cv2
    from segmif_ros.tools import cli

    names = ["00102D", "00723N"]
    data = tmp_path / "roadscene"
    decoded = roadscene_folder(data, names)
    out = tmp_path / "fused"
    assert cli.main(["fuse", "--vis", str(data / "vis"), "--ir", str(data / "ir"),
                     "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--labels"]) == 0
    for name in names:
        fused = cv2.imread(str(out / f"{name}.png"))
        assert fused is not None and fused.shape[:2] == decoded[name][0].shape[:2]
        assert cv2.imread(str(out / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED).shape == \
            decoded[name][0].shape[:2]
    (data / "ir" / f"{names[0]}.jpg").unlink()
    (data / "ir" / f"{names[1]}.jpg").unlink()
    assert cli.main(["fuse", "--vis", str(data / "vis"), "--ir", str(data / "ir"),
                     "--out", str(out), "--checkpoint", str(tiny_checkpoint)]) == 2
