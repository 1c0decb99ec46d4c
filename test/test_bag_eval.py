"""``segmif bag eval`` (and the demo built on it) in a live ROS 2 graph.

One live run: a 3-pair bag (MFNet val pairs downscaled to 96 x 128, or synthetic pairs when the
data is absent) written with other topic names than the node's, replayed through a segmif_node
started in its own namespace with the tiny random checkpoint. Expectations come from the PNGs:
the fusion rules' metrics are recomputed here from the images written to disk (the bag, the
replay and the recording must carry them bit for bit), the confusion matrix rows must add up to
the ground-truth class histogram. Live processes use Fast DDS over shared memory only, on
localhost, with a random domain id (test/conftest.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from segmif_core.metrics.fusion import FUSION_METRIC_KEYS, fusion_metrics  # noqa: E402
from segmif_ros.tools import cli  # noqa: E402
from segmif_ros.tools.bag_make import make_bag  # noqa: E402

from conftest import MFNET as _MFNET  # noqa: E402

MFNET = Path(_MFNET)  # optional here: synthetic pairs stand in when it is absent
H, W = 96, 128
TOPICS = {"visible_topic": "/cam/rgb", "thermal_topic": "/cam/lwir", "label_topic": "/cam/gt"}


def _luma(rgb: np.ndarray) -> np.ndarray:
    y = 0.299 * rgb[..., 0].astype(np.float64) + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.floor(y + 0.5 + 1e-9).astype(np.uint8)


@pytest.fixture
def small_pairs(tmp_path):
    """tmp/{vis,ir,label}/NAME.png, 3 pairs of 96 x 128; returns (root, names)."""
    root = tmp_path / "pairs"
    for d in ("vis", "ir", "label"):
        (root / d).mkdir(parents=True)
    names = []
    if (MFNET / "val.txt").is_file():
        names = [n.strip() for n in (MFNET / "val.txt").read_text().splitlines() if n.strip()][:3]
        for n in names:
            vis = cv2.imread(str(MFNET / "vis" / f"{n}.png"), cv2.IMREAD_COLOR)
            ir = cv2.imread(str(MFNET / "ir" / f"{n}.png"), cv2.IMREAD_GRAYSCALE)
            lab = cv2.imread(str(MFNET / "label" / f"{n}.png"), cv2.IMREAD_UNCHANGED)
            for sub, img in (("vis", vis), ("ir", ir)):
                cv2.imwrite(str(root / sub / f"{n}.png"),
                            cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA))
            cv2.imwrite(str(root / "label" / f"{n}.png"),
                        cv2.resize(lab, (W, H), interpolation=cv2.INTER_NEAREST))
    else:
        rng = np.random.default_rng(0)
        for i in range(3):
            n = f"s{i}"
            names.append(n)
            small = rng.integers(0, 256, (H // 8, W // 8, 4)).astype(np.float32)
            big = np.clip(cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC), 0, 255)
            big = big.astype(np.uint8)
            cv2.imwrite(str(root / "vis" / f"{n}.png"), big[..., :3])
            cv2.imwrite(str(root / "ir" / f"{n}.png"), big[..., 3])
            lab = cv2.resize(rng.integers(0, 9, (6, 8)).astype(np.uint8), (W, H),
                             interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(root / "label" / f"{n}.png"), lab)
    return root, names


def _eval_small_bag(tmp_path, small_pairs, checkpoint, *options):
    """`segmif bag eval` of the 3 small pairs in a bag with the TOPICS names, remapped to the
    node's inputs; returns (exit code, output folder). A 5 Hz bag at 0.2x: a pair every second
    live, so a loaded CI machine still answers each one."""
    root, names = small_pairs
    bag = tmp_path / "bag"
    make_bag(root, bag, names=names, rate_hz=5.0, **TOPICS)
    out = tmp_path / "eval"
    rc = cli.main(["bag", "eval", str(bag), "--out", str(out), "--visible-topic", "/cam/rgb",
                   "--thermal-topic", "/cam/lwir", "--gt-topic", "/cam/gt", "--rate", "0.2",
                   "--checkpoint", str(checkpoint), *options, "--quiet", "5",
                   "--node-timeout", "60"])
    return rc, out


def test_bag_eval_live_remapped_topics_and_namespace(tmp_path, small_pairs, tiny_checkpoint):
    root, names = small_pairs
    rc, out = _eval_small_bag(tmp_path, small_pairs, tiny_checkpoint, "--namespace", "evalns",
                              "--mosaics", "1")
    assert rc == 0
    for f in ("report.json", "report.md", "fusion_violins.png", "confusion_matrix.png",
              "mosaic_00.png", "node.log"):
        assert (out / f).is_file(), f
    assert (out / "output_bag" / "metadata.yaml").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    r = json.loads((out / "report.json").read_text())
    for key in ("mIoU", "mAcc", "per_class", "fusion", "n_pairs", "protocol", "checkpoint",
                "timing", "stream", "frames"):
        assert key in r, key
    assert r["topics"]["bag_to_live"] == {"/cam/rgb": "/evalns/visible/image",
                                          "/cam/lwir": "/evalns/thermal/image",
                                          "/cam/gt": "/evalns/ground_truth/labels"}
    st, frames = r["stream"], r["frames"]
    assert st["frames_in_visible"] == 3 and st["frames_in_ground_truth"] == 3
    # at 0.2x the node answers every pair
    assert st["frames_out"] == 3 and st["pairs_never_answered"] == 0
    assert r["n_pairs"] == st["frames_out"] == r["n_labelled"]
    assert len(frames["latency_ms"]) == st["frames_out"] == len(frames["stamp_ns"])
    assert all(v > 0 for v in frames["latency_ms"])
    assert frames["stamp_ns"] == sorted(frames["stamp_ns"])
    assert isinstance(st["pairs_dropped_by_node"], int) and st["pairs_dropped_by_node"] >= 0
    # a replay at rate 0.2 keeps the recorded stamp spacing: stamp-based latencies are left out
    assert r["timing"]["stamp_to_receive_ms"] is None and r["timing"]["node_latency_ms"] is None
    assert r["timing"]["latency_ms"]["n"] == 3
    # input-to-output latency: positive, and never above stamp-to-output at a rate below 1 (the
    # input is published no earlier than its restamped stamp); 1 ms for the two clocks
    io = frames["input_to_output_ms"]
    assert len(io) == 3 and all(v is not None and v > 0 for v in io)
    assert all(a <= b + 1.0 for a, b in zip(io, frames["latency_ms"]))
    assert r["timing"]["input_to_output_ms"]["n"] == 3
    assert r["timing"]["latency_ms"]["p50"] == r["timing"]["input_to_output_ms"]["p50"]
    # the node's time per stage travels in segmentation/info
    assert r["timing"]["stages_ms"]["network"]["n"] == 3
    assert r["timing"]["stages_ms"]["convert"]["p50"] > 0
    # segmentation: the whole ground truth went in, protocol stated
    assert 0.0 <= r["mIoU"] <= 100.0 and 0.0 <= r["mAcc"] <= 100.0
    gt = np.concatenate([cv2.imread(str(root / "label" / f"{n}.png"), cv2.IMREAD_UNCHANGED)
                         .ravel() for n in names])
    cmx = np.array(r["confusion_matrix"])
    assert cmx.sum() == 3 * H * W
    assert cmx.sum(axis=1).tolist() == np.bincount(gt, minlength=cmx.shape[0]).tolist()
    assert r["protocol"]["include_background"] is True and r["protocol"]["absent"] == "skip"
    # fusion: node row + rules; the rules recomputed from the PNGs (frames in stamp = name order)
    assert r["methods"] == ["SegMiF", "visible", "thermal", "average", "maximum", "laplacian",
                            "gff"]
    for i, n in enumerate(names):
        a = _luma(cv2.imread(str(root / "vis" / f"{n}.png"))[..., ::-1])
        b = cv2.imread(str(root / "ir" / f"{n}.png"), cv2.IMREAD_GRAYSCALE)
        rules = {"visible": a, "thermal": b, "maximum": np.maximum(a, b),
                 "average": ((a.astype(np.int64) + b + 1) // 2).astype(np.uint8)}
        for method, f in rules.items():
            expect = fusion_metrics(a, b, f)
            for k in FUSION_METRIC_KEYS:
                got = r["fusion_per_image"][method][k][i]
                if np.isnan(expect[k]):
                    assert got is None, (n, method, k)
                else:
                    assert got == pytest.approx(expect[k], rel=1e-9, abs=1e-12), (n, method, k)
        assert r["fusion_per_image"]["SegMiF"]["EN"][i] is not None
    md = (out / "report.md").read_text()
    assert "class 0 (unlabelled) included" in md and "## Stream" in md and "| SegMiF |" in md


def test_bag_eval_missing_topic_fails_before_starting_anything(tmp_path, small_pairs, capsys):
    root, names = small_pairs
    bag = tmp_path / "bag"
    make_bag(root, bag, names=names[:1], **TOPICS)
    rc = cli.main(["bag", "eval", str(bag), "--out", str(tmp_path / "eval")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "/visible/image" in err and "/cam/rgb" in err
    assert not (tmp_path / "eval" / "node.log").exists()


def test_demo_is_make_bag_plus_bag_eval(tmp_path, small_pairs, tiny_checkpoint, monkeypatch):
    """The demo builds the bag and hands it to run_bag_eval (no live run here)."""
    import segmif_ros.tools.bag_eval
    from segmif_ros.tools.bag import bag_info
    from segmif_ros.tools.demo import run_demo

    root, names = small_pairs
    calls = []

    def fake_run_bag_eval(bag, out, **kw):
        calls.append((Path(bag), Path(out), kw))
        return {"stub": True}

    monkeypatch.setattr(segmif_ros.tools.bag_eval, "run_bag_eval", fake_run_bag_eval)
    report = run_demo(root, None, tmp_path / "demo", tiny_checkpoint, "cpu", 0.5, 2,
                      log=lambda *_: None, repeat=4)
    assert report["stub"] is True and len(calls) == 1
    bag, out, kw = calls[0]
    assert bag == tmp_path / "demo" / "input_bag" and out == tmp_path / "demo"
    assert kw["start_node"] is True and kw["rate"] == 0.5 and kw["mosaics"] == 2
    assert kw["checkpoint"] == tiny_checkpoint
    # every process of the demo uses the large shared-memory profile; the node its default QoS
    assert kw["large_shm"] is True and "input_qos" not in kw["node_params"]
    topics = bag_info(bag)["topics"]
    # the 3 pairs, 4 times over
    assert topics["/visible/image"]["count"] == 12 and topics["/ground_truth/labels"]["count"] == 12


def test_bag_eval_records_tsjnet_detections_and_reports_map(tmp_path, small_pairs,
                                                            tiny_tsjnet_checkpoint):
    rc, out = _eval_small_bag(tmp_path, small_pairs, tiny_tsjnet_checkpoint, "--mosaics", "0",
                              "--no-rules")
    assert rc == 0
    r = json.loads((out / "report.json").read_text())
    assert "/detections" in r["topics"]["recorded"]
    assert r["stream"]["frames_out"] == 3 and r["n_labelled"] == 3
    from segmif_ros.tools.bag import read_bag
    dets = [m for _, _, m in read_bag(out / "output_bag", ["/detections"])]
    stamps = sorted(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in dets)
    assert stamps == r["frames"]["stamp_ns"]          # one array per frame, the visible stamp
    assert all(len(m.detections) > 0 for m in dets)
    assert isinstance(r["map50"], float) and 0.0 <= r["map50_95"] <= r["map50"] <= 100.0
    assert r["detection"]["images"] == 3 and r["detection"]["classes"] == ["car", "person", "bike"]
    assert isinstance(r["mIoU"], float) and r["methods"] == ["TSJNet"]
    assert "## Detection" in (out / "report.md").read_text()
