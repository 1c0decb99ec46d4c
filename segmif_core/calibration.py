"""Thermal-to-visible registration calibration: homography from point correspondences (RANSAC),
from a heated checkerboard seen by both cameras, its reprojection error, the valid crop after
warping, and the node's parameter-file section.

Conventions are those of :class:`segmif_core.registration.Registration`: the homography ``H``
maps thermal pixel coordinates ``(x_ir, y_ir, 1)`` to visible pixel coordinates (OpenCV
convention, pixel centres at integers), normalised so that ``H[2, 2] == 1``; a crop is
``(x, y, width, height)`` in visible pixels. Automatic estimation without a board (gradient
ECC) lives in :mod:`segmif_core.calibration_auto`.

Correspondence file formats (one point per row, pixels, thermal first):

* CSV (``.csv``/``.txt``): rows ``x_ir, y_ir, x_vis, y_vis``; an optional header row naming
  exactly these columns; blank lines and lines starting with ``#`` are ignored.
* YAML (``.yaml``/``.yml``): ``points: [[x_ir, y_ir, x_vis, y_vis], ...]``.

Method: normalised DLT inside RANSAC (Hartley & Zisserman, *Multiple View Geometry*, 2nd ed.,
Alg. 4.2 and 4.6, via ``cv2.findHomography``), then a least-squares refit on the inliers.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import atomic
from .registration import Registration, RegistrationError

COLUMNS = ("x_ir", "y_ir", "x_vis", "y_vis")
MIN_POINTS = 4
# Point sets whose smaller principal extent is below this fraction of the larger one are
# treated as collinear (a homography is then undetermined).
COLLINEAR_RATIO = 1e-3


class CalibrationError(ValueError):
    """Bad correspondences, unreadable images or files, or an estimate that failed."""


@dataclass
class Estimate:
    """A thermal -> visible homography and how it was obtained.

    Attributes:
        homography: 3x3 float64, thermal pixel -> visible pixel, ``H[2, 2] == 1``.
        method: "points", "checkerboard" or "ecc".
        points: Nx4 float64 correspondences used (``x_ir, y_ir, x_vis, y_vis``) or ``None``.
        inliers: N bool mask of the RANSAC inliers, or ``None``.
        rms_px / max_px: reprojection error of the inliers in visible pixels (``None`` without
            correspondences).
        info: method-specific extras (e.g. the ECC correlation, the pyramid model reached).
    """
    homography: np.ndarray
    method: str
    points: np.ndarray | None = None
    inliers: np.ndarray | None = None
    rms_px: float | None = None
    max_px: float | None = None
    info: dict = field(default_factory=dict)


def read_points(path) -> np.ndarray:
    """Read a correspondence file (CSV or YAML, see the module docstring).

    Returns:
        Nx4 float64 array of ``x_ir, y_ir, x_vis, y_vis`` in pixels.
    Raises:
        CalibrationError: missing/unreadable file, unknown extension, a row without exactly 4
            numbers, a wrong header, a YAML file without a ``points`` list, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"points file not found: {path}")
    ext = path.suffix.lower()
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = []
    if ext in (".csv", ".txt"):
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if not rows and not _is_number(cells[0]):
                if tuple(c.lower() for c in cells) != COLUMNS:
                    raise CalibrationError(f"{path}:{lineno}: header must be "
                                           f"{','.join(COLUMNS)}, got {','.join(cells)}")
                continue
            if len(cells) != 4 or not all(_is_number(c) for c in cells):
                raise CalibrationError(f"{path}:{lineno}: expected 4 numbers "
                                       f"({','.join(COLUMNS)}), got {row}")
            rows.append([float(c) for c in cells])
    elif ext in (".yaml", ".yml"):
        import yaml
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CalibrationError(f"{path}: not valid YAML: {err}") from None
        pts = doc.get("points") if isinstance(doc, dict) else None
        if not isinstance(pts, list):
            raise CalibrationError(f"{path}: YAML needs a 'points' list of "
                                   f"[{', '.join(COLUMNS)}] rows")
        for i, row in enumerate(pts):
            if (not isinstance(row, (list, tuple)) or len(row) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in row)):
                raise CalibrationError(f"{path}: points[{i}] must be 4 numbers, got {row!r}")
            rows.append([float(v) for v in row])
    else:
        raise CalibrationError(f"{path}: unknown points format {ext!r} (use .csv, .txt, .yaml "
                               "or .yml)")
    pts = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(pts).all():
        raise CalibrationError(f"{path}: non-finite coordinates")
    return pts


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _check_spread(xy: np.ndarray, which: str) -> None:
    """Raise unless ``xy`` (Nx2) has 4 distinct points and is not (nearly) collinear."""
    if len(np.unique(np.round(xy, 6), axis=0)) < MIN_POINTS:
        raise CalibrationError(f"{which} points: fewer than {MIN_POINTS} distinct points")
    sv = np.linalg.svd(xy - xy.mean(axis=0), compute_uv=False)
    if sv[0] == 0 or sv[1] / sv[0] < COLLINEAR_RATIO:
        raise CalibrationError(f"{which} points are collinear (degenerate): a homography needs "
                               "points spread over the image, at least 4 not on one line")


def project(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to Nx2 pixel coordinates; returns Nx2 float64."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    p = np.c_[xy, np.ones(len(xy))] @ np.asarray(h, dtype=np.float64).T
    return p[:, :2] / p[:, 2:3]


def reprojection_error(h, points) -> tuple[float, float, np.ndarray]:
    """Distances in visible pixels between ``H @ (x_ir, y_ir)`` and ``(x_vis, y_vis)``.

    Args:
        h: 3x3 homography (thermal -> visible).
        points: Nx4 ``x_ir, y_ir, x_vis, y_vis``.
    Returns:
        (rms, max, per-point distances as an N float64 array).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 4)
    d = np.linalg.norm(project(h, points[:, :2]) - points[:, 2:], axis=1)
    return float(np.sqrt(np.mean(d ** 2))), float(d.max()), d


def estimate_homography(points, ransac_px: float = 3.0, method: str = "points") -> Estimate:
    """Thermal -> visible homography from correspondences, robust to outliers.

    RANSAC (``cv2.findHomography``, reprojection threshold ``ransac_px`` visible pixels) selects
    the inliers; the homography is then refit on all inliers by least squares (DLT on
    normalised coordinates, Hartley & Zisserman Alg. 4.2).

    Args:
        points: Nx4 array-like ``x_ir, y_ir, x_vis, y_vis`` (pixels), N >= 4.
        ransac_px: inlier threshold in visible pixels (> 0).
        method: label stored in the result.
    Returns:
        :class:`Estimate` with inliers and the inliers' RMS / max reprojection error.
    Raises:
        CalibrationError: fewer than 4 points, non-finite values, duplicate or collinear points,
            RANSAC finding no model with 4 inliers, or a singular / ill-conditioned result.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise CalibrationError(f"points must be Nx4 (x_ir, y_ir, x_vis, y_vis), got shape "
                               f"{pts.shape}")
    if len(pts) < MIN_POINTS:
        raise CalibrationError(f"need at least {MIN_POINTS} correspondences, got {len(pts)}")
    if not np.isfinite(pts).all():
        raise CalibrationError("correspondences contain non-finite values")
    if not ransac_px > 0:
        raise CalibrationError(f"ransac_px must be > 0, got {ransac_px}")
    _check_spread(pts[:, :2], "thermal")
    _check_spread(pts[:, 2:], "visible")
    src, dst = pts[:, :2].astype(np.float32), pts[:, 2:].astype(np.float32)
    h, mask = cv2.findHomography(src, dst, cv2.RANSAC, float(ransac_px), maxIters=5000,
                                 confidence=0.999)
    if h is None or mask is None or int(mask.sum()) < MIN_POINTS:
        raise CalibrationError(f"RANSAC found no homography with {MIN_POINTS} inliers within "
                               f"{ransac_px} px among {len(pts)} correspondences")
    inl = mask.ravel().astype(bool)
    refit, _ = cv2.findHomography(src[inl], dst[inl], 0)
    if refit is not None:
        h = refit
    try:
        h = Registration(h).homography
    except RegistrationError as err:
        raise CalibrationError(f"estimated homography is unusable: {err}") from None
    rms, mx, _ = reprojection_error(h, pts[inl])
    return Estimate(h, method, pts, inl, rms, mx, {"n_points": len(pts),
                                                    "n_inliers": int(inl.sum())})


def checkerboard_points(vis: np.ndarray, ir: np.ndarray, pattern: tuple[int, int]):
    """Corners of a (heated) checkerboard seen in both images, as correspondences.

    ``cv2.findChessboardCorners`` on each image (grey; either polarity, a heated board is
    usually bright squares on dark in thermal), refined with ``cv2.cornerSubPix``. The corner
    order of the two detections may differ by a 180 degree turn (and for square boards by 90);
    the thermal order that gives the smallest homography residual is kept.

    Args:
        vis, ir: HxW or HxWx3 uint8/uint16 images.
        pattern: inner corners (columns, rows), e.g. (9, 6).
    Returns:
        Nx4 float64 ``x_ir, y_ir, x_vis, y_vis`` (N = columns * rows), or ``None`` when the board
        is not found in one of the images.
    """
    cols, rows = int(pattern[0]), int(pattern[1])
    if cols < 2 or rows < 2:
        raise CalibrationError(f"checkerboard pattern needs >= 2x2 inner corners, got {pattern}")
    found = []
    for img in (vis, ir):
        g = to_gray_u8(img)
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        ok, c = cv2.findChessboardCorners(g, (cols, rows), flags=flags)
        if not ok:
            ok, c = cv2.findChessboardCorners(255 - g, (cols, rows), flags=flags)
        if not ok:
            return None
        c = cv2.cornerSubPix(g, c, (5, 5), (-1, -1),
                             (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-3))
        found.append(c.reshape(rows, cols, 2).astype(np.float64))
    cv, ci = found
    orders = [ci, ci[::-1, ::-1]]
    if cols == rows:
        orders += [np.rot90(ci, k) for k in (1, 3)]
    best = None
    for cand in orders:
        pts = np.c_[cand.reshape(-1, 2), cv.reshape(-1, 2)]
        h, _ = cv2.findHomography(pts[:, :2], pts[:, 2:], 0)
        if h is None:
            continue
        rms = reprojection_error(h, pts)[0]
        if best is None or rms < best[0]:
            best = (rms, pts)
    return None if best is None else best[1]


def to_gray_u8(img: np.ndarray) -> np.ndarray:
    """HxW or HxWx3 (BGR) uint8/uint16/float image -> HxW uint8 (min-max scaled if not uint8).

    Raises:
        CalibrationError: not an image array.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise CalibrationError(f"expected an HxW or HxWx3 image, got shape {img.shape}")
    if img.ndim == 3:
        img = img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX)
        img = img.astype(np.uint8)
    return img


def read_image(path) -> np.ndarray:
    """Read an image file unchanged (8/16 bit, grey or BGR). Raises CalibrationError."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CalibrationError(f"cannot read image {path} (missing, or not an image OpenCV "
                               "can decode)")
    return img


def valid_crop(h, ir_size: tuple[int, int], vis_size: tuple[int, int]) -> list[int]:
    """Largest axis-aligned rectangle inside the warped thermal footprint and the visible image.

    The footprint is rasterised in visible pixels (pixels whose centre maps back inside the
    thermal image, shrunk by one pixel so that no bilinear sample touches the zero border).
    Each row is reduced to its longest run of valid pixels; for the convex footprint of a
    homography every row is one run and the result is the exact maximum-area rectangle
    (O(H^2) search over top/bottom rows).

    Args:
        h: 3x3 thermal -> visible homography.
        ir_size, vis_size: (width, height) in pixels.
    Returns:
        [x, y, width, height] in visible pixels (the node's ``crop`` parameter).
    Raises:
        CalibrationError: the thermal image does not overlap the visible image.
    """
    (wi, hi), (wv, hv) = ir_size, vis_size
    src = np.ones((int(hi), int(wi)), np.uint8)
    fp = cv2.warpPerspective(src, np.asarray(h, np.float64), (int(wv), int(hv)),
                             flags=cv2.INTER_NEAREST, borderValue=0)
    fp = cv2.erode(fp, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    left = np.full(hv, 0, np.int64)
    right = np.full(hv, -1, np.int64)  # inclusive; right < left = empty row
    for y in np.flatnonzero(fp.any(axis=1)):
        row = np.r_[0, fp[y], 0].astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(row) == 1), np.flatnonzero(np.diff(row) == -1)
        k = int(np.argmax(ends - starts))
        left[y], right[y] = starts[k], ends[k] - 1
    best = (0, 0, 0, 0, 0)
    for top in np.flatnonzero(right >= left):
        lo = np.maximum.accumulate(left[top:])
        hi_ = np.minimum.accumulate(right[top:])
        width = hi_ - lo + 1
        area = np.where(width > 0, width, 0) * np.arange(1, hv - top + 1)
        k = int(np.argmax(area))
        if area[k] > best[0]:
            best = (int(area[k]), int(lo[k]), int(top), int(width[k]), k + 1)
    if best[0] == 0:
        raise CalibrationError("the warped thermal image does not overlap the visible image")
    return list(best[1:])


def params_section(h, crop) -> dict:
    """The node's parameter-file section: ``{'/**': {'ros__parameters': {homography, crop}}}``
    with 9 row-major floats (``H[2,2] == 1``) and 4 ints, checked by :class:`Registration`."""
    reg = Registration(h, crop=crop)
    return {"/**": {"ros__parameters": {
        "homography": [float(v) for v in reg.homography.ravel()],
        "crop": [int(v) for v in crop]}}}


def write_params(path, h, crop, comment: str = "") -> dict:
    """Write (or update) a ROS 2 parameter file with ``homography`` and ``crop``, atomically.

    An existing YAML file keeps its other parameters and sections (its comments are not kept);
    the file is written to a temporary file in the same folder and renamed over ``path``.

    Args:
        path: output .yaml path; parent folders are created.
        h: 3x3 thermal -> visible homography; crop: [x, y, width, height] pixels.
        comment: text written as ``#`` lines at the top (e.g. how it was estimated).
    Returns:
        the document written (a dict).
    Raises:
        CalibrationError: the existing file is not a parameter-file mapping, or the values are
            refused by :class:`Registration`.
    """
    import yaml
    path = Path(path)
    try:
        new = params_section(h, crop)
    except RegistrationError as err:
        raise CalibrationError(str(err)) from None
    doc = {}
    if path.is_file():
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            raise CalibrationError(f"{path} exists and is not a ROS 2 parameter file")
    section = doc.setdefault("/**", {})
    if not isinstance(section, dict):
        raise CalibrationError(f"{path}: '/**' is not a mapping")
    section.setdefault("ros__parameters", {}).update(new["/**"]["ros__parameters"])
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200)
    atomic.write_text(path, head + body)
    return doc
