"""Tests of segmif_ros.node.sync with mock stamped messages (no ROS graph, no rclpy)."""

import math
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
    # 200 ms overflows {0, 100, 200}: the oldest other message (0 ms) goes.
    assert sync.queue_lengths() == (2, 0)
    assert sync.stats()["messages_evicted"] == 1
    assert sync.messages_unmatched == 1
    # The evicted frame (0 ms) cannot be paired any more.
    sync.add(THERM, Msg(1 * S + 1 * MS))
    assert rec.calls == []
    # A new message older than everything in a full queue is kept (it used to evict itself);
    # the oldest of the others (100 ms) goes instead: visible {50, 200}.
    sync.add(VIS, Msg(1 * S + 50 * MS))
    assert sync.queue_lengths() == (2, 1)
    assert sync.messages_unmatched == 2
    sync.add(THERM, Msg(1 * S + 51 * MS))
    assert rec.stamps() == [(1 * S + 50 * MS, 1 * S + 51 * MS)]
    # The thermal 1 ms frame is older than the used 51 ms: stale. Visible 200 ms waits.
    assert sync.queue_lengths() == (1, 0)
    assert sync.messages_unmatched == 3
    sync.add(THERM, Msg(1 * S + 201 * MS))
    assert rec.stamps()[-1] == (1 * S + 200 * MS, 1 * S + 201 * MS)
    assert sync.queue_lengths() == (0, 0)
    st = sync.stats()
    assert st["messages_unmatched"] == 3
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
        "messages_dropped_reset": 0,
        "messages_queued": 0,
        "resets": 0,
        "stamp_jumps": 0,
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


# ------------------------------------------------------------------------------------------------
# Future stamps, backward jumps, resets and the stuck diagnosis (issue 14, defects 1 and 9).
# Expectations are worked out by hand from the rules in the docstrings, not from the code.

B = 1000 * S  # a base stamp well away from 0
PERIOD = 50 * MS  # 20 Hz


def _named(slop=0.020, queue_size=5, **kwargs):
    rec, lines = Recorder(), []
    sync = ApproximateTimeSynchronizer(2, queue_size, slop, rec, names=("visible", "thermal"),
                                       log=lines.append, **kwargs)
    return sync, rec, lines


def _send_pair(sync, k, vis_first=True, base=B, offset=3 * MS):
    """Visible at base + k * 50 ms, thermal 3 ms later; returns the matches fired by the second."""
    v, t = Msg(base + k * PERIOD, f"v{k}"), Msg(base + k * PERIOD + offset, f"t{k}")
    first, second = ((VIS, v), (THERM, t)) if vis_first else ((THERM, t), (VIS, v))
    assert sync.add(*first) == 0
    return sync.add(*second)


@pytest.mark.parametrize("vis_first", [True, False])
@pytest.mark.parametrize("jump_threshold", [None, math.inf])
def test_future_stamps_on_one_input_do_not_block_it(vis_first, jump_threshold):
    # 5 well-formed thermal frames stamped 60 s in the future fill the thermal queue, then 49
    # valid pairs arrive: every one is answered at once (before the fix: none, because each new
    # thermal frame was older than everything queued and evicted itself).
    sync, rec, lines = _named(jump_threshold=jump_threshold)
    for k in range(5):
        sync.add(THERM, Msg(B + 60 * S + k * PERIOD, f"future{k}"))
    assert sync.queue_lengths() == (0, 5)
    fired = [_send_pair(sync, k, vis_first) for k in range(49)]
    assert fired == [1] * 49
    assert [(v.label, t.label) for v, t in rec.calls] == [(f"v{k}", f"t{k}") for k in range(49)]
    st = sync.stats()
    assert st["pairs_matched"] == 49
    # The first valid thermal frame (1000.003 s) overflows the queue and evicts the furthest
    # outlier (1060.200 s), never itself.
    assert st["messages_evicted"] == 1
    if jump_threshold is None:
        # 1000.003 s is 60.197 s before the last stamp (1060.200 s): a candidate jump, confirmed
        # by the next thermal frame (1000.053 s), which drops the 4 future frames still queued
        # (stamped after 1000.053 + 1 s).
        assert (st["resets"], st["stamp_jumps"], st["messages_dropped_reset"]) == (1, 1, 4)
        assert st["messages_queued"] == 0
        assert lines == ["thermal stamp jumped back 60.197 s (from 1060.200 s to 1000.003 s; "
                         "clock jump, bag loop or wrong camera clock?): thermal queue reset, 4 "
                         "queued messages stamped after 1001.053 s dropped (reset #1)"]
    else:
        # Detection off: the other 4 future frames stay queued, the 5th slot serves.
        assert st["resets"] == 0
        assert sync.queue_lengths() == (0, 4)
        assert lines == []
    assert st["messages_received"] == 5 + 2 * 49
    assert st["messages_received"] == (2 * st["pairs_matched"] + st["messages_unmatched"]
                                       + st["messages_queued"])


def test_queue_size_one_unmatched_newer_stamp_does_not_block():
    # queue_size 1: a thermal frame 0.5 s ahead (its visible partner lost; below the 1 s jump
    # threshold, so no reset) used to make every following thermal frame evict itself for 0.5 s.
    sync, rec, lines = _named(queue_size=1)
    sync.add(THERM, Msg(B + 500 * MS, "lonely"))
    fired = [_send_pair(sync, k) for k in range(10)]  # stamps 1000.000 .. 1000.450 s
    assert fired == [1] * 10
    assert rec.stamps() == [(B + k * PERIOD, B + k * PERIOD + 3 * MS) for k in range(10)]
    st = sync.stats()
    assert (st["messages_evicted"], st["resets"], st["messages_queued"]) == (1, 0, 0)
    assert st["messages_received"] == 21 == 2 * 10 + st["messages_unmatched"]
    assert lines == []


def test_clock_jump_back_60_s_pairs_resume_at_once():
    # 20 Hz pairs at 1060 s, then 5 visible frames whose thermal partners are lost (a full
    # visible queue), then the clock jumps back 60 s. Before the fix the node stayed silent
    # for 60 s (each new visible frame was the oldest of a full queue and evicted itself).
    sync, rec, lines = _named()
    t0 = B + 60 * S
    assert [_send_pair(sync, k, base=t0) for k in range(20)] == [1] * 20  # .. 1060.953 s
    for k in range(20, 25):  # visible 1061.000 .. 1061.200 s, unmatched
        sync.add(VIS, Msg(t0 + k * PERIOD))
    assert sync.queue_lengths() == (5, 0)
    fired = [_send_pair(sync, k, base=B + S) for k in range(20)]  # 1001.000 s ..
    assert fired == [1] * 20
    assert rec.stamps()[20:] == [(B + S + k * PERIOD, B + S + k * PERIOD + 3 * MS)
                                 for k in range(20)]
    st = sync.stats()
    # Visible 1001.000 s overflows the full queue and evicts the furthest outlier (1061.200 s);
    # it pairs with thermal 1001.003 s at once. Each input's second frame after the jump
    # confirms it: visible drops its 4 other old frames (after 1001.050 + 1 s), thermal (last
    # 1060.953 s) has none queued.
    assert (st["resets"], st["stamp_jumps"], st["messages_dropped_reset"]) == (2, 2, 4)
    assert st["messages_evicted"] == 1
    assert lines == [
        "visible stamp jumped back 60.200 s (from 1061.200 s to 1001.000 s; clock jump, bag loop "
        "or wrong camera clock?): visible queue reset, 4 queued messages stamped after 1002.050 s "
        "dropped (reset #1)",
        "thermal stamp jumped back 59.950 s (from 1060.953 s to 1001.003 s; clock jump, bag loop "
        "or wrong camera clock?): thermal queue reset, 0 queued messages stamped after 1002.053 s "
        "dropped (reset #2)"]
    assert st["messages_received"] == 2 * st["pairs_matched"] + st["messages_unmatched"] == 85


@pytest.mark.parametrize("junk_ns, resets, stale, dropped_reset", [
    # stamp 0: a candidate jump back, cancelled by the next (valid) frame; the junk goes stale
    # when that frame pairs.
    (0, 0, 2, 0),
    # far future: the two valid frames after it are a confirmed jump back, which drops it.
    (B + 60 * S, 2, 0, 2),
])
def test_junk_stamp_inside_a_pair_does_not_lose_the_pair(junk_ns, resets, stale, dropped_reset):
    # visible k, [bad thermal stamp for k = 3 and 6], thermal k: every valid pair is answered
    # (a jump resets only the input that jumped, and a single bad stamp is no jump).
    sync, rec, lines = _named()
    for k in range(10):
        sync.add(VIS, Msg(B + k * PERIOD, f"v{k}"))
        if k in (3, 6):
            sync.add(THERM, Msg(junk_ns, "junk"))
        assert sync.add(THERM, Msg(B + k * PERIOD + 3 * MS, f"t{k}")) == 1
    assert [(v.label, t.label) for v, t in rec.calls] == [(f"v{k}", f"t{k}") for k in range(10)]
    st = sync.stats()
    assert (st["resets"], st["stamp_jumps"]) == (resets, resets) and len(lines) == resets
    assert (st["messages_dropped_stale"], st["messages_dropped_reset"]) == (stale, dropped_reset)
    assert st["messages_received"] == 22 == 2 * 10 + st["messages_unmatched"]


def test_small_backward_step_is_not_a_jump():
    # An out-of-order frame 0.15 s older than the previous one (< the 1 s threshold) is no reset.
    sync, rec, lines = _named()
    sync.add(VIS, Msg(B + 200 * MS))
    sync.add(VIS, Msg(B + 50 * MS))
    sync.add(THERM, Msg(B + 51 * MS))
    assert rec.stamps() == [(B + 50 * MS, B + 51 * MS)]
    assert sync.stats()["resets"] == 0 and lines == []
    assert sync.queue_lengths() == (1, 0)  # visible 200 ms is newer than the used one: kept


def test_jump_threshold_follows_slop_and_can_be_set():
    assert ApproximateTimeSynchronizer(2, 5, 0.02).jump_threshold == 1.0
    assert ApproximateTimeSynchronizer(2, 5, 0.5).jump_threshold == 5.0  # 10 * slop
    assert ApproximateTimeSynchronizer(2, 5, 0.02, jump_threshold=0.25).jump_threshold == 0.25
    assert ApproximateTimeSynchronizer(2, 5, 0.02, jump_threshold=math.inf).jump_threshold \
        == math.inf
    assert ExactTimeSynchronizer(2, 5).jump_threshold == 1.0
    sync, rec, lines = _named(jump_threshold=0.25)
    sync.add(THERM, Msg(B + 300 * MS))
    sync.add(THERM, Msg(B))  # 0.3 s back > 0.25 s: a candidate...
    assert sync.stats()["stamp_jumps"] == 0
    sync.add(THERM, Msg(B + 10 * MS))  # ...confirmed by the next frame
    assert sync.stats()["stamp_jumps"] == 1 and len(lines) == 1
    for bad in (0, -1.0, "x", True, float("nan")):
        with pytest.raises(ValueError):
            ApproximateTimeSynchronizer(2, 5, 0.02, jump_threshold=bad)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 5, 0.02, names=("visible",))
    with pytest.raises(TypeError):
        ApproximateTimeSynchronizer(2, 5, 0.02, log="not callable")


def test_reset_drops_queues_counts_logs_and_forgets_last_stamps():
    sync, rec, lines = _named()
    sync.add(VIS, Msg(61 * S))
    sync.add(VIS, Msg(62 * S))
    sync.add(THERM, Msg(65 * S))
    assert sync.reset("ROS time jumped back 60.000 s") == 3
    assert lines == ["synchroniser reset (ROS time jumped back 60.000 s): 3 queued messages "
                     "dropped (reset #1)"]
    st = sync.stats()
    assert (st["resets"], st["stamp_jumps"], st["messages_dropped_reset"]) == (1, 0, 3)
    assert st["messages_unmatched"] == 3 and st["messages_queued"] == 0
    # The last stamps are forgotten: 60 s earlier is no stamp jump now, and pairs at once.
    sync.add(VIS, Msg(1 * S))
    assert sync.add(THERM, Msg(1 * S + 2 * MS)) == 1
    assert sync.stats()["resets"] == 1 and len(lines) == 1
    assert sync.reset("again") == 0
    assert lines[-1] == "synchroniser reset (again): 0 queued messages dropped (reset #2)"
    st = sync.stats()
    assert st["messages_received"] == 5 == 2 * st["pairs_matched"] + st["messages_unmatched"]


def test_reset_works_without_a_log_and_from_a_callback():
    sync = ApproximateTimeSynchronizer(2, 5, 0.01)
    sync.register_callback(lambda v, t: sync.reset("from the callback"))
    sync.add(VIS, Msg(S))
    sync.add(VIS, Msg(2 * S))
    assert sync.add(THERM, Msg(S)) == 1  # the callback's reset drops visible 2 s
    assert sync.queue_lengths() == (0, 0) and sync.resets == 1


def test_diagnose_names_the_input_and_the_reason():
    sync, rec, lines = _named()
    assert sync.diagnose().startswith("no visible or thermal messages received")
    sync.add(VIS, Msg(B))
    assert sync.diagnose() == (
        "no thermal messages received (check the topic name and QoS: a reliable subscriber gets "
        "nothing from a best-effort publisher)")
    # Thermal frames 60.2 .. 60.4 s ahead of the newest visible one.
    for k in range(5):
        sync.add(THERM, Msg(B + 60 * S + 200 * MS + k * PERIOD))
    assert sync.diagnose() == ("thermal: 5 queued messages are 60.2 to 60.4 s newer than the "
                               "newest visible one (clock jump or wrong camera clock?)")


def test_diagnose_small_lag_stopped_stream_and_reset():
    sync, rec, lines = _named()
    for k in range(5):  # thermal 999.700 .. 999.900 s
        sync.add(THERM, Msg(B - 300 * MS + k * PERIOD))
    for k in range(5):  # visible 1000.000 .. 1000.200 s: 100 ms or more from every thermal
        sync.add(VIS, Msg(B + k * PERIOD))
    assert rec.calls == []
    assert sync.diagnose() == ("visible stamps lead thermal by 0.300 s (slop 0.020 s, "
                               "queue_size 5): thermal arrives later than the queue holds, or "
                               "the camera clocks are offset")
    sync.add(THERM, Msg(B + 200 * MS + 1 * MS))
    assert rec.stamps() == [(B + 200 * MS, B + 201 * MS)]
    sync.add(VIS, Msg(B + 250 * MS))
    sync.add(VIS, Msg(B + 300 * MS))
    assert sync.diagnose() == ("no thermal messages since the last pair while 2 visible messages "
                               "arrived (thermal stream stopped?)")
    sync.reset("test")
    sync.add(THERM, Msg(B + 350 * MS))
    assert sync.diagnose() == "no visible messages since the synchroniser reset"
    sync.add(VIS, Msg(B + 350 * MS + 5 * MS))  # pairs
    sync.add(VIS, Msg(B + 400 * MS))
    sync.add(THERM, Msg(B + 400 * MS + 5 * MS))  # pairs
    assert len(rec.calls) == 3
    sync.add(VIS, Msg(B + 450 * MS))
    sync.add(THERM, Msg(B + 450 * MS + 30 * MS))  # 30 ms: over the slop, no pair
    assert sync.diagnose() == ("thermal stamps lead visible by 0.030 s (slop 0.020 s, "
                               "queue_size 5): visible arrives later than the queue holds, or "
                               "the camera clocks are offset")


def test_diagnose_exact_mode():
    sync = ExactTimeSynchronizer(2, 5, names=("visible", "thermal"))
    sync.add(VIS, Msg(B))
    sync.add(THERM, Msg(B + 4 * MS))
    assert sync.diagnose() == ("thermal stamps lead visible by 0.004 s (exact synchronisation "
                               "needs identical stamps, queue_size 5): visible arrives later "
                               "than the queue holds, or the camera clocks are offset")


def test_exact_mode_future_stamps_do_not_block():
    rec = Recorder()
    sync = ExactTimeSynchronizer(2, 2, rec, jump_threshold=math.inf)
    sync.add(THERM, Msg(B + 60 * S))
    sync.add(THERM, Msg(B + 60 * S + PERIOD))
    for k in range(5):
        sync.add(VIS, Msg(B + k * PERIOD))
        assert sync.add(THERM, Msg(B + k * PERIOD)) == 1
    assert rec.stamps() == [(B + k * PERIOD, B + k * PERIOD) for k in range(5)]
    # The first valid frame evicted the furthest future frame; one future frame stays.
    assert sync.queue_lengths() == (0, 1) and sync.messages_evicted == 1


def test_out_of_order_arrival_is_newest_first_not_upstream():
    # message_filters' Python class removes only the two messages it used, so its
    # test_approxsync "scrambled" case pairs every message whatever the arrival order. This class
    # is newest-first by design (the node processes only the newest pair): a match also drops
    # every older message, so late older frames are not paired.
    T0 = B
    vis = [Msg(T0 + ms * MS, f"v{ms}") for ms in (0, 300, 600)]
    therm = {ms: Msg(T0 + ms * MS, f"t{ms}") for ms in (0, 300, 600)}
    sync, rec = _approx(slop=0.1, queue_size=3)
    for m in vis:
        sync.add(VIS, m)
    for ms in (600, 0, 300):  # scrambled
        sync.add(THERM, therm[ms])
    # Upstream: 3 pairs. Here: (600, 600); visible 0 and 300 are stale after it; thermal 0 and
    # 300 (0.6 s back: below the 1 s jump threshold) wait without a partner.
    assert [(v.label, t.label) for v, t in rec.calls] == [("v600", "t600")]
    st = sync.stats()
    assert (st["messages_dropped_stale"], st["messages_queued"]) == (2, 2)
    assert sync.queue_lengths() == (0, 2)
    # In stamp order (what cameras deliver) both classes pair everything.
    sync, rec = _approx(slop=0.1, queue_size=3)
    for m in vis:
        sync.add(VIS, m)
    for ms in (0, 300, 600):
        sync.add(THERM, therm[ms])
    assert [(v.label, t.label) for v, t in rec.calls] == [("v0", "t0"), ("v300", "t300"),
                                                         ("v600", "t600")]
    assert sync.messages_unmatched == 0
