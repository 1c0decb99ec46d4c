"""The health of segmif_node: thread-safe counters, input rates, stream loss and per-key
throttles for log lines.

:class:`Health` is updated from the executor thread (subscription callbacks, timers) and from the
inference worker, so every read and write goes through one lock; :meth:`Health.snapshot` returns
a consistent copy for the diagnostics and segmentation/info. :class:`Throttle` rate-limits log
lines per key (one throttle per rejection reason, per stream, ...), which rclpy's
``throttle_duration_sec`` cannot do (it throttles per call site, whatever the text).

No rclpy here: times are ``time.monotonic()`` seconds (or an injected clock), stamps integer ns.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Dict, Optional

#: input streams, by index (the synchroniser's input order)
STREAMS = ("visible", "thermal")

#: rejection reasons (keys of ``rejected`` in :meth:`Health.snapshot`) and what they mean
REJECT_REASONS = {
    "encoding": "unsupported image encoding",
    "malformed": "zero size, or data shorter than step x height",
    "step": "row step smaller than width x bytes per pixel of the encoding",
    "undecodable": "compressed data OpenCV cannot decode (compressed input)",
    "channels": "decoded image with the wrong number of channels (compressed input)",
    "depth": "decoded image of the wrong bit depth (compressed input)",
    "size_mismatch": "thermal size differs from the visible one with the identity homography",
    "invalid": "image the conversion or registration refused",
}

COUNTERS = ("received_visible", "received_thermal", "pairs_matched", "pairs_processed",
            "pairs_dropped", "messages_rejected", "processing_errors", "frames_fallback")


class Throttle:
    """Allow one event per ``period_s`` seconds and key; count the ones held back.

    ``throttle(key)`` returns None while the key is throttled, else the number of events of that
    key suppressed since the last one allowed (int >= 0). Thread safe.
    """

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period_s = float(period_s)
        self._clock = clock
        self._last: Dict[str, float] = {}
        self._held: Dict[str, int] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, key: str, period_s: Optional[float] = None) -> Optional[int]:
        now = self._clock()
        period = self.period_s if period_s is None else float(period_s)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < period:
                self._held[key] += 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


class Health:
    """Counters and input-stream state of the node (see the module docstring).

    Args:
        stream_timeout_s: a stream with no message for longer than this (s) is *lost*.
        error_threshold: consecutive processing errors that make the processing *failing*.
        window_s: input rates are averaged over this window (s).
        recover_messages: a lost stream is *back* (:meth:`stream_changes`) after this many
            consecutive messages, each within ``stream_timeout_s`` of the one before.
        clock: monotonic time source in seconds.
    """

    def __init__(self, stream_timeout_s: float = 1.0, error_threshold: int = 3,
                 window_s: float = 5.0, recover_messages: int = 3,
                 clock: Callable[[], float] = time.monotonic):
        self.stream_timeout_s = float(stream_timeout_s)
        self.recover_messages = int(recover_messages)
        self.error_threshold = int(error_threshold)
        self.window_s = float(window_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._rejected = collections.Counter()
        self._arrivals = [collections.deque(maxlen=1000) for _ in STREAMS]
        self._newest_stamp: list = [None] * len(STREAMS)
        self._timings = collections.deque(maxlen=30)  # (inference_ms, processing_ms)
        self._consecutive_errors = 0
        self.start()

    def start(self) -> None:
        """Begin watching (activation): streams count as silent from now, not from the past."""
        with self._lock:
            now = self._clock()
            self._since = now
            self._last_arrival = [None] * len(STREAMS)
            self._last_pair = now
            self._down = [False] * len(STREAMS)  # reported lost (stream_changes)
            self._steady = [0] * len(STREAMS)  # consecutive messages within the timeout
            for d in self._arrivals:
                d.clear()

    # ------------------------------------------------------------ updates
    def received(self, index: int, stamp_ns: Optional[int] = None) -> None:
        """A message of stream ``index`` arrived (before any check), header stamp in ns."""
        now = self._clock()
        with self._lock:
            self._counters["received_" + STREAMS[index]] += 1
            self._arrivals[index].append(now)
            last = self._last_arrival[index]
            self._steady[index] = (self._steady[index] + 1 if last is not None
                                   and now - last <= self.stream_timeout_s else 1)
            self._last_arrival[index] = now
            if stamp_ns is not None and (self._newest_stamp[index] is None
                                         or stamp_ns > self._newest_stamp[index]):
                self._newest_stamp[index] = stamp_ns

    def reject(self, reason: str) -> int:
        """Count a refused message (``reason``: a key of :data:`REJECT_REASONS`); returns the
        total number of rejected messages."""
        with self._lock:
            self._rejected[reason] += 1
            self._counters["messages_rejected"] += 1
            return self._counters["messages_rejected"]

    def add(self, key: str, n: int = 1) -> int:
        """Add ``n`` to counter ``key`` (one of :data:`COUNTERS`); returns its new value."""
        with self._lock:
            self._counters[key] += n
            if key == "pairs_matched":
                self._last_pair = self._clock()
            return self._counters[key]

    def processed(self, inference_ms: float, processing_ms: float, fallback: bool = False) -> None:
        """A frame was published: timings in ms; clears the consecutive-error count."""
        with self._lock:
            self._counters["pairs_processed" if not fallback else "frames_fallback"] += 1
            self._timings.append((float(inference_ms), float(processing_ms)))
            self._consecutive_errors = 0

    def failed(self) -> int:
        """Processing of a frame raised; returns the number of consecutive failures."""
        with self._lock:
            self._counters["processing_errors"] += 1
            self._consecutive_errors += 1
            return self._consecutive_errors

    # ------------------------------------------------------------ queries
    def silent_for(self, index: int) -> float:
        """Seconds since the last message of stream ``index`` (since :meth:`start` if none)."""
        with self._lock:
            last = self._last_arrival[index]
            return self._clock() - (self._since if last is None else last)

    def lost(self, index: int) -> bool:
        """True when stream ``index`` has been silent for longer than ``stream_timeout_s``."""
        return self.silent_for(index) > self.stream_timeout_s

    def stream_changes(self) -> list:
        """The streams whose reported state changed since the last call, with hysteresis:
        ``[(index, "lost" | "back")]``. A stream is lost once silent for longer than
        ``stream_timeout_s`` (since :meth:`start` if it never sent), and back only after
        ``recover_messages`` consecutive messages each within ``stream_timeout_s`` of the one
        before, so a stream slower than the timeout (a 0.5 Hz camera with the 1 s default) is
        reported lost once, not lost and back with every message."""
        now = self._clock()
        changes = []
        with self._lock:
            for i in range(len(STREAMS)):
                last = self._last_arrival[i]
                silent = now - (self._since if last is None else last)
                if not self._down[i] and silent > self.stream_timeout_s:
                    self._down[i] = True
                    self._steady[i] = 0
                    changes.append((i, "lost"))
                elif self._down[i] and silent <= self.stream_timeout_s \
                        and self._steady[i] >= self.recover_messages:
                    self._down[i] = False
                    changes.append((i, "back"))
        return changes

    def snapshot(self) -> dict:
        """A consistent copy: ``counters`` (dict of :data:`COUNTERS`), ``rejected`` (reason ->
        count), per stream ``rate_hz``, ``silent_s``, ``seen`` (bool), ``down`` (reported lost,
        :meth:`stream_changes`) and ``newest_stamp_ns`` (int or None) as lists,
        ``since_pair_s``, mean ``inference_ms`` / ``processing_ms`` of the last 30 frames (None
        before the first), ``consecutive_errors`` and ``failing``."""
        now = self._clock()
        with self._lock:
            rates, silent = [], []
            for i, arrivals in enumerate(self._arrivals):
                recent = [t for t in arrivals if now - t <= self.window_s]
                span = min(self.window_s, now - self._since)
                rates.append(len(recent) / span if span > 0 and len(recent) > 1 else 0.0)
                last = self._last_arrival[i]
                silent.append(now - (self._since if last is None else last))
            n = len(self._timings)
            return {
                "counters": dict(self._counters),
                "rejected": dict(self._rejected),
                "rate_hz": rates,
                "silent_s": silent,
                "seen": [t is not None for t in self._last_arrival],
                "down": list(self._down),
                "newest_stamp_ns": list(self._newest_stamp),
                "since_pair_s": now - self._last_pair,
                "inference_ms": sum(t[0] for t in self._timings) / n if n else None,
                "processing_ms": sum(t[1] for t in self._timings) / n if n else None,
                "consecutive_errors": self._consecutive_errors,
                "failing": self._consecutive_errors >= self.error_threshold,
                "stream_timeout_s": self.stream_timeout_s,
            }
