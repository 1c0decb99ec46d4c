"""Training configs: YAML files that extend each other with ``base: FILE``, ``--set`` overrides,
and the check of sections and keys (``REQUIRED`` and ``OPTIONAL``; see ``config/train/paper.yaml``
for what every key means)."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

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
    "data": ("layout", "cache", "fusion_crop", "modality_dropout"),
    "model": (),
    "train": ("threads", "dist_timeout_min", "fused_cache", "final_seg_iters", "init",
              "joint"),  # joint: the one-stage schedule of models with a detector (TSJNet)
}


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
    unknown = [f"{s}.{k}" for s, keys in REQUIRED.items() for k in cfg[s]
               if k not in keys and k not in OPTIONAL[s]]
    if unknown:  # a misspelt key would otherwise be ignored without a word
        raise ValueError(f"{path}: unknown config keys {unknown}; known: " + "; ".join(
            f"{s}: {', '.join(REQUIRED[s] + OPTIONAL[s])}" for s in REQUIRED))
    return cfg


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
