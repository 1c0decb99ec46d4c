"""How many 640x480 rgb8 frames cross from one process to another over Fast DDS shared memory,
with and without the project's large shared-memory profile (config/fastdds_shm_large.xml).

A script, not a test (docs/development.md, "Large images between processes on one host"). For
each setting it starts a subscriber process (sensor-data QoS: best effort, keep last 5), then a
publisher process that sends ``--frames`` frames at ``--rate`` Hz on the same localhost-only,
shared-memory-only graph with a ROS_DOMAIN_ID of its own, and prints how many arrived:

    .venv/bin/python scripts/shm_profile_check.py --frames 50 --rate 10

Prints one line per setting, ``default: received R of N`` and ``large profile: ...``, and
exits 0. Run it from the repository root in the Makefile's environment (AMENT_PREFIX_PATH=.venv).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from segmif_ros.tools.bag_eval import local_ros_env

TOPIC = "/shm_check/image"


def _publish(frames: int, rate: float, height: int, width: int) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("shm_check_pub")
    pub = node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
    deadline = time.monotonic() + 10.0  # wait for the subscriber's discovery
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
    for i in range(frames):
        msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                    data=data)
        msg.header.frame_id = str(i)
        pub.publish(msg)
        time.sleep(1.0 / rate)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def _subscribe(seconds: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("shm_check_sub")
    got = set()
    node.create_subscription(Image, TOPIC, lambda m: got.add(m.header.frame_id),
                             qos_profile_sensor_data)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(f"received {len(got)}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


def _run(large: bool, frames: int, rate: float, height: int, width: int) -> int:
    # the project's localhost, shared-memory-only graph with a domain of this run's own
    # (set in os.environ, which the two child processes inherit), the profile per setting
    os.environ.pop("ROS_DOMAIN_ID", None)
    local_ros_env(large_shm=large)
    env = dict(os.environ)
    if not large:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    me, seconds = [sys.executable, "-P", str(Path(__file__).resolve())], frames / rate + 25.0
    sub = subprocess.Popen(me + ["--role", "sub", "--seconds", str(seconds)], env=env,
                           stdout=subprocess.PIPE, text=True)
    if sub.stdout.readline().strip() != "ready":
        raise RuntimeError("subscriber did not start")
    subprocess.run(me + ["--role", "pub", "--frames", str(frames), "--rate", str(rate),
                         "--size", str(height), str(width)], env=env, check=True)
    out, _ = sub.communicate(timeout=seconds + 30)
    return int(out.strip().split()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--rate", type=float, default=10.0, help="Hz")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--role", choices=("check", "pub", "sub"), default="check",
                    help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.frames < 1 or not a.rate > 0:
        ap.error("--frames must be >= 1 and --rate > 0")
    if a.role == "pub":
        _publish(a.frames, a.rate, *a.size)
    elif a.role == "sub":
        _subscribe(a.seconds)
    else:
        for name, large in (("default", False), ("large profile", True)):
            n = _run(large, a.frames, a.rate, *a.size)
            print(f"{name}: received {n} of {a.frames} ({a.size[1]}x{a.size[0]} rgb8, "
                  f"{a.rate:g} Hz, best effort)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
