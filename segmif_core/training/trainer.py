"""Training loop for SegMiF and the baselines, driven by a YAML config (see config/train/*.yaml).

Joint objective of Liu et al., ICCV 2023, Eq. (7): L = lambda_1 L_f + lambda_2 L_s, with the fusion
loss L_f of Eq. (6) on the fused luminance (baselines: L_s only). The best checkpoint is selected
on the validation split by mIoU (never on a test split). Checkpoints and logs are written
atomically under ``out``.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from ..checkpoint import atomic_torch_save, save_checkpoint
from ..data.classes import get_class_set
from ..data.pairs import PairDataset, check_pairs, list_pairs, read_pair
from ..metrics import ConfusionMatrix
from ..models import build_model
from ..models.preprocessing import split_luminance
from .losses import class_weights, fusion_loss, segmentation_loss

DEFAULTS = {
    "seed": 0,
    "out": "runs/train",
    "data": {"root": None, "train_split": "train.txt", "val_split": "val.txt", "classes": "mfnet",
             "size": [240, 320], "crop": [240, 320], "scale_range": [0.5, 2.0],
             "brightness": 0.2, "flip": True,
             "thermal": {"mode": "percentile", "low": 1.0, "high": 99.0, "min": 0, "max": 65535}},
    "model": {"name": "segmif", "config": {}},
    "train": {"batch_size": 8, "iterations": 1000, "max_minutes": 0, "workers": 0,
              "lr": 1e-3, "weight_decay": 0.01, "poly_power": 0.9, "warmup_iters": 0,
              "class_weighting": "enet", "eta": 1.0, "lambda_fusion": 1.0, "lambda_seg": 1.0,
              "val_every": 200, "log_every": 10, "threads": 0, "device": "cpu"},
}


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge (override wins); unknown top-level sections are refused."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "config":
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Load a training YAML over DEFAULTS; a relative data.root is resolved against the file."""
    path = Path(path)
    with open(path) as f:
        user = yaml.safe_load(f) or {}
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: unknown config sections {sorted(unknown)}")
    cfg = merge(merge(DEFAULTS, user), overrides or {})
    if not cfg["data"]["root"]:
        raise ValueError(f"{path}: data.root is required")
    root = Path(cfg["data"]["root"])
    cfg["data"]["root"] = str(root if root.is_absolute() else (path.parent / root).resolve())
    return cfg


def _datasets(cfg: dict):
    d = cfg["data"]
    th = d["thermal"]
    common = dict(size=tuple(d["size"]), thermal_mode=th["mode"], thermal_low=th["low"],
                  thermal_high=th["high"], thermal_min=th["min"], thermal_max=th["max"])
    train_names = list_pairs(d["root"], d["train_split"])
    val_names = list_pairs(d["root"], d["val_split"])
    # check every file before the first step: a bad pair must not crash the run later
    check_pairs(d["root"], train_names + val_names, require_labels=True)
    train = PairDataset(d["root"], train_names, train=True, crop=tuple(d["crop"]),
                        scale_range=tuple(d["scale_range"]), brightness=d["brightness"],
                        flip=d["flip"], **common)
    val = PairDataset(d["root"], val_names, train=False, **common)
    return train, val


def _label_counts(root: str, names: list[str], num_classes: int) -> torch.Tensor:
    counts = np.zeros(num_classes, np.int64)
    for n in names:
        lab = read_pair(root, n)[2]
        counts += np.bincount(lab.ravel(), minlength=num_classes)[:num_classes]
    return torch.from_numpy(counts)


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device, class_names=None) -> dict:
    """Confusion-matrix mIoU over the whole loader (class 0 included, absent classes skipped)."""
    model.eval()
    cm = ConfusionMatrix(num_classes, class_names=class_names)
    for batch in loader:
        pred = model.predict(batch["vis"].to(device), batch["ir"].to(device))["labels"]
        cm.update(pred.cpu(), batch["label"])
    model.train()
    return cm.summary()


def losses_for(model, out: dict, batch: dict, weight, tc: dict) -> dict:
    """Eq. (7) parts for one batch: {'seg', 'fusion' (segmif only), 'total', ...}."""
    parts = {"seg": segmentation_loss(out["logits"], batch["label"], weight)}
    total = tc["lambda_seg"] * parts["seg"]
    if out.get("fused") is not None:
        y, _ = split_luminance(batch["vis"])
        f = fusion_loss(out["fused"], y, batch["ir"], tc["eta"])
        parts.update({f"fusion_{k}": v for k, v in f.items() if k != "total"})
        parts["fusion"] = f["total"]
        total = total + tc["lambda_fusion"] * f["total"]
    parts["total"] = total
    return parts


def train(cfg: dict, log=print) -> dict:
    """Train from a config dict (see ``load_config``). Returns a summary dict (also written to
    ``out/summary.json``): best val mIoU, its iteration, per-class IoU, wall time."""
    tc = cfg["train"]
    out_dir = Path(cfg["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    if tc["threads"]:
        torch.set_num_threads(int(tc["threads"]))
    device = torch.device(tc["device"])
    classes = get_class_set(cfg["data"]["classes"])
    train_set, val_set = _datasets(cfg)
    mc = dict(cfg["model"]["config"])
    mc["num_classes"] = classes.num_classes
    model = build_model(cfg["model"]["name"], mc).to(device).train()
    weight = None
    if tc["class_weighting"] == "enet":
        weight = class_weights(_label_counts(train_set.root, train_set.names,
                                             classes.num_classes)).to(device)
    g = torch.Generator().manual_seed(cfg["seed"])
    loader = DataLoader(train_set, batch_size=tc["batch_size"], shuffle=True, drop_last=True,
                        num_workers=tc["workers"], generator=g, persistent_workers=tc["workers"] > 0)
    val_loader = DataLoader(val_set, batch_size=1, shuffle=False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    iters, warm = int(tc["iterations"]), int(tc["warmup_iters"])

    budget_s = 60.0 * tc["max_minutes"] if tc["max_minutes"] else math.inf

    def progress(it):  # fraction of the run done: by iterations or by the time budget
        return min(1.0, max(it / iters, (time.time() - t0) / budget_s))

    def lr_at(it):  # linear warm-up, then poly decay over the progress
        if it < warm:
            return tc["lr"] * (it + 1) / warm
        return tc["lr"] * (1 - progress(it)) ** tc["poly_power"]

    with open(out_dir / "config.yaml", "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    log_path = out_dir / "log.csv"
    log_f = open(log_path, "w", newline="")
    writer = None
    best = {"mIoU": -1.0}
    t0 = time.time()
    it = 0
    stop = False
    while not stop:
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            for group in opt.param_groups:
                group["lr"] = lr_at(it)
            out = model(batch["vis"], batch["ir"])
            parts = losses_for(model, out, batch, weight, tc)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            it += 1
            row = {"iter": it, "time_s": round(time.time() - t0, 1), "lr": opt.param_groups[0]["lr"],
                   **{k: round(float(v.detach()), 5) for k, v in parts.items()}}
            last = progress(it) >= 1.0
            if it % tc["val_every"] == 0 or last:
                s = evaluate(model, val_loader, classes.num_classes, device, classes.names)
                row["val_mIoU"] = round(s["mIoU"], 3)
                if s["mIoU"] > best["mIoU"]:
                    best = {"mIoU": s["mIoU"], "mAcc": s["mAcc"], "iteration": it,
                            "per_class": {k: v["iou"] for k, v in s["per_class"].items()}}
                    save_checkpoint(out_dir / "best.pt", model, classes, cfg["data"]["size"],
                                    meta={"val": best, "train_config": cfg})
            if writer is None:
                writer = csv.DictWriter(log_f, fieldnames=list(row) + ["val_mIoU"],
                                        extrasaction="ignore")
                writer.writeheader()
            writer.writerow(row)
            log_f.flush()
            if it % tc["log_every"] == 0 or "val_mIoU" in row:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items()))
            if last:
                stop = True
                break
    log_f.close()
    atomic_torch_save({"model": model.state_dict(), "iteration": it}, out_dir / "last_state.pt")
    summary = {"best": best, "iterations": it, "wall_minutes": round((time.time() - t0) / 60, 2),
               "threads": torch.get_num_threads(), "device": str(device)}
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out_dir / "summary.json")
    return summary
