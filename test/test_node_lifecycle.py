"""segmif_node as a managed node: transitions driven through its lifecycle services
(``segmif_node/change_state``, ``segmif_node/get_state``) in a live rclpy graph."""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from segmif_ros.node.encodings import numpy_to_image  # noqa: E402
from segmif_ros.node.node import SegMiFNode  # noqa: E402


@pytest.fixture
def graph():
    """(context, executor, peer node); everything shut down afterwards."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    peer = rclpy.create_node("lifecycle_peer", context=ctx)
    ex.add_node(peer)
    yield ctx, ex, peer
    ex.shutdown()
    peer.destroy_node()
    ctx.try_shutdown()


def managed_node(ctx, ex, checkpoint, **params):
    overrides = [Parameter("checkpoint", value=str(checkpoint)),
                 Parameter("input_height", value=64), Parameter("input_width", value=64),
                 Parameter("autostart", value=False)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    node = SegMiFNode(context=ctx, parameter_overrides=overrides)
    ex.add_node(node)
    return node


def spin_until(ex, predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        ex.spin_once(timeout_sec=0.05)
    return predicate()


class Lifecycle:
    """Client of a node's lifecycle services."""

    def __init__(self, peer, ex, name="segmif_node"):
        self.ex = ex
        self.change = peer.create_client(ChangeState, f"{name}/change_state")
        self.get = peer.create_client(GetState, f"{name}/get_state")
        assert self.change.wait_for_service(timeout_sec=10.0)
        assert self.get.wait_for_service(timeout_sec=10.0)

    def _call(self, client, request):
        future = client.call_async(request)
        self.ex.spin_until_future_complete(future, timeout_sec=60.0)
        assert future.done()
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request).success


def test_transitions_through_the_lifecycle_services(graph, tiny_checkpoint):
    from segmif_ros.msg import LabelInfo, SegmentationInfo
    ctx, ex, peer = graph
    node = managed_node(ctx, ex, tiny_checkpoint)
    got = {"info": [], "label_info": []}
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_subscription(LabelInfo, "segmentation/label_info", got["label_info"].append,
                             latched)
    peer.create_subscription(SegmentationInfo, "segmentation/info", got["info"].append, 10)
    pub_vis = peer.create_publisher(Image, "visible/image", qos_profile_sensor_data)
    pub_ir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    lc = Lifecycle(peer, ex)
    vis = numpy_to_image(np.zeros((24, 40, 3), np.uint8), "rgb8")
    ir = numpy_to_image(np.zeros((24, 40), np.uint8), "mono8")

    def pair_answered():
        n = len(got["info"])
        for sec in range(1, 40):
            vis.header.stamp.sec = ir.header.stamp.sec = int(time.time()) + sec
            pub_vis.publish(vis)
            pub_ir.publish(ir)
            if spin_until(ex, lambda: len(got["info"]) > n, 0.3):
                return True
        return False

    try:
        # unconfigured: no model, no subscriptions, no class map
        assert lc.state() == "unconfigured" and node.predictor is None
        assert not spin_until(ex, lambda: pub_vis.get_subscription_count() > 0, 1.0)
        # configure: model and publishers (the class map goes out), still not subscribed
        assert lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == "inactive" and node.predictor is not None
        assert spin_until(ex, lambda: got["label_info"])
        assert pub_vis.get_subscription_count() == 0
        # activate: subscribed, pairs answered
        assert lc.transition(Transition.TRANSITION_ACTIVATE)
        assert lc.state() == "active"
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() and
                          pub_ir.get_subscription_count())
        assert pair_answered()
        # deactivate: unsubscribed, worker stopped, nothing answered
        assert lc.transition(Transition.TRANSITION_DEACTIVATE)
        assert lc.state() == "inactive" and node.worker is None
        assert spin_until(ex, lambda: pub_vis.get_subscription_count() == 0)
        assert spin_until(ex, lambda: node.diagnostics.last is not None and
                          "inactive" in node.diagnostics.last.status[0].message, 3.0)
        # activate again, then cleanup (model dropped) and configure again
        assert lc.transition(Transition.TRANSITION_ACTIVATE) and pair_answered()
        assert lc.transition(Transition.TRANSITION_DEACTIVATE)
        assert lc.transition(Transition.TRANSITION_CLEANUP)
        assert lc.state() == "unconfigured" and node.predictor is None and node.outputs is None
        assert lc.transition(Transition.TRANSITION_CONFIGURE) and lc.state() == "inactive"
        # shutdown from inactive: finalized
        assert lc.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN)
        assert lc.state() == "finalized" and node.predictor is None
    finally:
        node.destroy_node()


def test_configure_failure_leaves_the_node_unconfigured(graph, tiny_checkpoint, tmp_path):
    ctx, ex, peer = graph
    missing = tmp_path / "nope.pt"
    node = managed_node(ctx, ex, missing)
    try:
        lc = Lifecycle(peer, ex)
        assert not lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == "unconfigured"
        assert str(missing) in node.configure_error and "not found" in node.configure_error
    finally:
        node.destroy_node()


def test_autostart_configures_and_activates(graph, tiny_checkpoint):
    ctx, ex, peer = graph
    node = managed_node(ctx, ex, tiny_checkpoint, autostart=True)
    try:
        assert Lifecycle(peer, ex).state() == "active" and node.sub_vis is not None
    finally:
        node.destroy_node()


def test_deactivate_releases_the_gpu_memory(graph, tiny_checkpoint, monkeypatch):
    import torch
    ctx, ex, peer = graph
    node = managed_node(ctx, ex, tiny_checkpoint, autostart=True)
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    try:
        # pretend the model is on CUDA: deactivate drops it and empties the CUDA cache
        node.predictor.device = torch.device("cuda")
        assert node.trigger_deactivate() == rclpy.lifecycle.TransitionCallbackReturn.SUCCESS
        assert node.predictor is None and node.frames.predictor is None and emptied
        # activate loads it again (on the configured device)
        assert node.trigger_activate() == rclpy.lifecycle.TransitionCallbackReturn.SUCCESS
        assert node.predictor is not None and node.frames.predictor is node.predictor
        assert node.predictor.device.type == "cpu"
    finally:
        node.destroy_node()
