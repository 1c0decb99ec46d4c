"""The segmif tools around the node: bags, replay, recording, evaluation, the demo, the CLI.

    cli.py           the ``segmif`` command (fuse, evaluate, train, bag make|info|eval, demo)
    bag.py           rosbag2 type store, reading, summaries, atomic output (no rclpy)
    bag_make.py      ``segmif bag make``: a bag from a folder of image pairs (no rclpy)
    replay.py        ``segmif_replay``: a bag into the live graph, restamped
    recorder.py      ``segmif_recorder``: live topics into a bag
    bag_eval.py      ``segmif bag eval``: a bag through a live segmif_node, outputs recorded
    bag_analysis.py  the recording of bag eval -> metrics, report, mosaics (no rclpy)
    demo.py          ``segmif demo`` = ``segmif bag make`` + ``segmif bag eval``

The tools use the node's modules (:mod:`segmif_ros.node`), never the other way round, and
import each other one way only: cli -> demo -> bag_eval -> bag_analysis, recorder -> replay ->
bag, and bag_make -> bag. Importing this package imports nothing else; the modules that need
rclpy import it themselves.
"""
