"""The segmif_node: the ROS node and its own modules.

    node.py        the SegMiFNode class and ``main`` (``segmif_node``, ``ros2 run``)
    parameters.py  parameter declarations (defaults, descriptors, checks), QoS profiles
    publishers.py  the output messages and their publishers
    sync.py        approximate/exact-time synchroniser (no rclpy)
    sync_base.py   its queues, counters, eviction, jump detection, reset, diagnosis
    encodings.py   sensor_msgs/Image <-> numpy (no rclpy)

Importing this package does not import rclpy (:mod:`.sync` and :mod:`.encodings` are used
without ROS); :func:`main` imports the node when called. ``python -m segmif_ros.node`` runs it.
"""


def main(args=None) -> int:
    """Entry point of ``segmif_node`` (``ros2 run segmif_ros segmif_node``)."""
    from .node import main as node_main

    return node_main(args)
