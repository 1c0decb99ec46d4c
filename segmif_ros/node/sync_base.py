"""Bookkeeping shared by the synchronisers of :mod:`.sync` (no rclpy): queues, counters,
eviction, backward stamp jumps, reset and diagnosis. Import from :mod:`.sync` (rules, threads).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["stamp_to_ns"]

_NS_PER_S = 1_000_000_000
_MIN_AUTO_JUMP_NS = _NS_PER_S  # automatic jump threshold: max(1 s, 10 * slop)


def stamp_to_ns(stamp: Any) -> int:
    """Convert a ``builtin_interfaces/Time``-like stamp to integer nanoseconds.

    :param stamp: any object with integer attributes ``sec`` and ``nanosec``
        (``builtin_interfaces.msg.Time`` or a stand-in).
    :returns: ``sec * 1_000_000_000 + nanosec`` as a Python ``int`` (nanoseconds).
    :raises TypeError: if ``stamp`` lacks ``sec``/``nanosec`` or they are not integers.
    """
    try:
        sec = stamp.sec
        nanosec = stamp.nanosec
    except AttributeError as exc:
        raise TypeError(
            f"stamp must have integer attributes 'sec' and 'nanosec', got {type(stamp).__name__}"
        ) from exc
    if not _is_int(sec) or not _is_int(nanosec):
        raise TypeError(
            f"stamp.sec and stamp.nanosec must be integers, got {type(sec).__name__} and "
            f"{type(nanosec).__name__}"
        )
    return int(sec) * _NS_PER_S + int(nanosec)


def _is_int(value: Any) -> bool:
    # bool is an int subclass but never a sensible stamp; numpy integers expose __index__.
    if isinstance(value, bool):
        return False
    try:
        value.__index__()
    except (AttributeError, TypeError):
        return False
    return True


def _seconds(ns: int) -> str:
    return f"{ns / _NS_PER_S:.3f} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class _SynchronizerBase:
    """State and bookkeeping shared by the exact and approximate policies.

    :param num_inputs: number of inputs, integer >= 2.
    :param queue_size: messages kept per input, integer >= 1.
    :param callback: optional first callback, see :meth:`register_callback`.
    :param names: one name per input for log lines and :meth:`diagnose` (default ``input 0``,
        ``input 1``, ...).
    :param jump_threshold: seconds (float > 0); stamps of an input going back by more than this
        are a backward time jump, which resets that input's queue (see :meth:`add`). ``None``:
        automatic (1 s, or ``10 * slop`` if larger); ``math.inf`` disables the detection.
    :param log: optional ``log(line: str)`` called for every reset (e.g. a ROS logger's
        ``warning``); called outside the lock.
    :raises ValueError: for ``num_inputs < 2``, ``queue_size < 1``, a wrong number of names or a
        ``jump_threshold`` that is not a number > 0.
    :raises TypeError: if ``log`` is given and not callable.
    """

    _default_jump_ns = _MIN_AUTO_JUMP_NS

    def __init__(self, num_inputs: int, queue_size: int,
                 callback: Optional[Callable[..., Any]] = None, *,
                 names: Optional[Sequence[str]] = None,
                 jump_threshold: Optional[float] = None,
                 log: Optional[Callable[[str], Any]] = None) -> None:
        if not _is_int(num_inputs) or int(num_inputs) < 2:
            raise ValueError(f"num_inputs must be an integer >= 2, got {num_inputs!r}")
        if not _is_int(queue_size) or int(queue_size) < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        self._num_inputs = int(num_inputs)
        self._queue_size = int(queue_size)
        if names is None:
            names = [f"input {i}" for i in range(self._num_inputs)]
        self._names = tuple(str(n) for n in names)
        if len(self._names) != self._num_inputs:
            raise ValueError(f"names must give {self._num_inputs} names, got {len(self._names)}")
        if jump_threshold is None:
            self._jump_ns: Optional[int] = self._default_jump_ns
        else:
            try:
                jump_f = math.nan if isinstance(jump_threshold, bool) else float(jump_threshold)
            except (TypeError, ValueError):
                jump_f = math.nan
            if not jump_f > 0.0:
                raise ValueError(f"jump_threshold must be seconds > 0, got {jump_threshold!r}")
            self._jump_ns = None if math.isinf(jump_f) else max(1, int(round(jump_f * _NS_PER_S)))
        if log is not None and not callable(log):
            raise TypeError(f"log must be callable, got {type(log).__name__}")
        self._log = log
        self._lock = threading.Lock()
        # One dict per input: stamp (int ns) -> message.
        self._queues: List[Dict[int, Any]] = [{} for _ in range(self._num_inputs)]
        # Stamp of the last message added per input (None: nothing since start or reset), and
        # messages added per input since start and since the last match.
        self._last_ns: List[Optional[int]] = [None] * self._num_inputs
        # Per input, an unconfirmed backward jump: (stamp before it, first stamp after it).
        self._jump_from: List[Optional[Tuple[int, int]]] = [None] * self._num_inputs
        self._received = [0] * self._num_inputs
        self._since_match = [0] * self._num_inputs
        self._callbacks: List[Callable[..., Any]] = []
        self.messages_received = 0
        self.pairs_matched = 0
        self.messages_evicted = 0
        self.messages_dropped_stale = 0
        self.messages_replaced = 0
        self.messages_dropped_reset = 0
        self.resets = 0
        self.stamp_jumps = 0
        if callback is not None:
            self.register_callback(callback)

    # ----------------------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        """Number of input streams (int >= 2)."""
        return self._num_inputs

    @property
    def queue_size(self) -> int:
        """Maximum number of messages kept per input (int >= 1)."""
        return self._queue_size

    @property
    def names(self) -> Tuple[str, ...]:
        """Input names used in log lines and :meth:`diagnose` (tuple of N str)."""
        return self._names

    @property
    def jump_threshold(self) -> float:
        """Backward stamp jump that resets an input's queue, seconds (``math.inf``: off)."""
        return math.inf if self._jump_ns is None else self._jump_ns / _NS_PER_S

    @property
    def messages_unmatched(self) -> int:
        """Messages removed from a queue without ever being part of a match (int >= 0).

        Sum of ``messages_evicted`` (pushed out by ``queue_size``), ``messages_dropped_stale``
        (at or before a stamp used in a match, approximate policy only, or removed by
        :meth:`clear`), ``messages_replaced`` (replaced by a later message of the same input
        with the same stamp, as in ``message_filters``) and ``messages_dropped_reset``.
        """
        return (self.messages_evicted + self.messages_dropped_stale + self.messages_replaced
                + self.messages_dropped_reset)

    def register_callback(self, callback: Callable[..., Any]) -> None:
        """Add a callback called as ``callback(msg_0, ..., msg_{N-1})`` for every match.

        Callbacks are called in registration order, with the messages in input-index order.
        An exception raised by a callback propagates out of the :meth:`add` call that produced
        the match (the synchroniser state is already updated by then); later callbacks for that
        match are then not called.

        :raises TypeError: if ``callback`` is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._lock:
            self._callbacks.append(callback)

    def queue_lengths(self) -> Tuple[int, ...]:
        """Number of messages currently waiting in each input queue (tuple of N ints)."""
        with self._lock:
            return tuple(len(q) for q in self._queues)

    def stats(self) -> Dict[str, int]:
        """Snapshot of the counters as a dict of ints.

        Keys: ``messages_received`` (calls to :meth:`add`), ``pairs_matched`` (callback
        invocations, i.e. matched tuples), ``messages_unmatched`` (see the property of that name)
        and its parts ``messages_evicted``, ``messages_dropped_stale``, ``messages_replaced``,
        ``messages_dropped_reset``, plus ``messages_queued`` (currently waiting in the queues),
        ``resets`` (explicit :meth:`reset` calls and detected jumps) and ``stamp_jumps`` (the
        detected backward stamp jumps among them). At any time ``messages_received ==
        num_inputs * pairs_matched + messages_unmatched + messages_queued``.
        """
        keys = ("messages_received", "pairs_matched", "messages_unmatched", "messages_evicted",
                "messages_dropped_stale", "messages_replaced", "messages_dropped_reset")
        with self._lock:
            stats = {key: getattr(self, key) for key in keys}
            stats.update(messages_queued=sum(len(q) for q in self._queues), resets=self.resets,
                         stamp_jumps=self.stamp_jumps)
            return stats

    def clear(self) -> None:
        """Drop every queued message silently (counted in ``messages_dropped_stale``; no log
        line, no reset counted: use :meth:`reset` for a clock jump)."""
        with self._lock:
            for queue in self._queues:
                self.messages_dropped_stale += len(queue)
                queue.clear()

    def reset(self, reason: str) -> int:
        """Forget all queued messages and the last stamp of every input, e.g. after ROS time
        jumped back (bag loop, simulation restart).

        The dropped messages count as ``messages_dropped_reset``; ``resets`` is incremented and
        the ``log`` callable (if any) gets ``"synchroniser reset (<reason>): <n> queued messages
        dropped (reset #<resets>)"``.

        :param reason: why, for the log line (str).
        :returns: the number of queued messages dropped (int >= 0).
        """
        with self._lock:
            dropped = sum(len(q) for q in self._queues)
            for queue in self._queues:
                queue.clear()
            self._last_ns = [None] * self._num_inputs
            self._jump_from = [None] * self._num_inputs
            self._since_match = [0] * self._num_inputs
            self.messages_dropped_reset += dropped
            self.resets += 1
            line = (f"synchroniser reset ({reason}): {_plural(dropped, 'queued message')} "
                    f"dropped (reset #{self.resets})")
        if self._log is not None:
            self._log(line)
        return dropped

    def add(self, index: int, msg: Any, stamp_ns: Optional[int] = None) -> int:
        """Feed one message of input ``index``; fire the callbacks if it completes a match.

        Backward stamp jumps: a stamp older than the previous stamp of the same input by more
        than ``jump_threshold`` is a candidate jump; it is confirmed when the next message of
        that input is also that far before the pre-jump stamp and within ``jump_threshold`` of
        the jumped one (a single badly stamped message is not a jump). On confirmation the
        messages of *this input's* queue stamped more than ``jump_threshold`` after ``stamp_ns``
        are dropped (they belong to the time before the jump or to a wrong clock), ``resets``
        and ``stamp_jumps`` are incremented and the reset is logged. Other queues are left
        alone, so a clock jump seen by every input is one reset per input, on each input's
        second message after the jump. The messages after a jump pair normally from the first.

        If the queue then holds more than ``queue_size`` messages, one other message is
        evicted: the one furthest from ``stamp_ns`` if some are more than ``jump_threshold``
        (the automatic value if detection is off) away from it (ties: the older), else the
        oldest. The new message is never evicted, so
        whatever its queue held before (future stamps, a stale unmatched frame), every new
        message of an input gets its chance to match.

        :param index: input number, ``0 <= index < num_inputs`` (segmif node: 0 visible,
            1 thermal).
        :param msg: the message; stored and passed to the callbacks as is (not copied).
        :param stamp_ns: stamp in integer nanoseconds; default ``msg.header.stamp`` converted
            with :func:`stamp_to_ns`.
        :returns: the number of matches fired by this call (0 or 1).
        :raises ValueError: if ``index`` is out of range.
        :raises TypeError: if ``index``/``stamp_ns`` is not an integer, or the message has no
            usable ``header.stamp`` and ``stamp_ns`` is not given.
        """
        if not _is_int(index):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        index = int(index)
        if not 0 <= index < self._num_inputs:
            raise ValueError(f"index must be in [0, {self._num_inputs - 1}], got {index}")
        if stamp_ns is None:
            try:
                stamp = msg.header.stamp
            except AttributeError as exc:
                raise TypeError("message has no header.stamp; pass stamp_ns explicitly") from exc
            stamp_ns = stamp_to_ns(stamp)
        elif not _is_int(stamp_ns):
            raise TypeError(f"stamp_ns must be an integer (ns), got {type(stamp_ns).__name__}")
        stamp_ns = int(stamp_ns)

        line = None
        with self._lock:
            self.messages_received += 1
            self._received[index] += 1
            self._since_match[index] += 1
            line = self._check_jump(index, stamp_ns) if self._jump_ns is not None else None
            self._last_ns[index] = stamp_ns
            queue = self._queues[index]
            if stamp_ns in queue:
                # Same behaviour as message_filters: the newer message replaces the older one.
                self.messages_replaced += 1
            queue[stamp_ns] = msg
            if len(queue) > self._queue_size:
                del queue[self._victim(queue, stamp_ns)]
                self.messages_evicted += 1
            matched = self._match(index, stamp_ns)
            if matched is not None:
                self.pairs_matched += 1
                self._since_match = [0] * self._num_inputs
            callbacks = list(self._callbacks)
        if line is not None and self._log is not None:
            self._log(line)
        if matched is None:
            return 0
        for callback in callbacks:
            callback(*matched)
        return 1

    # ---------------------------------------------------------------------------- internals
    def _victim(self, queue: Dict[int, Any], stamp_ns: int) -> int:
        # The stamp to evict from an overflowing queue: never the new one; the furthest outlier
        # (more than the jump threshold away from the new stamp, in either direction) if any,
        # else the oldest.
        others = [s for s in queue if s != stamp_ns]
        far = self._jump_ns if self._jump_ns is not None else self._default_jump_ns
        outliers = [s for s in others if abs(s - stamp_ns) > far]
        if outliers:
            return max(outliers, key=lambda s: (abs(s - stamp_ns), -s))
        return min(others)

    def _check_jump(self, index: int, stamp_ns: int) -> Optional[str]:
        # Called with the lock held, before _last_ns is updated; returns a log line on a reset.
        thr, last = self._jump_ns, self._last_ns[index]
        pending, self._jump_from[index] = self._jump_from[index], None
        if pending is not None:
            before, first = pending
            if before - stamp_ns > thr:
                if abs(stamp_ns - last) <= thr:  # two messages agree: the clock did jump
                    return self._jump_reset(index, before, first, stamp_ns)
                self._jump_from[index] = (before, stamp_ns)  # still back, but not consistent
            return None  # otherwise back near the old time: the message before was an outlier
        if last is not None and last - stamp_ns > thr:
            self._jump_from[index] = (last, stamp_ns)
        return None

    def _jump_reset(self, index: int, before: int, first: int, stamp_ns: int) -> str:
        # Only this input's queue is touched: the other inputs' waiting frames are not at fault.
        limit = stamp_ns + self._jump_ns
        queue = self._queues[index]
        ahead = [s for s in queue if s > limit]
        for s in ahead:
            del queue[s]
        self.messages_dropped_reset += len(ahead)
        self.resets += 1
        self.stamp_jumps += 1
        name = self._names[index]
        return (f"{name} stamp jumped back {_seconds(before - first)} (from {_seconds(before)} to "
                f"{_seconds(first)}; clock jump, bag loop or wrong camera clock?): {name} "
                f"queue reset, {_plural(len(ahead), 'queued message')} stamped after "
                f"{_seconds(limit)} dropped (reset #{self.resets})")

    def _tolerance(self) -> Tuple[int, str]:
        """(largest stamp difference that can pair, in ns; its description)."""
        return 0, "exact synchronisation needs identical stamps"

    def diagnose(self) -> str:
        """One line saying which input keeps the synchroniser from matching, and why.

        For a "no pair for N s" warning. In order: an input that never received a message or
        none since :meth:`reset`; none since the last match while others have some; the input
        whose newest stamp leads another's by ``jump_threshold`` or more (clock jump or wrong
        camera clock), or by more than the slop (latency beyond ``queue_size``, clock offset).

        :returns: the explanation (str, no trailing period).
        """
        with self._lock:
            names = self._names
            never = [names[i] for i, n in enumerate(self._received) if n == 0]
            if never:
                return (f"no {' or '.join(never)} messages received (check the topic name and "
                        "QoS: a reliable subscriber gets nothing from a best-effort publisher)")
            unknown = [names[i] for i, s in enumerate(self._last_ns) if s is None]
            if unknown:
                return f"no {' or '.join(unknown)} messages since the synchroniser reset"
            idle = [names[i] for i, n in enumerate(self._since_match) if n == 0]
            if idle and len(idle) < self._num_inputs:
                busy = [f"{n} {names[i]}" for i, n in enumerate(self._since_match) if n]
                return (f"no {' or '.join(idle)} messages since the last pair while "
                        f"{', '.join(busy)} messages arrived ({' or '.join(idle)} stream "
                        "stopped?)")
            known = [(s, i) for i, s in enumerate(self._last_ns)]
            (lo_ns, lo), (hi_ns, hi) = min(known), max(known)
            gap = hi_ns - lo_ns
            tol_ns, tol_text = self._tolerance()
            if gap <= tol_ns:
                return (f"the newest stamps of all inputs are within {_seconds(gap)} of each "
                        f"other ({tol_text}): no stamp problem seen")
            ahead = sorted(s - lo_ns for s in self._queues[hi] if s - lo_ns > tol_ns)
            jump_ns = self._jump_ns if self._jump_ns is not None else self._default_jump_ns
            if gap >= jump_ns and ahead:
                lo_s, hi_s = f"{ahead[0] / _NS_PER_S:.1f}", f"{ahead[-1] / _NS_PER_S:.1f}"
                span = lo_s if lo_s == hi_s else f"{lo_s} to {hi_s}"
                verb = "is" if len(ahead) == 1 else "are"
                return (f"{names[hi]}: {_plural(len(ahead), 'queued message')} {verb} {span} s "
                        f"newer than the newest {names[lo]} one (clock jump or wrong camera "
                        "clock?)")
            return (f"{names[hi]} stamps lead {names[lo]} by {_seconds(gap)} ({tol_text}, "
                    f"queue_size {self._queue_size}): {names[lo]} arrives later than the queue "
                    "holds, or the camera clocks are offset")

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Any]]:
        raise NotImplementedError
