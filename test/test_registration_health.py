"""segmif_core.registration_health without any ROS graph: the measure on synthetic scenes
(thermal and visible intensities unrelated, outlines shared) and on real MFNet pairs, and the
monitor's start-up reference and warnings."""
import os

import cv2
import numpy as np
import pytest

from segmif_core.registration_health import (HealthError, RegistrationMonitor,
                                             measure_alignment)

from conftest import MFNET, needs_mfnet


def scene(seed=0, size=(240, 320)):
    """(visible RGB uint8, thermal uint16) of the same random shapes: each shape has an
    independent colour and temperature (the intensities of the two are unrelated), on
    different backgrounds, with independent noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    vis = np.full((h, w, 3), rng.integers(60, 200, 3), np.uint8)
    ir = np.full((h, w), 20000, np.uint16)
    for _ in range(25):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        ax, ay = int(rng.integers(6, w // 6)), int(rng.integers(6, h // 6))
        colour = [int(c) for c in rng.integers(0, 256, 3)]
        temp = int(rng.integers(15000, 40000))
        if rng.random() < 0.5:
            cv2.rectangle(vis, (x, y), (x + ax, y + ay), colour, -1)
            cv2.rectangle(ir, (x, y), (x + ax, y + ay), temp, -1)
        else:
            cv2.ellipse(vis, (x, y), (ax, ay), 0, 0, 360, colour, -1)
            cv2.ellipse(ir, (x, y), (ax, ay), 0, 0, 360, temp, -1)
    vis = np.clip(vis + rng.normal(0, 6, vis.shape), 0, 255).astype(np.uint8)
    ir = cv2.GaussianBlur(ir.astype(np.float32), (0, 0), 1.5)  # thermal optics are softer
    ir = np.clip(ir + rng.normal(0, 300, ir.shape), 0, 65535).astype(np.uint16)
    return vis, ir


def shifted(img, dx, dy):
    """``img`` with its content moved by (dx, dy) px (+x right, +y down), border replicated."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]),
                          borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("dx, dy", [(0, 0), (6, 0), (-4, 7), (11.5, -3.5), (-20, -15)])
def test_shift_of_the_thermal_content_is_measured(dx, dy):
    vis, ir = scene(1)
    m = measure_alignment(vis, shifted(ir, dx, dy))
    assert abs(m.shift_x - dx) <= 1.0 and abs(m.shift_y - dy) <= 1.0, m
    assert m.response > 0.3


def test_score_falls_with_misalignment_and_is_scale_free():
    vis, ir = scene(2)
    aligned = measure_alignment(vis, ir)
    off = measure_alignment(vis, shifted(ir, 8, -5))
    assert aligned.score > 0.3 and off.score < 0.6 * aligned.score
    # an 8-bit copy of the thermal image (another scaling) scores the same within 0.02
    ir8 = (ir / 257).astype(np.uint8)
    assert abs(measure_alignment(vis, ir8).score - aligned.score) < 0.02
    # the search subsample: a full-size pair at 640x480 is measured in input pixels
    vis2, ir2 = (cv2.resize(vis, (640, 480)), cv2.resize(ir, (640, 480)))
    m = measure_alignment(vis2, shifted(ir2, 10, 4), max_side=320)
    assert m.scale == pytest.approx(2.0) and abs(m.shift_x - 10) <= 2 and abs(m.shift_y - 4) <= 2


def test_blank_images_and_bad_input():
    vis, ir = scene(3)
    blank = measure_alignment(np.zeros_like(vis), ir)
    assert (blank.score, blank.shift_x, blank.response) == (0.0, 0.0, 0.0)
    with pytest.raises(HealthError, match="sizes differ"):
        measure_alignment(vis, ir[:-1])
    with pytest.raises(HealthError, match="too small"):
        measure_alignment(vis[:40, :40], ir[:40, :40])
    with pytest.raises(HealthError, match="max_side"):
        measure_alignment(vis, ir, max_side=8)


REAL = ["00102D", "00114D", "00519D", "00731N"]  # day and night pairs of MFNet (registered)


@needs_mfnet
@pytest.mark.parametrize("name", REAL)
def test_real_pairs_report_a_known_shift_within_2_px(name):
    vis = cv2.cvtColor(cv2.imread(os.path.join(MFNET, "vis", name + ".png")), cv2.COLOR_BGR2RGB)
    ir = cv2.imread(os.path.join(MFNET, "ir", name + ".png"), cv2.IMREAD_UNCHANGED)
    ref = measure_alignment(vis, ir)  # MFNet's own registration is off by a few px
    m = measure_alignment(vis, shifted(ir, 8, -5))
    assert abs((m.shift_x - ref.shift_x) - 8) <= 2 and abs((m.shift_y - ref.shift_y) + 5) <= 2
    assert m.score < ref.score


def test_monitor_reference_warning_and_recovery():
    monitor = RegistrationMonitor(every=2, baseline_checks=3, warn_checks=2, max_shift_px=4.0,
                                  min_score_ratio=0.5)
    frames = [scene(s) for s in range(4)]
    assert monitor.status()["level"] == "starting"
    due = [monitor.due() for _ in range(6)]
    assert due == [True, False, True, False, True, False]
    for vis, ir in frames[:3]:
        monitor.update(vis, ir)
    st = monitor.status()
    assert st["level"] == "ok" and st["reference"] is not None and st["checks"] == 3
    # the thermal camera moves by (7, -3) px: WARN at the second check past the threshold
    vis, ir = frames[3]
    monitor.update(vis, shifted(ir, 7, -3))
    assert monitor.status()["level"] == "ok"
    m = monitor.update(vis, shifted(ir, 7, -3))
    st = monitor.status()
    assert st["level"] == "warn" and "registration drifted" in st["message"]
    assert abs(m.shift_x - st["reference"].shift_x - 7) <= 2
    assert abs(st["drift_px"] - np.hypot(7, 3)) <= 2
    # back in place: cleared after warn_checks good checks
    monitor.update(vis, ir)
    assert monitor.status()["level"] == "warn"
    monitor.update(vis, ir)
    assert monitor.status()["level"] == "ok"


def test_monitor_warns_on_a_score_drop():
    monitor = RegistrationMonitor(every=1, baseline_checks=1, warn_checks=1, max_shift_px=100.0)
    vis, ir = scene(5)
    monitor.update(vis, ir)
    # a thermal image of another scene: the correlation collapses
    monitor.update(vis, scene(6)[1])
    st = monitor.status()
    assert st["level"] == "warn" and "gradient correlation" in st["message"]


def test_monitor_refuses_bad_settings():
    with pytest.raises(ValueError):
        RegistrationMonitor(every=0)
    with pytest.raises(ValueError):
        RegistrationMonitor(min_score_ratio=1.5)
