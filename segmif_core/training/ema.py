"""An exponential moving average of the trained weights (``train.ema``): torch's own
``AveragedModel`` with its EMA update, over parameters and buffers (BatchNorm statistics too).

W_ema <- decay * W_ema + (1 - decay) * W after every optimiser step (the first step copies W);
the average of the last ~1 / (1 - decay) steps. Only rank 0 keeps one under DDP (it validates and
writes the checkpoints). The trainer validates the averaged weights beside
the trained ones and writes them as ``best_ema.pt`` / ``final_ema.pt``; training itself (and the
fused-image cache of SegMiF's rounds) always uses the trained weights."""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: torch.nn.Module, decay) -> AveragedModel | None:
    """The EMA of ``model`` (``.module`` is a copy of it, updated by ``update_parameters``), or
    None when ``decay`` is None, 0 or False (no averaging).

    Raises:
        ValueError: ``decay`` not a number in (0, 1).
    """
    if decay is None or decay is False or decay == 0:
        return None
    try:
        d = float(decay)
    except (TypeError, ValueError):
        raise ValueError(f"train.ema must be a decay in (0, 1) or 0 (off), got {decay!r}") from None
    if not 0.0 < d < 1.0:
        raise ValueError(f"train.ema must be a decay in (0, 1) or 0 (off), got {decay!r}")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True)
    ema.module.eval()
    for p in ema.module.parameters():
        p.requires_grad_(False)
    return ema


def update_ema(ema: AveragedModel, model: torch.nn.Module) -> None:
    """One EMA update after an optimiser step. Integer buffers (BatchNorm's
    ``num_batches_tracked``) are copied from ``model`` instead of averaged (torch's EMA would blend
    and truncate them into a meaningless count)."""
    ema.update_parameters(model)
    with torch.no_grad():
        for b_ema, b in zip(ema.module.buffers(), model.buffers()):
            if not (b.is_floating_point() or b.is_complex()):
                b_ema.copy_(b)
