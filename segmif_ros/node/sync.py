"""Time synchronisation of N stamped message streams, without a ROS graph.

``message_filters`` cannot be installed in this environment, so this module provides the two
policies ROS users know from its Python API. The matching rules (which stamps are candidates, when
a tuple fires) are those of ``message_filters``; what happens to the queues differs on purpose,
see :class:`ApproximateTimeSynchronizer` ("Differences from message_filters"):

* :class:`ApproximateTimeSynchronizer` -- like the Python
  ``message_filters.ApproximateTimeSynchronizer`` (not the C++ "ApproximateTime" adaptive
  algorithm), but newest-first: a match also drops the older messages, because the segmif node
  only ever processes the newest pair (upstream removes only the messages it used).
* :class:`ExactTimeSynchronizer` -- ``message_filters.TimeSynchronizer``: stamps must be identical.

The synchroniser is not connected to subscribers: the owner feeds it with :meth:`add` (segmif
node: input 0 = visible, input 1 = thermal) and it calls the registered callbacks with one message
per input, in input order. It does not import rclpy, so it is unit tested without a ROS graph.

Robustness (both policies): a queue overflow never evicts the message just added, so stale or
future-stamped messages cannot block an input; a stamp that jumps back by more than
``jump_threshold`` on an input resets that input's queue; :meth:`reset` clears every queue (for the
owner, on a ROS-time jump); :meth:`diagnose` explains in one line why nothing pairs.

All stamps are integer nanoseconds (``sec * 1_000_000_000 + nanosec``), so there is no floating
point rounding at the slop boundary.

Thread safety: every public method may be called from several threads (e.g. the callbacks of a
``MultiThreadedExecutor``). State is updated under an internal lock; the match callbacks and the
``log`` callable are called *after* the lock is released, in the calling thread, so a slow
callback (inference) does not block the other inputs and a callback may itself call :meth:`add`,
:meth:`stats` or :meth:`reset` without deadlocking.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .sync_base import _MIN_AUTO_JUMP_NS, _NS_PER_S, _SynchronizerBase, _seconds, stamp_to_ns

__all__ = [
    "ApproximateTimeSynchronizer",
    "ExactTimeSynchronizer",
    "stamp_to_ns",
]


class ApproximateTimeSynchronizer(_SynchronizerBase):
    """Approximate-time synchroniser: ``message_filters``' Python matching rules, newest-first.

    Every input keeps a queue ``{stamp_ns: msg}`` of at most ``queue_size`` messages (on
    overflow the oldest, or an outlier far from the new message, is evicted, never the new one;
    see :meth:`add`). On each new message with stamp ``t`` on input ``i``:

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

    Differences from ``message_filters.ApproximateTimeSynchronizer`` (Python), by design:

    * **Newest-first** (step 3): upstream removes only the messages it used and keeps older
      ones for a later match; here a match also drops every older message. The segmif node
      processes only the newest pair, and a frame older than a pair already matched is of no
      use to it. So messages that arrive out of order are not all paired: with visible stamps
      0, 0.3, 0.6 s queued and thermal 0.6, 0, 0.3 s arriving (slop 0.1 s), upstream fires three
      pairs, this class one (0.6 s; visible 0 and 0.3 s are then stale, thermal 0 and 0.3 s wait
      without partner). Upstream's
      test_approxsync "scrambled" case therefore does not hold here; in-order streams (what
      cameras deliver) pair the same.
    * **Overflow**: upstream deletes the oldest stamp, which may be the new message itself, so
      ``queue_size`` messages stamped in the future block an input until the clock catches up;
      here the new message is always kept.
    * **Backward stamp jumps** reset that input's queue (``jump_threshold``, :meth:`add`), and
      :meth:`reset`, :meth:`diagnose` and the counters of :meth:`stats` have no upstream
      counterpart. Ties in step 2 go to the earlier stamp (upstream: arrival order).

    :param num_inputs: number of inputs, integer >= 2.
    :param queue_size: messages kept per input, integer >= 1.
    :param slop: maximum stamp spread in seconds (float > 0, finite); a tuple matches only if
        its spread is strictly less than ``slop``. Converted to integer nanoseconds with
        ``round(slop * 1e9)``.
    :param callback: optional first callback, see :meth:`register_callback`.
    :param names, jump_threshold, log: keyword-only, see :class:`_SynchronizerBase`; the
        automatic ``jump_threshold`` is ``max(1 s, 10 * slop)``.
    :raises ValueError: for ``num_inputs < 2``, ``queue_size < 1``, ``slop`` not a finite
        number > 0 (also if it rounds to 0 ns), or a bad ``names``/``jump_threshold``.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float,
                 callback: Optional[Callable[..., Any]] = None, **kwargs: Any) -> None:
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
        self._slop_ns = slop_ns
        self._default_jump_ns = max(_MIN_AUTO_JUMP_NS, 10 * slop_ns)
        super().__init__(num_inputs, queue_size, callback, **kwargs)

    @property
    def slop(self) -> float:
        """Slop in seconds (float > 0)."""
        return self._slop_ns / _NS_PER_S

    @property
    def slop_ns(self) -> int:
        """Slop in integer nanoseconds (> 0)."""
        return self._slop_ns

    def _tolerance(self) -> Tuple[int, str]:
        return self._slop_ns - 1, f"slop {_seconds(self._slop_ns)}"

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Any]]:
        # Called with the lock held; the new message is always queued (see add).
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

    Every input keeps a queue ``{stamp_ns: msg}`` of at most ``queue_size`` messages (on
    overflow the oldest, or an outlier far from the new message, is evicted, never the new one,
    see :meth:`add`; upstream evicts the oldest stamp, possibly the new message). Whenever a
    stamp is present in *all* queues the callbacks are called with those messages and that stamp
    is removed from every queue.
    Older unmatched messages are *not* dropped on a match (as in ``message_filters``' Python
    class); they stay until evicted, so a late partner can still complete them. Backward stamp
    jumps, :meth:`reset` and :meth:`diagnose` work as for :class:`ApproximateTimeSynchronizer`.

    :param num_inputs: number of inputs, integer >= 2.
    :param queue_size: messages kept per input, integer >= 1.
    :param callback: optional first callback, see :meth:`register_callback`.
    :param names, jump_threshold, log: keyword-only, see :class:`_SynchronizerBase` (automatic
        ``jump_threshold``: 1 s).
    :raises ValueError: for ``num_inputs < 2``, ``queue_size < 1`` or a bad
        ``names``/``jump_threshold``.
    """

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Any]]:
        # Only the new stamp can have completed a tuple: every other common stamp would have
        # been matched when its last message arrived.
        if not all(stamp_ns in queue for queue in self._queues):
            return None
        return [queue.pop(stamp_ns) for queue in self._queues]
