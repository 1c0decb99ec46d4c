"""Messages into segmif_node: the arrival checks, the pairing, the fallback frames and the
worker's handler, as a mixin of :class:`.node.SegMiFNode` (which provides ``health``,
``frames``, ``sync``, ``worker``, ``_compressed``, ``_fallback``, ``_fallback_input``,
``_alpha``, ``_throttle`` and ``_reject``).

Callbacks run on the executor (subscriptions, the synchroniser's pair callback) and on the
inference worker (:meth:`IntakeMixin._handle`); a lifecycle transition in another executor
thread may tear the processing down meanwhile, so each callback takes its own references and
returns when they are gone.
"""
from __future__ import annotations

from .encodings import THERMAL_ENCODINGS, VISIBLE_ENCODINGS
from .health import STREAMS
from .inputs import check_raw, decode_compressed, note_callback_delay
from .pipeline import Frame
from .sync import stamp_to_ns


class IntakeMixin:
    """Input callbacks of the node (see the module docstring)."""

    def _on_image(self, index: int, msg, info=None) -> None:
        """A message of stream ``index`` (0 visible, 1 thermal) with its rmw message info:
        counted, checked (refused messages are counted per reason and never paired), added to
        the synchroniser, and with ``fallback`` and the other stream lost, queued alone."""
        frames, sync, worker = self.frames, self.sync, self.worker
        if frames is None or sync is None or worker is None:
            return
        self.health.received(index, stamp_to_ns(msg.header.stamp))
        if index == 0:
            note_callback_delay(frames.callback_delay, msg, info)
        if self._compressed:
            msg, refused = decode_compressed(msg, index)
        else:
            refused = check_raw(msg, (VISIBLE_ENCODINGS, THERMAL_ENCODINGS)[index],
                                STREAMS[index])
        if refused is not None:  # on arrival: a bad message never takes a valid partner
            self._reject(*refused)
            return
        if index == 0:
            frames.last_visible = (msg.header.frame_id, msg.height, msg.width)
        sync.add(index, msg)
        if index == self._fallback_input and self.health.lost(1 - index):
            # the other camera is lost: this image alone, with the documented substitute
            frame = Frame(self._fallback, msg, None) if index == 0 else \
                Frame(self._fallback, None, msg)
            if worker.submit(frame):
                self.health.add("pairs_dropped")

    def _on_pair(self, vis, ir) -> None:
        """The synchroniser matched a pair: to the worker (newest wins, drops counted)."""
        self.health.add("pairs_matched")
        worker = self.worker
        if worker is not None and worker.submit(Frame("pair", vis, ir)):
            self.health.add("pairs_dropped")

    def modality(self) -> str:
        """What the node publishes now: "pair", or the fallback modality while the other
        stream is lost."""
        if self._fallback_input is not None and self.health.lost(1 - self._fallback_input) \
                and not self.health.lost(self._fallback_input):
            return self._fallback
        return "pair"

    def _handle(self, frame: Frame) -> None:
        """The worker's handler: process one frame; never raises (errors counted, logged)."""
        frames = self.frames
        if frames is None:
            return
        try:
            frames.process(frame, self._alpha)
        except Exception as err:  # noqa: BLE001 - the node must survive any bad frame
            failures = self.health.failed()
            if self._throttle("processing_error") is not None:
                self.get_logger().error(f"frame skipped ({failures} failures in a row): "
                                        f"{type(err).__name__}: {err}")
