"""Compressed input: OpenCV's per-image decoder log lines are silenced (the node counts and
throttles undecodable images itself). Checked in a child process, whose stderr is OpenCV's."""
import subprocess
import sys

CORRUPT_PNG = "b'\\x89PNG\\r\\n\\x1a\\n' + b'x' * 24"
SNIPPET = ("import cv2, numpy as np\n"
           "{call}\n"
           f"buf = np.frombuffer({CORRUPT_PNG}, np.uint8)\n"
           "assert cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) is None\n")


def _stderr(call: str) -> str:
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(call=call)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_corrupt_png_is_silent_after_quieting_and_loud_before():
    assert "grfmt_png" in _stderr("pass")  # OpenCV prints it by default
    quiet = _stderr("from segmif_ros.node.inputs import quiet_opencv_decoder_log\n"
                    "quiet_opencv_decoder_log()")
    assert "grfmt_png" not in quiet, quiet
