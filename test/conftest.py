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

MFNET = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mfnet")


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
