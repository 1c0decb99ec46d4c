"""Training configs: YAML files that extend each other with ``base: FILE``, ``--set`` overrides,
and the check of sections and keys (``REQUIRED`` and ``OPTIONAL`` for the sections, ``NESTED`` and
the model's config dataclass for the mappings inside them; see ``config/train/paper.yaml`` for
what every key means)."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from pathlib import Path

import yaml

from ..choices import check_choice

REQUIRED = {
    "data": ("root", "train_split", "val_split", "classes", "size", "crop", "scale_range",
             "brightness", "flip", "thermal"),
    "model": ("name", "config"),
    "train": ("device", "batch_size", "workers", "rounds", "seg_iters", "fusion_iters",
              "max_minutes", "seg_optim", "fusion_optim", "loss", "weighting", "val_every",
              "log_every", "ckpt_every", "amp", "channels_last", "progress", "resume",
              "fusion_phase_updates_seg", "fusion_warmup_iters"),
}
# keys that may be left out (defaults in code); any other key is a typo and rejected
OPTIONAL = {
    "data": ("layout", "cache", "fusion_crop", "modality_dropout", "thermal_gain"),
    "model": (),
    "train": ("threads", "dist_timeout_min", "fused_cache", "final_seg_iters", "init",
              "joint", "val_absent", "ema"),  # joint: the one-stage schedule of models with a detector (TSJNet)
}
_OPTIM = ("name", "lr", "lr_min", "weight_decay", "warmup_iters", "warmup_lr", "warmup",
          "poly_power")  # schedule._lr and schedule._optimizer
# the keys of the mappings inside the sections (any other is a typo and rejected). Also checked:
# model.config against the fields of the model's config dataclass, train.joint against
# tsjnet_steps.JOINT_KEYS and train.joint.loss_weights against tsjnet_losses.LOSS_WEIGHTS
NESTED = {
    "data.thermal": ("mode", "low", "high", "min", "max"),  # batches.build_datasets
    "train.seg_optim": _OPTIM + ("head_lr_mult",),
    "train.fusion_optim": _OPTIM,
    "train.loss": ("eta", "class_weighting", "ignore_index", "intensity", "intensity_weight"),
    "train.weighting": ("mode", "eta_fusion", "eta_seg", "temperature", "window",
                        "lambda_fusion", "lambda_seg"),  # weighting.make_weighting
    "train.init": ("checkpoint", "parts"),  # checkpoints._init_from
    "train.joint.det_optim": _OPTIM + ("head_lr_mult",),
}
# mappings that may be null (left out)
_NULLABLE = ("train.init", "train.joint", "train.joint.det_optim", "train.joint.loss_weights")


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge, ``override`` wins. A ``model`` section that names another model
    replaces the inherited one (its config is not merged into the other model's keys)."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if (k == "model" and isinstance(v, dict) and "name" in v
                and v["name"] != out.get("model", {}).get("name")):
            out[k] = {"name": v["name"], "config": copy.deepcopy(v.get("config", {}))}
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path) -> dict:
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    base = cfg.pop("base", None)
    if base:
        parent = _read_yaml((path.parent / base).resolve())
        root = parent.get("data", {}).get("root")
        if root and not Path(root).is_absolute() and "root" not in cfg.get("data", {}):
            parent["data"]["root"] = str(((path.parent / base).resolve().parent / root).resolve())
        cfg = merge(parent, cfg)
    elif cfg.get("data", {}).get("root") and not Path(cfg["data"]["root"]).is_absolute():
        cfg["data"]["root"] = str((path.parent / cfg["data"]["root"]).resolve())
    return cfg


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Load a training config (following ``base:``), apply ``overrides`` and validate it.

    A relative ``data.root`` is resolved against the file that sets it.
    Raises:
        ValueError: unknown sections, missing keys or unknown keys of the ``data``, ``model``
            and ``train`` sections (named).
    """
    path = Path(path)
    cfg = merge(_read_yaml(path), overrides or {})
    unknown = set(cfg) - {"seed", "out", *REQUIRED}
    if unknown:
        raise ValueError(f"{path}: unknown config sections {sorted(unknown)}")
    missing = [f"{s}.{k}" for s, keys in REQUIRED.items() for k in keys
               if k not in cfg.get(s, {})] + [k for k in ("seed", "out") if k not in cfg]
    if missing:
        raise ValueError(f"{path}: missing config keys {missing}")
    check_keys(cfg, path)
    return cfg


def _known_keys(cfg: dict) -> dict:
    """{'section[.key...]': known keys} of every mapping of ``cfg`` whose keys are checked."""
    from ..models import MODELS
    from .tsjnet_losses import LOSS_WEIGHTS
    from .tsjnet_steps import JOINT_KEYS

    known = {s: REQUIRED[s] + OPTIONAL[s] for s in REQUIRED}
    known.update(NESTED)
    known["train.joint"] = tuple(JOINT_KEYS)
    known["train.joint.loss_weights"] = tuple(LOSS_WEIGHTS)
    name = cfg["model"]["name"]
    check_choice("model.name", name, sorted(MODELS))
    # num_classes is not a key: the trainer sets it from data.classes
    known["model.config"] = tuple(f.name for f in dataclasses.fields(MODELS[name][1])
                                  if f.name != "num_classes")
    return known


def check_keys(cfg: dict, path: str | os.PathLike = "config") -> None:
    """Reject keys the trainer would not read: in the ``data``, ``model`` and ``train``
    sections and in the mappings inside them (``NESTED``, ``model.config`` = the fields of the
    model's config dataclass but ``num_classes``, ``train.joint``, its ``det_optim`` and
    ``loss_weights``). A misspelt key would otherwise be ignored without a word (its default
    used instead).

    Raises:
        ValueError: naming every unknown key in full (``train.seg_optim.weight_decy``), the
            closest known key where one is close, and the known keys of each mapping concerned;
            or a checked entry that is not a mapping; or an unknown ``model.name``.
    """
    known = _known_keys(cfg)
    unknown, hints, where = [], [], []
    for dotted, keys in known.items():
        if not _present(cfg, dotted):  # a missing required key is reported by load_config
            continue
        node = cfg
        for part in dotted.split("."):
            node = node[part]
        if node is None and dotted in _NULLABLE:
            continue
        if not isinstance(node, dict):
            raise ValueError(f"{path}: config key {dotted} must be a mapping of "
                             f"{', '.join(keys)}; got {node!r}")
        bad = [k for k in node if k not in keys]
        for k in bad:
            unknown.append(f"{dotted}.{k}")
            close = difflib.get_close_matches(str(k), keys, n=1)
            if close:
                hints.append(f"{dotted}.{k} -> {dotted}.{close[0]}?")
            if dotted == "model.config" and k == "num_classes":
                hints.append("model.config.num_classes comes from data.classes")
        if bad:
            where.append(f"{dotted}: {', '.join(keys)}")
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}"
                         + (f" ({'; '.join(hints)})" if hints else "")
                         + "; known keys of " + "; ".join(where))


def _present(cfg: dict, dotted: str) -> bool:
    """Whether the key ``dotted`` is in ``cfg`` (whatever its value)."""
    node = cfg
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return isinstance(node, dict) and leaf in node


def parse_overrides(items) -> dict:
    """['train.lr=1e-4', 'model.config.encoder=mit-b1'] -> nested dict (values parsed as YAML).

    Raises ValueError for an item without '='."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs key=value, got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out
