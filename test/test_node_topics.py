"""The input topics segmif_node subscribes to, from the launch file's remappings and from plain
``--ros-args -r`` remaps: image topics, their compressed transport and the visible CameraInfo,
the sibling of the visible image topic (image_transport's convention, issue 24 item 1)."""
import posixpath

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from segmif_ros.node.node import SegMiFNode  # noqa: E402
from segmif_ros.node.topics import camera_info_topic, input_topics  # noqa: E402
from test_launch import StubLaunch, _segmif_node  # noqa: E402
from test_node import spin_until, stamped  # noqa: E402


def sibling_info(image_topic):
    """The expectation, by path arithmetic: the image topic's folder + camera_info."""
    return posixpath.join(posixpath.dirname(image_topic), "camera_info")


def node_with(ctx, checkpoint, ros_args, **params):
    overrides = [Parameter("checkpoint", value=str(checkpoint)),
                 Parameter("input_height", value=64), Parameter("input_width", value=64)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return SegMiFNode(context=ctx, cli_args=["--ros-args", *ros_args],
                      parameter_overrides=overrides)


def launch_ros_args(visible_topic, thermal_topic, namespace):
    """The remap arguments launch_ros gives the node for these launch arguments, from the
    launch file's own code (run with stand-ins for launch/launch_ros)."""
    node = _segmif_node(StubLaunch().setup(visible_topic=visible_topic,
                                           thermal_topic=thermal_topic,
                                           ros_namespace=namespace))
    args = []
    for src, dst in node.kwargs["remappings"]:
        args += ["-r", f"{src}:={dst}"]
    return args + ["-r", f"__ns:={namespace}"]


def test_camera_info_topic_is_the_sibling_of_the_image_topic():
    for topic in ("/camera/color/image_raw", "/camera/color/image_rect", "front/image",
                  "/a/b/c/d/image", "/image_raw"):
        assert camera_info_topic(topic) == sibling_info(topic), topic
    assert camera_info_topic("image") == "camera_info"
    with pytest.raises(ValueError, match="camera_info"):
        camera_info_topic("")


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_launch_remaps_give_the_drivers_camera_info(context, tiny_checkpoint, transport):
    """``visible_topic:=/camera/color/image_raw``: the node subscribes to the driver's
    ``/camera/color/camera_info`` (not ``/<ns>/visible/camera_info``), raw and compressed."""
    vis, ir = "/camera/color/image_raw", "/flir/image_raw"
    node = node_with(context, tiny_checkpoint, launch_ros_args(vis, ir, "/front"),
                     input_transport=transport)
    try:
        suffix = "/compressed" if transport == "compressed" else ""
        assert node.sub_vis.topic_name == vis + suffix
        assert node.sub_ir.topic_name == ir + suffix
        assert node.outputs.camera_info.sub.topic_name == sibling_info(vis)
        assert node.outputs.camera_info.sub.topic_name == "/camera/color/camera_info"
    finally:
        node.destroy_node()


def test_relative_launch_topics_resolve_in_the_namespace(context, tiny_checkpoint):
    node = node_with(context, tiny_checkpoint,
                     launch_ros_args("left/image_rect", "flir/image_raw", "/front"))
    try:
        assert node.sub_vis.topic_name == "/front/left/image_rect"
        assert node.outputs.camera_info.sub.topic_name == "/front/left/camera_info"
    finally:
        node.destroy_node()


def test_plain_remap_of_the_image_topic_moves_compressed_and_camera_info(context,
                                                                       tiny_checkpoint):
    """``ros2 run ... -r visible/image:=...`` alone (no launch file): the compressed transport
    and the CameraInfo follow the remapped image topic, as image_transport's do."""
    node = node_with(context, tiny_checkpoint,
                     ["-r", "visible/image:=/camera/color/image_raw",
                      "-r", "thermal/image:=/flir/image_raw"], input_transport="compressed")
    try:
        assert node.sub_vis.topic_name == "/camera/color/image_raw/compressed"
        assert node.sub_ir.topic_name == "/flir/image_raw/compressed"
        assert node.outputs.camera_info.sub.topic_name == "/camera/color/camera_info"
        # the function the node uses, with the node's own resolver
        assert input_topics(node.resolve_topic_name, True)["camera_info"] == \
            sibling_info("/camera/color/image_raw")
    finally:
        node.destroy_node()


def test_explicit_camera_info_remap_wins(context, tiny_checkpoint):
    node = node_with(context, tiny_checkpoint,
                     ["-r", "visible/image:=/camera/color/image_raw",
                      "-r", "visible/camera_info:=/rig/left/calibration"])
    try:
        assert node.outputs.camera_info.sub.topic_name == "/rig/left/calibration"
    finally:
        node.destroy_node()


def test_drivers_camera_info_reaches_fused_camera_info(context, tiny_checkpoint):
    """The README's robot example end to end: camera topics outside the namespace, the
    CameraInfo on the driver's sibling topic, fused/camera_info in the namespace."""
    vis_topic, ir_topic = "/camera/color/image_raw", "/flir/image_raw"
    node = node_with(context, tiny_checkpoint, launch_ros_args(vis_topic, ir_topic, "/front"))
    peer = rclpy.create_node("driver", context=context)
    ex = rclpy.executors.SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(peer)
    got = []
    peer.create_subscription(CameraInfo, "/front/fused/camera_info", got.append, 10)
    pub_vis = peer.create_publisher(Image, vis_topic, qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, ir_topic, qos_profile_sensor_data)
    pub_info = peer.create_publisher(CameraInfo, sibling_info(vis_topic),
                                     qos_profile_sensor_data)
    try:
        assert spin_until(ex, lambda: pub_vis.get_subscription_count()
                          and pub_ir.get_subscription_count()
                          and pub_info.get_subscription_count(), 10)
        info = CameraInfo(width=80, height=48)
        info.k = [100.0, 0.0, 40.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0]
        vmsg = stamped(np.zeros((48, 80, 3), np.uint8), "rgb8", 7, 0, "color_optical")
        imsg = stamped(np.zeros((48, 80), np.uint8), "mono8", 7, 0, "flir")

        def send():
            pub_info.publish(info)
            spin_until(ex, lambda: node.outputs.camera_info.received > 0, 0.5)
            pub_vis.publish(vmsg)
            pub_ir.publish(imsg)
            return spin_until(ex, lambda: bool(got), 2.0)

        assert any(send() for _ in range(10))
        assert got[0].k[2] == 40.0 and got[0].header.frame_id == "color_optical"
        assert (got[0].header.stamp.sec, got[0].header.stamp.nanosec) == (7, 0)
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()
