"""segmif_node's start-up and end (issue 24 item 2): the lifecycle services, parameters and
/diagnostics answer while a slow configure runs (slowness injected through the node's
``predictor_factory``), the process ends after the shutdown transition, ``threads`` reaches the
torch fallback of ``backend: auto``, and stream state changes are logged once per change."""
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from segmif_core.checkpoint import CheckpointError  # noqa: E402
from segmif_core.inference import SegMiFPredictor  # noqa: E402
from segmif_core.inference.onnx_export import ExportError  # noqa: E402
from segmif_ros.node.health import Health  # noqa: E402
from segmif_ros.node import runner  # noqa: E402
from segmif_ros.node.node import SegMiFNode  # noqa: E402
from test_node import stamped  # noqa: E402

EXPORT_LINE = "exporting the model to ONNX once (held by the test)"


class Gate:
    """A predictor factory that stays in its slow step (an export) until :attr:`release`."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, *args, log=None, **kwargs):
        log(EXPORT_LINE)
        self.entered.set()
        assert self.release.wait(60.0)
        return SegMiFPredictor(*args, log=log, **kwargs)


def params(checkpoint, **extra):
    overrides = {"checkpoint": str(checkpoint), "input_height": 64, "input_width": 64,
                 "backend": "torch", **extra}
    return [Parameter(k, value=v) for k, v in overrides.items()]


@pytest.fixture
def spun(context):
    """start(node): spins ``node`` with segmif_node's own :func:`runner.spin` on a thread (as
    main() does: multi-threaded until the first configure has ended, then single-threaded);
    yields (start, peer node, the peer's executor driven by the test)."""
    spun_nodes, threads = [], []
    peer = rclpy.create_node("startup_peer", context=context)
    peer_ex = SingleThreadedExecutor(context=context)
    peer_ex.add_node(peer)

    def start(node):
        thread = threading.Thread(target=runner.spin, args=(node, context), daemon=True)
        thread.start()
        spun_nodes.append(node)
        threads.append(thread)

    yield start, peer, peer_ex
    for node in spun_nodes:  # end runner.spin as the shutdown transition would
        if not node.finished.done():
            node.finished.set_result(0)
        if not node.started.done():
            node.started.set_result(True)
    for thread in threads:
        thread.join(timeout=15.0)
    peer_ex.shutdown()
    peer.destroy_node()


def wait_for(condition, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        time.sleep(0.02)
    assert condition()


def call(peer_ex, client, request, timeout=10.0):
    """(response, seconds) of one service call, the peer's executor spun by this thread."""
    t0 = time.monotonic()
    future = client.call_async(request)
    peer_ex.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), f"no answer in {timeout} s"
    return future.result(), time.monotonic() - t0


def diag_processing(array):
    (status,) = [s for s in array.status if s.name.endswith(": processing")]
    return status.message, {kv.key: kv.value for kv in status.values}


def test_services_and_diagnostics_answer_while_a_slow_configure_runs(spun, tiny_checkpoint,
                                                                     context):
    start, peer, peer_ex = spun
    gate = Gate()
    node = SegMiFNode(context=context, predictor_factory=gate,
                      parameter_overrides=params(tiny_checkpoint, autostart=False))
    try:
        start(node)
        change = peer.create_client(ChangeState, "segmif_node/change_state")
        get = peer.create_client(GetState, "segmif_node/get_state")
        get_params = peer.create_client(GetParameters, "segmif_node/get_parameters")
        diags = []
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        for client in (change, get, get_params):
            assert client.wait_for_service(timeout_sec=10.0)
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_CONFIGURE
        configure = change.call_async(request)
        end = time.monotonic() + 30.0
        while not gate.entered.is_set() and time.monotonic() < end:
            peer_ex.spin_once(timeout_sec=0.05)
        assert gate.entered.is_set() and not configure.done()
        # the configure is held in its slow step: the lifecycle and parameter services answer
        state, seconds = call(peer_ex, get, GetState.Request(), timeout=5.0)
        assert state.current_state.label == "configuring" and seconds < 1.0, seconds
        got, seconds = call(peer_ex, get_params, GetParameters.Request(names=["device"]))
        assert got.values[0].string_value == "cpu" and seconds < 1.0, seconds
        # and /diagnostics says which step runs and for how long
        n = len(diags)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and not any(
                EXPORT_LINE in diag_processing(a)[0] for a in diags[n:]):
            peer_ex.spin_once(timeout_sec=0.05)
        message, values = diag_processing(diags[-1])
        assert message.startswith("configuring for ") and EXPORT_LINE in message, message
        assert values["transition"] == "configuring" and values["transition step"] == EXPORT_LINE
        assert not configure.done()
        gate.release.set()
        peer_ex.spin_until_future_complete(configure, timeout_sec=60.0)
        assert configure.done() and configure.result().success
        assert call(peer_ex, get, GetState.Request())[0].current_state.label == "inactive"
        assert node.progress.snapshot() is None
        # the first configure has ended: the node moves to one executor thread, and the next
        # transition is answered there
        assert node.started.done()
        wait_for(lambda: isinstance(node.executor, SingleThreadedExecutor))
        request.transition.id = Transition.TRANSITION_ACTIVATE
        assert call(peer_ex, change, request)[0].success
        assert call(peer_ex, get, GetState.Request())[0].current_state.label == "active"
    finally:
        gate.release.set()
        node.destroy_node()


def test_deferred_autostart_answers_then_activates(spun, tiny_checkpoint, context):
    start, peer, peer_ex = spun
    gate = Gate()
    node = SegMiFNode(context=context, predictor_factory=gate, autostart_deferred=True,
                      parameter_overrides=params(tiny_checkpoint))
    try:
        assert node.state == "unconfigured"  # nothing ran in the constructor
        start(node)
        get = peer.create_client(GetState, "segmif_node/get_state")
        assert get.wait_for_service(timeout_sec=10.0)
        assert gate.entered.wait(30.0)
        state, seconds = call(peer_ex, get, GetState.Request(), timeout=5.0)
        assert state.current_state.label == "configuring" and seconds < 1.0, seconds
        gate.release.set()
        end = time.monotonic() + 60.0
        while time.monotonic() < end and node.state != "active":
            time.sleep(0.05)
        assert call(peer_ex, get, GetState.Request())[0].current_state.label == "active"
        assert node.sub_vis is not None and not node.finished.done()
        # configure and activate have ended: one executor thread from here on
        assert node.started.done()
        wait_for(lambda: isinstance(node.executor, SingleThreadedExecutor))
        assert call(peer_ex, get, GetState.Request())[0].current_state.label == "active"
    finally:
        gate.release.set()
        node.destroy_node()


def test_deferred_autostart_failure_ends_with_exit_code_1(spun, tiny_checkpoint, context):
    start, _, _ = spun

    def broken(checkpoint, *args, **kwargs):
        raise CheckpointError(f"checkpoint {checkpoint}: injected failure")

    node = SegMiFNode(context=context, predictor_factory=broken, autostart_deferred=True,
                      parameter_overrides=params(tiny_checkpoint))
    try:
        start(node)
        end = time.monotonic() + 30.0
        while time.monotonic() < end and not node.finished.done():
            time.sleep(0.05)
        assert node.finished.done() and node.finished.result() == 1
        assert node.state == "unconfigured" and "injected failure" in node.configure_error
    finally:
        node.destroy_node()


def test_threads_reach_the_torch_fallback_of_backend_auto(context, tiny_checkpoint):
    """backend auto whose export is refused falls back to torch, with ``threads`` applied."""
    calls = []

    def no_export(*args, backend, **kwargs):
        calls.append((backend, kwargs["threads"]))
        if backend == "auto":
            raise ExportError("this model has no ONNX export (injected)")
        return SegMiFPredictor(*args, backend=backend, **kwargs)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        node = SegMiFNode(context=context, predictor_factory=no_export,
                          parameter_overrides=params(tiny_checkpoint, backend="auto",
                                                     threads=2))
        try:
            assert calls == [("auto", 2), ("torch", 2)]
            assert node.predictor.backend.name == "torch"
            assert torch.get_num_threads() == 2
        finally:
            node.destroy_node()
    finally:
        torch.set_num_threads(before)


def test_shutdown_transition_ends_the_process(context, tiny_checkpoint):
    """``ros2 lifecycle set /<node> shutdown``: the caller gets its answer and the process
    (segmif_node's main) exits with code 0, so a launch ends."""
    name = f"segmif_shutdown_{int(time.time() * 1000) % 100000}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmif_ros.node", "--ros-args", "-r", f"__node:={name}",
         "-p", f"checkpoint:={tiny_checkpoint}", "-p", "input_height:=64",
         "-p", "input_width:=64", "-p", "backend:=torch"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peer = rclpy.create_node("shutdown_peer", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    try:
        get = peer.create_client(GetState, f"{name}/get_state")
        change = peer.create_client(ChangeState, f"{name}/change_state")
        assert get.wait_for_service(timeout_sec=120.0) and change.wait_for_service(10.0)
        end = time.monotonic() + 120.0
        while time.monotonic() < end and \
                call(ex, get, GetState.Request())[0].current_state.label != "active":
            time.sleep(0.2)
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_ACTIVE_SHUTDOWN
        assert call(ex, change, request, timeout=30.0)[0].success
        assert proc.wait(timeout=30.0) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.shutdown()
        peer.destroy_node()


def test_stream_changes_have_hysteresis():
    now = [0.0]
    health = Health(stream_timeout_s=1.0, recover_messages=3, clock=lambda: now[0])
    changes = []

    def run(seconds, period):
        """Both streams at 1/period Hz for seconds; the watchdog every 0.5 s."""
        end, next_msg = now[0] + seconds, now[0]
        while now[0] < end:
            if now[0] >= next_msg:
                health.received(0)
                health.received(1)
                next_msg += period
            changes.extend(health.stream_changes())
            now[0] += 0.5

    run(75.0, 1.8)  # 0.56 Hz (42 pairs in 75 s) with a 1 s timeout
    assert changes == [(0, "lost"), (1, "lost")]
    run(10.0, 0.5)  # 2 Hz: back, once
    assert changes[2:] == [(0, "back"), (1, "back")]
    run(10.0, 0.5)
    assert len(changes) == 4


def test_a_slow_pair_stream_logs_its_state_once(context, tiny_checkpoint):
    """Pairs at 0.56 Hz with stream_timeout_s 1 s: one 'no input' line in 75 s, not a 'stream
    is back' line per pair; at 4 Hz one line per stream that is back."""
    node = SegMiFNode(context=context, parameter_overrides=params(tiny_checkpoint))
    lines = []

    class Logger:
        def warning(self, text, **_):
            lines.append(("warning", text))

        def info(self, text, **_):
            lines.append(("info", text))

        error = debug = fatal = warning

    now = [1000.0]
    try:
        node.health = Health(stream_timeout_s=1.0, clock=lambda: now[0])
        node.get_logger = Logger
        vis = np.zeros((8, 8, 3), np.uint8)
        ir = np.zeros((8, 8), np.uint8)

        def run(seconds, period):
            end, next_msg, sec = now[0] + seconds, now[0], int(now[0])
            while now[0] < end:
                if now[0] >= next_msg:
                    sec += 1
                    node._on_image(0, stamped(vis, "rgb8", sec, 0, "v"))
                    node._on_image(1, stamped(ir, "mono8", sec, 0, "t"))
                    next_msg += period
                node._check_inputs()
                now[0] += 0.25

        run(75.0, 1.8)
        stream_lines = [t for _, t in lines if "stream" in t or "no input" in t]
        assert len(stream_lines) == 1 and "no input" in stream_lines[0], stream_lines
        run(5.0, 0.25)
        back = [t for level, t in lines if level == "info" and "is back" in t]
        assert sorted(t.split()[0] for t in back) == ["thermal", "visible"], back
    finally:
        del node.get_logger
        node.destroy_node()
