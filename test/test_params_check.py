"""Unknown node parameters (a misspelt name in a params file) are warned once, by name."""
from pathlib import Path

import pytest
import yaml

from segmif_ros.node.params_check import unknown_parameters, warn_unknown_parameters

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_unknown_names_with_the_closest_known_one():
    known = ["slop", "queue_size", "thermal_percentile_low", "thermal_percentile_high"]
    given = ["slop", "slopp", "queue_sise", "thermal_percentile_hihg", "zzz",
             "qos_overrides./visible/image.subscription.depth"]
    assert unknown_parameters(given, known) == {
        "queue_sise": "queue_size", "slopp": "slop",
        "thermal_percentile_hihg": "thermal_percentile_high", "zzz": None}
    assert unknown_parameters(["slop", "slop"], known) == {}
    # the prefix is only ignored by default
    assert list(unknown_parameters(["qos_overrides.x"], known, ignored_prefixes=())) == [
        "qos_overrides.x"]


@pytest.mark.parametrize("name", ["segmif.yaml", "segmif_fast.yaml"])
def test_shipped_params_files_hold_no_unknown_parameter(name):
    pytest.importorskip("rclpy")
    from segmif_ros.node.parameters import PARAMETERS

    params = yaml.safe_load((CONFIG / name).read_text())["/**"]["ros__parameters"]
    assert params and unknown_parameters(params, PARAMETERS) == {}


class _Lines:
    def __init__(self):
        self.lines = []

    def warning(self, text, **_):
        self.lines.append(text)


def test_node_warns_each_unknown_parameter_of_a_params_file_once(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {"slop": 0.05, "slopp": 0.1, "queue_sise": 3,
                                    "qos_overrides": {"/visible/image": {
                                        "subscription": {"depth": 10}}}}},
        "/ns/checker": {"ros__parameters": {"fallbak": "visible"}}}))
    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(params)], context=ctx)
    try:
        node = rclpy.create_node("checker", namespace="ns", context=ctx,
                                 parameter_overrides=[Parameter("overlay_alpah", value=0.3)])
        for name, default in (("slop", 0.02), ("queue_size", 5), ("fallback", "none"),
                              ("overlay_alpha", 0.5)):
            node.declare_parameter(name, default)
        log = _Lines()
        node.get_logger = lambda: log
        got = warn_unknown_parameters(node)
        assert got == {"fallbak": "fallback", "overlay_alpah": "overlay_alpha",
                       "queue_sise": "queue_size", "slopp": "slop"}
        assert len(log.lines) == 4  # one line per name
        for name, close in got.items():
            line, = [t for t in log.lines if repr(name) in t]
            assert f"did you mean {close!r}" in line and "segmif_node" in line
        assert node.get_parameter("slop").value == 0.05  # the known one still applies
        node.destroy_node()
    finally:
        ctx.try_shutdown()
