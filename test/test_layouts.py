"""Dataset layouts: tiny fake datasets in the published folder layouts of FMB, MSRS and MFNet and
the plain layout, read back through segmif_core.data.pairs with ``layout=``; crops of real MFNet
pairs in every accepted file format (PNG, JPEG, BMP, TIFF), matched by stem."""
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

from conftest import MFNET as MFNET_DIR, needs_mfnet

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
    assert detect_layout(MFNET_DIR) is PLAIN
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


# ---------------------------------------------------------------- file formats (real pixels)
CH, CW = 40, 56  # crop size: small files, real texture


@pytest.fixture(scope="module")
def crops():
    """{stem: (vis RGB HxWx3 uint8, ir HxW uint8, label HxW uint8)}: crops of real MFNet pairs
    (the tests that use them are marked ``needs_mfnet``)."""
    out = {}
    for stem, name, (y, x) in (("a", "00102D", (200, 300)), ("b", "00723N", (180, 40))):
        bgr = cv2.imread(f"{MFNET_DIR}/vis/{name}.png", cv2.IMREAD_COLOR)
        ir = cv2.imread(f"{MFNET_DIR}/ir/{name}.png", cv2.IMREAD_GRAYSCALE)
        lab = cv2.imread(f"{MFNET_DIR}/label/{name}.png", cv2.IMREAD_GRAYSCALE)
        crop = (slice(y, y + CH), slice(x, x + CW))
        out[stem] = (np.ascontiguousarray(bgr[crop][..., ::-1]), np.ascontiguousarray(ir[crop]),
                     np.ascontiguousarray(lab[crop]))
        assert out[stem][1].std() > 1  # textured, so a wrong or shifted read shows
    return out


def write_formats(root, crops, vis_ext, ir_ext, label_ext=None, dirs=("vis", "ir", "label")):
    """Write every crop as ROOT/{vis,ir[,label]}/STEM.EXT; returns what was written (decoded back
    by OpenCV directly for lossy formats, else the arrays themselves), as RGB / gray."""
    written = {}
    for stem, (vis, ir, lab) in crops.items():
        vis_p = os.path.join(root, dirs[0], f"{stem}.{vis_ext}")
        ir_p = os.path.join(root, dirs[1], f"{stem}.{ir_ext}")
        write_rgb(vis_p, vis)
        write(ir_p, ir)
        if label_ext:
            write(os.path.join(root, dirs[2], f"{stem}.{label_ext}"), lab)
        lossy = {"jpg", "jpeg"}
        vis_back = (cv2.imread(vis_p, cv2.IMREAD_UNCHANGED)[..., ::-1]
                    if vis_ext.lower() in lossy else vis)
        ir_back = cv2.imread(ir_p, cv2.IMREAD_UNCHANGED) if ir_ext.lower() in lossy else ir
        written[stem] = (vis_back, ir_back, lab if label_ext else None)
    return written


@pytest.mark.parametrize("vis_ext,ir_ext,label_ext", [
    ("jpg", "jpg", None),         # RoadScene as shipped
    ("jpeg", "png", "png"),       # formats differ between folders: matched by stem
    ("png", "jpg", "bmp"),
    ("bmp", "bmp", "bmp"),        # TNO ships .bmp
    ("tif", "tiff", "tif"),       # and .tif
    ("JPG", "PNG", "TIFF"),       # extension case does not matter
])
@needs_mfnet
def test_plain_formats_matched_by_stem(tmp_path, crops, vis_ext, ir_ext, label_ext):
    root = tmp_path / "pairs"
    written = write_formats(root, crops, vis_ext, ir_ext, label_ext)
    (root / "vis" / "notes.txt").write_text("not an image")  # ignored
    assert sorted(os.listdir(root / "vis")) == ["a." + vis_ext, "b." + vis_ext, "notes.txt"]
    assert list_pairs(root) == ["a", "b"]
    check_pairs(root, ["a", "b"], require_labels=label_ext is not None, full=True, num_classes=9)
    for stem, (vis_w, ir_w, lab_w) in written.items():
        vis, ir, lab = read_pair(root, stem)
        assert vis.dtype == np.uint8 and vis.shape == (CH, CW, 3)
        assert ir.dtype == np.uint8 and ir.shape == (CH, CW)
        np.testing.assert_array_equal(vis, vis_w)
        np.testing.assert_array_equal(ir, ir_w)
        # lossy or not, the pixels are those of the crop (JPEG: within compression error)
        assert np.abs(vis.astype(int) - crops[stem][0]).mean() < 4
        assert np.abs(ir.astype(int) - crops[stem][1]).mean() < 4
        if label_ext is None:
            assert lab is None
        else:
            assert lab.dtype == np.uint8
            np.testing.assert_array_equal(lab, lab_w)
        paths = PLAIN.paths(str(root), stem)
        assert os.path.basename(paths.vis) == f"{stem}.{vis_ext}"
        assert os.path.basename(paths.ir) == f"{stem}.{ir_ext}"
    item = PairDataset(root, ["b"], size=(20, 28))[0]
    assert item["vis"].shape == (3, 20, 28) and item["ir"].shape == (1, 20, 28)


@pytest.mark.parametrize("ext", ["tif", "tiff", "TIF", "png"])
@needs_mfnet
def test_16bit_thermal_read_as_uint16_unchanged(tmp_path, crops, ext):
    root = tmp_path / "pairs"
    write_formats(root, crops, "jpg", "png")
    ir16 = {stem: ir.astype(np.uint16) * 257 for stem, (_, ir, _) in crops.items()}
    for stem, img in ir16.items():
        (root / "ir" / f"{stem}.png").unlink()
        write(root / "ir" / f"{stem}.{ext}", img)
    assert Image.open(root / "ir" / f"a.{ext}").mode.startswith("I;16")  # really 16 bit on disk
    assert list_pairs(root) == ["a", "b"]
    check_pairs(root, ["a", "b"], require_labels=False)
    for stem, img in ir16.items():
        ir = read_pair(root, stem)[1]
        assert ir.dtype == np.uint16 and ir.shape == (CH, CW)
        np.testing.assert_array_equal(ir, img)
        assert ir.max() > 255
    # fixed 0-65535 scaling of v * 257 is v / 255: the 8-bit values come back
    item = PairDataset(root, ["a"], thermal_mode="fixed", thermal_min=0, thermal_max=65535)[0]
    np.testing.assert_allclose(item["ir"][0].numpy(), crops["a"][1] / 255, atol=1e-6)


@needs_mfnet
def test_16bit_visible_tif_refused_from_header(tmp_path, crops):
    """Pillow opens 16-bit RGB TIFF as mode RGB: the bit depth must come from the TIFF tags."""
    root = tmp_path / "pairs"
    write_formats(root, crops, "png", "png")
    (root / "vis" / "a.png").unlink()
    write(root / "vis" / "a.tif", crops["a"][0].astype(np.uint16) * 257)
    with pytest.raises(DatasetError, match="a.tif: visible must be 8 bit, got 16 bit"):
        check_pairs(root, ["a", "b"], require_labels=False)


@needs_mfnet
def test_headers_only_for_jpeg_bmp_tiff(tmp_path, crops, monkeypatch):
    """The default check reads headers (sizes, bit depths) without decoding the images."""
    root = tmp_path / "pairs"
    write_formats(root, crops, "jpg", "bmp", "tif")
    write(root / "ir" / "c.bmp", crops["a"][1][:30])
    write_rgb(root / "vis" / "c.jpg", crops["a"][0])
    import segmif_core.data.images as images
    import segmif_core.data.layouts as layouts

    def no_decode(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(images, "read_image", no_decode)
    monkeypatch.setattr(layouts, "read_image", no_decode)
    check_pairs(root, ["a", "b"], require_labels=True)
    with pytest.raises(DatasetError, match=f"size mismatch c: vis {CW}x{CH}, ir {CW}x30"):
        check_pairs(root, ["a", "b", "c"], require_labels=False)


@needs_mfnet
def test_mixed_formats_across_folders_and_split_file(tmp_path, crops):
    root = tmp_path / "pairs"
    write_formats(root, {"a": crops["a"]}, "jpg", "png", "png")
    write_formats(root, {"b": crops["b"]}, "bmp", "tif", "tiff")
    assert list_pairs(root) == ["a", "b"]
    (root / "split.txt").write_text("b.BMP\na.jpg  # with the file extension\n")
    assert list_pairs(root, "split.txt") == ["b", "a"]
    np.testing.assert_array_equal(read_pair(root, "b")[0], crops["b"][0])
    np.testing.assert_array_equal(read_pair(root, "a")[1], crops["a"][1])
    # a missing thermal is reported with the formats looked for
    (root / "ir" / "b.tif").unlink()
    with pytest.raises(DatasetError) as e:
        check_pairs(root, ["a", "b"], require_labels=True)
    assert f"missing {root / 'ir' / 'b.png'} (also tried .jpg, .jpeg, .bmp, .tif, .tiff" \
        in str(e.value)
    with pytest.raises(DatasetError, match="missing"):
        read_pair(root, "b")


@needs_mfnet
def test_duplicate_stem_is_an_error_naming_both(tmp_path, crops):
    root = tmp_path / "pairs"
    write_formats(root, crops, "png", "png", "png")
    write_rgb(root / "vis" / "a.jpg", crops["a"][0])
    with pytest.raises(ValueError) as e:  # DatasetError is a ValueError (the CLI reports those)
        list_pairs(root)
    assert isinstance(e.value, DatasetError)
    for f in ("a.jpg", "a.png"):
        assert str(root / "vis" / f) in str(e.value)
    with pytest.raises(DatasetError, match="a.jpg"):
        read_pair(root, "a")
    (root / "vis" / "a.jpg").unlink()
    assert list_pairs(root) == ["a", "b"]
    # in the thermal folder, case only: b.png and b.PNG are two files
    write(root / "ir" / "b.PNG", crops["b"][1])
    if len(os.listdir(root / "ir")) == 3:  # case-sensitive file system
        with pytest.raises(DatasetError) as e:
            check_pairs(root, ["a", "b"], require_labels=True)
        assert "1 problem" in str(e.value)
        for f in ("b.PNG", "b.png"):
            assert str(root / "ir" / f) in str(e.value)
        with pytest.raises(DatasetError, match="share the stem 'b'"):
            read_pair(root, "b")


@needs_mfnet
def test_jpeg_label_refused_with_reason(tmp_path, crops):
    root = tmp_path / "pairs"
    write_formats(root, crops, "jpg", "jpg", "png")
    (root / "label" / "a.png").unlink()
    write(root / "label" / "a.jpg", crops["a"][2])
    with pytest.raises(DatasetError, match="a.jpg: labels must be stored losslessly.*JPEG") as e:
        read_pair(root, "a")
    assert "class ids" in str(e.value)
    with pytest.raises(DatasetError, match="losslessly"):
        check_pairs(root, ["a", "b"], require_labels=False)
    np.testing.assert_array_equal(read_pair(root, "b")[2], crops["b"][2])  # png label fine


@needs_mfnet
def test_palette_bmp_label_gives_indices(tmp_path, crops):
    root = tmp_path / "pairs"
    write_formats(root, crops, "jpg", "jpg")
    pal = Image.fromarray(crops["a"][2], mode="P")
    pal.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, i)])
    os.makedirs(root / "label")
    pal.save(root / "label" / "a.bmp")
    assert Image.open(root / "label" / "a.bmp").mode == "P"
    np.testing.assert_array_equal(read_pair(root, "a")[2], crops["a"][2])


@needs_mfnet
def test_every_layout_reads_other_formats(tmp_path, crops):
    a, b = crops["a"], crops["b"]
    # FMB: jpg visible, bmp thermal, tif labels; bare stems and SUBSET/STEM
    fmb = tmp_path / "FMB"
    write_formats(fmb / "train", {"00001": a}, "jpg", "bmp", "tif",
                  ("Visible", "Infrared", "Label"))
    write_formats(fmb / "test", {"00002": b}, "png", "JPEG", "png",
                  ("Visible", "Infrared", "Label"))
    assert detect_layout(fmb) is FMB
    assert list_pairs(fmb) == ["train/00001", "test/00002"]
    check_pairs(fmb, list_pairs(fmb), require_labels=True, full=True, num_classes=15)
    vis, ir, lab = read_pair(fmb, "00001")
    np.testing.assert_array_equal(ir, a[1])
    np.testing.assert_array_equal(lab, a[2])
    assert np.abs(vis.astype(int) - a[0]).mean() < 4
    np.testing.assert_array_equal(read_pair(fmb, "test/00002")[0], b[0])
    # MSRS: jpg visible and thermal, bmp labels
    msrs = tmp_path / "MSRS"
    write_formats(msrs / "test", {"00001D": a, "00002N": b}, "jpg", "jpg", "bmp",
                  ("vi", "ir", "Segmentation_labels"))
    assert detect_layout(msrs) is MSRS
    assert list_pairs(msrs, "test") == ["test/00001D", "test/00002N"]
    np.testing.assert_array_equal(read_pair(msrs, "test/00002N")[2], b[2])
    # MFNet: the 4-channel image as TIFF (B, G, R, thermal for OpenCV), label as bmp
    mf = tmp_path / "MF"
    write(mf / "images" / "00001D.tif", np.dstack([a[0][..., ::-1], a[1]]))
    write(mf / "labels" / "00001D.bmp", a[2])
    (mf / "train.txt").write_text("00001D.tif\n")
    assert detect_layout(mf) is MFNET and list_pairs(mf, "train") == ["00001D"]
    check_pairs(mf, ["00001D"], require_labels=True, full=True)
    vis, ir, lab = read_pair(mf, "00001D")
    np.testing.assert_array_equal(vis, a[0])
    np.testing.assert_array_equal(ir, a[1])
    np.testing.assert_array_equal(lab, a[2])
    write(mf / "images" / "00002N.jpg", b[0][..., ::-1])  # JPEG has no 4th channel
    with pytest.raises(DatasetError, match="00002N.jpg: MFNet image must be 8 bit with 4"):
        check_pairs(mf, ["00002N"], require_labels=False)


@needs_mfnet
def test_listing_sees_files_added_or_removed_after_it(tmp_path, crops):
    """Folder listings are reused while the folder is unchanged, never while it changes."""
    root = tmp_path / "pairs"
    write_formats(root, {"a": crops["a"]}, "jpg", "jpg")
    assert list_pairs(root) == ["a"]
    write_formats(root, {"b": crops["b"]}, "jpg", "jpg")  # right after: same timestamp tick
    assert list_pairs(root) == ["a", "b"]
    old = os.stat(root / "vis").st_mtime - 3600
    for d in ("vis", "ir"):
        os.utime(root / d, (old, old))  # a quiet folder: its listing is kept
    assert list_pairs(root) == ["a", "b"]
    check_pairs(root, ["a", "b"], require_labels=False)
    write_rgb(root / "vis" / "a.png", crops["a"][0])  # the folder changes: listed again
    with pytest.raises(DatasetError, match="a.png"):
        list_pairs(root)
    (root / "vis" / "a.png").unlink()
    (root / "ir" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match="missing"):
        check_pairs(root, ["a", "b"], require_labels=False)
