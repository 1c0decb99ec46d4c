"""``segmif_node``'s process: the node under a multi-threaded executor, until it shuts down.

:func:`main` builds :class:`.node.SegMiFNode` with ``autostart_deferred`` and spins it in a
``MultiThreadedExecutor``, so that

* the autostart configure (the first one exports, and for int8 quantises, a .pt checkpoint for
  20-70 s) runs on an executor thread while the lifecycle services (their own reentrant
  callback group), the parameter services and the 1 Hz /diagnostics (which shows the step in
  progress) keep answering;
* the process ends after the ``shutdown`` transition (``ros2 lifecycle set /segmif_node
  shutdown``, or a lifecycle manager's), with exit code 0, once the transition's service
  response has gone out, so a ``ros2 launch`` ends with it; Ctrl-C ends it too (0);
* a bad parameter (at construction) or a failed autostart configure ends it with exit code 1
  and one line, no traceback.
"""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

#: executor threads: the node's default group (inputs, timers, parameters), the lifecycle
#: services, the autostart timer, and one spare (the inference runs in the node's own worker)
EXECUTOR_THREADS = 4


def main(args=None) -> int:
    """Entry point of ``ros2 run segmif_ros segmif_node``: 0 on a normal end (shutdown
    transition, Ctrl-C), 1 (one line, no traceback) when the parameters or, with autostart,
    configure fail."""
    from .node import ConfigurationError, SegMiFNode

    rclpy.init(args=args)
    node = executor = None
    code = 0
    try:
        node = SegMiFNode(autostart_deferred=True)
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        executor.spin_until_future_complete(node.finished)
        if node.finished.done():
            code = node.finished.result()
    except ConfigurationError as err:  # one line, no traceback
        rclpy.logging.get_logger("segmif_node").fatal(f"cannot start: {err}")
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            # waits for the callbacks in flight: the shutdown transition's service response
            executor.shutdown(timeout_sec=10.0)
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
