"""Checkpoints: one file holding the weights, the model name and config, and the class set.

Format (a dict saved with ``torch.save``, loadable with ``weights_only=True``):
    format: "segmif-checkpoint/2"
    model: registry name ('segmif', 'baseline'); config: the model config dict (encoder name,
        its pretrained-weight source, and the input ``normalization`` applied by the model)
    classes: {'name', 'names', 'colors'}; state_dict: weights (fp16 for released checkpoints)
    input_size: [H, W] the network input size it was trained for; meta: free-form (metrics, data)
Files are written atomically (:mod:`segmif_core.atomic`).
Format 1 (releases before the encoder registry: MiT encoders only, ImageNet normalisation) loads
too: its encoder keys ``segmenter.encoder.*`` move to ``segmenter.encoder.model.*``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import atomic
from .data.classes import ClassSet
from .models import FusionSegModel, build_model

FORMAT = "segmif-checkpoint/2"
LEGACY_FORMATS = ("segmif-checkpoint/1",)
#: The default checkpoint shipped with the package (trained on the MFNet subset, see README).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "segmif_lite0_mfnet.pt"
#: The shipped TSJNet checkpoint (config/train/tsjnet_cpu.yaml on the MFNet subset; model card
#: in docs/model_card.md). Not a default: give it as ``checkpoint`` to run TSJNet.
TSJNET_CHECKPOINT = DEFAULT_CHECKPOINT.with_name("tsjnet_lite0_mfnet.pt")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a segmif checkpoint."""


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically: readers see the old file or the new one, never half
    (:func:`segmif_core.atomic.torch_save`)."""
    atomic.torch_save(obj, path)


def save_checkpoint(path, model: FusionSegModel, classes: ClassSet, input_size=(240, 320),
                    meta: dict | None = None, half: bool = True) -> None:
    """Save ``model`` with its config and ``classes``; ``half`` stores floating weights as fp16."""
    if classes.num_classes != model.num_classes:
        raise ValueError(f"class set has {classes.num_classes} classes, model {model.num_classes}")
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    atomic_torch_save({
        "format": FORMAT, "model": model.name, "config": model.config_dict(),
        "classes": {"name": classes.name, "names": list(classes.names),
                    "colors": [list(c) for c in classes.colors]},
        "input_size": [int(s) for s in input_size], "state_dict": state, "meta": meta or {},
    }, path)


def _read_error(path: Path, err: Exception) -> str:
    """torch.load's exception as a plain reason (its own texts suggest weights_only=False or
    are empty)."""
    with open(path, "rb") as f:
        head = f.read(4)
    unsafe = "Unsupported global" in str(err) or "WeightsUnpickler" in str(err)
    if head.startswith(b"PK") and unsafe:
        # a whole archive that holds more than tensors: e.g. a trainer's last.pt (optimiser and
        # RNG state), which is not a release checkpoint
        return ("a PyTorch file that holds objects other than tensors and plain data (a "
                "trainer's last.pt? use its best.pt, or a file written by save_checkpoint)")
    if head.startswith(b"PK"):
        return (f"truncated or corrupt PyTorch archive ({path.stat().st_size} bytes; copy it "
                "again)")
    if "weights_only" in str(err) or "Unsupported" in str(err):
        return "not a PyTorch checkpoint (unreadable or unsafe pickle data)"
    return "not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"


def load_checkpoint(path=None, device: str | torch.device = "cpu"
                    ) -> tuple[FusionSegModel, ClassSet, dict]:
    """Load a checkpoint (default: ``DEFAULT_CHECKPOINT``) -> (model in eval mode, float32 on
    ``device``; its ClassSet; the raw dict without weights: input_size, meta, ...).

    Raises:
        CheckpointError: missing file, not a segmif checkpoint, or weights that do not fit.
    """
    path = Path(path) if path else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: empty file (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling problem is a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {_read_error(path, err)}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT,) + LEGACY_FORMATS:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    missing = [k for k in ("model", "config", "state_dict", "classes") if k not in ckpt]
    if missing:
        raise CheckpointError(f"cannot use checkpoint {path}: a {ckpt['format']} file without "
                              f"{', '.join(repr(k) for k in missing)}")
    state, config = ckpt["state_dict"], dict(ckpt["config"])
    if ckpt["format"] in LEGACY_FORMATS:
        state = {("segmenter.encoder.model." + k[len("segmenter.encoder."):]
                  if k.startswith("segmenter.encoder.") else k): v for k, v in state.items()}
        config.setdefault("pretrained", None)  # trained from scratch (MiT built from config)
    try:
        model = build_model(ckpt["model"], config, load_pretrained=False)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in state.items()})
    except RuntimeError as err:
        raise CheckpointError(f"weights in {path} do not fit the model: {err}") from err
    classes = ClassSet.from_dict(ckpt["classes"])
    info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), classes, info
