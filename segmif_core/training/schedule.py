"""Optimisers and their learning-rate schedule: warm-up for ``warmup_iters`` steps, linear from
``warmup_lr`` to ``lr`` (``warmup: linear``, the default, as mmsegmentation's SegFormer schedule)
or constant at ``warmup_lr`` (``warmup: constant``, what the trainer did before: the recipe of the
shipped checkpoint pins it), then poly decay ``lr_min + (lr - lr_min) * (1 - progress)^power`` over the
optimiser's own steps (or over the ``max_minutes`` budget if that ends sooner). A parameter
group's ``lr_mult`` scales the rate (the segmentation head's ``head_lr_mult``)."""
from __future__ import annotations

import torch


def _lr(oc: dict, step: int, total: int, time_progress: float) -> float:
    """Warm-up then poly decay (see the module docstring)."""
    if step < oc["warmup_iters"]:
        kind = oc.get("warmup", "linear")
        if kind == "constant":
            return oc["warmup_lr"]
        if kind != "linear":
            raise ValueError(f"warmup must be 'linear' or 'constant', got {kind!r}")
        return oc["warmup_lr"] + (oc["lr"] - oc["warmup_lr"]) * step / oc["warmup_iters"]
    progress = (step - oc["warmup_iters"]) / max(1, total - oc["warmup_iters"])
    progress = min(1.0, max(progress, time_progress))
    return oc["lr_min"] + (oc["lr"] - oc["lr_min"]) * (1 - progress) ** oc["poly_power"]


def _optimizer(oc: dict, groups: list[dict]):
    if oc["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=oc["lr"], weight_decay=oc["weight_decay"])
    if oc["name"] == "adam":
        return torch.optim.Adam(groups, lr=oc["lr"], weight_decay=oc["weight_decay"])
    raise ValueError(f"unknown optimiser {oc['name']!r} (adam or adamw)")


def _set_lr(opt, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
