"""Tests of segmif_ros.node.sync with mock stamped messages (no ROS graph, no rclpy)."""

import random
import sys
import threading

import pytest

from segmif_ros.node.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, stamp_to_ns

MS = 1_000_000  # ns
S = 1_000_000_000  # ns
VIS, THERM = 0, 1


class _Stamp:
    def __init__(self, ns):
        self.sec, self.nanosec = divmod(ns, S)


class _Header:
    def __init__(self, ns):
        self.stamp = _Stamp(ns)


class Msg:
    """Minimal stamped message: header.stamp.sec/nanosec plus a label for the assertions."""

    def __init__(self, ns, label=""):
        self.header = _Header(ns)
        self.ns = ns
        self.label = label

    def __repr__(self):
        return f"Msg({self.ns}, {self.label!r})"


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *msgs):
        self.calls.append(msgs)

    def stamps(self):
        return [tuple(m.ns for m in call) for call in self.calls]


def _approx(slop=0.010, queue_size=5, n=2):
    rec = Recorder()
    return ApproximateTimeSynchronizer(n, queue_size, slop, rec), rec


def test_module_does_not_import_rclpy():
    import importlib
    import subprocess

    code = ("import sys, segmif_ros.node.sync; "
            "sys.exit(1 if 'rclpy' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    importlib.import_module("segmif_ros.node.sync")


def test_stamp_to_ns_is_exact_integer():
    s = _Stamp(1_700_000_000 * S + 999_999_999)
    assert (s.sec, s.nanosec) == (1_700_000_000, 999_999_999)
    assert stamp_to_ns(s) == 1_700_000_000_999_999_999
    with pytest.raises(TypeError):
        stamp_to_ns(object())

    class FloatStamp:
        sec = 1.5
        nanosec = 0

    with pytest.raises(TypeError):
        stamp_to_ns(FloatStamp())


def test_pairs_within_slop_and_passes_messages_in_input_order():
    sync, rec = _approx()
    v, t = Msg(1 * S, "v"), Msg(1 * S + 4 * MS, "t")
    assert sync.add(VIS, v) == 0
    assert rec.calls == []
    assert sync.add(THERM, t) == 1
    assert len(rec.calls) == 1
    assert rec.calls[0][0] is v and rec.calls[0][1] is t
    assert sync.queue_lengths() == (0, 0)
    st = sync.stats()
    assert st["pairs_matched"] == 1
    assert st["messages_received"] == 2
    assert st["messages_unmatched"] == 0
    assert sync.pairs_matched == 1 and sync.messages_unmatched == 0 and sync.messages_received == 2


def test_order_independence_thermal_before_visible():
    sync, rec = _approx()
    t, v = Msg(2 * S - 3 * MS, "t"), Msg(2 * S, "v")
    sync.add(THERM, t)
    assert rec.calls == []
    sync.add(VIS, v)
    assert len(rec.calls) == 1
    # Always in input order, whatever the arrival order.
    assert rec.calls[0][0] is v and rec.calls[0][1] is t


@pytest.mark.parametrize("base", [1 * S, 1_700_000_000 * S + 123_456_789])
def test_slop_boundary_is_strict_in_integer_ns(base):
    slop_ns = 10 * MS
    # Exactly slop apart: not paired (spread must be strictly less than slop).
    sync, rec = _approx(slop=0.010)
    assert sync.slop_ns == slop_ns
    sync.add(VIS, Msg(base))
    sync.add(THERM, Msg(base + slop_ns))
    assert rec.calls == []
    # Farther than slop, in both directions: not paired either.
    sync.add(THERM, Msg(base - slop_ns - 1))
    sync.add(THERM, Msg(base + slop_ns + 1))
    assert rec.calls == []
    # One nanosecond inside the slop: paired.
    sync.add(THERM, Msg(base + slop_ns - 1))
    assert rec.stamps() == [(base, base + slop_ns - 1)]


def test_never_pairs_across_the_slop_random_streams():
    rng = random.Random(1234)
    slop_ns = 15 * MS
    sync, rec = _approx(slop=slop_ns / S, queue_size=4)
    sent = 0
    for _ in range(3000):
        index = rng.randrange(2)
        sync.add(index, Msg(rng.randrange(0, 2 * S), str(index)))
        sent += 1
    assert rec.calls, "random streams this dense must produce some pairs"
    seen = set()
    for v, t in rec.calls:
        assert v.label == "0" and t.label == "1"
        assert abs(v.ns - t.ns) < slop_ns
        # No message is ever delivered twice.
        assert id(v) not in seen and id(t) not in seen
        seen.update((id(v), id(t)))
    st = sync.stats()
    assert st["messages_received"] == sent
    assert st["pairs_matched"] == len(rec.calls)
    # Every message is either paired, counted as unmatched or still queued.
    assert sent == 2 * st["pairs_matched"] + st["messages_unmatched"] + st["messages_queued"]
    assert st["messages_queued"] == sum(sync.queue_lengths()) <= 2 * 4


def test_drops_stale_messages_after_a_match():
    sync, rec = _approx(slop=0.010, queue_size=5)
    for ms in (0, 30, 60):
        sync.add(VIS, Msg(1 * S + ms * MS))
    assert sync.queue_lengths() == (3, 0)
    sync.add(THERM, Msg(1 * S + 61 * MS))
    assert rec.stamps() == [(1 * S + 60 * MS, 1 * S + 61 * MS)]
    # The visible frames at 0 ms and 30 ms are older than the used one: removed and counted.
    assert sync.queue_lengths() == (0, 0)
    assert sync.messages_unmatched == 2
    assert sync.stats()["messages_dropped_stale"] == 2

    # A late thermal message older than the last match waits (no visible partner)...
    sync.add(THERM, Msg(1 * S + 31 * MS))
    assert sync.queue_lengths() == (0, 1)
    # ...and is removed, counted, when a newer thermal stamp is used.
    sync.add(VIS, Msg(1 * S + 90 * MS))
    sync.add(THERM, Msg(1 * S + 91 * MS))
    assert rec.stamps()[-1] == (1 * S + 90 * MS, 1 * S + 91 * MS)
    assert sync.queue_lengths() == (0, 0)
    assert sync.messages_unmatched == 3
    assert sync.pairs_matched == 2


def test_messages_newer_than_the_used_one_are_kept():
    sync, rec = _approx(slop=0.010)
    sync.add(VIS, Msg(1 * S))
    sync.add(VIS, Msg(1 * S + 33 * MS))
    sync.add(THERM, Msg(1 * S + 1 * MS))
    assert rec.stamps() == [(1 * S, 1 * S + 1 * MS)]
    assert sync.queue_lengths() == (1, 0)
    assert sync.messages_unmatched == 0
    sync.add(THERM, Msg(1 * S + 34 * MS))
    assert rec.stamps()[-1] == (1 * S + 33 * MS, 1 * S + 34 * MS)


def test_queue_size_eviction_is_counted():
    sync, rec = _approx(slop=0.010, queue_size=2)
    for ms in (0, 100, 200):
        sync.add(VIS, Msg(1 * S + ms * MS))
    assert sync.queue_lengths() == (2, 0)
    assert sync.stats()["messages_evicted"] == 1
    assert sync.messages_unmatched == 1
    # The evicted frame (0 ms) cannot be paired any more.
    sync.add(THERM, Msg(1 * S + 1 * MS))
    assert rec.calls == []
    # A new message older than everything in a full queue evicts itself.
    sync.add(VIS, Msg(1 * S + 50 * MS))
    assert sync.queue_lengths() == (2, 1)
    assert sync.messages_unmatched == 2
    sync.add(THERM, Msg(1 * S + 51 * MS))
    assert rec.calls == []
    # The frames still queued pair normally.
    sync.add(THERM, Msg(1 * S + 201 * MS))
    assert rec.stamps() == [(1 * S + 200 * MS, 1 * S + 201 * MS)]
    # 100 ms visible + both older thermal frames are stale now.
    assert sync.queue_lengths() == (0, 0)
    assert sync.messages_unmatched == 2 + 3
    st = sync.stats()
    assert st["messages_received"] == 7  # 4 visible + 3 thermal
    assert st["messages_received"] == 2 * st["pairs_matched"] + st["messages_unmatched"]


def test_same_stamp_twice_replaces_and_counts():
    sync, rec = _approx()
    first, second = Msg(1 * S, "first"), Msg(1 * S, "second")
    sync.add(VIS, first)
    sync.add(VIS, second)
    assert sync.queue_lengths() == (1, 0)
    assert sync.stats()["messages_replaced"] == 1
    sync.add(THERM, Msg(1 * S))
    assert rec.calls[0][0] is second
    assert sync.messages_unmatched == 1


def test_prefers_the_closest_stamp():
    sync, rec = _approx(slop=0.010)
    for ms in (-5, 3, 8):  # distances to the visible frame: 5, 3, 8 ms
        sync.add(THERM, Msg(1 * S + ms * MS))
    assert rec.calls == []
    sync.add(VIS, Msg(1 * S))
    assert rec.stamps() == [(1 * S, 1 * S + 3 * MS)]
    # -5 ms is older than the used 3 ms: stale. 8 ms is newer: kept.
    assert sync.queue_lengths() == (0, 1)
    assert sync.messages_unmatched == 1


def test_equal_distance_tie_takes_the_earlier_stamp():
    sync, rec = _approx(slop=0.010)
    sync.add(THERM, Msg(1 * S + 4 * MS))
    sync.add(THERM, Msg(1 * S - 4 * MS))
    sync.add(VIS, Msg(1 * S))
    assert rec.stamps() == [(1 * S, 1 * S - 4 * MS)]
    assert sync.queue_lengths() == (0, 1)


def test_three_inputs_need_total_spread_below_slop():
    sync, rec = _approx(slop=0.010, n=3)
    sync.add(1, Msg(1 * S + 6 * MS))
    sync.add(2, Msg(1 * S - 5 * MS))
    # Each is within slop of the new message, but the spread is 11 ms >= 10 ms.
    sync.add(0, Msg(1 * S))
    assert rec.calls == []
    # A closer candidate for input 1 makes the spread 1.003 - 0.995 = 8 ms.
    sync.add(1, Msg(1 * S + 3 * MS))
    assert rec.stamps() == [(1 * S, 1 * S + 3 * MS, 1 * S - 5 * MS)]
    assert sync.queue_lengths() == (0, 1, 0)


def test_thirty_hz_with_jittered_thermal_gives_one_pair_per_frame():
    rng = random.Random(7)
    period = 33_333_333
    base = 1_700_000_000 * S
    n = 300
    sync, rec = _approx(slop=0.010, queue_size=5)
    vis = [Msg(base + k * period, f"v{k}") for k in range(n)]
    therm = [Msg(base + k * period + rng.randint(-3 * MS, 3 * MS), f"t{k}") for k in range(n)]
    for k in range(n):
        # Random arrival order inside each frame.
        if rng.random() < 0.5:
            sync.add(VIS, vis[k])
            sync.add(THERM, therm[k])
        else:
            sync.add(THERM, therm[k])
            sync.add(VIS, vis[k])
    assert len(rec.calls) == n
    assert [(v.label, t.label) for v, t in rec.calls] == [(f"v{k}", f"t{k}") for k in range(n)]
    assert sync.stats() == {
        "messages_received": 2 * n,
        "pairs_matched": n,
        "messages_unmatched": 0,
        "messages_evicted": 0,
        "messages_dropped_stale": 0,
        "messages_replaced": 0,
        "messages_queued": 0,
    }


def test_thermal_lagging_two_frames_still_pairs_every_frame():
    rng = random.Random(11)
    period = 33_333_333
    n, lag = 100, 2
    sync, rec = _approx(slop=0.010, queue_size=5)
    vis = [Msg(S + k * period, k) for k in range(n)]
    therm = [Msg(S + k * period + rng.randint(-3 * MS, 3 * MS), k) for k in range(n)]
    for k in range(n + lag):
        if k < n:
            sync.add(VIS, vis[k])
        if k >= lag:
            sync.add(THERM, therm[k - lag])
    assert [(v.label, t.label) for v, t in rec.calls] == [(k, k) for k in range(n)]
    assert sync.messages_unmatched == 0


def test_explicit_stamp_overrides_header():
    sync, rec = _approx()
    v = Msg(5 * S)
    sync.add(VIS, v, stamp_ns=1 * S)
    sync.add(THERM, Msg(1 * S + 2 * MS))
    assert len(rec.calls) == 1 and rec.calls[0][0] is v
    # A message without a header works when the stamp is given.
    sync.add(VIS, object(), stamp_ns=3 * S)
    sync.add(THERM, Msg(3 * S))
    assert len(rec.calls) == 2


def test_exact_mode_pairs_identical_stamps_only():
    rec = Recorder()
    sync = ExactTimeSynchronizer(2, 5, rec)
    sync.add(VIS, Msg(1 * S, "v"))
    sync.add(THERM, Msg(1 * S + 1, "t+1ns"))
    assert rec.calls == []
    sync.add(THERM, Msg(1 * S, "t"))
    assert [(v.label, t.label) for v, t in rec.calls] == [("v", "t")]
    assert sync.queue_lengths() == (0, 1)
    assert sync.pairs_matched == 1 and sync.messages_unmatched == 0


def test_exact_mode_keeps_older_messages_for_late_partners():
    rec = Recorder()
    sync = ExactTimeSynchronizer(2, 5, rec)
    sync.add(VIS, Msg(1 * S))
    sync.add(VIS, Msg(2 * S))
    sync.add(THERM, Msg(2 * S))
    sync.add(THERM, Msg(1 * S))
    assert rec.stamps() == [(2 * S, 2 * S), (1 * S, 1 * S)]
    assert sync.messages_unmatched == 0


def test_exact_mode_queue_size_eviction():
    rec = Recorder()
    sync = ExactTimeSynchronizer(2, 2, rec)
    for sec in (1, 2, 3):
        sync.add(VIS, Msg(sec * S))
    assert sync.queue_lengths() == (2, 0)
    assert sync.messages_unmatched == 1
    sync.add(THERM, Msg(1 * S))  # partner was evicted
    sync.add(THERM, Msg(3 * S))
    assert rec.stamps() == [(3 * S, 3 * S)]
    assert sync.queue_lengths() == (1, 1)


def test_several_callbacks_and_register_callback():
    sync = ApproximateTimeSynchronizer(2, 5, 0.01)
    order = []
    sync.register_callback(lambda v, t: order.append(("a", v.ns, t.ns)))
    sync.register_callback(lambda v, t: order.append(("b", v.ns, t.ns)))
    sync.add(VIS, Msg(S))
    sync.add(THERM, Msg(S))
    assert order == [("a", S, S), ("b", S, S)]


def test_callback_may_reenter_without_deadlock():
    sync = ApproximateTimeSynchronizer(2, 5, 0.01)
    seen = []

    def cb(v, t):
        seen.append(sync.stats()["pairs_matched"])
        if v.ns == S:
            sync.add(VIS, Msg(2 * S))
            sync.add(THERM, Msg(2 * S))

    sync.register_callback(cb)
    sync.add(VIS, Msg(S))
    sync.add(THERM, Msg(S))
    assert seen == [1, 2]


def test_callback_exception_propagates_after_state_update():
    def boom(*_):
        raise RuntimeError("boom")

    sync = ApproximateTimeSynchronizer(2, 5, 0.01, boom)
    sync.add(VIS, Msg(S))
    with pytest.raises(RuntimeError, match="boom"):
        sync.add(THERM, Msg(S))
    assert sync.pairs_matched == 1
    assert sync.queue_lengths() == (0, 0)


def test_clear_counts_queued_messages_as_unmatched():
    sync, rec = _approx()
    sync.add(VIS, Msg(S))
    sync.add(VIS, Msg(2 * S))
    sync.add(THERM, Msg(5 * S))
    sync.clear()
    assert sync.queue_lengths() == (0, 0)
    assert sync.messages_unmatched == 3
    sync.add(THERM, Msg(S))
    assert rec.calls == []


def test_concurrent_producers():
    period = 33_333_333
    n = 2000
    rng = random.Random(3)
    jitter = [rng.randint(-3 * MS, 3 * MS) for _ in range(n)]
    lock = threading.Lock()
    pairs = []

    def cb(v, t):
        with lock:
            pairs.append((v.label, t.label))

    # queue_size >= n: however far one thread runs ahead, nothing is evicted.
    sync = ApproximateTimeSynchronizer(2, n, 0.010, cb)
    barrier = threading.Barrier(2)

    def feed(index, offsets):
        barrier.wait()
        for k in range(n):
            sync.add(index, Msg(S + k * period + offsets[k], k))

    threads = [threading.Thread(target=feed, args=(VIS, [0] * n)),
               threading.Thread(target=feed, args=(THERM, jitter))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(pairs) == [(k, k) for k in range(n)]
    st = sync.stats()
    assert st["pairs_matched"] == n and st["messages_unmatched"] == 0
    assert st["messages_received"] == 2 * n and st["messages_queued"] == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_inputs=1, queue_size=5, slop=0.01), "num_inputs"),
    (dict(num_inputs=2, queue_size=0, slop=0.01), "queue_size"),
    (dict(num_inputs=2, queue_size=-3, slop=0.01), "queue_size"),
    (dict(num_inputs=2, queue_size=2.5, slop=0.01), "queue_size"),
    (dict(num_inputs=2, queue_size=5, slop=-0.01), "slop"),
    (dict(num_inputs=2, queue_size=5, slop=0.0), "slop"),
    (dict(num_inputs=2, queue_size=5, slop=float("nan")), "slop"),
    (dict(num_inputs=2, queue_size=5, slop=float("inf")), "slop"),
    (dict(num_inputs=2, queue_size=5, slop="fast"), "slop"),
    (dict(num_inputs=2, queue_size=5, slop=1e-12), "slop"),
])
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ApproximateTimeSynchronizer(**kwargs)


def test_bad_exact_constructor_arguments_raise():
    with pytest.raises(ValueError, match="queue_size"):
        ExactTimeSynchronizer(2, 0)
    with pytest.raises(ValueError, match="num_inputs"):
        ExactTimeSynchronizer(0, 3)


def test_bad_add_arguments_raise():
    sync, rec = _approx()
    with pytest.raises(ValueError, match="index"):
        sync.add(2, Msg(S))
    with pytest.raises(ValueError, match="index"):
        sync.add(-1, Msg(S))
    with pytest.raises(TypeError):
        sync.add(0.0, Msg(S))
    with pytest.raises(TypeError, match="header.stamp"):
        sync.add(VIS, object())
    with pytest.raises(TypeError, match="stamp_ns"):
        sync.add(VIS, Msg(S), stamp_ns=1.0)
    with pytest.raises(TypeError):
        sync.register_callback("not callable")
    # Rejected calls change nothing.
    assert sync.stats()["messages_received"] == 0
    assert sync.queue_lengths() == (0, 0)
