"""``python -m segmif_ros.node``: run segmif_node (``segmif bag eval`` starts it so)."""
from segmif_ros.node import main

if __name__ == "__main__":
    raise SystemExit(main())
