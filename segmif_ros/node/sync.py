"""Time synchronisation of N stamped message streams, without a ROS graph.

``message_filters`` cannot be installed in this environment, so this module re-implements the two
policies ROS users know from its Python API, with the same matching rules:

* :class:`ApproximateTimeSynchronizer` -- the Python ``message_filters.ApproximateTimeSynchronizer``
  policy (not the C++ "ApproximateTime" adaptive algorithm).
* :class:`ExactTimeSynchronizer` -- ``message_filters.TimeSynchronizer``: stamps must be identical.

Unlike ``message_filters`` the synchroniser is not connected to subscribers: the owner feeds it with
:meth:`add` (for the segmif node: input 0 = visible, input 1 = thermal) and it calls the registered
callbacks with one message per input, in input order. It does not import rclpy, so it can be unit
tested without a ROS graph.

All stamps are handled as integer nanoseconds (``sec * 1_000_000_000 + nanosec``), so there is no
floating point rounding at the slop boundary.

Thread safety: :meth:`add`, :meth:`clear`, :meth:`stats` and :meth:`register_callback` may be called
from several threads (e.g. the callbacks of a ``MultiThreadedExecutor``). The queues are updated
under an internal lock; the user callbacks are called *after* the lock is released, in the thread
that called :meth:`add`, so a slow callback (inference) does not block the other inputs and a
callback may itself call :meth:`add` or :meth:`stats` without deadlocking.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "ApproximateTimeSynchronizer",
    "ExactTimeSynchronizer",
    "stamp_to_ns",
]

_NS_PER_S = 1_000_000_000


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


class _SynchronizerBase:
    """State and bookkeeping shared by the exact and approximate policies."""

    def __init__(self, num_inputs: int, queue_size: int,
                 callback: Optional[Callable[..., Any]] = None) -> None:
        if not _is_int(num_inputs) or int(num_inputs) < 2:
            raise ValueError(f"num_inputs must be an integer >= 2, got {num_inputs!r}")
        if not _is_int(queue_size) or int(queue_size) < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        self._num_inputs = int(num_inputs)
        self._queue_size = int(queue_size)
        self._lock = threading.Lock()
        # One dict per input: stamp (int ns) -> message.
        self._queues: List[Dict[int, Any]] = [{} for _ in range(self._num_inputs)]
        self._callbacks: List[Callable[..., Any]] = []
        self.messages_received = 0
        self.pairs_matched = 0
        self.messages_evicted = 0
        self.messages_dropped_stale = 0
        self.messages_replaced = 0
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
    def messages_unmatched(self) -> int:
        """Messages removed from a queue without ever being part of a match (int >= 0).

        Sum of ``messages_evicted`` (pushed out by ``queue_size``), ``messages_dropped_stale``
        (older than or equal to a stamp used in a match, approximate policy only, or removed by
        :meth:`clear`) and ``messages_replaced`` (a later message on the same input had the very
        same stamp and replaced it, as in ``message_filters``).
        """
        return self.messages_evicted + self.messages_dropped_stale + self.messages_replaced

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
        plus ``messages_queued`` (currently waiting in the queues). At any time
        ``messages_received == num_inputs * pairs_matched + messages_unmatched + messages_queued``.
        """
        with self._lock:
            return {
                "messages_received": self.messages_received,
                "pairs_matched": self.pairs_matched,
                "messages_unmatched": self.messages_unmatched,
                "messages_evicted": self.messages_evicted,
                "messages_dropped_stale": self.messages_dropped_stale,
                "messages_replaced": self.messages_replaced,
                "messages_queued": sum(len(q) for q in self._queues),
            }

    def clear(self) -> None:
        """Drop every queued message (e.g. after a clock jump); they count as unmatched
        (``messages_dropped_stale``). Counters are otherwise kept."""
        with self._lock:
            for queue in self._queues:
                self.messages_dropped_stale += len(queue)
                queue.clear()

    def add(self, index: int, msg: Any, stamp_ns: Optional[int] = None) -> int:
        """Feed one message of input ``index``; fire the callbacks if it completes a match.

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
                raise TypeError(
                    "message has no header.stamp; pass stamp_ns explicitly"
                ) from exc
            stamp_ns = stamp_to_ns(stamp)
        elif not _is_int(stamp_ns):
            raise TypeError(f"stamp_ns must be an integer (ns), got {type(stamp_ns).__name__}")
        stamp_ns = int(stamp_ns)

        with self._lock:
            self.messages_received += 1
            queue = self._queues[index]
            if stamp_ns in queue:
                # Same behaviour as message_filters: the newer message replaces the older one.
                self.messages_replaced += 1
            queue[stamp_ns] = msg
            while len(queue) > self._queue_size:
                del queue[min(queue)]
                self.messages_evicted += 1
            matched = self._match(index, stamp_ns)
            if matched is not None:
                self.pairs_matched += 1
            callbacks = list(self._callbacks)
        if matched is None:
            return 0
        for callback in callbacks:
            callback(*matched)
        return 1

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Any]]:
        raise NotImplementedError


class ApproximateTimeSynchronizer(_SynchronizerBase):
    """Approximate-time synchroniser with the rules of ``message_filters``' Python class.

    Every input keeps a queue ``{stamp_ns: msg}`` of at most ``queue_size`` messages; when a
    message arrives and its queue overflows, the *oldest stamp* of that queue is evicted (which
    may be the new message itself if it is older than everything queued). On each new message
    with stamp ``t`` on input ``i``:

    1. for every other input, the candidates are the queued stamps ``s`` with
       ``|s - t| <= slop`` (inclusive, as in ``message_filters``); if some input has no
       candidate, nothing happens;
    2. each input's candidates are sorted closest-to-``t`` first (ties: the earlier stamp
       first), and combinations are tried in ``itertools.product`` order of those lists;
    3. the first combination whose spread ``max(stamps) - min(stamps)`` is **strictly less**
       than ``slop`` (as in ``message_filters``) is used: the callbacks are called with those
       messages, and every queue ``j`` drops all messages with stamp ``<=`` the stamp used from
       input ``j`` (the used one included). Messages dropped this way without being used count
       as ``messages_dropped_stale``.

    Consequently two messages whose stamps differ by ``slop`` or more are never paired.
    Because the spread must be strictly below ``slop``, ``slop`` must be ``> 0`` (with
    ``slop == 0`` nothing could ever match; use :class:`ExactTimeSynchronizer` instead).

    :param num_inputs: number of inputs, integer >= 2.
    :param queue_size: messages kept per input, integer >= 1.
    :param slop: maximum stamp spread in seconds (float > 0, finite); a tuple matches only if
        its spread is strictly less than ``slop``. Converted to integer nanoseconds with
        ``round(slop * 1e9)``.
    :param callback: optional first callback, see :meth:`register_callback`.
    :raises ValueError: for ``num_inputs < 2``, ``queue_size < 1``, or ``slop`` not a finite
        number > 0 (also if it rounds to 0 ns).
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float,
                 callback: Optional[Callable[..., Any]] = None) -> None:
        try:
            slop_f = float(slop)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"slop must be a number of seconds > 0, got {slop!r}") from exc
        if isinstance(slop, bool) or not slop_f > 0.0 or slop_f == float("inf"):
            raise ValueError(
                f"slop must be a finite number of seconds > 0, got {slop!r} (pairs need a stamp "
                "spread strictly below slop; use ExactTimeSynchronizer for identical stamps)"
            )
        slop_ns = int(round(slop_f * _NS_PER_S))
        if slop_ns <= 0:
            raise ValueError(f"slop must be at least 1 ns, got {slop!r} s")
        super().__init__(num_inputs, queue_size, callback)
        self._slop_ns = slop_ns

    @property
    def slop(self) -> float:
        """Slop in seconds (float > 0)."""
        return self._slop_ns / _NS_PER_S

    @property
    def slop_ns(self) -> int:
        """Slop in integer nanoseconds (> 0)."""
        return self._slop_ns

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Any]]:
        # Called with the lock held.
        if stamp_ns not in self._queues[index]:
            return None  # the new message was itself the oldest and got evicted
        slop = self._slop_ns
        candidates: List[Sequence[int]] = []
        for j, queue in enumerate(self._queues):
            if j == index:
                candidates.append((stamp_ns,))
                continue
            near = [s for s in queue if abs(s - stamp_ns) <= slop]
            if not near:
                return None
            near.sort(key=lambda s: (abs(s - stamp_ns), s))
            candidates.append(near)
        for combo in itertools.product(*candidates):
            if max(combo) - min(combo) < slop:
                return self._take(combo)
        return None

    def _take(self, combo: Sequence[int]) -> List[Any]:
        msgs = []
        for queue, used in zip(self._queues, combo):
            msgs.append(queue[used])
            old = [s for s in queue if s <= used]
            for s in old:
                del queue[s]
            self.messages_dropped_stale += len(old) - 1  # the used one is matched, not stale
        return msgs


class ExactTimeSynchronizer(_SynchronizerBase):
    """Exact-time synchroniser with the rules of ``message_filters.TimeSynchronizer``.

    Every input keeps a queue ``{stamp_ns: msg}`` of at most ``queue_size`` messages (oldest
    stamp evicted on overflow). Whenever a stamp is present in *all* queues the callbacks are
    called with those messages and that stamp is removed from every queue. Older unmatched
    messages are *not* dropped on a match (as in ``message_filters``' Python class); they stay
    until evicted by ``queue_size``, so a late partner can still complete them.

    :param num_inputs: number of inputs, integer >= 2.
    :param queue_size: messages kept per input, integer >= 1.
    :param callback: optional first callback, see :meth:`register_callback`.
    :raises ValueError: for ``num_inputs < 2`` or ``queue_size < 1``.
    """

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Any]]:
        # Only the new stamp can have completed a tuple: every other common stamp would have
        # been matched when its last message arrived.
        if not all(stamp_ns in queue for queue in self._queues):
            return None
        return [queue.pop(stamp_ns) for queue in self._queues]
