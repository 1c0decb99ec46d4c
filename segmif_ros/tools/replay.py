"""Replay a rosbag2 into the live ROS 2 graph (a small ``ros2 bag play`` for segmif).

``ros2 bag`` (rosbag2) is not installable here, so this module reads bags with ``rosbags``
(:mod:`segmif_ros.tools.bag`) and publishes with rclpy. Compared with ``ros2 bag play`` it can
*restamp*: every ``builtin_interfaces/Time`` in a message (headers included, zero stamps
excepted) is shifted by one constant offset ``now - first bag timestamp``, so a bag made from
a data set looks like a live camera rig while the relative timing (visible/thermal jitter,
ground truth stamp == visible stamp) is kept exactly. Messages whose only time is a leading
``std_msgs/Header`` (Image, CompressedImage) are restamped in their serialised bytes
(``restamp_header_cdr``) and published as they are, like ``ros2 bag play``; others are
deserialised, restamped and serialised again (about 2 ms per 640x480 image, CPU the replay would
otherwise take from the node under test).

CLI::

    segmif_replay BAG [--rate R] [--no-restamp] [--clock] [--topics T ...]
                      [--remap /a:=/b ...] [--start-delay S] [--wait-subscribers S]

(``python -m segmif_ros.tools.replay`` works as well.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import struct
import sys
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from .bag import read_bag_raw

__all__ = ["replay_bag", "parse_remaps", "header_only", "restamp_header_cdr", "main"]

_NS_PER_S = 1_000_000_000


def parse_remaps(remap: Union[None, Mapping[str, str], Iterable[str]]) -> Dict[str, str]:
    """Normalise topic remappings to ``{bag_topic: live_topic}``.

    :param remap: ``None``, a mapping, or strings ``"/from:=/to"``.
    :raises ValueError: a string without ``:=`` or with an empty side.
    """
    if remap is None:
        return {}
    if isinstance(remap, Mapping):
        return {str(k): str(v) for k, v in remap.items()}
    result: Dict[str, str] = {}
    for item in ([remap] if isinstance(remap, str) else remap):
        src, sep, dst = str(item).partition(":=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"bad remap {item!r}; expected '/from:=/to'")
        result[src.strip()] = dst.strip()
    return result


def import_msg_class(msgtype: str):
    """``"pkg/msg/Name"`` -> the rclpy message class (ImportError/AttributeError if absent)."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise ImportError(f"unexpected message type name {msgtype!r}")
    pkg, kind, name = parts
    module = importlib.import_module(f"{pkg}.{kind}")
    return getattr(module, name)


class _Restamper:
    """Shift every non-zero ``builtin_interfaces/Time`` inside an rclpy message in place."""

    def __init__(self, offset_ns: int) -> None:
        from builtin_interfaces.msg import Time

        self.offset_ns = int(offset_ns)
        self._time_cls = Time
        self._fields: Dict[type, List[str]] = {}

    def _candidate_fields(self, cls: type) -> List[str]:
        fields = self._fields.get(cls)
        if fields is None:
            # only fields whose type names another message can hold a Time (primitives have no '/')
            fields = [name for name, typ in cls.get_fields_and_field_types().items() if "/" in typ]
            self._fields[cls] = fields
        return fields

    def _shift(self, stamp: Any) -> None:
        ns = stamp.sec * _NS_PER_S + stamp.nanosec
        if ns == 0:
            return  # unset stamp stays unset
        ns = max(0, ns + self.offset_ns)
        stamp.sec, stamp.nanosec = ns // _NS_PER_S, ns % _NS_PER_S

    def apply(self, msg: Any) -> None:
        if isinstance(msg, self._time_cls):
            self._shift(msg)
            return
        for name in self._candidate_fields(type(msg)):
            value = getattr(msg, name)
            if isinstance(value, (list, tuple)):
                for item in value:
                    self.apply(item)
            elif hasattr(type(value), "get_fields_and_field_types"):
                self.apply(value)


def header_only(cls: type) -> bool:
    """True when a message class starts with ``header: std_msgs/Header`` and has no other field
    that names a message type (so the header stamp is its only ``builtin_interfaces/Time``)."""
    fields = list(cls.get_fields_and_field_types().items())
    return (bool(fields) and fields[0] == ("header", "std_msgs/Header")
            and all("/" not in typ for _, typ in fields[1:]))


def restamp_header_cdr(data: bytes, offset_ns: int) -> bytes:
    """Shift the header stamp of a serialised header-first message (``header_only``) by
    ``offset_ns``; a zero stamp stays zero, a negative result is clamped to 0 as in
    ``_Restamper``. CDR layout: a 4-byte encapsulation header (``00 01`` little-endian, ``00 00``
    big-endian), then ``stamp.sec`` int32 and ``stamp.nanosec`` uint32.
    Raises ValueError for another encapsulation or fewer than 12 bytes."""
    if len(data) < 12 or data[0] != 0 or data[1] not in (0, 1):
        raise ValueError("not a plain CDR message (encapsulation 00 00 or 00 01 expected)")
    order = "<" if data[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(order + "iI", data, 4)
    ns = sec * _NS_PER_S + nanosec
    if ns == 0:
        return data
    ns = max(0, ns + int(offset_ns))
    out = bytearray(data)
    struct.pack_into(order + "iI", out, 4, ns // _NS_PER_S, ns % _NS_PER_S)
    return bytes(out)


def _now_ns() -> int:
    return time.time_ns()


def replay_bag(
    path: Any,
    rate: float = 1.0,
    restamp: bool = True,
    topics: Optional[Sequence[str]] = None,
    remap: Union[None, Mapping[str, str], Iterable[str]] = None,
    clock: bool = False,
    start_delay_s: float = 0.5,
    node: Any = None,
    *,
    wait_for_subscribers_s: float = 5.0,
    ack_timeout_s: float = 5.0,
    qos_depth: int = 10,
) -> Dict[str, Any]:
    """Publish the messages of a bag into the ROS 2 graph with their recorded timing.

    Each bag topic gets a publisher (reliable, volatile, keep last ``qos_depth``, like
    ``ros2 bag play``) on its (remapped) name. The replay then waits until every publisher has
    at least one matched subscription or ``wait_for_subscribers_s`` passed (logged either way),
    sleeps ``start_delay_s`` and publishes message ``k`` at wall time
    ``t0 + (ts_k - ts_0) / rate`` (``ts`` = bag timestamp, ns).

    With ``restamp`` the offset ``offset_ns = now - ts_0`` (system clock, ns, taken at ``t0``)
    is added to every non-zero ``builtin_interfaces/Time`` in each message (header stamps and
    e.g. ``SegmentationInfo.thermal_stamp``), so all stamps move by the same constant. Without
    it the stored bytes are published unchanged. With ``clock`` a ``rosgraph_msgs/Clock`` is
    published on ``/clock`` before each message carrying its (shifted) bag time, for nodes
    running with ``use_sim_time``.

    Topics whose message type has no importable rclpy class (e.g. custom types not built in
    this environment) are skipped and reported in ``stats["skipped_topics"]``.

    :param path: bag folder or single ``.mcap`` / ``.db3`` file.
    :param rate: speed factor (> 0); ``0`` publishes as fast as possible.
    :param restamp: shift stamps to "now" (see above).
    :param topics: bag topics to replay (``None`` = all); names before remapping.
    :param remap: ``{bag_topic: live_topic}`` or strings ``"/a:=/b"``.
    :param clock: also publish ``/clock``.
    :param start_delay_s: pause (s, >= 0) between matching and the first message.
    :param node: rclpy node to create the publishers on (it is not spun and its publishers are
        destroyed at the end); ``None`` = a private context and node ``segmif_replay``.
    :param wait_for_subscribers_s: maximum wait (s) for subscriptions to match; ``0`` = none.
    :param ack_timeout_s: at the end, maximum wait (s) for reliable subscribers to acknowledge
        everything before the publishers are destroyed (a lost last fragment is only repaired
        after the next periodic heartbeat, 3 s by default in Fast DDS); a timeout is logged.
    :param qos_depth: publisher history depth.
    :returns: stats dict: ``published`` (total), ``per_topic`` ({live topic: count}),
        ``skipped_topics`` ({bag topic: reason}), ``offset_ns`` (0 without restamp),
        ``first_bag_ns`` / ``last_bag_ns`` (``None`` for an empty selection), ``wall_time_s``
        (from the replay start, i.e. the schedule origin, to the last publish), ``max_lag_ms``
        (worst lateness against the schedule),
        ``matched`` ({live topic: subscriptions matched at start}), ``all_acked`` (every
        reliable subscriber acknowledged everything within ``ack_timeout_s``), ``rate``,
        ``restamp``.
    :raises ValueError: negative/NaN ``rate`` or ``start_delay_s``, bad ``remap``, unknown topic.
    :raises FileNotFoundError: the bag does not exist.
    """
    if not (rate >= 0) or rate != rate:
        raise ValueError(f"rate must be >= 0 (0 = as fast as possible), got {rate!r}")
    if not (start_delay_s >= 0):
        raise ValueError(f"start_delay_s must be >= 0, got {start_delay_s!r}")
    remaps = parse_remaps(remap)

    from .bag import bag_info

    info = bag_info(path)
    selected = list(info["topics"]) if topics is None else list(topics)
    unknown = [t for t in selected if t not in info["topics"]]
    if unknown:
        raise ValueError(f"topics {unknown} not in bag; available: {sorted(info['topics'])}")

    import rclpy
    from rclpy.context import Context
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message

    own_context: Optional[Context] = None
    if node is None:
        own_context = Context()
        rclpy.init(args=[], context=own_context)
        node = rclpy.create_node("segmif_replay", context=own_context)
    logger = node.get_logger()

    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(qos_depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
    publishers: Dict[str, Any] = {}  # bag topic -> publisher
    classes: Dict[str, Any] = {}
    skipped: Dict[str, str] = {}
    stats: Dict[str, Any] = {
        "published": 0,
        "per_topic": {},
        "skipped_topics": skipped,
        "offset_ns": 0,
        "first_bag_ns": None,
        "last_bag_ns": None,
        "wall_time_s": 0.0,
        "max_lag_ms": 0.0,
        "matched": {},
        "rate": float(rate),
        "restamp": bool(restamp),
        "all_acked": True,
    }
    clock_pub = None
    try:
        for topic in selected:
            msgtype = info["topics"][topic]["type"]
            try:
                cls = import_msg_class(msgtype)
            except (ImportError, AttributeError) as exc:
                skipped[topic] = f"message type {msgtype} not available in Python: {exc}"
                logger.warning(f"skipping {topic}: {skipped[topic]}")
                continue
            live = remaps.get(topic, topic)
            classes[topic] = cls
            publishers[topic] = node.create_publisher(cls, live, qos)
            stats["per_topic"][live] = 0
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, remaps.get("/clock", "/clock"), qos)

        if publishers and wait_for_subscribers_s > 0:
            names = sorted(p.topic_name for p in publishers.values())
            logger.info(f"waiting up to {wait_for_subscribers_s:.1f} s for subscribers on {names}")
            deadline = time.monotonic() + wait_for_subscribers_s
            while time.monotonic() < deadline:
                if all(p.get_subscription_count() > 0 for p in publishers.values()):
                    break
                time.sleep(0.02)
            missing = [p.topic_name for p in publishers.values() if p.get_subscription_count() == 0]
            if missing:
                logger.warning(f"starting without subscribers on {sorted(missing)}")
            else:
                logger.info("all replay topics have subscribers")
        stats["matched"] = {p.topic_name: p.get_subscription_count() for p in publishers.values()}
        if start_delay_s > 0:
            time.sleep(start_delay_s)

        restamper: Optional[_Restamper] = None
        t0_wall = 0.0
        first_bag: Optional[int] = None
        last_pub: Optional[float] = None
        max_lag = 0.0
        wanted = list(publishers)
        fast = {t for t in wanted if header_only(classes[t])}
        if wanted:
            for topic, ts, data, _msgtype in read_bag_raw(path, wanted):
                if first_bag is None:
                    first_bag = ts
                    t0_wall = time.monotonic()
                    if restamp:
                        stats["offset_ns"] = _now_ns() - first_bag
                        restamper = _Restamper(stats["offset_ns"])
                    stats["first_bag_ns"] = first_bag
                if rate > 0:
                    target = t0_wall + (ts - first_bag) / _NS_PER_S / rate
                    delay = target - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        max_lag = max(max_lag, -delay)
                if not rclpy.ok(context=node.context):
                    logger.warning("context shut down; replay stopped early")
                    break
                stamp_ns = ts + (stats["offset_ns"] if restamp else 0)
                if clock_pub is not None:
                    from rosgraph_msgs.msg import Clock

                    clk = Clock()
                    clk.clock.sec, clk.clock.nanosec = stamp_ns // _NS_PER_S, stamp_ns % _NS_PER_S
                    clock_pub.publish(clk)
                pub = publishers[topic]
                if restamper is not None and topic in fast:
                    pub.publish(restamp_header_cdr(data, stats["offset_ns"]))
                elif restamper is not None:
                    msg = deserialize_message(data, classes[topic])
                    restamper.apply(msg)
                    pub.publish(serialize_message(msg))
                else:
                    pub.publish(data)  # bytes: published as already serialised
                last_pub = time.monotonic()
                stats["published"] += 1
                stats["per_topic"][pub.topic_name] += 1
                stats["last_bag_ns"] = ts
        stats["max_lag_ms"] = max_lag * 1e3
        stats["wall_time_s"] = (last_pub - t0_wall) if last_pub is not None else 0.0
        if ack_timeout_s > 0 and stats["published"]:
            for pub in list(publishers.values()) + ([clock_pub] if clock_pub else []):
                try:
                    acked = pub.wait_for_all_acked(Duration(nanoseconds=int(ack_timeout_s * _NS_PER_S)))
                except Exception:  # not supported by the rmw: fall back to a short pause
                    acked = True
                    time.sleep(0.1)
                if not acked:
                    logger.warning(f"{pub.topic_name}: not all messages acknowledged after {ack_timeout_s} s")
                stats["all_acked"] = stats["all_acked"] and bool(acked)
        logger.info(
            f"replayed {stats['published']} messages in {stats['wall_time_s']:.3f} s "
            f"(rate {rate}, offset {stats['offset_ns']} ns)"
        )
    finally:
        for pub in list(publishers.values()) + ([clock_pub] if clock_pub else []):
            try:
                node.destroy_publisher(pub)
            except Exception:
                pass
        if own_context is not None:
            node.destroy_node()
            if own_context.ok():
                rclpy.shutdown(context=own_context)
    return stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point ``segmif_replay``; prints the stats as JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="segmif_replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", help="bag folder or .mcap/.db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="speed factor; 0 = as fast as possible")
    parser.add_argument("--no-restamp", dest="restamp", action="store_false",
                        help="keep the recorded header stamps")
    parser.add_argument("--clock", action="store_true", help="publish /clock (rosgraph_msgs/Clock)")
    parser.add_argument("--topics", nargs="+", default=None, help="bag topics to replay (default all)")
    parser.add_argument("--remap", nargs="+", action="extend", default=[], metavar="FROM:=TO",
                        help="rename topics, e.g. --remap /visible/image:=/cam/rgb")
    parser.add_argument("--start-delay", type=float, default=0.5, help="pause before the first message (s)")
    parser.add_argument("--wait-subscribers", type=float, default=5.0,
                        help="maximum wait for subscribers to match (s)")
    args = parser.parse_args(argv)
    try:
        remaps = parse_remaps(args.remap)
    except ValueError as exc:
        parser.error(str(exc))
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("segmif_replay", context=context)
    try:
        stats = replay_bag(
            args.bag, rate=args.rate, restamp=args.restamp, topics=args.topics, remap=remaps,
            clock=args.clock, start_delay_s=args.start_delay, node=node,
            wait_for_subscribers_s=args.wait_subscribers,
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as exc:
        print(f"segmif_replay: error: {exc}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    print(json.dumps(stats, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
