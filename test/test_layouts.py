"""Dataset layouts: tiny fake datasets in the published folder layouts of FMB, MSRS and MFNet and
the plain layout, read back through segmif_core.data.pairs with ``layout=``."""
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segmif_core.data.classes import FMB_CLASSES, MFNET_CLASSES
from segmif_core.data.layouts import (FMB, MFNET, MSRS, PLAIN, Layout, class_set_for,
                                      detect_layout, get_layout)
from segmif_core.data.pairs import (DatasetError, PairDataset, check_pairs, list_pairs,
                                    read_pair)

H, W = 6, 8


def rgb_image(seed):
    """HxWx3 uint8 RGB whose three channels differ everywhere (so a BGR mix-up shows)."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([10 + seed + x, 100 + seed + y, 200 + seed + 0 * x], -1).astype(np.uint8)


def thermal_image(seed, dtype=np.uint8):
    y, x = np.mgrid[0:H, 0:W]
    scale = 1000 if dtype == np.uint16 else 1
    return ((50 + seed + 3 * x + 5 * y) * scale).astype(dtype)


def label_image(seed, n=9):
    y, x = np.mgrid[0:H, 0:W]
    return ((x + y + seed) % n).astype(np.uint8)


def write(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), img)


def write_rgb(path, rgb):
    write(path, np.ascontiguousarray(rgb[..., ::-1]))  # cv2 writes BGR


# ---------------------------------------------------------------- fake datasets
def make_split_folders(root, dirs, pairs, thermal_3ch=False):
    """``pairs``: {subset: [(stem, seed, thermal dtype)]}; ``dirs``: (vis, ir, label) names."""
    vis_d, ir_d, lab_d = dirs
    for subset, items in pairs.items():
        for stem, seed, dtype in items:
            base = os.path.join(root, subset) if subset else str(root)
            write_rgb(os.path.join(base, vis_d, stem + ".png"), rgb_image(seed))
            ir = thermal_image(seed, dtype)
            write(os.path.join(base, ir_d, stem + ".png"),
                  np.dstack([ir] * 3) if thermal_3ch and dtype == np.uint8 else ir)
            write(os.path.join(base, lab_d, stem + ".png"), label_image(seed))


@pytest.fixture
def fmb(tmp_path):
    root = tmp_path / "FMB"
    make_split_folders(root, ("Visible", "Infrared", "Label"),
                       {"train": [("00001", 1, np.uint8), ("00002", 2, np.uint16)],
                        "test": [("00003", 3, np.uint8)]}, thermal_3ch=True)
    # colour-rendered labels live beside the id labels in the release; never read
    write_rgb(root / "train" / "color" / "00001.png", rgb_image(9))
    return root


@pytest.fixture
def msrs(tmp_path):
    root = tmp_path / "MSRS"
    make_split_folders(root, ("vi", "ir", "Segmentation_labels"),
                       {"train": [("00001D", 1, np.uint8), ("00002N", 2, np.uint8)],
                        "test": [("00004N", 4, np.uint16)]})
    return root


@pytest.fixture
def mfnet(tmp_path):
    """Original MFNet release: images/NAME.png with R, G, B, thermal; labels/; split files."""
    root = tmp_path / "MF"
    for i, name in enumerate(["00001D", "00002N", "00003D"]):
        rgb, t = rgb_image(i), thermal_image(i)
        write(root / "images" / f"{name}.png", np.dstack([rgb[..., ::-1], t]))  # cv2: BGRA
        write(root / "labels" / f"{name}.png", label_image(i))
    (root / "train.txt").write_text("00001D\n00002N\n")
    (root / "val.txt").write_text("00003D\n")
    (root / "test.txt").write_text("00003D\n")
    return root


@pytest.fixture
def plain(tmp_path):
    root = tmp_path / "plain"
    make_split_folders(root, ("vis", "ir", "label"), {"": [("a", 1, np.uint16),
                                                           ("b", 2, np.uint8)]})
    return root


def assert_pair(pair, seed, dtype=np.uint8):
    vis, ir, label = pair
    assert vis.dtype == np.uint8 and vis.shape == (H, W, 3)
    np.testing.assert_array_equal(vis, rgb_image(seed))  # RGB order
    assert ir.dtype == dtype and ir.shape == (H, W)
    np.testing.assert_array_equal(ir, thermal_image(seed, dtype))
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, label_image(seed))


# ---------------------------------------------------------------- detection and look-up
def test_detect_layout(fmb, msrs, mfnet, plain, tmp_path):
    assert detect_layout(fmb) is FMB and detect_layout(fmb / "train") is FMB
    assert detect_layout(msrs) is MSRS and detect_layout(msrs / "test") is MSRS
    assert detect_layout(mfnet) is MFNET and detect_layout(str(plain)) is PLAIN
    assert detect_layout(tmp_path / "empty") is PLAIN  # fallback: plain errors name the folder
    assert detect_layout("/work/shared/data/mfnet") is PLAIN
    with pytest.raises(DatasetError, match="no visible folder"):
        list_pairs(tmp_path / "empty")


def test_get_layout_and_classes(fmb):
    assert get_layout("FMB") is FMB and get_layout(MSRS) is MSRS
    assert get_layout("auto", fmb) is FMB and isinstance(get_layout("plain"), Layout)
    with pytest.raises(ValueError, match="plain, fmb, msrs, mfnet"):
        get_layout("cityscapes")
    with pytest.raises(ValueError, match="root"):
        get_layout("auto")
    with pytest.raises(ValueError, match="cityscapes"):
        list_pairs(fmb, layout="cityscapes")
    assert class_set_for("fmb") is FMB_CLASSES and class_set_for("msrs") is MFNET_CLASSES
    assert class_set_for("mfnet") is MFNET_CLASSES and class_set_for("plain") is MFNET_CLASSES
    assert class_set_for("auto", root=fmb) is FMB_CLASSES
    assert class_set_for("plain", "fmb") is FMB_CLASSES  # data.classes wins


# ---------------------------------------------------------------- FMB
def test_fmb_splits_and_read(fmb):
    assert list_pairs(fmb, "train", layout="fmb") == ["train/00001", "train/00002"]
    assert list_pairs(fmb, "test") == ["test/00003"]  # auto
    assert list_pairs(fmb) == ["train/00001", "train/00002", "test/00003"]
    assert_pair(read_pair(fmb, "train/00001", layout="fmb"), 1)  # 3 equal channels -> 1
    assert_pair(read_pair(fmb, "train/00002"), 2, np.uint16)    # 16-bit thermal kept raw
    assert_pair(read_pair(fmb, "00003", layout=FMB), 3)          # bare stem: the one subset
    assert FMB.paths(str(fmb), "train/00001").label == str(fmb / "train" / "Label" / "00001.png")
    # a split file of bare or prefixed names, and the subset folder itself as root
    (fmb / "mine.txt").write_text("00003\ntrain/00002.png\n")
    names = list_pairs(fmb, "mine.txt")
    assert names == ["00003", "train/00002"]
    check_pairs(fmb, names, require_labels=True)
    assert list_pairs(fmb / "train") == ["00001", "00002"]
    assert_pair(read_pair(fmb / "train", "00002"), 2, np.uint16)
    with pytest.raises(DatasetError, match="split file val not found"):
        list_pairs(fmb, "val", layout="fmb")


def test_fmb_check_reports_missing_mismatch_and_ambiguity(fmb):
    names = list_pairs(fmb, layout="fmb")
    check_pairs(fmb, names, require_labels=True, layout="fmb", full=True, num_classes=15)
    (fmb / "train" / "Infrared" / "00001.png").unlink()
    write(fmb / "train" / "Infrared" / "00002.png", thermal_image(2)[:5])
    (fmb / "test" / "Label" / "00003.png").unlink()
    with pytest.raises(DatasetError) as e:
        check_pairs(fmb, names, require_labels=True)
    msg = str(e.value)
    assert "3 problem" in msg
    assert f"missing {fmb / 'train' / 'Infrared' / '00001.png'}" in msg
    assert "size mismatch train/00002: vis 8x6, ir 8x5, label 8x6" in msg
    assert f"missing {fmb / 'test' / 'Label' / '00003.png'}" in msg
    check_pairs(fmb, ["test/00003"], require_labels=False)  # label optional
    # a bare stem present in both subsets, and one present in none
    make_split_folders(fmb, ("Visible", "Infrared", "Label"), {"test": [("00001", 5, np.uint8)]})
    with pytest.raises(DatasetError) as e:
        check_pairs(fmb, ["00001", "07777"], require_labels=False)
    assert "'00001' is ambiguous" in str(e.value) and "07777" in str(e.value)
    with pytest.raises(DatasetError, match="ambiguous"):
        read_pair(fmb, "00001")


# ---------------------------------------------------------------- MSRS
def test_msrs_splits_read_and_check(msrs):
    assert list_pairs(msrs, "train", layout="msrs") == ["train/00001D", "train/00002N"]
    assert list_pairs(msrs, "test") == ["test/00004N"]
    assert_pair(read_pair(msrs, "train/00002N", layout="msrs"), 2)
    assert_pair(read_pair(msrs, "test/00004N"), 4, np.uint16)
    check_pairs(msrs, list_pairs(msrs), require_labels=True, layout="msrs", num_classes=9)
    write(msrs / "train" / "Segmentation_labels" / "00001D.png", np.full((H, W), 12, np.uint8))
    write(msrs / "test" / "vi" / "00004N.png", np.zeros((H, W), np.uint16))  # 16-bit visible
    with pytest.raises(DatasetError) as e:
        check_pairs(msrs, list_pairs(msrs), require_labels=True, num_classes=9)
    msg = str(e.value)
    assert "label ids out of range in train/00001D: [12]" in msg
    assert "00004N.png: visible must be 8 bit, got 16 bit" in msg


# ---------------------------------------------------------------- MFNet (4-channel images)
def test_mfnet_file_is_rgb_plus_thermal_in_pil_order(mfnet):
    """The fake file matches the release as MFNet/RTFNet code reads it (PIL: R, G, B, thermal)."""
    arr = np.asarray(Image.open(mfnet / "images" / "00002N.png"))
    assert arr.shape == (H, W, 4)
    np.testing.assert_array_equal(arr[..., :3], rgb_image(1))
    np.testing.assert_array_equal(arr[..., 3], thermal_image(1))


def test_mfnet_splits_and_read(mfnet):
    assert list_pairs(mfnet, layout="mfnet") == ["00001D", "00002N", "00003D"]
    assert list_pairs(mfnet, "train") == ["00001D", "00002N"]  # -> train.txt
    assert list_pairs(mfnet, "val.txt", layout="mfnet") == ["00003D"]
    for i, name in enumerate(["00001D", "00002N", "00003D"]):
        assert_pair(read_pair(mfnet, name, layout="mfnet"), i)
    p = MFNET.paths(mfnet, "00001D")
    assert p.vis == p.ir == str(mfnet / "images" / "00001D.png")
    check_pairs(mfnet, list_pairs(mfnet), require_labels=True, full=True, num_classes=9)
    item = PairDataset(mfnet, ["00002N"], layout="mfnet")[0]
    np.testing.assert_allclose(item["vis"].numpy().transpose(1, 2, 0), rgb_image(1) / 255,
                               atol=1e-6)
    np.testing.assert_allclose(item["ir"][0].numpy(), thermal_image(1) / 255, atol=1e-6)
    assert torch.equal(item["label"], torch.from_numpy(label_image(1).astype(np.int64)))


def test_mfnet_check_reports_channels_size_and_missing(mfnet):
    write_rgb(mfnet / "images" / "00001D.png", rgb_image(0))           # 3 channels only
    write(mfnet / "labels" / "00002N.png", label_image(1)[:3, :4])      # half size
    (mfnet / "labels" / "00003D.png").unlink()
    with pytest.raises(DatasetError) as e:
        check_pairs(mfnet, list_pairs(mfnet), require_labels=True, layout="mfnet")
    msg = str(e.value)
    assert "3 problem" in msg
    assert "00001D.png: MFNet image must be 8 bit with 4 channels" in msg
    assert "size mismatch 00002N: image 8x6, label 4x3" in msg
    assert f"missing {mfnet / 'labels' / '00003D.png'}" in msg
    with pytest.raises(DatasetError, match="4 channels"):
        read_pair(mfnet, "00001D", layout="mfnet")
    with pytest.raises(DatasetError, match="size mismatch 00002N"):
        read_pair(mfnet, "00002N", layout="mfnet")


# ---------------------------------------------------------------- plain, 16-bit thermal, labels
def test_plain_16bit_thermal_and_dataset(plain):
    assert list_pairs(plain) == list_pairs(plain, layout="plain") == ["a", "b"]
    assert_pair(read_pair(plain, "a"), 1, np.uint16)
    assert_pair(read_pair(plain, "b", layout="plain"), 2)
    ds = PairDataset(plain, ["a"], size=(H, W), thermal_mode="fixed", thermal_min=0,
                     thermal_max=65535)
    assert ds.layout is PLAIN
    np.testing.assert_allclose(ds[0]["ir"][0].numpy(), thermal_image(1, np.uint16) / 65535,
                               atol=1e-6)
    torch.manual_seed(0)
    train = PairDataset(plain, ["a", "b"], size=(H, W), train=True, crop=(4, 4))
    for i in range(2):
        item = train[i]
        assert item["vis"].shape == (3, 4, 4) and item["ir"].shape == (1, 4, 4)
        assert item["label"].shape == (4, 4)


def test_palette_label_gives_indices(plain):
    pal = Image.new("P", (W, H))
    pal.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, i)])
    pal.putdata(label_image(1).ravel().tolist())
    pal.save(plain / "label" / "a.png")
    assert Image.open(plain / "label" / "a.png").mode == "P"
    np.testing.assert_array_equal(read_pair(plain, "a")[2], label_image(1))


def test_full_check_catches_pseudocolour_thermal(plain):
    ir = np.zeros((H, W, 3), np.uint8)
    ir[..., 2] = 9
    write(plain / "ir" / "b.png", ir)
    check_pairs(plain, ["a", "b"], require_labels=True)  # headers fine
    with pytest.raises(DatasetError, match="b.png: expected one channel"):
        check_pairs(plain, ["a", "b"], require_labels=True, full=True)
