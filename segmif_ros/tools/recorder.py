"""Record live ROS 2 topics into a rosbag2 (a small ``ros2 bag record`` for segmif).

Messages are received already serialised (``raw=True`` subscriptions, no deserialisation
cost) and written with the ``rosbags`` writer, so any type with an importable rclpy class and a
definition in :func:`segmif_ros.tools.bag.get_typestore` (ROS 2 Kilted + ``segmif_ros/msg/*``) can
be recorded. The bag timestamp of each message is its receive time on the node's clock (system
time unless the node uses ``use_sim_time``); with restamped replays or live cameras,
``bag timestamp - header stamp`` is therefore the end-to-end latency. The system-clock receive
time is additionally kept in :attr:`BagRecorder.receive_log`.

The bag is written into a hidden temporary folder next to the output and renamed to the final
name by :meth:`BagRecorder.close`, so an interrupted recording never leaves a half bag under
the final name.

CLI::

    segmif_recorder --out BAG --topic /fused/image:sensor_msgs/msg/Image [--topic ...]
                    [--duration S] [--idle-timeout S] [--qos best_effort|reliable|auto]
                    [--storage mcap|sqlite3] [--overwrite]

(``python -m segmif_ros.tools.recorder`` works as well.) Stops on SIGINT/SIGTERM, after
``--duration`` seconds, or after ``--idle-timeout`` seconds without messages, and always
finalises the bag; prints a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

from .bag import BAG_VERSION, STORAGES, _prepare_tmp, _storage_plugin, finalize_atomically, get_typestore
from .replay import import_msg_class

__all__ = ["BagRecorder", "ReceiveRecord", "parse_topic_spec", "main"]

_DEFAULT_TYPE = "sensor_msgs/msg/Image"
QOS_CHOICES = ("best_effort", "reliable", "auto")


class ReceiveRecord(NamedTuple):
    """One received message (kept in :attr:`BagRecorder.receive_log`)."""

    topic: str
    bag_timestamp_ns: int  #: node clock at reception (the bag timestamp)
    wall_ns: int  #: system clock (``time.time_ns()``) at reception
    size: int  #: serialised size in bytes


def parse_topic_spec(spec: str) -> tuple:
    """``"/topic:pkg/msg/Type"`` -> ``("/topic", "pkg/msg/Type")``; a bare ``"/topic"`` gets
    ``sensor_msgs/msg/Image``.

    :raises ValueError: empty topic or malformed type (not ``pkg/msg/Name``).
    """
    topic, sep, msgtype = spec.partition(":")
    topic = topic.strip()
    msgtype = msgtype.strip() if sep else _DEFAULT_TYPE
    if not topic:
        raise ValueError(f"bad topic spec {spec!r}; expected /topic:pkg/msg/Type")
    if len(msgtype.split("/")) != 3 or not all(msgtype.split("/")):
        raise ValueError(f"bad message type {msgtype!r} in {spec!r}; expected pkg/msg/Type")
    return topic, msgtype


def _import_msg_class(msgtype: str):
    try:
        return import_msg_class(msgtype)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype!r} has no importable rclpy class: {exc}") from None


def _make_qos(qos: Any, depth: int, node: Any, topic: str):
    """Resolve a QoS argument to (QoSProfile, label)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if isinstance(qos, QoSProfile):
        return qos, "custom"
    if qos not in QOS_CHOICES:
        raise ValueError(f"qos must be a QoSProfile or one of {QOS_CHOICES}, got {qos!r}")
    reliability = ReliabilityPolicy.BEST_EFFORT
    label = qos
    if qos == "reliable":
        reliability = ReliabilityPolicy.RELIABLE
    elif qos == "auto":
        infos = node.get_publishers_info_by_topic(topic)
        if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
            reliability, label = ReliabilityPolicy.RELIABLE, "auto:reliable"
        else:
            label = "auto:best_effort"
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )
    return profile, label


class BagRecorder:
    """Record topics of a running rclpy node into a rosbag2.

    The recorder only creates subscriptions; the caller spins ``node`` (any executor; the
    callbacks are thread safe). Use as a context manager or call :meth:`close`.

    QoS: a *reliable* subscription does not match a best-effort publisher, while a
    *best-effort* subscription matches both but may lose messages (large images under load).
    ``qos="best_effort"`` (default) therefore records anything; use ``"reliable"`` for lossless
    recording of reliable publishers (e.g. :func:`segmif_ros.tools.replay.replay_bag`), or
    ``"auto"`` to pick reliable only when every publisher already visible to the node is reliable
    (decided once, at construction).

    :param node: rclpy node the subscriptions are created on.
    :param out: bag folder to create.
    :param topics: ``{topic: "pkg/msg/Type"}``.
    :param storage: ``"mcap"`` or ``"sqlite3"``.
    :param qos: ``"best_effort"``, ``"reliable"``, ``"auto"`` or an ``rclpy.qos.QoSProfile``.
    :param depth: history depth of the subscriptions (when ``qos`` is a string).
    :param overwrite: replace an existing ``out`` at :meth:`close`.
    :raises ValueError: empty ``topics``, malformed type, type without rclpy class or unknown
        to the type store, bad ``qos``/``storage``.
    :raises FileExistsError: ``out`` exists and ``overwrite`` is false.
    """

    def __init__(
        self,
        node: Any,
        out: Union[str, Path],
        topics: Mapping[str, str],
        *,
        storage: str = "mcap",
        qos: Any = "best_effort",
        depth: int = 10,
        overwrite: bool = False,
    ) -> None:
        from rosbags.rosbag2 import Writer

        if not topics:
            raise ValueError("no topics to record")
        plugin = _storage_plugin(storage)
        self.node = node
        self.out = Path(out)
        self.storage = storage
        self.overwrite = bool(overwrite)
        self.topics: Dict[str, str] = {}
        classes = {}
        store = get_typestore()
        for topic, msgtype in topics.items():
            _, msgtype = parse_topic_spec(f"{topic}:{msgtype}")
            if msgtype not in store.fielddefs:
                raise ValueError(f"message type {msgtype!r} is unknown to the bag type store")
            classes[topic] = _import_msg_class(msgtype)
            self.topics[topic] = msgtype

        self._lock = threading.Lock()
        self._closed = False
        self.counts: Dict[str, int] = {t: 0 for t in self.topics}
        self.receive_log: List[ReceiveRecord] = []
        self.first_ns: Optional[int] = None
        self.last_ns: Optional[int] = None
        self.last_receive_monotonic: Optional[float] = None
        self.qos_used: Dict[str, str] = {}
        self._summary: Optional[Dict[str, Any]] = None

        self._tmp_parent, self._tmp_bag = _prepare_tmp(self.out, self.overwrite)
        self._writer = Writer(self._tmp_bag, version=BAG_VERSION, storage_plugin=plugin)
        self._subs = []
        try:
            self._writer.open()
            self._conns = {
                t: self._writer.add_connection(t, m, typestore=store) for t, m in self.topics.items()
            }
            for topic in self.topics:
                profile, label = _make_qos(qos, depth, node, topic)
                self.qos_used[topic] = label
                self._subs.append(
                    node.create_subscription(
                        classes[topic], topic, self._callback_for(topic), profile, raw=True
                    )
                )
        except BaseException:
            self._discard()
            raise
        node.get_logger().info(
            f"recording {sorted(self.topics)} to {str(self.out)!r} ({storage}, qos {self.qos_used})"
        )

    def _callback_for(self, topic: str):
        conn = None

        def callback(data: bytes) -> None:
            nonlocal conn
            stamp = self.node.get_clock().now().nanoseconds
            wall = time.time_ns()
            with self._lock:
                if self._closed:
                    return
                if conn is None:
                    conn = self._conns[topic]
                self._writer.write(conn, stamp, data)
                self.counts[topic] += 1
                self.receive_log.append(ReceiveRecord(topic, stamp, wall, len(data)))
                if self.first_ns is None or stamp < self.first_ns:
                    self.first_ns = stamp
                if self.last_ns is None or stamp > self.last_ns:
                    self.last_ns = stamp
                self.last_receive_monotonic = time.monotonic()

        return callback

    @property
    def message_count(self) -> int:
        """Messages written so far (all topics)."""
        with self._lock:
            return sum(self.counts.values())

    @property
    def closed(self) -> bool:
        return self._closed

    def _destroy_subscriptions(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                self.node.destroy_subscription(sub)
        self._subs = []

    def _discard(self) -> None:
        self._closed = True
        self._destroy_subscriptions()
        with contextlib.suppress(Exception):
            self._writer.abort()
        shutil.rmtree(self._tmp_parent, ignore_errors=True)

    def close(self) -> Dict[str, Any]:
        """Stop recording, finalise the bag and move it to ``out`` (idempotent).

        :returns: summary dict: ``path``, ``storage``, ``counts`` ({topic: messages}),
            ``message_count``, ``first_ns`` / ``last_ns`` (bag timestamps, ``None`` if nothing
            was received), ``qos`` ({topic: QoS used}).
        :raises FileExistsError: ``out`` appeared meanwhile and ``overwrite`` is false (the
            finished bag is then left in the temporary folder named in the message).
        """
        with self._lock:
            if self._summary is not None:
                return self._summary
            self._closed = True
        self._destroy_subscriptions()
        with self._lock:
            try:
                self._writer.close()
            except BaseException:
                shutil.rmtree(self._tmp_parent, ignore_errors=True)
                raise
            finalize_atomically(self._tmp_parent, self._tmp_bag, self.out, self.overwrite)
            self._summary = {
                "path": str(self.out),
                "storage": self.storage,
                "counts": dict(self.counts),
                "message_count": sum(self.counts.values()),
                "first_ns": self.first_ns,
                "last_ns": self.last_ns,
                "qos": dict(self.qos_used),
            }
        return self._summary

    def abort(self) -> None:
        """Stop recording and delete the unfinished bag (nothing is written to ``out``)."""
        with self._lock:
            if self._summary is not None:
                return
            self._summary = {}
        self._discard()

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point ``segmif_recorder``; returns the exit status (0 ok, 2 usage error)."""
    parser = argparse.ArgumentParser(prog="segmif_recorder", description="Record topics into a rosbag2.")
    parser.add_argument("--out", required=True, help="bag folder to create")
    parser.add_argument("--topic", action="append", required=True, metavar="TOPIC[:TYPE]",
                        help=f"topic and type, e.g. /fused/image:sensor_msgs/msg/Image (default type {_DEFAULT_TYPE})")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without a message (counted from start)")
    parser.add_argument("--qos", choices=QOS_CHOICES, default="best_effort")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--storage", choices=STORAGES, default="mcap")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--node-name", default="segmif_recorder")
    args = parser.parse_args(argv)
    try:
        topics = dict(parse_topic_spec(s) for s in args.topic)
    except ValueError as exc:
        parser.error(str(exc))
    for name in ("duration", "idle_timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    reason = {"why": "shutdown"}

    def on_signal(signum, _frame):
        reason["why"] = signal.Signals(signum).name
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(args.node_name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    recorder = None
    summary: Dict[str, Any] = {}
    status = 0
    try:
        try:
            recorder = BagRecorder(node, args.out, topics, storage=args.storage, qos=args.qos,
                                   depth=args.depth, overwrite=args.overwrite)
        except (ValueError, FileExistsError) as exc:
            print(f"segmif_recorder: error: {exc}", file=sys.stderr)
            return 2
        start = time.monotonic()
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if args.duration is not None and now - start >= args.duration:
                reason["why"] = "duration"
                break
            if args.idle_timeout is not None:
                last = recorder.last_receive_monotonic or start
                if now - last >= args.idle_timeout:
                    reason["why"] = "idle_timeout"
                    break
        # take what the middleware already delivered before closing (bounded, 0.1 s)
        drain_until = time.monotonic() + 0.1
        while context.ok() and time.monotonic() < drain_until:
            executor.spin_once(timeout_sec=0.01)
    finally:
        if recorder is not None:
            summary = recorder.close()
            summary["stopped_by"] = reason["why"]
        executor.shutdown()
        node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps(summary, indent=2, sort_keys=True), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
