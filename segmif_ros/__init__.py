"""segmif_ros: ROS 2 nodes and tools for SegMiF visible/thermal fusion and segmentation.

Thin layer over :mod:`segmif_core`. Importing this package does not import rclpy; the modules
that need it (node, replay, recorder, demo) import it themselves.
"""
