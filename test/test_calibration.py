"""Registration calibration (segmif_core.calibration, calibration_auto, `segmif calibrate`).

Ground truth is a known homography H_true (thermal pixel -> visible pixel) applied with numpy:
thermal images are synthesised from real MFNet thermal frames of aligned pairs by sampling the
source at H_true @ p, so the synthetic thermal camera sees the visible scene through H_true.
Errors are measured where H and H_true send the thermal image corners (visible pixels).
"""
import os

import cv2
import numpy as np
import pytest
import yaml

from segmif_core.calibration import (CalibrationError, checkerboard_points, estimate_homography,
                                     read_points, valid_crop, write_params)
from segmif_core.calibration_auto import estimate_ecc
from segmif_core.registration import Registration
from segmif_ros.tools.cli import main

from conftest import MFNET, needs_mfnet

W, H = 640, 480
CORNERS = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], np.float64)
ROOT = os.path.join(os.path.dirname(__file__), "..")
# Tolerances (visible pixels, mean over the 4 image corners):
POINTS_TOL = 1.0   # 0.3 px noise on 40 inliers
BOARD_TOL = 0.5    # sub-pixel checkerboard corners
ECC_TOL = 12.0     # cross-modal, one pair, affine: measured median 7.8, max 15.4 px over 12 day
#                    pairs (the source pairs themselves are registered only to a few pixels)


def apply_h(h, xy):
    p = np.c_[xy, np.ones(len(xy))] @ np.asarray(h).T
    return p[:, :2] / p[:, 2:]


def corner_error(h_est, h_true):
    return float(np.linalg.norm(apply_h(h_est, CORNERS) - apply_h(h_true, CORNERS), axis=1).mean())


def h_true(seed):
    """Rotation <= 2 deg, scale 0.86-0.92, slight perspective, centred: the thermal image falls
    entirely inside the visible one (narrower field of view, no zero border)."""
    rng = np.random.default_rng(seed)
    a, s = np.deg2rad(rng.uniform(-2, 2)), rng.uniform(0.86, 0.92)
    h = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0],
                  [rng.uniform(-2e-5, 2e-5), rng.uniform(-2e-5, 2e-5), 1]])
    c = apply_h(h, CORNERS)
    h[0, 2] = W / 2 - c[:, 0].mean() + rng.uniform(-8, 8)
    h[1, 2] = H / 2 - c[:, 1].mean() + rng.uniform(-8, 8)
    return h


def synth_thermal(ir, h):
    """Thermal camera image: pixel p shows the source thermal at H @ p (bilinear, numpy map)."""
    ys, xs = np.mgrid[0:H, 0:W]
    src = apply_h(h, np.c_[xs.ravel(), ys.ravel()]).astype(np.float32)
    return cv2.remap(ir, src[:, 0].reshape(H, W), src[:, 1].reshape(H, W), cv2.INTER_LINEAR)


def pair(name):
    vis = cv2.imread(os.path.join(MFNET, "vis", f"{name}.png"))
    ir = cv2.imread(os.path.join(MFNET, "ir", f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    assert vis is not None and ir is not None
    return vis, ir


def correspondences(h, n_in=40, n_out=15, seed=0):
    rng = np.random.default_rng(seed)
    xy_ir = rng.uniform([0, 0], [W, H], (n_in + n_out, 2))
    xy_vis = apply_h(h, xy_ir) + rng.normal(0, 0.3, (n_in + n_out, 2))
    xy_vis[n_in:] += rng.uniform(20, 200, (n_out, 2)) * rng.choice([-1, 1], (n_out, 2))
    return np.c_[xy_ir, xy_vis], np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)]


def test_points_ransac_rejects_outliers():
    ht = h_true(1)
    pts, truth = correspondences(ht)
    est = estimate_homography(pts, ransac_px=3.0)
    np.testing.assert_array_equal(est.inliers, truth)
    assert corner_error(est.homography, ht) < POINTS_TOL
    assert est.rms_px < 0.6 and est.max_px < 2.0
    assert est.homography[2, 2] == pytest.approx(1.0)


def test_read_points_csv_and_yaml(tmp_path):
    pts, _ = correspondences(h_true(2), 6, 0)
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("# picked by hand\nx_ir,y_ir,x_vis,y_vis\n\n"
                        + "\n".join(",".join(f"{v:.6f}" for v in r) for r in pts) + "\n")
    np.testing.assert_allclose(read_points(csv_file), pts, atol=1e-6)
    yml = tmp_path / "p.yaml"
    yml.write_text(yaml.safe_dump({"points": pts.tolist()}))
    np.testing.assert_allclose(read_points(yml), pts)


@pytest.mark.parametrize("text, ext, match", [
    ("1,2,3\n4,5,6\n", ".csv", "expected 4 numbers"),
    ("x,y,u,v\n1,2,3,4\n", ".csv", "header must be"),
    ("1,2,3,abc\n", ".csv", "expected 4 numbers"),
    ("pts: [[1, 2, 3, 4]]\n", ".yaml", "'points' list"),
    ("points: [[1, 2, 3]]\n", ".yaml", r"points\[0\] must be 4 numbers"),
    ("points: [[1, 2\n", ".yaml", "not valid YAML"),
    ("1,2,3,4\n", ".json", "unknown points format"),
])
def test_read_points_bad_files(tmp_path, text, ext, match):
    f = tmp_path / f"p{ext}"
    f.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        read_points(f)
    with pytest.raises(CalibrationError, match="not found"):
        read_points(tmp_path / "missing.csv")


def test_too_few_and_degenerate_points():
    pts, _ = correspondences(h_true(3), 3, 0)
    with pytest.raises(CalibrationError, match="at least 4"):
        estimate_homography(pts)
    t = np.linspace(0, 1, 8)[:, None]
    line = np.c_[100 + 400 * t, 50 + 300 * t, 110 + 400 * t, 60 + 300 * t]
    with pytest.raises(CalibrationError, match="collinear"):
        estimate_homography(line)
    with pytest.raises(CalibrationError, match="distinct"):
        estimate_homography(np.tile([[1.0, 2.0, 3.0, 4.0]], (6, 1)))
    with pytest.raises(CalibrationError, match="Nx4"):
        estimate_homography(np.zeros((5, 3)))


def board_image(cols, rows, sq=24):
    """Checkerboard with (cols, rows) inner corners and a one-square white margin."""
    b = ((np.indices((rows + 1, cols + 1)).sum(axis=0) % 2) * 255).astype(np.uint8)
    b = np.kron(b, np.ones((sq, sq), np.uint8))
    return np.pad(b, sq, constant_values=255), sq


@needs_mfnet
def test_heated_checkerboard():
    vis, ir = pair("00102D")
    ht = h_true(4)
    board, sq = board_image(9, 6)
    # board pixel -> visible pixel: a slightly tilted board in the middle of the view
    hb_v = np.array([[1.05, 0.08, 140], [-0.04, 1.0, 90], [1e-4, -5e-5, 1.0]])
    hb_i = np.linalg.inv(ht) @ hb_v
    for img, hb, heat in ((vis, hb_v, False), (ir, hb_i, True)):
        tile = 255 - board if heat else board  # heated squares glow where the print is dark
        shape = img.shape[1::-1]
        drawn = cv2.warpPerspective(tile, hb, shape, flags=cv2.INTER_AREA)
        inside = cv2.warpPerspective(np.ones_like(board), hb, shape, flags=cv2.INTER_NEAREST) > 0
        if heat:
            drawn = cv2.GaussianBlur(drawn, (0, 0), 1.2)  # heat diffusion
        if img.ndim == 3:
            img[inside] = drawn[inside, None]
        else:
            img[inside] = drawn[inside]
    pts = checkerboard_points(vis, ir, (9, 6))
    assert pts is not None and len(pts) == 54
    est = estimate_homography(pts, method="checkerboard")
    assert est.inliers.all() and est.rms_px < 0.5
    assert corner_error(est.homography, ht) < BOARD_TOL
    assert checkerboard_points(*pair("00104D"), (9, 6)) is None  # no board: None, not an error


@pytest.mark.parametrize("name, seed", [("00102D", 5), ("00520D", 6)])
@needs_mfnet
def test_automatic_ecc_on_synthetic_warp(name, seed):
    vis, ir = pair(name)
    ht = h_true(seed)
    assert corner_error(np.eye(3), ht) > 30  # the warp is large compared with the tolerance
    est = estimate_ecc(vis, synth_thermal(ir, ht))
    assert est.method == "ecc" and est.info["rho"] >= 0.35
    assert corner_error(est.homography, ht) < ECC_TOL


@needs_mfnet
def test_automatic_ecc_refuses_blank_and_bad_model():
    vis, ir = pair("00102D")
    with pytest.raises(CalibrationError, match="no gradients"):
        estimate_ecc(vis, np.zeros_like(ir))
    with pytest.raises(CalibrationError, match="model"):
        estimate_ecc(vis, ir, model="similarity")


def test_valid_crop_inside_footprint():
    ht = h_true(7)
    x, y, w, h = valid_crop(ht, (W, H), (W, H))
    inv = np.linalg.inv(ht)
    border = np.array([[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]], float)
    back = apply_h(inv, border)
    assert (back >= 0).all() and (back[:, 0] <= W - 1).all() and (back[:, 1] <= H - 1).all()
    foot = apply_h(ht, CORNERS)  # the largest rectangle is close to the footprint's inner box
    inner_w = min(foot[1, 0], foot[2, 0]) - max(foot[0, 0], foot[3, 0])
    inner_h = min(foot[2, 1], foot[3, 1]) - max(foot[0, 1], foot[1, 1])
    assert w * h >= 0.97 * inner_w * inner_h
    # pure translation by (10, 20): the crop is the shifted image less the 1-pixel safety margin
    x, y, w, h = valid_crop(np.array([[1, 0, 10], [0, 1, 20], [0, 0, 1.0]]), (W, H), (W, H))
    assert abs(x - 11) <= 1 and abs(y - 21) <= 1 and abs(w - (W - 12)) <= 1
    assert abs(h - (H - 22)) <= 1
    with pytest.raises(CalibrationError, match="does not overlap"):
        valid_crop(np.array([[1, 0, 5000], [0, 1, 0], [0, 0, 1.0]]), (W, H), (W, H))


def test_written_yaml_loads_into_registration_and_node_params(tmp_path):
    from segmif_ros.node.parameters import PARAMETERS

    ht = h_true(8)
    crop = valid_crop(ht, (W, H), (W, H))
    out = tmp_path / "cfg" / "rig.yaml"
    write_params(out, ht, crop, comment="test")
    doc = yaml.safe_load(out.read_text())
    params = doc["/**"]["ros__parameters"]
    with open(os.path.join(ROOT, "config", "segmif.yaml")) as f:
        shipped = yaml.safe_load(f)["/**"]["ros__parameters"]
    for key in ("homography", "crop"):
        assert key in shipped and key in PARAMETERS
        assert all(type(v) is type(shipped[key][0]) for v in params[key])
    reg = Registration(params["homography"], out_size=(W, H), crop=params["crop"])
    np.testing.assert_allclose(reg.homography, ht / ht[2, 2], atol=1e-12)
    assert list(reg.crop_box) == crop
    # updating the shipped file keeps its other parameters
    full = tmp_path / "full.yaml"
    full.write_text(open(os.path.join(ROOT, "config", "segmif.yaml")).read())
    write_params(full, ht, crop)
    again = yaml.safe_load(full.read_text())["/**"]["ros__parameters"]
    assert again["slop"] == shipped["slop"] and again["crop"] == crop
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left


@needs_mfnet
def test_cli_points_and_errors(tmp_path, capsys):
    vis, ir = pair("00102D")
    ht = h_true(9)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    cv2.imwrite(str(tmp_path / "ir.png"), synth_thermal(ir, ht))
    pts, _ = correspondences(ht, 30, 8, seed=9)
    (tmp_path / "pts.csv").write_text("x_ir,y_ir,x_vis,y_vis\n" + "\n".join(
        ",".join(str(v) for v in r) for r in pts))
    out = tmp_path / "rig.yaml"
    args = ["calibrate", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png")]
    assert main(args + ["--points", str(tmp_path / "pts.csv"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reprojection error over 30 inliers of 38 points: RMS" in text
    h = yaml.safe_load(out.read_text())["/**"]["ros__parameters"]["homography"]
    assert corner_error(np.reshape(h, (3, 3)), ht) < POINTS_TOL
    # unreadable image, bad points file, bad board spec: exit 2 with one clear line
    (tmp_path / "junk.png").write_bytes(b"not a png")
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    for extra, msg in ((["--ir", str(tmp_path / "junk.png"), "--points", "x.csv"], "cannot read"),
                       (["--points", str(tmp_path / "bad.csv")], "expected 4 numbers"),
                       (["--board", "9by6"], "COLSxROWS")):
        assert main(args + extra + ["--out", str(tmp_path / "e.yaml")]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "e.yaml").exists()
