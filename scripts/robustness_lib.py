"""Helpers of scripts/robustness.py: segmif_node as a child process (RSS, log), a ROS 2 client
that feeds it and collects its answers, and the builders of well-formed and malformed messages.

Every ROS 2 process runs on the localhost-only, shared-memory-only graph of
``segmif_ros.tools.bag_eval.local_ros_env(large_shm=True)`` (its own ROS_DOMAIN_ID).
"""
from __future__ import annotations

import array
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
_LOG_LINE = re.compile(r"^\[(DEBUG|INFO|WARN|ERROR|FATAL)\] \[(\d+\.\d+)\] \[([^\]]*)\]: (.*)$")


# ------------------------------------------------------------------------------ environment
def ros_env() -> dict:
    """The environment of every ROS 2 process started here (set in os.environ too)."""
    sys.path.insert(0, str(REPO))
    from segmif_ros.tools.bag_eval import local_ros_env

    local_ros_env(large_shm=True)
    env = os.environ.copy()
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tiny_checkpoint(path: Path, size: int = 64) -> Path:
    """A randomly initialised small SegMiF checkpoint (as test/conftest.py's tiny_checkpoint)."""
    import torch

    from segmif_core.checkpoint import save_checkpoint
    from segmif_core.data.classes import MFNET_CLASSES
    from segmif_core.models import build_model

    torch.manual_seed(0)
    model = build_model("segmif", {"num_classes": MFNET_CLASSES.num_classes, "fusion_width": 8,
                                   "drdb_growth": 4, "hia_heads": 2, "decoder_hidden_size": 32,
                                   "pretrained": None})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(size, size), meta={"note": "random"})
    return path


def node_command(params: dict) -> list:
    cmd = [sys.executable, "-m", "segmif_ros.node", "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


def rss_kb(pid: int) -> int | None:
    """VmRSS of process ``pid`` in kB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parse_log(path: Path) -> list:
    """[(level, time_s, logger, text)] of the rclpy log lines in ``path`` (other lines: level
    None, time None)."""
    out = []
    for raw in Path(path).read_text(errors="replace").splitlines():
        m = _LOG_LINE.match(raw)
        out.append((m.group(1), float(m.group(2)), m.group(3), m.group(4)) if m
                   else (None, None, None, raw))
    return out


class NodeProcess:
    """``python -m segmif_ros.node --ros-args -p ...`` with stdout+stderr into ``log_path``."""

    def __init__(self, params: dict, log_path: Path, env: dict):
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.cmd = node_command(params)
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=str(REPO))
        self.pid = self.proc.pid
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self):
        return rss_kb(self.pid)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class RssSampler(threading.Thread):
    """Samples the VmRSS of ``pid`` every ``period_s`` into ``samples`` [(t_monotonic, kB)]."""

    def __init__(self, pid: int, period_s: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.period_s, self.samples = pid, period_s, []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            kb = rss_kb(self.pid)
            if kb is not None:
                self.samples.append((time.monotonic(), kb))
            self._stop_event.wait(self.period_s)

    def stop(self):
        self._stop_event.set()
        self.join(timeout=5)


# ------------------------------------------------------------------------------ messages
def stamp_of(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def set_stamp(msg, ns: int) -> None:
    msg.header.stamp.sec = int(ns // NS)
    msg.header.stamp.nanosec = int(ns % NS)


def image(width: int, height: int, encoding: str, *, step: int | None = None,
          data: bytes | None = None, nbytes: int | None = None, bigendian: int = 0,
          stamp_ns: int = 0, frame_id: str = "camera", fill: int | None = None):
    """A sensor_msgs/Image with any field values: ``step`` default ``width * bpp`` (bpp from
    the encoding, 1 if unknown); ``data`` as given, else ``nbytes`` (default step * height)
    bytes of a cheap pattern (or ``fill``)."""
    from sensor_msgs.msg import Image

    bpp = {"mono8": 1, "8UC1": 1, "mono16": 2, "16UC1": 2, "rgb8": 3, "bgr8": 3}.get(encoding, 1)
    msg = Image()
    set_stamp(msg, stamp_ns)
    msg.header.frame_id = frame_id
    msg.width, msg.height, msg.encoding = int(width), int(height), encoding
    msg.is_bigendian = int(bigendian)
    msg.step = int(width * bpp if step is None else step) & 0xFFFFFFFF
    if data is None:
        n = msg.step * msg.height if nbytes is None else nbytes
        data = _pattern(n, fill)
    buf = array.array("B")
    buf.frombytes(bytes(data))
    msg.data = buf
    return msg


_PATTERNS: dict = {}


def _pattern(n: int, fill: int | None = None) -> bytes:
    """``n`` bytes of a fixed pseudo-random pattern (cached by size), or ``fill`` bytes."""
    if fill is not None:
        return bytes([fill]) * n
    if n not in _PATTERNS:
        if len(_PATTERNS) > 64:
            _PATTERNS.clear()
        _PATTERNS[n] = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    return _PATTERNS[n]


def thermal16(width: int, height: int, seed: int = 0, bigendian: bool = False) -> bytes:
    """A smooth 16-bit thermal image (raw counts 20000..30000) as bytes in either byte order."""
    y, x = np.mgrid[0:height, 0:width]
    img = (20000 + 10000 * (0.5 + 0.5 * np.sin(x / 7.0 + seed) * np.cos(y / 5.0))).astype(
        np.uint16)
    return img.astype(">u2" if bigendian else "<u2").tobytes()


def compressed(fmt: str, data: bytes, stamp_ns: int = 0, frame_id: str = "camera"):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    set_stamp(msg, stamp_ns)
    msg.header.frame_id = frame_id
    msg.format = fmt
    buf = array.array("B")
    buf.frombytes(bytes(data))
    msg.data = buf
    return msg


def encode(ext: str, img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, img)
    assert ok, ext
    return buf.tobytes()


# ------------------------------------------------------------------------------ the ROS client
DIAG_KEYS = {  # /diagnostics value name -> our counter name
    "visible received": "received_visible", "thermal received": "received_thermal",
    "messages rejected": "messages_rejected", "pairs matched": "pairs_matched",
    "messages unmatched": "messages_unmatched", "sync resets": "sync_resets",
    "pairs processed": "pairs_processed", "pairs dropped": "pairs_dropped",
    "processing errors": "processing_errors", "fallback frames": "frames_fallback",
}


class Client:
    """Publishes the node's inputs and records its outputs (a ROS context of its own, spun in a
    thread). ``transport``: "raw" (sensor_msgs/Image on visible/image, thermal/image) or
    "compressed" (CompressedImage on .../image/compressed)."""

    def __init__(self, transport: str = "raw", depth: int = 200, keep_labels=None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from segmif_ros.msg import SegmentationInfo

        self.context = Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("segmif_robustness", context=self.context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.raw = {"visible": self.node.create_publisher(Image, "/visible/image", qos),
                    "thermal": self.node.create_publisher(Image, "/thermal/image", qos)}
        self.comp = {}
        if transport == "compressed":
            self.comp = {s: self.node.create_publisher(CompressedImage, f"/{s}/image/compressed",
                                                       qos) for s in ("visible", "thermal")}
        self.sent = {"visible": 0, "thermal": 0}
        self.cond = threading.Condition()
        self.answers = {}  # labels stamp ns -> (receive time.time_ns(), node latency or None)
        self.labels = {}  # stamp ns -> labels bytes, for stamps in keep_labels
        self.keep_labels = keep_labels if keep_labels is not None else set()
        self.info = None  # the last SegmentationInfo
        self.info_latency = {}  # stamp ns -> info.latency_ms
        self.diag = None  # (header stamp ns, receive time ns, {key: value}) of the last array
        self.node.create_subscription(Image, "/segmentation/labels", self._on_labels, qos)
        self.node.create_subscription(SegmentationInfo, "/segmentation/info", self._on_info, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    # -------------------------------------------------------------- callbacks
    def _on_labels(self, msg):
        now = time.time_ns()
        stamp = stamp_of(msg)
        with self.cond:
            self.answers.setdefault(stamp, now)
            if stamp in self.keep_labels:
                self.labels[stamp] = bytes(msg.data)
            self.cond.notify_all()

    def _on_info(self, msg):
        with self.cond:
            self.info = msg
            self.info_latency[stamp_of(msg)] = float(msg.latency_ms)

    def _on_diag(self, msg):
        values = {}
        mine = False
        for status in msg.status:
            if not status.name.startswith("/segmif_node:"):
                continue
            mine = True
            values[status.name.split(": ", 1)[1] + " level"] = status.level[0] if isinstance(
                status.level, (bytes, bytearray)) else int(status.level)
            values[status.name.split(": ", 1)[1] + " message"] = status.message
            for kv in status.values:
                values[kv.key] = kv.value
        if mine:
            with self.cond:
                self.diag = (stamp_of(msg), time.time_ns(), values)
                self.cond.notify_all()

    # -------------------------------------------------------------- graph
    def wait_for_node(self, proc: NodeProcess | None, timeout: float = 120.0,
                      transport: str = "raw") -> float:
        """Seconds until the node subscribes to our inputs and publishes to our outputs."""
        t0 = time.monotonic()
        pubs = list((self.comp if transport == "compressed" else self.raw).values())
        while True:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"segmif_node exited with {proc.proc.returncode}; see "
                                   f"{proc.log_path}")
            if all(p.get_subscription_count() for p in pubs) and \
                    self.node.count_publishers("/segmentation/labels") and \
                    self.node.count_publishers("/segmentation/info"):
                break
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"segmif_node not up after {timeout} s")
            time.sleep(0.1)
        time.sleep(0.5)  # the node's publishers match our subscriptions
        return time.monotonic() - t0

    def list_parameters(self, node_name: str = "/segmif_node", timeout: float = 10.0):
        """The node's parameter names through its list_parameters service (None: no answer)."""
        from rcl_interfaces.srv import ListParameters

        cli = self.node.create_client(ListParameters, f"{node_name}/list_parameters")
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                return None
            future = cli.call_async(ListParameters.Request())
            t0 = time.monotonic()
            while not future.done() and time.monotonic() - t0 < timeout:
                time.sleep(0.05)
            return list(future.result().result.names) if future.done() else None
        finally:
            self.node.destroy_client(cli)

    # -------------------------------------------------------------- publishing
    def publish(self, stream: str, msg) -> None:
        """Publish ``msg`` (Image or CompressedImage) on ``stream``'s input topic."""
        (self.comp if type(msg).__name__ == "CompressedImage" else self.raw)[stream].publish(msg)
        self.sent[stream] += 1

    def wait_answer(self, stamp_ns: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while stamp_ns not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def wait_info(self, stamp_ns: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while stamp_ns not in self.info_latency:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def settled_counters(self, after_ns: int, timeout: float = 8.0, sent=None):
        """The first /diagnostics snapshot built after ``after_ns`` (node clock = system clock)
        whose received counts equal what we sent (``sent``: default all we sent), or, when
        messages were lost, the second of two fresh snapshots with the same received counts;
        returns (values, exact: bool). Falls back to the last one after ``timeout``."""
        sent = dict(self.sent) if sent is None else sent
        deadline = time.monotonic() + timeout
        previous = None
        with self.cond:
            while True:
                d = self.diag
                if d is not None and d[0] > after_ns:
                    v = d[2]
                    got = (_int(v.get("visible received")), _int(v.get("thermal received")))
                    if got == (sent["visible"], sent["thermal"]):
                        return v, True
                    if previous is not None and previous[1] == got and previous[0] != d[0]:
                        return v, False
                    if previous is None or previous[0] != d[0]:
                        previous = (d[0], got)
                left = deadline - time.monotonic()
                if left <= 0:
                    return (d[2] if d else {}), False
                self.cond.wait(min(left, 0.5))

    def close(self):
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._spin.join(timeout=5)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def counters(diag_values: dict) -> dict:
    """Integer counters from a /diagnostics values dict: DIAG_KEYS names plus ``rejected:<r>``."""
    out = {name: _int(diag_values.get(key)) for key, name in DIAG_KEYS.items()}
    for key, value in diag_values.items():
        if key.startswith("rejected: "):
            out["rejected:" + key[len("rejected: "):]] = _int(value)
    return out


def delta(after: dict, before: dict) -> dict:
    return {k: (after[k] - before.get(k, 0)) if after.get(k) is not None else None
            for k in after}


def percentile(values, q: float):
    return float(np.percentile(values, q)) if len(values) else None
