"""``segmif_node``'s process: the node under rclpy executors, until it shuts down.

:func:`main` builds :class:`.node.SegMiFNode` with ``autostart_deferred`` and spins it in two
phases:

1. **Start-up, multi-threaded.** A ``MultiThreadedExecutor`` until the first configure has ended
   (:attr:`.node.SegMiFNode.started`: the autostart's configure and activate, or a lifecycle
   manager's configure). The first configure exports (and for int8 quantises) a .pt checkpoint
   for minutes on a 2-core CPU (docs/speed.md) on an executor thread while the lifecycle services (their own reentrant callback
   group), the parameter services and the 1 Hz /diagnostics (which shows the step in progress)
   keep answering.
2. **Data, single-threaded.** Then the node moves to a ``SingleThreadedExecutor`` for the rest
   of its life. rclpy's multi-threaded executor (Kilted) spends its main thread in a Python
   wait loop, and on a loaded 2-core host its subscription callbacks fell behind a 30 Hz
   camera (the reliable depth-5 queues then overwrite messages and pairs go unmatched): soaks
   with the tiny checkpoint measured a closed loop of 2.3-5.1 pairs/s instead of 46-85, and
   side by side 54 pairs/s multi-threaded against 85 single-threaded (docs/robustness.md). The
   node's inference runs in its own worker thread either way, so one executor thread is enough
   for the inputs, timers and services. A later configure (after a ``cleanup``) runs on this
   thread: with a new checkpoint, export it up front (``segmif export``) so the configure
   finds it in the cache.

The process ends after the ``shutdown`` transition (``ros2 lifecycle set /segmif_node
shutdown``, or a lifecycle manager's), with exit code 0, once the transition's service response
has gone out, so a ``ros2 launch`` ends with it; Ctrl-C ends it too (0). A bad parameter (at
construction) or a failed autostart configure ends it with exit code 1 and one line, no
traceback.
"""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, \
    SingleThreadedExecutor

#: start-up executor threads: the node's default group (inputs, timers, parameters), the
#: lifecycle services, the autostart timer, and one spare (the inference runs in the node's own
#: worker)
EXECUTOR_THREADS = 4
#: seconds the start-up executor waits for its callbacks in flight at the hand-over
HANDOVER_TIMEOUT_S = 10.0


def spin(node, context=None) -> None:
    """Spin ``node`` (a :class:`.node.SegMiFNode`) until ``node.finished`` is done: the
    multi-threaded start-up phase until ``node.started``, then the single-threaded data phase
    (module docstring). Returns on ``finished``; raises what the executors raise
    (KeyboardInterrupt, ExternalShutdownException). Shuts its executors down."""
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=context)
    try:
        executor.add_node(node)
        executor.spin_until_future_complete(node.started)
        if node.finished.done() or not node.started.done():
            return
        executor.remove_node(node)
    finally:
        # waits for the callbacks in flight (a transition's service response)
        executor.shutdown(timeout_sec=HANDOVER_TIMEOUT_S)
    executor = SingleThreadedExecutor(context=context)
    try:
        executor.add_node(node)
        executor.spin_until_future_complete(node.finished)
    finally:
        executor.shutdown(timeout_sec=HANDOVER_TIMEOUT_S)


def main(args=None) -> int:
    """Entry point of ``ros2 run segmif_ros segmif_node``: 0 on a normal end (shutdown
    transition, Ctrl-C), 1 (one line, no traceback) when the parameters or, with autostart,
    configure fail."""
    from .node import ConfigurationError, SegMiFNode

    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SegMiFNode(autostart_deferred=True)
        spin(node)
        if node.finished.done():
            code = node.finished.result()
    except ConfigurationError as err:  # one line, no traceback
        rclpy.logging.get_logger("segmif_node").fatal(f"cannot start: {err}")
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
