"""Reading pretrained weight files and loading them strictly: shared by every encoder."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class PretrainedWeightsError(ValueError):
    """Pretrained encoder weights cannot be found, read, or do not fit the encoder."""


def key_mismatch_message(source: str, missing, unexpected, limit: int = 8) -> str:
    """One message naming the missing and unexpected keys (at most ``limit`` of each)."""
    def show(keys):
        keys = sorted(keys)
        more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more if keys else "none"
    return (f"weights in {source} do not fit the encoder: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}")


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``torch.load`` with ``weights_only``; an mmseg / timm style
    ``{'state_dict': ...}`` or ``{'model': ...}`` wrapper is opened).

    Raises:
        PretrainedWeightsError: unreadable file, or no dict of tensors inside.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling problem is a bad file
        raise PretrainedWeightsError(f"cannot read pretrained weights {path}: {err}") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedWeightsError(f"{path} holds no state dict of tensors")
    return obj


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                      extra_unexpected=()) -> None:
    """Load ``state`` into ``module`` only if its keys and shapes match exactly.

    ``extra_unexpected``: keys of the source that could not even be mapped (reported as
    unexpected).
    Raises:
        PretrainedWeightsError: naming the missing and unexpected keys, or the tensors whose
            shapes differ.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own] + list(extra_unexpected)
    if missing or unexpected:
        raise PretrainedWeightsError(key_mismatch_message(source, missing, unexpected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if state[k].shape != v.shape]
    if wrong:
        raise PretrainedWeightsError(f"weights in {source} do not fit: shapes differ: "
                                     f"{', '.join(wrong[:6])}")
    module.load_state_dict(state, strict=True)
