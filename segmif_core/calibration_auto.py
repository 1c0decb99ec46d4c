"""Automatic thermal -> visible homography without a board or picked points, and alignment scores.

Why gradient ECC and not feature matching: intensities of thermal and visible images are not
related (a warm person is bright in thermal and may be dark in visible), so keypoint descriptors
do not match across the modalities. On synthetic warps of real MFNet pairs, SIFT and ORB on
gradient-magnitude images gave 4-23 RANSAC inliers that were mostly wrong (mean corner error
24-4400 px), while edges (object outlines) are shared by both cameras. The estimate therefore
maximises the enhanced correlation coefficient (ECC; Evangelidis & Psarakis, IEEE TPAMI 30(10),
2008, ``cv2.findTransformECC``) between the gradient-magnitude images:

1. gradient magnitude of each image (Gaussian sigma 2 px, Sobel), scaled by its 99th
   percentile and clipped to [0, 1] (float32);
2. coarse search at 1/4 resolution: for 23 scales in [0.8, 1.25] about the image centres,
   translation by phase correlation (``cv2.phaseCorrelate``), keeping the best response;
3. ECC with an affine model, coarse to fine over a 4-level pyramid, from that start and from
   the centred identity; the run with the higher correlation is kept, and refused when that
   correlation is below ``MIN_RHO`` (night pairs where the visible image shows almost nothing);
4. optionally (``model="homography"``) ECC with a full homography from the affine result; kept
   only when it converges and moves no image corner more than ``max_projective_px`` away from
   the affine estimate, otherwise the affine estimate is returned.

The default model is affine (returned as a 3x3 matrix with last row 0, 0, 1): a single
cross-modal pair constrains the two projective terms poorly. On synthetic warps (rotation up
to 2 deg, scale 0.86-0.92, perspective terms up to 2e-5) of 12 aligned MFNet day pairs the mean
corner error was median 7.8 px / max 15.4 px affine and 8.5 / 15.4 px with the homography
stage. Night pairs mostly fail (the visible image shows little): 7 of 10 were wrong by 34-192 px
at correlations 0.23-0.31, which ``MIN_RHO`` = 0.35 refuses (with 2 of the 3 right ones).

Alignment scores (used by ``segmif calibrate`` and scripts/calibration_report.py):

* ``edge_px``: symmetric mean distance in visible pixels between the edge maps of the two images
  (each image's Canny edges with thresholds at the 80th/90th percentile of its own gradient
  magnitude), each distance capped at ``EDGE_CAP_PX``; lower is better. Independent of ECC.
* ``grad_ncc``: normalised cross-correlation of the gradient-magnitude images, in [-1, 1];
  higher is better (this is close to what ECC maximises, so it favours the estimate).
"""
from __future__ import annotations

import cv2
import numpy as np

from .calibration import CalibrationError, Estimate, to_gray_u8
from .registration import Registration

LEVELS = 4
SCALES = np.geomspace(0.8, 1.25, 23)
EDGE_CAP_PX = 20.0
MIN_RHO = 0.35  # ECC correlation of the gradient images below which the estimate is refused
_CRIT = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)


def gradient_image(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """HxW float32 gradient magnitude in [0, 1] (scaled by its 99th percentile) of an
    HxW / HxWx3 uint8/uint16/float image."""
    g = to_gray_u8(img).astype(np.float32)
    g = cv2.GaussianBlur(g, (0, 0), sigma)
    m = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3),
                      cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    top = float(np.percentile(m, 99))
    return np.clip(m / top, 0, 1) if top > 0 else m


def _rescale(w: np.ndarray, s: float) -> np.ndarray:
    """The same 3x3 transform expressed on images scaled by ``s``."""
    d = np.diag([s, s, 1.0])
    return d @ w @ np.linalg.inv(d)


def _coarse(gv: np.ndarray, gi: np.ndarray, level: int = 2) -> tuple[np.ndarray, float]:
    """Best scale + translation (thermal -> visible, full-resolution pixels) and its response."""
    a, b = gv, gi
    for _ in range(level):
        a, b = cv2.pyrDown(a), cv2.pyrDown(b)
    (ha, wa), (hb, wb) = a.shape, b.shape
    win = cv2.createHanningWindow((wa, ha), cv2.CV_64F)
    best = (-1.0, np.eye(3))
    for s in SCALES:
        sm = np.array([[s, 0, wa / 2 - s * wb / 2], [0, s, ha / 2 - s * hb / 2], [0, 0, 1]])
        bw = cv2.warpPerspective(b, sm, (wa, ha)).astype(np.float64)
        (dx, dy), r = cv2.phaseCorrelate(bw, a.astype(np.float64), win)
        if r > best[0]:
            best = (r, np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]]) @ sm)
    return _rescale(best[1], 2.0 ** level), float(best[0])


def _ecc(pv, pi, h0: np.ndarray, motion: int) -> tuple[np.ndarray, float]:
    """Coarse-to-fine ECC from thermal->visible ``h0``; returns (thermal->visible H, rho)."""
    w = _rescale(np.linalg.inv(h0), 0.5 ** (len(pv) - 1))  # ECC warps template (visible) coords
    rho = float("nan")
    for lvl in range(len(pv) - 1, -1, -1):
        m = w.astype(np.float32) if motion == cv2.MOTION_HOMOGRAPHY else w[:2].astype(np.float32)
        rho, m = cv2.findTransformECC(pv[lvl], pi[lvl], m, motion, _CRIT, None, 1)
        w = m.astype(np.float64) if m.shape[0] == 3 else np.vstack([m, [0, 0, 1]])
        if lvl:
            w = _rescale(w, 2.0)
    h = np.linalg.inv(w)
    return h / h[2, 2], float(rho)


def _centred(ir_shape, vis_shape) -> np.ndarray:
    """Translation putting the thermal image centre on the visible image centre."""
    return np.array([[1, 0, (vis_shape[1] - ir_shape[1]) / 2],
                     [0, 1, (vis_shape[0] - ir_shape[0]) / 2], [0, 0, 1]], np.float64)


def image_corners(size: tuple[int, int]) -> np.ndarray:
    """4x2 float64 corner pixel centres of a (width, height) image."""
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def corner_shift(h1, h2, size: tuple[int, int]) -> np.ndarray:
    """Distances (4, float64, pixels) between where ``h1`` and ``h2`` send the corners of a
    (width, height) image."""
    c = image_corners(size)[None]
    return np.linalg.norm(cv2.perspectiveTransform(c, np.asarray(h1, np.float64))[0]
                          - cv2.perspectiveTransform(c, np.asarray(h2, np.float64))[0], axis=1)


def estimate_ecc(vis: np.ndarray, ir: np.ndarray, model: str = "affine",
                 max_projective_px: float = 16.0) -> Estimate:
    """Automatic thermal -> visible homography by gradient ECC (see the module docstring).

    Args:
        vis: HxW[x3] visible image (BGR as read by OpenCV, or grey), uint8/uint16.
        ir: thermal image, HxW[x1|x3], uint8/uint16, any size.
        model: "affine" or "homography" (the homography stage may fall back to affine).
        max_projective_px: largest corner move (visible pixels) the homography stage may add
            to the affine estimate.
    Returns:
        :class:`Estimate` with method "ecc"; ``info`` has ``model`` (reached), ``rho`` (ECC
        correlation of the gradient images), ``coarse_response`` and ``note``.
    Raises:
        CalibrationError: unknown model, images without texture, ECC not converging even for
            the affine model, or a final correlation below ``MIN_RHO``.
    """
    if model not in ("affine", "homography"):
        raise CalibrationError(f"model must be 'affine' or 'homography', got {model!r}")
    gv, gi = gradient_image(vis), gradient_image(ir)
    if not gv.any() or not gi.any():
        raise CalibrationError("an image has no gradients (blank image): nothing to align")
    pv, pi = [gv], [gi]
    for _ in range(LEVELS - 1):
        pv.append(cv2.pyrDown(pv[-1]))
        pi.append(cv2.pyrDown(pi[-1]))
    h0, response = _coarse(gv, gi)
    runs, last_err = [], "no start converged"
    for start in (h0, _centred(ir.shape, vis.shape)):
        try:
            runs.append(_ecc(pv, pi, start, cv2.MOTION_AFFINE))
        except cv2.error as err:
            last_err = str(err).strip().splitlines()[-1]
    if not runs:
        raise CalibrationError("automatic alignment failed (ECC did not converge: the images "
                               "share too few edges; use --points or a heated checkerboard): "
                               f"{last_err}")
    h, rho = max(runs, key=lambda r: r[1])
    if rho < MIN_RHO:
        raise CalibrationError(f"automatic alignment is unreliable: the gradient images "
                               f"correlate at only {rho:.2f} after alignment (< {MIN_RHO}); use "
                               "--points or a heated checkerboard, or a pair with more structure "
                               "visible in both cameras (daylight)")
    info = {"model": "affine", "rho": rho, "coarse_response": response, "note": ""}
    if model == "homography":
        try:
            hh, rho_h = _ecc(pv, pi, h, cv2.MOTION_HOMOGRAPHY)
            shift = float(corner_shift(hh, h, (ir.shape[1], ir.shape[0])).max())
            if shift <= max_projective_px:
                h, info = hh, {**info, "model": "homography", "rho": rho_h}
            else:
                info["note"] = (f"homography stage moved a corner {shift:.0f} px from the affine "
                                f"estimate (> {max_projective_px:g}): kept the affine estimate")
        except cv2.error:
            info["note"] = "homography stage did not converge: kept the affine estimate"
    return Estimate(Registration(h).homography, "ecc", info=info)


def _edges(img: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(to_gray_u8(img), (0, 0), 1.5)
    m = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    lo, hi = np.percentile(m, (80, 90))
    return cv2.Canny(g, float(lo), float(max(hi, lo + 1e-3)), L2gradient=True) > 0


def alignment_scores(vis: np.ndarray, ir_on_vis: np.ndarray, mask: np.ndarray) -> dict:
    """Edge distance (px, lower = better) and gradient NCC (higher = better) of a thermal image
    already warped onto the visible camera, over the HxW bool ``mask`` of valid pixels."""
    ev, ei = _edges(vis) & mask, _edges(ir_on_vis) & mask
    if not ev.any() or not ei.any():
        return {"edge_px": float("nan"), "grad_ncc": float("nan")}
    dv = cv2.distanceTransform((~ev).astype(np.uint8), cv2.DIST_L2, 5)
    di = cv2.distanceTransform((~ei).astype(np.uint8), cv2.DIST_L2, 5)
    edge = 0.5 * (np.minimum(dv[ei], EDGE_CAP_PX).mean() + np.minimum(di[ev], EDGE_CAP_PX).mean())
    a, b = gradient_image(vis)[mask], gradient_image(ir_on_vis)[mask]
    a, b = a - a.mean(), b - b.mean()
    ncc = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))
    return {"edge_px": float(edge), "grad_ncc": ncc}


def compare_alignment(vis: np.ndarray, ir: np.ndarray, h, h_before=None) -> dict:
    """Scores before (``h_before``, default identity) and after (``h``), on the same pixels: the
    visible pixels covered by the thermal image under both (eroded by 2 px). The thermal image is
    warped with a replicated border so that its footprint's outline is not scored as an edge.

    Returns:
        {"before": {edge_px, grad_ncc}, "after": {...}, "overlap": fraction of visible pixels}.
    """
    vshape = vis.shape[:2]
    ones = np.ones(ir.shape[:2], np.uint8)
    masks, warped = [], []
    for hm in (h_before, h):  # replicated border: no false edge along the thermal footprint
        hm = Registration(hm).homography
        warped.append(cv2.warpPerspective(to_gray_u8(ir), hm, vshape[::-1],
                                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        masks.append(cv2.warpPerspective(ones, hm, vshape[::-1], flags=cv2.INTER_NEAREST) > 0)
    mask = cv2.erode((masks[0] & masks[1]).astype(np.uint8), np.ones((5, 5), np.uint8),
                     borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return {"before": alignment_scores(vis, warped[0], mask),
            "after": alignment_scores(vis, warped[1], mask),
            "overlap": float(mask.mean())}
