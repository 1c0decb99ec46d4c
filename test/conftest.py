"""Shared test set-up: keep every ROS 2 run on this host and in its own domain; tiny models."""
import os
import random

# Before anything imports rclpy: shared-memory transport only, localhost discovery, and a domain
# of our own so that parallel runs (CI, other developers) do not hear each other.
os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "SHM"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
# ONNX files exported for backend onnxruntime/auto go to the build folder, not ~/.cache (the key
# is the checkpoint's bytes, so the seeded tiny checkpoints hit it across runs)
os.environ.setdefault("SEGMIF_CACHE", os.path.join(os.path.dirname(__file__), "..", "build",
                                                   "onnx_cache"))

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models: one thread is faster than two fighting over two cores with the ROS processes.
torch.set_num_threads(1)

#: Real data beside the repository (../shared/data: mfnet/, fusion_pairs/{tno,msrs}/). The
#: environment variable SEGMIF_TEST_DATA points elsewhere; a missing folder (a fresh clone without
#: the data beside it, or SEGMIF_TEST_DATA=/nonexistent) makes the tests that read it skip.
DATA = os.environ.get("SEGMIF_TEST_DATA") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                           "shared", "data")
MFNET = os.path.join(DATA, "mfnet")
TNO = os.path.join(DATA, "fusion_pairs", "tno")
MSRS = os.path.join(DATA, "fusion_pairs", "msrs")


def needs_data(path):
    """A skipif mark for a test that reads the real data folder ``path`` (``MFNET``, ``TNO``,
    ``MSRS`` or a folder below them): skipped, with the folder named, when it is absent."""
    return pytest.mark.skipif(not os.path.isdir(path),
                              reason=f"test data not present: {os.path.normpath(path)} "
                                     "(../shared/data beside the repository, or SEGMIF_TEST_DATA)")


#: The marks used by the tests: ``@needs_mfnet`` on a test that reads MFNet pairs, and so on.
needs_mfnet = needs_data(MFNET)
needs_tno = needs_data(TNO)
needs_msrs = needs_data(MSRS)


def model_card_number(checkpoint_name: str) -> float:
    """The val mIoU (9 classes, absent = 0) the model card states for a shipped checkpoint, from
    its regression marker ``<!-- regression: NAME mIoU_9=VALUE -->`` in docs/model_card.md."""
    import re
    card = open(os.path.join(os.path.dirname(__file__), "..", "docs", "model_card.md")).read()
    m = re.search(rf"<!-- regression: {re.escape(checkpoint_name)} mIoU_9=([0-9.]+) -->", card)
    assert m, f"docs/model_card.md has no regression marker for {checkpoint_name}"
    return float(m.group(1))


def val_miou_9(pred) -> float:
    """Mean IoU (%) over the 9 MFNet classes (a class absent from val counts as 0) of ``pred``
    (a SegMiFPredictor) on all 24 MFNet val pairs at the labels' 640x480, computed here with
    numpy from the label images (independent of segmif_core.metrics)."""
    import numpy as np

    from segmif_core.data.pairs import read_pair
    k = pred.classes.num_classes
    conf = np.zeros((k, k), np.int64)
    names = open(os.path.join(MFNET, "val.txt")).read().split()
    assert len(names) == 24
    for name in names:
        vis, ir, label = read_pair(MFNET, name)
        p = pred.predict(vis, ir).labels.astype(np.int64)
        assert p.shape == label.shape
        conf += np.bincount(label.astype(np.int64).ravel() * k + p.ravel(),
                            minlength=k * k).reshape(k, k)
    inter = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    return 100.0 * float(np.where(union > 0, inter / np.maximum(union, 1), 0.0).mean())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised small SegMiF checkpoint (MFNet classes, 64x64 input)."""
    import torch
    from segmif_core.checkpoint import save_checkpoint
    from segmif_core.data.classes import MFNET_CLASSES
    from segmif_core.models import build_model

    torch.manual_seed(0)
    model = build_model("segmif", {"num_classes": MFNET_CLASSES.num_classes, "fusion_width": 8,
                                   "drdb_growth": 4, "hia_heads": 2, "decoder_hidden_size": 32,
                                   "pretrained": None})
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(64, 64), meta={"note": "random"})
    return path


#: A tiny TSJNet (fusion, FCOS detector, segmentation head) for tests on CPU.
TINY_TSJNET = {"pretrained": None, "stem_channels": [8, 8, 16], "planes": 4,
               "reduce_channels": [8, 8, 8], "nat_dims": [8, 16, 32, 64], "nat_heads": [1, 1, 2, 4],
               "nat_head_hidden": 8, "det_width": 16, "det_convs": 1, "seg_width": 16,
               "seg_low_channels": 8}


@pytest.fixture(scope="session")
def tiny_tsjnet_checkpoint(tmp_path_factory):
    """A randomly initialised tiny TSJNet checkpoint (MFNet classes, 64x64 input) whose detector
    emits boxes (classification bias 2: scores above the threshold)."""
    from segmif_core.checkpoint import save_checkpoint
    from segmif_core.data.classes import MFNET_CLASSES
    from segmif_core.models import build_model

    torch.manual_seed(0)
    model = build_model("tsjnet", dict(TINY_TSJNET))
    with torch.no_grad():
        model.detector.head.cls_logits.bias.fill_(2.0)
    path = tmp_path_factory.mktemp("tsj_ckpt") / "tsj.pt"
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(64, 64))
    return path


@pytest.fixture
def context():
    """A fresh rclpy context for one live-graph test, shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()
