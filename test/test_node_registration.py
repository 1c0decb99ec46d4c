"""Registration health in segmif_node (issue 24 item 3): a thermal stream that moves by a known
number of pixels raises the WARN on /diagnostics within registration_warn_checks x
registration_check_every pairs, and /diagnostics and segmentation/info report the shift within
2 px."""
import math

import pytest

rclpy = pytest.importorskip("rclpy")

from test_node import make_node, process_pair, spin_until, stamped  # noqa: E402
from test_registration_health import scene, shifted  # noqa: E402

EVERY, BASELINE, WARN_CHECKS = 2, 3, 2
DX, DY = 8.0, -5.0


def registration_status(node):
    node.publish_diagnostics()
    (status,) = [s for s in node.diagnostics.last.status if s.name.endswith(": registration")]
    return status.level[0], status.message, {kv.key: kv.value for kv in status.values}


def test_a_shifted_thermal_stream_raises_the_warn_and_reports_the_shift(context,
                                                                        tiny_checkpoint):
    from segmif_ros.msg import SegmentationInfo
    node = make_node(context, tiny_checkpoint, registration_check_every=EVERY,
                     registration_baseline_checks=BASELINE,
                     registration_warn_checks=WARN_CHECKS, registration_warn_shift_px=4.0)
    peer = rclpy.create_node("registration_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    infos = []
    peer.create_subscription(SegmentationInfo, "segmentation/info", infos.append, 100)
    frames = [scene(seed, size=(480, 640)) for seed in range(4)]
    sec = [10]

    def send(vis, ir):
        sec[0] += 1
        assert process_pair(node, stamped(vis, "rgb8", sec[0], 0, "v"),
                            stamped(ir, "mono16", sec[0], 0, "t"))

    try:
        level, message, _ = registration_status(node)
        assert level == 0 and "start-up reference (0/3" in message
        # a registered rig: the start-up reference after BASELINE checks (every EVERY-th pair)
        for k in range(EVERY * BASELINE):
            send(*frames[k % len(frames)])
        level, message, values = registration_status(node)
        assert level == 0 and message.startswith("aligned"), message
        assert int(values["checks"]) == BASELINE
        start_x = float(values["shift x (px)"])
        # the thermal camera moves: WARN within WARN_CHECKS x EVERY pairs
        for k in range(EVERY * WARN_CHECKS):
            vis, ir = frames[k % len(frames)]
            send(vis, shifted(ir, DX, DY))
            level, message, values = registration_status(node)
            if level == 1:
                break
        assert level == 1 and "registration drifted" in message, message
        assert k + 1 <= EVERY * WARN_CHECKS
        assert abs(float(values["drift from start-up (px)"]) - math.hypot(DX, DY)) <= 2.0
        assert abs(float(values["shift x (px)"]) - start_x - DX) <= 2.0
        # segmentation/info carries the same
        assert spin_until(ex, lambda: infos and infos[-1].registration_level == 1, 5.0)
        info = infos[-1]
        assert abs(info.registration_drift_px - math.hypot(DX, DY)) <= 2.0
        assert abs(info.registration_shift_x_px - start_x - DX) <= 2.0
        assert 0 < info.registration_score < info.registration_score_startup
        assert not math.isnan(infos[0].registration_score)  # the first pair is checked
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_checks_off(context, tiny_checkpoint):
    from segmif_ros.msg import SegmentationInfo
    node = make_node(context, tiny_checkpoint, registration_check_every=0)
    peer = rclpy.create_node("registration_off_peer", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    infos = []
    peer.create_subscription(SegmentationInfo, "segmentation/info", infos.append, 10)
    try:
        assert node.monitor is None
        level, message, _ = registration_status(node)
        assert level == 0 and message.startswith("off")
        vis, ir = scene(0)
        assert process_pair(node, stamped(vis, "rgb8", 1, 0, "v"),
                            stamped(ir, "mono16", 1, 0, "t"))
        assert spin_until(ex, lambda: infos, 5.0)
        assert math.isnan(infos[0].registration_score) and infos[0].registration_level == 0
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_registration_parameters_are_declared_with_ranges(context, tiny_checkpoint):
    from segmif_ros.node.node import ConfigurationError
    with pytest.raises(ConfigurationError, match="registration_warn_score_ratio: 1.5 is out of"):
        make_node(context, tiny_checkpoint, registration_warn_score_ratio=1.5)
    node = make_node(context, tiny_checkpoint)
    try:
        (desc,) = node.describe_parameters(["registration_check_every"])
        assert desc.integer_range[0].from_value == 0 and desc.read_only
        assert node.get_parameter("registration_check_every").value == 30
        assert node.monitor.every == 30 and node.monitor.max_shift_px == 4.0
    finally:
        node.destroy_node()
