"""The watch over segmif_node: its counters, throttled warnings, the watchdog and
/diagnostics, as a mixin of :class:`.node.SegMiFNode` (which provides ``health``,
``_throttle``, ``progress``, ``monitor``, ``diagnostics``, ``sync``, ``predictor``, ``state``,
``p``, ``_fallback``, ``_fallback_input`` and ``_no_pair_warn_s``).

Warnings: one per rejection reason per 5 s (throttled per key, see :class:`.health.Throttle`);
stream state changes once per change, with hysteresis (:meth:`.health.Health.stream_changes`):
a lost stream (``<stream> stream stopped (x s) while <other> arrives at r Hz: no output`` or
``publishing visible-only frames (fallback)``) within ``stream_timeout_s`` + 0.5 s, both
streams stopped (``no input``), and an info line when a stream is back (after a few messages
in time, so a camera slower than ``1 / stream_timeout_s`` is reported lost once and not back
with every message); no pair for ``no_pair_warn_s`` while inputs arrive, with the
synchroniser's diagnosis (every ``max(no_pair_warn_s, 5)`` s).
"""
from __future__ import annotations

from .health import STREAMS


class WatchMixin:
    """Health reporting of the node (see the module docstring)."""

    @property
    def counters(self) -> dict:
        """A copy of the node's counters (see :data:`.health.COUNTERS`)."""
        return self.health.snapshot()["counters"]

    def _warn(self, key: str, text: str, period_s: float = 5.0) -> None:
        """A warning throttled per ``key`` (one line per ``period_s``), saying how many lines
        of that key were held back since the last one."""
        held = self._throttle(key, period_s)
        if held is not None:
            self.get_logger().warning(text + (f" [{held} more not logged]" if held else ""))

    def _reject(self, reason: str, what: str) -> None:
        total = self.health.reject(reason)
        self._warn("reject:" + reason, f"{what} (rejected so far: {total})")

    def publish_diagnostics(self) -> None:
        """Publish /diagnostics now (the node's 1 Hz timer calls it, in every state)."""
        pred, sync = self.predictor, self.sync
        info = pred.info if pred is not None else {}
        self.diagnostics.publish(
            self.health.snapshot(), active=self.state == "active", state=self.state,
            fallback=self.modality() if self.state == "active" else "none",
            sync_stats=sync.stats() if sync is not None else {},
            sync_diagnosis=sync.diagnose() if sync is not None else "",
            device=str(pred.device) if pred is not None else str(self.p["device"]),
            backend=pred.backend.name if pred is not None else str(self.p["backend"]),
            model=f"{info.get('model', '')} {info.get('config', {}).get('encoder', '')}".strip(),
            progress=self.progress.snapshot(),
            registration=self.monitor.status() if self.monitor is not None else None)

    def _check_inputs(self) -> None:
        """Watchdog (every 0.5 s): one line per stream state change (lost, both lost, back;
        with hysteresis, :meth:`.health.Health.stream_changes`), and the no-pair warning with
        the synchroniser's diagnosis (throttled)."""
        changes = self.health.stream_changes()
        snap = self.health.snapshot()
        c, silent = snap["counters"], snap["silent_s"]
        received = f"received visible {c['received_visible']}, thermal {c['received_thermal']}"
        lost = {i for i in range(len(STREAMS)) if silent[i] > snap["stream_timeout_s"]}
        for i in (i for i, change in changes if change == "back"):
            self.get_logger().info(f"{STREAMS[i]} stream is back ({snap['rate_hz'][i]:.1f} Hz)")
        newly_lost = [i for i, change in changes if change == "lost"]
        if newly_lost and all(snap["down"]):
            if any(snap["seen"]):  # a node that never got input: the no-pair line says it
                self.get_logger().warning(f"no input: nothing on visible or thermal for "
                                          f"{min(silent):.1f} s ({received})")
        elif newly_lost:
            (i,) = newly_lost
            other = 1 - i
            self.get_logger().warning(
                f"{STREAMS[i]} stream {'stopped' if snap['seen'][i] else 'has sent nothing'} "
                f"({silent[i]:.1f} s) while {STREAMS[other]} arrives at "
                f"{snap['rate_hz'][other]:.1f} Hz: "
                + (f"publishing {self._fallback.replace('_', '-')} frames (fallback)"
                   if other == self._fallback_input else "no output")
                + f" ({received}; stream_timeout_s {snap['stream_timeout_s']:g} s: raise it "
                "for a slower camera)")
        sync = self.sync
        if snap["since_pair_s"] > self._no_pair_warn_s and any(snap["seen"]) \
                and len(lost) < len(STREAMS) and sync is not None:
            self._warn("no_pair", f"no visible/thermal pair for {snap['since_pair_s']:.0f} s "
                       f"({received}, rejected {c['messages_rejected']}): "
                       f"{sync.diagnose()}", max(self._no_pair_warn_s, 5.0))
