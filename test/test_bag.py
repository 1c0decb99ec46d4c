"""Tests of segmif_ros.tools.bag_make and segmif_ros.tools.bag (make/read rosbag2),
segmif_ros.tools.replay and segmif_ros.tools.recorder.

Expectations are computed independently: pixels are read from the PNGs with cv2, stamps from
the documented formula (start + round(i * 1e9 / rate)), message bytes are decoded with numpy
directly from height/width/step/data.

Live-graph tests use Fast DDS over shared memory only, on localhost, with a random domain id
(see the ``ros_env`` fixture) and unique topic names.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from segmif_ros.tools import bag as bagmod
from segmif_ros.tools.bag import bag_info, get_typestore, read_bag, read_bag_raw
from segmif_ros.tools.bag_make import DEFAULT_START_NS, make_bag

from conftest import MFNET as _MFNET, needs_mfnet

REPO = Path(__file__).resolve().parent.parent
MFNET = Path(_MFNET)
START = DEFAULT_START_NS
NS = 1_000_000_000
VIS, IR, GT = "/visible/image", "/thermal/image", "/ground_truth/labels"


def _three_names():
    return [n.strip() for n in (MFNET / "val.txt").read_text().splitlines() if n.strip()][:3]


# ----------------------------------------------------------------------------- helpers


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


def _decode(msg) -> np.ndarray:
    """Image message (rosbags dataclass) -> numpy, decoded here independently of the package."""
    bpp = {"rgb8": 3, "mono8": 1, "mono16": 2}[msg.encoding]
    raw = np.asarray(msg.data, dtype=np.uint8)[: msg.step * msg.height]
    rows = raw.reshape(msg.height, msg.step)[:, : msg.width * bpp]
    if msg.encoding == "rgb8":
        return rows.reshape(msg.height, msg.width, 3)
    if msg.encoding == "mono16":
        return rows.copy().view(">u2" if msg.is_bigendian else "<u2").astype(np.uint16)
    return rows.reshape(msg.height, msg.width)


def _png(path: Path, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    assert img is not None, path
    return img


def _by_topic(messages):
    out = {}
    for topic, ts, msg in messages:
        out.setdefault(topic, []).append((ts, msg))
    return out


def _fake_dir(root: Path, names, size=(6, 8), ir_size=None, ir_dtype=np.uint8, labels=True, seed=1):
    """Small MFNet-like folder; returns {name: (vis_bgr, ir, label)}."""
    rng = np.random.default_rng(seed)
    h, w = size
    ih, iw = ir_size or size
    for sub in ("vis", "ir") + (("label",) if labels else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    data = {}
    for name in names:
        vis = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        top = 65536 if ir_dtype == np.uint16 else 256
        ir = rng.integers(0, top, (ih, iw), dtype=np.int64).astype(ir_dtype)
        lab = rng.integers(0, 9, (h, w), dtype=np.uint8)
        assert cv2.imwrite(str(root / "vis" / f"{name}.png"), vis)
        assert cv2.imwrite(str(root / "ir" / f"{name}.png"), ir)
        if labels:
            assert cv2.imwrite(str(root / "label" / f"{name}.png"), lab)
        data[name] = (vis, ir, lab)
    return data


def _leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- make / read


@needs_mfnet
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_real_pairs(tmp_path, storage):
    names = _three_names()
    out = tmp_path / "bag"
    summary = make_bag(MFNET, out, names, rate_hz=30.0, jitter_ms=3.0, seed=7, storage=storage)
    assert summary["num_pairs"] == 3 and summary["names"] == names
    assert summary["counts"] == {VIS: 3, IR: 3, GT: 3}

    info = bag_info(out)
    assert info["storage"] == storage
    assert info["message_count"] == 9
    assert {t: v["count"] for t, v in info["topics"].items()} == {VIS: 3, IR: 3, GT: 3}
    assert all(v["type"] == "sensor_msgs/msg/Image" for v in info["topics"].values())

    messages = list(read_bag(out))
    stamps = [ts for _, ts, _ in messages]
    assert stamps == sorted(stamps)  # chronological
    topics = _by_topic(messages)
    expected_vis = [START + round(i * NS / 30.0) for i in range(3)]
    vis_stamps = [_stamp_ns(m) for _, m in topics[VIS]]
    assert vis_stamps == expected_vis
    assert [ts for ts, _ in topics[VIS]] == expected_vis  # bag timestamp == header stamp
    assert all(abs(d - NS / 30.0) <= 1 for d in np.diff(vis_stamps))

    ir_stamps = [_stamp_ns(m) for _, m in topics[IR]]
    assert [ts for ts, _ in topics[IR]] == ir_stamps
    offsets = [t - v for t, v in zip(ir_stamps, vis_stamps)]
    assert all(abs(o) <= 3_000_000 for o in offsets)
    assert len(set(offsets)) == 3 and any(o != 0 for o in offsets)  # really jittered
    assert [_stamp_ns(m) for _, m in topics[GT]] == vis_stamps
    assert [ts for ts, _ in topics[GT]] == vis_stamps
    assert summary["thermal_stamps_ns"] == ir_stamps

    for i, name in enumerate(names):
        vis_msg, ir_msg, gt_msg = topics[VIS][i][1], topics[IR][i][1], topics[GT][i][1]
        assert (vis_msg.encoding, ir_msg.encoding, gt_msg.encoding) == ("rgb8", "mono8", "mono8")
        assert vis_msg.header.frame_id == "visible_camera"
        assert ir_msg.header.frame_id == "thermal_camera"
        assert gt_msg.header.frame_id == "visible_camera"
        bgr = _png(MFNET / "vis" / f"{name}.png", cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(_decode(vis_msg), bgr[:, :, ::-1])
        ir = _png(MFNET / "ir" / f"{name}.png")
        assert ir.ndim == 2 and ir.dtype == np.uint8
        np.testing.assert_array_equal(_decode(ir_msg), ir)
        np.testing.assert_array_equal(_decode(gt_msg), _png(MFNET / "label" / f"{name}.png"))
        assert (vis_msg.width, vis_msg.height) == (640, 480)

    raw = list(read_bag_raw(out, [IR]))
    assert [r.topic for r in raw] == [IR] * 3
    assert all(r.msgtype == "sensor_msgs/msg/Image" for r in raw)
    store = get_typestore()
    first = store.deserialize_cdr(raw[0].data, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(first.data, topics[IR][0][1].data)
    assert _leftovers(tmp_path) == []


def test_default_names_split_file_jitter_and_options(tmp_path):
    data = _fake_dir(tmp_path / "d", ["b", "a", "c"])
    cv2.imwrite(str(tmp_path / "d" / "vis" / "only_vis.png"), np.zeros((6, 8, 3), np.uint8))
    summary = make_bag(tmp_path / "d", tmp_path / "all", rate_hz=10.0, jitter_ms=0.0, start_ns=5 * NS)
    assert summary["names"] == ["a", "b", "c"]  # sorted, unpaired file ignored
    topics = _by_topic(read_bag(tmp_path / "all"))
    assert [_stamp_ns(m) for _, m in topics[VIS]] == [5 * NS, 5 * NS + NS // 10, 5 * NS + 2 * NS // 10]
    assert [_stamp_ns(m) for _, m in topics[IR]] == [_stamp_ns(m) for _, m in topics[VIS]]  # no jitter
    for (_, msg), name in zip(topics[VIS], ["a", "b", "c"]):
        np.testing.assert_array_equal(_decode(msg), data[name][0][:, :, ::-1])

    (tmp_path / "d" / "mysplit.txt").write_text("# comment\nc\n\na.png\n")
    summary = make_bag(tmp_path / "d", tmp_path / "split", "mysplit.txt", visible_topic="/v",
                       thermal_topic="/t", label_topic="/g", visible_frame="vf", thermal_frame="tf")
    assert summary["names"] == ["c", "a"]  # split order kept
    topics = _by_topic(read_bag(tmp_path / "split"))
    assert sorted(topics) == ["/g", "/t", "/v"]
    np.testing.assert_array_equal(_decode(topics["/g"][0][1]), data["c"][2])
    assert topics["/g"][0][1].header.frame_id == "vf" and topics["/t"][0][1].header.frame_id == "tf"

    # jitter: deterministic per seed, bounded, different for another seed
    a = make_bag(tmp_path / "d", tmp_path / "s1", jitter_ms=5.0, seed=3)["thermal_stamps_ns"]
    b = make_bag(tmp_path / "d", tmp_path / "s2", jitter_ms=5.0, seed=3)["thermal_stamps_ns"]
    c = make_bag(tmp_path / "d", tmp_path / "s3", jitter_ms=5.0, seed=4)["thermal_stamps_ns"]
    assert a == b and a != c
    vis = [START + round(i * NS / 30.0) for i in range(3)]
    assert all(abs(t - v) <= 5_000_000 for t, v in zip(a + c, vis + vis))
    assert [_stamp_ns(m) for _, _, m in read_bag(tmp_path / "s1", [IR])] == a


def test_16bit_thermal_and_missing_labels(tmp_path):
    data = _fake_dir(tmp_path / "d", ["x", "y"], ir_dtype=np.uint16, labels=False)
    summary = make_bag(tmp_path / "d", tmp_path / "bag", storage="sqlite3")
    assert summary["counts"] == {VIS: 2, IR: 2} and summary["num_labels"] == 0
    assert set(bag_info(tmp_path / "bag")["topics"]) == {VIS, IR}
    irs = [m for _, _, m in read_bag(tmp_path / "bag", [IR])]
    assert [m.encoding for m in irs] == ["mono16", "mono16"]
    assert all(m.step == 2 * m.width and m.is_bigendian == 0 for m in irs)
    for msg, name in zip(irs, ["x", "y"]):
        expected = data[name][1]
        assert expected.max() > 255
        np.testing.assert_array_equal(_decode(msg), expected)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_bag(tmp_path / "nope", tmp_path / "o1")

    _fake_dir(tmp_path / "d", ["p1", "p2"])
    (tmp_path / "d" / "ir" / "p2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"p2.*ir"):
        make_bag(tmp_path / "d", tmp_path / "o2", ["p1", "p2"])
    with pytest.raises(FileNotFoundError):
        make_bag(tmp_path / "d", tmp_path / "o3", "missing_split.txt")

    empty = tmp_path / "empty"
    (empty / "vis").mkdir(parents=True)
    (empty / "ir").mkdir()
    with pytest.raises(ValueError, match="no visible/thermal pairs"):
        make_bag(empty, tmp_path / "o4")

    _fake_dir(tmp_path / "mm", ["good"])
    _fake_dir(tmp_path / "mm", ["bad"], size=(6, 8), ir_size=(6, 9), seed=2)
    with pytest.raises(ValueError, match=r"'bad'.*8x6.*9x6"):
        make_bag(tmp_path / "mm", tmp_path / "o5")

    with pytest.raises(ValueError):
        make_bag(tmp_path / "mm", tmp_path / "o6", ["good"], rate_hz=0)
    with pytest.raises(ValueError):
        make_bag(tmp_path / "mm", tmp_path / "o7", ["good"], storage="rosbag1")
    # nothing half-written is left behind by any failure
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))
    assert _leftovers(tmp_path) == []


def test_refuses_to_overwrite(tmp_path):
    _fake_dir(tmp_path / "d", ["a"], seed=5)
    out = tmp_path / "bag"
    make_bag(tmp_path / "d", out, jitter_ms=0.0)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(FileExistsError):
        make_bag(tmp_path / "d", out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    new = _fake_dir(tmp_path / "d", ["a"], seed=6)  # different pixels under the same name
    make_bag(tmp_path / "d", out, overwrite=True, start_ns=42 * NS)
    (_, ts, msg), = list(read_bag(out, [VIS]))
    assert ts == 42 * NS
    np.testing.assert_array_equal(_decode(msg), new["a"][0][:, :, ::-1])
    assert _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="not in bag"):
        list(read_bag(out, ["/nope"]))


def test_typestore_has_project_messages(tmp_path):
    from rosbags.rosbag2 import Writer

    store = get_typestore()
    for name in ("VisionClass", "LabelInfo", "SegmentationInfo"):
        assert f"segmif_ros/msg/{name}" in store.fielddefs
    assert bagmod.custom_msg_dirs()[0] == REPO / "msg"

    T = store.types
    info = T["segmif_ros/msg/SegmentationInfo"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=4), frame_id="f"),
        thermal_stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=5),
        class_names=["unlabelled", "car"],
        class_colors=[T["std_msgs/msg/ColorRGBA"](r=0.0, g=0.0, b=0.0, a=1.0)] * 2,
        class_fractions=np.array([0.75, 0.25], dtype=np.float32),
        mean_confidence=0.5, inference_time_ms=1.0, processing_time_ms=2.0, latency_ms=3.0,
        pairs_processed=10, pairs_dropped=1, messages_unmatched=2, messages_rejected=0,
        convert_time_ms=0.1, registration_time_ms=0.2, preprocess_time_ms=0.3,
        postprocess_time_ms=0.4, publish_time_ms=0.5, callback_delay_ms=0.6,
        pairs_matched=11, received_visible=12, received_thermal=13, processing_errors=0,
        sync_resets=0, frames_fallback=0, modality="pair",
        registration_score=0.4, registration_score_startup=0.45, registration_shift_x_px=1.5,
        registration_shift_y_px=-0.5, registration_drift_px=0.2, registration_level=0,
    )
    with Writer(tmp_path / "custom", version=9) as writer:
        conn = writer.add_connection("/segmentation/info", "segmif_ros/msg/SegmentationInfo", typestore=store)
        writer.write(conn, 7, store.serialize_cdr(info, "segmif_ros/msg/SegmentationInfo"))
    (topic, ts, back), = list(read_bag(tmp_path / "custom"))
    assert (topic, ts) == ("/segmentation/info", 7)
    assert back.class_names == ["unlabelled", "car"] and back.pairs_dropped == 1
    assert back.thermal_stamp.nanosec == 5
    np.testing.assert_array_equal(back.class_fractions, [0.75, 0.25])


# ----------------------------------------------------------------------------- live graph


@pytest.fixture
def ros_env(monkeypatch):
    """Shared-memory-only, localhost-only DDS on a random domain; returns the env for children."""
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    monkeypatch.delenv("FASTRTPS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    """Three real MFNet pairs as a bag: the tests that use it are marked ``needs_mfnet``."""
    out = tmp_path_factory.mktemp("replay") / "three"
    make_bag(MFNET, out, _three_names(), jitter_ms=3.0, seed=11)
    return out


def _prefix():
    return f"/t{uuid.uuid4().hex[:10]}"


def _check_replayed(source, recorded, prefix, offset):
    """Every source message arrives once on prefix+topic, same pixels, stamps + offset."""
    src = _by_topic(read_bag(source))
    rec = _by_topic(read_bag(recorded))
    assert sorted(rec) == sorted(prefix + t for t in src)
    names = _three_names()
    for topic, items in src.items():
        got = sorted(rec[prefix + topic], key=lambda x: _stamp_ns(x[1]))
        assert len(got) == len(items) == 3
        for i, ((_, want), (_, msg)) in enumerate(zip(items, got)):
            assert _stamp_ns(msg) - _stamp_ns(want) == offset
            assert msg.header.frame_id == want.header.frame_id
            assert msg.encoding == want.encoding
            if topic == VIS:
                expected = _png(MFNET / "vis" / f"{names[i]}.png", cv2.IMREAD_COLOR)[:, :, ::-1]
            elif topic == IR:
                expected = _png(MFNET / "ir" / f"{names[i]}.png")
            else:
                expected = _png(MFNET / "label" / f"{names[i]}.png")
            np.testing.assert_array_equal(_decode(msg), expected)
    return rec


@needs_mfnet
def test_replay_into_recorder_in_process(ros_env, small_bag, tmp_path):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from segmif_ros.tools.recorder import BagRecorder
    from segmif_ros.tools.replay import replay_bag

    prefix = _prefix()
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("test_recorder", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    out = tmp_path / "recorded"
    try:
        recorder = BagRecorder(node, out, {prefix + t: "sensor_msgs/msg/Image" for t in (VIS, IR, GT)},
                               qos="reliable")
        before = time.time_ns()
        stats = replay_bag(small_bag, rate=0, restamp=True, remap={t: prefix + t for t in (VIS, IR, GT)},
                           start_delay_s=1.0)
        after = time.time_ns()
        deadline = time.monotonic() + 10
        while recorder.message_count < 9 and time.monotonic() < deadline:
            time.sleep(0.02)
        summary = recorder.close()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        spinner.join(timeout=5)

    assert stats["published"] == 9 and stats["skipped_topics"] == {}
    assert all(v >= 1 for v in stats["matched"].values())
    assert summary["message_count"] == 9
    first_bag = min(ts for _, ts, _ in read_bag(small_bag))  # thermal jitter may come first
    assert stats["first_bag_ns"] == first_bag
    assert before <= first_bag + stats["offset_ns"] <= after  # restamped to "now"
    _check_replayed(small_bag, out, prefix, stats["offset_ns"])
    assert len(recorder.receive_log) == 9
    assert all(before <= r.wall_ns <= time.time_ns() for r in recorder.receive_log)
    assert not out.with_name(out.name + ".tmp").exists() and _leftovers(tmp_path) == []


@needs_mfnet
def test_recorder_and_replay_cli(ros_env, small_bag, tmp_path, capsys):
    import rclpy
    from rclpy.context import Context

    from segmif_ros.tools import replay

    prefix = _prefix()
    out = tmp_path / "cli_bag"
    cmd = [sys.executable, "-m", "segmif_ros.tools.recorder", "--out", str(out), "--qos", "reliable", "--storage", "sqlite3"]
    for t in (VIS, IR, GT):
        cmd += ["--topic", f"{prefix}{t}:sensor_msgs/msg/Image"]
    proc = subprocess.Popen(cmd, env=ros_env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until the recorder's subscriptions are visible in the graph
        ctx = Context()
        rclpy.init(context=ctx)
        probe = rclpy.create_node("probe", context=ctx)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if all(probe.count_subscribers(prefix + t) > 0 for t in (VIS, IR, GT)):
                break
            time.sleep(0.05)
        probe.destroy_node()
        rclpy.shutdown(context=ctx)
        assert proc.poll() is None, proc.communicate()

        argv = [str(small_bag), "--rate", "2", "--no-restamp", "--start-delay", "1.0", "--remap"]
        argv += [f"{t}:={prefix}{t}" for t in (VIS, IR, GT)]
        assert replay.main(argv) == 0
        stats = json.loads(capsys.readouterr().out)
        assert stats["published"] == 9 and stats["offset_ns"] == 0
        span_s = (stats["last_bag_ns"] - stats["first_bag_ns"]) / NS
        assert stats["wall_time_s"] >= span_s / 2 - 1e-3  # recorded timing at rate 2 is kept
        time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "SIGINT" and summary["message_count"] == 9
    assert bag_info(out)["storage"] == "sqlite3"
    rec = _check_replayed(small_bag, out, prefix, 0)  # --no-restamp: original stamps
    for topic, items in rec.items():  # bag timestamp = receive time on the recorder's clock
        assert all(ts > _stamp_ns(m) for ts, m in items)
    assert _leftovers(tmp_path) == []


def test_recorder_cli_idle_timeout(ros_env, tmp_path):
    out = tmp_path / "idle"
    cmd = [sys.executable, "-m", "segmif_ros.tools.recorder", "--out", str(out), "--topic", _prefix() + "/nothing",
           "--idle-timeout", "0.5", "--duration", "30"]
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=ros_env, cwd=str(REPO), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 15
    summary = json.loads(res.stdout)
    assert summary["stopped_by"] == "idle_timeout" and summary["message_count"] == 0
    info = bag_info(out)
    assert info["message_count"] == 0 and list(info["topics"].values())[0]["type"] == "sensor_msgs/msg/Image"

    # an existing output is refused with a usage error and left alone
    res = subprocess.run(cmd, env=ros_env, cwd=str(REPO), capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "exists" in res.stderr
    assert bag_info(out)["message_count"] == 0


def test_custom_message_record_and_restamp(ros_env, tmp_path):
    """segmif_ros/msg/SegmentationInfo: rclpy -> BagRecorder -> rosbags; replay shifts every stamp."""
    msgs = pytest.importorskip("segmif_ros.msg", reason="segmif_ros interfaces not built (make venv)")
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from segmif_ros.tools.recorder import BagRecorder
    from segmif_ros.tools.replay import replay_bag

    prefix = _prefix()
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("test_custom", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    received = []
    out = tmp_path / "info_bag"
    try:
        recorder = BagRecorder(node, out, {prefix + "/info": "segmif_ros/msg/SegmentationInfo"}, qos="reliable")
        pub = node.create_publisher(msgs.SegmentationInfo, prefix + "/info", qos)
        node.create_subscription(msgs.SegmentationInfo, prefix + "/again", received.append, qos)
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        sent = []
        for k in range(2):
            m = msgs.SegmentationInfo()
            m.header.stamp.sec, m.header.stamp.nanosec = 100 + k, 999_999_999
            m.header.frame_id = "visible_camera"
            if k == 0:  # second message keeps an unset (zero) thermal stamp
                m.thermal_stamp.sec, m.thermal_stamp.nanosec = 100, 999_000_000
            m.class_names = ["unlabelled", "person"]
            m.class_fractions = [0.9, 0.1]
            m.pairs_processed = 5 + k
            pub.publish(m)
            sent.append(m)
        pub.wait_for_all_acked(Duration(seconds=5))
        deadline = time.monotonic() + 10
        while recorder.message_count < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        recorder.close()

        got = [m for _, _, m in read_bag(out)]
        assert [(m.header.stamp.sec, m.pairs_processed) for m in got] == [(100, 5), (101, 6)]
        assert got[0].class_names == ["unlabelled", "person"]
        np.testing.assert_allclose(got[0].class_fractions, [0.9, 0.1], rtol=1e-6)
        assert (got[1].thermal_stamp.sec, got[1].thermal_stamp.nanosec) == (0, 0)

        stats = replay_bag(out, rate=0, remap=[f"{prefix}/info:={prefix}/again"], start_delay_s=0.5)
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        spinner.join(timeout=5)

    assert stats["published"] == 2 and len(received) == 2
    off = stats["offset_ns"]
    assert off > 0

    def ns(t):
        return t.sec * NS + t.nanosec

    for before, after in zip(sent, received):
        assert ns(after.header.stamp) == ns(before.header.stamp) + off
        assert after.pairs_processed == before.pairs_processed
    assert ns(received[0].thermal_stamp) == ns(sent[0].thermal_stamp) + off
    assert ns(received[1].thermal_stamp) == 0  # unset stamps stay unset


def test_restamp_in_bytes_equals_restamp_of_the_message():
    """The replay's fast path (header-first messages restamped in their CDR bytes) gives the
    bytes of the slow path (deserialise, shift every Time, serialise); zero stamps stay zero,
    messages with other times take the slow path."""
    pytest.importorskip("rclpy")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from segmif_ros.tools.replay import _Restamper, header_only, restamp_header_cdr

    assert header_only(Image) and header_only(CompressedImage)
    assert not header_only(CameraInfo)  # roi is a message field: slow path
    rng = np.random.default_rng(0)
    for cls, offset, (sec, nsec) in [(Image, 1_234_567_890_123, (12, 999_999_999)),
                                     (CompressedImage, -5_000_000_000, (7, 1)),
                                     (Image, 10**18, (0, 0)),            # unset: stays unset
                                     (Image, -10**12, (3, 5))]:          # clamped at 0
        msg = cls()
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
        msg.header.frame_id = "visible_optical"
        if cls is Image:
            msg.height, msg.width, msg.encoding, msg.step = 2, 3, "rgb8", 9
            msg.data = rng.integers(0, 256, 18, dtype=np.uint8).tobytes()
        else:
            msg.format, msg.data = "jpeg", rng.integers(0, 256, 11, dtype=np.uint8).tobytes()
        data = serialize_message(msg)
        slow = deserialize_message(data, cls)
        _Restamper(offset).apply(slow)
        fast = restamp_header_cdr(data, offset)
        assert fast == serialize_message(slow)
        back = deserialize_message(fast, cls)
        expect = 0 if (sec, nsec) == (0, 0) else max(0, sec * 10**9 + nsec + offset)
        assert back.header.stamp.sec * 10**9 + back.header.stamp.nanosec == expect
    with pytest.raises(ValueError, match="CDR"):
        restamp_header_cdr(b"\x01\x02\x00\x00" + bytes(8), 1)
