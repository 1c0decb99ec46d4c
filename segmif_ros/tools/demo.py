"""The end-to-end demo (``segmif demo``, ``make demo``) = ``segmif bag make`` + ``segmif bag eval``.

1. Build a rosbag2 from a folder of labelled pairs (default: the MFNet val split in
   ../shared/data/mfnet): visible at 30 Hz, thermal with a few ms of stamp jitter, ground truth on
   its own topic (:func:`segmif_ros.tools.bag_make.make_bag`).
2. Evaluate segmif_node on it (:func:`segmif_ros.tools.bag_eval.run_bag_eval`): start the node as
   its own process, replay the bag into the live graph, record the node's outputs (plus the replayed
   inputs and ground truth), match outputs to ground truth by stamp and write ``report.json``
   (the keys of ``segmif evaluate``: segmentation and fusion metrics with the baseline fusion
   rules, protocol, plus ``stream``, ``frames`` and ``timing``), ``report.md``, the plots and
   mosaics (visible | thermal | fused | colour labels | ground truth) under the output folder.

Every ROS 2 process runs with Fast DDS over shared memory only, discovery limited to this host and
a domain id of its own (see :func:`segmif_ros.tools.bag_eval.local_ros_env`).
"""
from __future__ import annotations

import time
from pathlib import Path


def default_data() -> Path:
    """The MFNet pairs beside the checkout: ``../shared/data/mfnet`` from the repository root
    (found from the current folder, as ``make demo`` runs there, or from this source file)."""
    candidates = [Path.cwd().resolve().parent / "shared" / "data" / "mfnet",
                  Path(__file__).resolve().parents[3] / "shared" / "data" / "mfnet"]
    for c in candidates:
        if (c / "vis").is_dir():
            return c
    raise FileNotFoundError("demo data not found (looked in "
                            f"{', '.join(str(c) for c in candidates)}); pass --data DIR")


def run_demo(data=None, split="val.txt", out="runs/demo", checkpoint=None, device="cpu",
             rate=1.0, mosaics=4, node_timeout_s=180.0, log=print, *,
             include_background: bool = True, absent: str = "skip", rules=None,
             repeat: int = 5, node_params=None) -> dict:
    """Run the whole demo; returns the report dict (also written to ``out``).

    The pairs of ``split`` (``repeat`` times over, so the stream lasts long enough to measure a
    rate: 24 val pairs x 5 = 4 s at 30 Hz) are replayed at ``rate`` (1 = the recorded 30 Hz, a
    live camera rig) with the large shared-memory Fast DDS profile in every process, into a
    node with its default input QoS (sensor data, best effort) that keeps only the newest pair;
    the report states the output rate, the pairs the node dropped and the latency.
    include_background, absent, rules: evaluation protocol (see
    ``segmif_core.evaluation.evaluate_folder``); node_params: extra node parameters.
    """
    from segmif_core.checkpoint import load_checkpoint
    from segmif_core.data.pairs import list_pairs

    from .bag_eval import local_ros_env, run_bag_eval
    from .bag_make import make_bag

    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    local_ros_env(large_shm=True)
    data = Path(data) if data else default_data()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load_checkpoint(checkpoint)  # fail early on a bad checkpoint, before building the bag
    split_path = (data / split) if split and not Path(split).is_file() else split
    names = list_pairs(str(data), str(split_path) if split_path else None)
    t0 = time.monotonic()
    summary = make_bag(data, out / "input_bag", names=names * repeat,
                       overwrite=True)
    log(f"[demo] input bag {out / 'input_bag'}: {summary.get('num_pairs', summary)} pairs "
        f"({time.monotonic() - t0:.1f} s)")
    report = run_bag_eval(
        out / "input_bag", out, rate=rate, start_node=True, checkpoint=checkpoint,
        node_params=dict(node_params or {}), large_shm=True,
        device=device, include_background=include_background, absent=absent, rules=rules,
        mosaics=mosaics, node_timeout_s=node_timeout_s, title="segmif demo report",
        extra={"data": str(data), "split": str(split), "repeat": repeat}, log=log)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    return report
