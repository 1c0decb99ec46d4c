"""The segmif_node: the ROS node and its own modules.

    node.py        the SegMiFNode lifecycle node
    runner.py      ``main`` (``segmif_node``, ``ros2 run``): the node in a multi-threaded
                   executor until its shutdown transition
    parameters.py  parameter declarations (defaults, descriptors, type conversion, checks), QoS
    model.py       the predictor, the registration health monitor and the start-up line
    intake.py      input callbacks: arrival checks, pairing, fallback frames, worker handler
    detections.py  Detection2DArray / LabelInfo (vision_msgs when importable, else the mirror)
    pipeline.py    one frame through conversion, registration, predictor, outputs; the worker;
                   the single-modality substitutes of ``fallback``
    publishers.py  the output messages and their publishers
    health.py      thread-safe counters, input rates, stream loss, per-key log throttles
    watch.py       the watchdog warnings and /diagnostics publishing (mixin of the node)
    diagnostics.py the diagnostic_msgs/DiagnosticArray and its levels
    sync.py        approximate/exact-time synchroniser (no rclpy)
    sync_base.py   its queues, counters, eviction, jump detection, reset, diagnosis
    encodings.py   sensor_msgs/Image <-> numpy (no rclpy)
    inputs.py      arrival checks of raw and compressed images, the input subscriptions
    camera_info.py the visible CameraInfo passed through with the output header (crop-adjusted)
    topics.py      input topic names by image_transport's conventions (camera_info sibling)
    qos.py         QoS overrides and incompatible-QoS warnings of the topics

Importing this package does not import rclpy (:mod:`.sync` and :mod:`.encodings` are used
without ROS); :func:`main` imports the node when called. ``python -m segmif_ros.node`` runs it.
"""


def main(args=None) -> int:
    """Entry point of ``segmif_node`` (``ros2 run segmif_ros segmif_node``)."""
    from .runner import main as node_main

    return node_main(args)
