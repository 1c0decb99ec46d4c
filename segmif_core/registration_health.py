"""Registration health: how well a thermal image warped onto the visible camera still lines up
with it, measured cheaply on live pairs (no ROS here; segmif_node runs it every Nth pair).

Thermal/visible rigs drift: vibration, temperature and a knock move one camera against the
other, and the homography found by ``segmif calibrate`` stops matching. Intensities of the two
modalities are unrelated (a warm person is bright in thermal and may be dark in visible), but
object outlines are shared, so both measures work on gradient magnitudes, as the calibration's
automatic alignment does (:mod:`segmif_core.calibration_auto`):

1. both images (the visible one and the thermal one already warped and cropped by the
   registration, same size) are converted to float32 grey, shrunk with area averaging so the
   longer side is at most ``max_side`` pixels (the subsample: the cost is that of a
   ``max_side``-wide image whatever the camera), blurred (Gaussian, sigma 1 px) and turned into
   Sobel gradient magnitudes;
2. ``score``: the normalised cross-correlation of the two gradient images, in [-1, 1] (higher
   = better aligned; a good day pair of MFNet is about 0.3-0.5, a night pair lower: the number
   depends on the scene, which is why the node compares it with its own start-up value);
3. ``shift``: the translation of the thermal content relative to the visible image, by phase
   correlation of the gradient images (``cv2.phaseCorrelate`` with a Hanning window), in
   pixels of the input images (+x right, +y down): the thermal image would have to move by
   ``-shift`` to line up; ``response`` is the phase correlation's peak (0-1), its confidence.

:class:`RegistrationMonitor` keeps the start-up reference (the median of the first
``baseline_checks`` measurements) and raises a warning when ``warn_checks`` consecutive checks
are past a threshold relative to it: a score below ``min_score_ratio`` x the start-up score,
or a shift more than ``max_shift_px`` away from the start-up shift (checks whose
``response`` is below ``min_response`` do not count for the shift). A drift is therefore
reported within ``warn_checks`` checks (``warn_checks x every`` pairs) of the change.

A single homography maps one plane exactly; objects far from the plane the calibration used
show parallax, a shift that depends on their distance. The start-up reference absorbs the
parallax of the scene at start-up, so the monitor is a detector of *changes*, and a scene that
changes depth a lot (a wall close by, then open road) can move the shift by itself.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np


class HealthError(ValueError):
    """Images the measure cannot use (shape, size or dtype)."""


@dataclass(frozen=True)
class Alignment:
    """One measurement: ``score`` gradient NCC in [-1, 1]; ``shift_x``/``shift_y`` the thermal
    content's displacement in pixels of the input images; ``response`` the phase correlation
    peak in [0, 1]; ``scale`` input pixels per subsample pixel."""
    score: float
    shift_x: float
    shift_y: float
    response: float
    scale: float

    @property
    def shift(self) -> float:
        """Length of the shift (pixels)."""
        return float(np.hypot(self.shift_x, self.shift_y))


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim != 2:
        raise HealthError(f"expected an HxW or HxWx3 image, got shape {img.shape}")
    return img.astype(np.float32)


def gradient_magnitude(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(HxW float32 Sobel gradient magnitude of ``img`` shrunk to a longer side of at most
    ``max_side`` px, input pixels per output pixel). ``img``: HxW or HxWx3 (RGB) of any
    numeric dtype."""
    g = _gray(img)
    h, w = g.shape
    scale = max(1.0, max(h, w) / float(max_side))
    if scale > 1.0:
        g = cv2.resize(g, (max(1, round(w / scale)), max(1, round(h / scale))),
                       interpolation=cv2.INTER_AREA)
        scale = w / g.shape[1]
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3),
                         cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)), float(scale)


def _subpixel(c: np.ndarray, i: int) -> float:
    """Offset in (-0.5, 0.5) of the peak of a parabola through c[i - 1], c[i], c[i + 1]."""
    if i <= 0 or i >= len(c) - 1:
        return 0.0
    den = c[i - 1] - 2.0 * c[i] + c[i + 1]
    return float(np.clip(0.5 * (c[i - 1] - c[i + 1]) / den, -0.5, 0.5)) if den < 0 else 0.0


def measure_alignment(vis: np.ndarray, ir_on_vis: np.ndarray, max_side: int = 320,
                      search_px: float = 32.0) -> Alignment:
    """Score and shift of a registered pair (see the module docstring).

    The thermal gradient image without a margin of ``search_px`` on every side is correlated
    (``cv2.matchTemplate``, normalised correlation coefficient) with the visible gradient image
    at every offset up to ``search_px``: ``score`` is the correlation at offset 0 (the current
    registration), the shift is the offset of the best correlation (parabolic sub-pixel peak),
    ``response`` that best correlation. The margin keeps the warp's empty border out.

    Args:
        vis: HxWx3 (RGB) or HxW visible image, uint8 (any numeric dtype works).
        ir_on_vis: the thermal image warped onto the visible camera, HxW (uint8 or uint16),
            the same height and width as ``vis``.
        max_side: longer side of the subsample in pixels (>= 32).
        search_px: largest shift looked for, pixels of the input images (> 0); a larger one is
            reported as a shift at the limit with a low score.
    Returns:
        :class:`Alignment`; a blank image (no gradient) gives score 0, shift 0, response 0.
    Raises:
        HealthError: different sizes, an image too small for the search margin, or a bad
        shape or argument.
    """
    if int(max_side) < 32 or not search_px > 0:
        raise HealthError(f"max_side must be >= 32 px and search_px > 0, got {max_side}, "
                          f"{search_px}")
    vshape, ishape = np.asarray(vis).shape[:2], np.asarray(ir_on_vis).shape[:2]
    if vshape != ishape:
        raise HealthError(f"visible {vshape} and registered thermal {ishape} sizes differ (H, W)")
    gv, scale = gradient_magnitude(vis, int(max_side))
    gi, _ = gradient_magnitude(ir_on_vis, int(max_side))
    r = max(1, int(np.ceil(search_px / scale)))
    if min(gv.shape) <= 4 * r:
        raise HealthError(f"image of {vshape} px too small for a search of {search_px:g} px")
    template = gi[r:-r, r:-r]
    if float(template.std()) < 1e-6 or float(gv.std()) < 1e-6:
        return Alignment(0.0, 0.0, 0.0, 0.0, scale)
    res = cv2.matchTemplate(gv, template, cv2.TM_CCOEFF_NORMED)  # (2r + 1, 2r + 1)
    res = np.nan_to_num(res, nan=-1.0)
    py, px = np.unravel_index(int(np.argmax(res)), res.shape)
    fx = px + _subpixel(res[py, :], px)
    fy = py + _subpixel(res[:, px], py)
    # gi[r + y, r + x] matches gv[py + y, px + x]: the thermal content sits (r - px, r - py)
    # to the right of / below the visible one
    return Alignment(float(res[r, r]), float((r - fx) * scale), float((r - fy) * scale),
                     float(res[py, px]), scale)


class RegistrationMonitor:
    """Every ``every``-th pair, a measurement of the registration (:func:`measure_alignment`)
    compared with the start-up reference (see the module docstring). Thread safe: the node's
    worker measures, its /diagnostics timer reads :meth:`status`.

    Args:
        every: measure every ``every``-th call of :meth:`due` (>= 1).
        max_side, search_px: subsample size and largest shift looked for (px),
            :func:`measure_alignment`.
        baseline_checks: measurements whose median is the start-up reference (>= 1).
        min_score_ratio: WARN below this fraction of the start-up score (0-1).
        max_shift_px: WARN when the shift is this far from the start-up shift (px, > 0).
        warn_checks: consecutive checks past a threshold that raise the WARN, and within the
            thresholds that clear it (>= 1).
        min_response: phase-correlation peak below which a check's shift is not trusted.
    """

    def __init__(self, every: int = 30, max_side: int = 320, baseline_checks: int = 5,
                 min_score_ratio: float = 0.5, max_shift_px: float = 4.0, warn_checks: int = 3,
                 min_response: float = 0.05, search_px: float = 32.0):
        if every < 1 or baseline_checks < 1 or warn_checks < 1:
            raise ValueError("every, baseline_checks and warn_checks must be >= 1")
        if not 0.0 <= min_score_ratio <= 1.0 or max_shift_px <= 0:
            raise ValueError("min_score_ratio must be in [0, 1] and max_shift_px > 0")
        self.every, self.max_side = int(every), int(max_side)
        self.baseline_checks, self.warn_checks = int(baseline_checks), int(warn_checks)
        self.min_score_ratio, self.max_shift_px = float(min_score_ratio), float(max_shift_px)
        self.min_response, self.search_px = float(min_response), float(search_px)
        self._lock = threading.Lock()
        self._calls = 0
        self._first: list = []  # measurements before the reference is set
        self.reference: Optional[Alignment] = None
        self.latest: Optional[Alignment] = None
        self.checks = 0
        self._bad = self._good = 0
        self.warning = False
        self.reason = ""

    def due(self) -> bool:
        """Count one pair; True when this one is to be measured (the 1st, then every
        ``every``-th)."""
        with self._lock:
            self._calls += 1
            return (self._calls - 1) % self.every == 0

    def _past(self, m: Alignment) -> str:
        """Why ``m`` is past a threshold relative to the reference ('' when it is not)."""
        ref = self.reference
        if ref.score > 0 and m.score < self.min_score_ratio * ref.score:
            return (f"gradient correlation {m.score:.3f} < {self.min_score_ratio:g} x start-up "
                    f"{ref.score:.3f}")
        if m.response >= self.min_response:
            drift = float(np.hypot(m.shift_x - ref.shift_x, m.shift_y - ref.shift_y))
            if drift > self.max_shift_px:
                return (f"thermal shifted by ({m.shift_x - ref.shift_x:+.1f}, "
                        f"{m.shift_y - ref.shift_y:+.1f}) px since start-up (> "
                        f"{self.max_shift_px:g} px)")
        return ""

    def update(self, vis: np.ndarray, ir_on_vis: np.ndarray) -> Alignment:
        """Measure one registered pair and update the reference / warning state. Raises
        HealthError as :func:`measure_alignment`."""
        m = measure_alignment(vis, ir_on_vis, self.max_side, self.search_px)
        with self._lock:
            self.latest, self.checks = m, self.checks + 1
            if self.reference is None:
                self._first.append(m)
                if len(self._first) >= self.baseline_checks:
                    f = self._first
                    self.reference = Alignment(
                        float(np.median([x.score for x in f])),
                        float(np.median([x.shift_x for x in f])),
                        float(np.median([x.shift_y for x in f])),
                        float(np.median([x.response for x in f])), m.scale)
                return m
            why = self._past(m)
            if why:
                self._bad, self._good = self._bad + 1, 0
                if self._bad >= self.warn_checks:
                    self.warning, self.reason = True, why
            else:
                self._good, self._bad = self._good + 1, 0
                if self._good >= self.warn_checks:
                    self.warning, self.reason = False, ""
        return m

    def status(self) -> dict:
        """``level`` "ok" | "warn" | "starting" (no reference yet), ``message``, ``latest`` and
        ``reference`` (:class:`Alignment` or None), ``checks``, ``drift_px`` (shift minus the
        start-up shift, length; NaN without both)."""
        with self._lock:
            ref, m = self.reference, self.latest
            drift = (float(np.hypot(m.shift_x - ref.shift_x, m.shift_y - ref.shift_y))
                     if ref is not None and m is not None else float("nan"))
            if ref is None:
                level = "starting"
                message = (f"measuring the start-up reference ({len(self._first)}/"
                           f"{self.baseline_checks} checks)")
            elif self.warning:
                level, message = "warn", f"registration drifted: {self.reason}"
            else:
                level = "ok"
                message = (f"aligned: gradient correlation {m.score:.3f} (start-up "
                           f"{ref.score:.3f}), shift {drift:.1f} px from start-up")
            return {"level": level, "message": message, "latest": m, "reference": ref,
                    "checks": self.checks, "drift_px": drift}
