"""Interactive training of SegMiF (and the baselines), driven by a YAML config.

Liu et al., ICCV 2023, Sec. 3.4: training alternates, for ``rounds`` rounds, between
- ``seg_iters`` segmentation steps: Psi is trained with the cross entropy L_s on the fused images
  that the current Phi produces (Phi frozen, no gradient through it), with its own optimiser;
- ``fusion_iters`` fusion steps: Phi is trained with the joint loss of Eq. (7),
  lambda_fusion L_f + lambda_seg L_s, where L_s flows back through the (frozen) Psi and Psi's
  features guide Phi through HIA; the lambdas come from the dynamic weighting of Eqs. (8)-(9)
  (``weighting.py``) or are static.
With ``fused_cache`` (optional key, default false) the fused images of a segmentation phase are
made once per round: when the phase starts, Phi fuses every training pair at ``data.size``
(guided by Psi's encoder as it is at that moment, in eval mode), the result is kept in memory and
in ``out/fused_cache.pt`` (so that a resumed run trains on the same images), and the segmentation
steps augment those fused images (random resize, crop, flip, brightness) instead of fusing each
augmented pair again; no pair is loaded for those steps. Psi then trains at the speed of a
single-image SegFormer, which pays off where Phi is the expensive part (the paper's model: 0.64
of 0.83 TFLOP per frame). Two approximations of the paper's order: augmenting after fusion is not
exactly fusing augmented inputs (rescaling, borders, brightness applied to the fused image rather
than to the visible one), and the guidance features stay those of the phase start while Psi
learns. Memory: one uint8 RGB image and label per training pair, in every process.
``final_seg_iters`` (optional, default 0) adds a last segmentation phase after the rounds, so
that the released Psi has trained on the images of the released Phi (ours; the paper's schedule
ends with a fusion phase).
Fusion and warm-up steps crop their pairs to ``data.fusion_crop`` (optional, default ``data.crop``),
segmentation steps to ``data.crop``: Phi costs per pixel, so small fusion crops and large
segmentation crops (context for Psi) share a budget well.
Baselines (no fusion network) only run segmentation steps (``rounds * (seg_iters + fusion_iters)``
of them, so that a baseline gets the same number of steps).

Every number comes from the config (see ``config/train/paper.yaml``; other files extend it with
``base: FILE``). Learning rates: linear warm-up from ``warmup_lr`` for ``warmup_iters`` steps, then
poly decay ``lr_min + (lr - lr_min) * (1 - progress)^power`` over the optimiser's own steps (or over
the ``max_minutes`` budget if that ends sooner). The best checkpoint is selected on the
validation split, never on a test split.

Outputs under ``out``: ``best.pt`` (release checkpoint, fp16, config inside), ``last.pt`` (full
resumable state: weights, optimisers, schedule position, loss weights, RNG; written atomically
every ``ckpt_every`` steps, at the end and on SIGINT/SIGTERM), ``log.csv`` (one row per step:
losses, lambdas, learning rates, throughput; at validations val mIoU and, for SegMiF, the
fused image's Qabf and SF on the val split, so that a recipe that blurs the fused image is seen),
``plots/*.png``, ``config.yaml``,
``summary.json``. ``resume: true`` continues from ``last.pt`` exactly: data order and
augmentation are a function of (seed, step), so an interrupted and resumed run gives the same
weights as an uninterrupted one on CPU (on CUDA only up to the nondeterminism of cuDNN and atomic
scatter kernels).

Devices: CPU, one CUDA GPU (bf16 autocast and channels_last when ``amp``/``channels_last``), or
several GPUs with ``torchrun --nproc_per_node N -m segmif_core.training.trainer --config FILE``
(DistributedDataParallel; ``batch_size`` is per process). Under DDP the processes agree on the
elapsed time and on a stop request at every step (one small all-reduce), average the two losses
before the Eq. (8)-(9) update, and only rank 0 validates and writes files; ``dist_timeout_min``
(optional key, default 60) bounds how long the others wait for it. Losses are computed outside
bf16 autocast, in fp32.
"""
from __future__ import annotations

import copy
import csv
import datetime
import json
import math
import os
import random
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
from ..data.classes import get_class_set
from ..data.pairs import PairDataset, check_pairs, list_pairs, read_pair
from ..evaluation import write_json_atomic
from ..metrics import ConfusionMatrix
from ..metrics.fusion import qabf, spatial_frequency
from ..models import build_model
from ..models.preprocessing import split_luminance
from .losses import class_weights, fusion_loss, segmentation_loss
from .weighting import make_weighting

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
    "data": ("layout", "cache", "fusion_crop"),
    "model": (),
    "train": ("threads", "dist_timeout_min", "fused_cache", "final_seg_iters", "init"),
}


def _print_flushed(msg: str) -> None:
    """Default progress log: stdout, flushed at once, so that ``segmif train > run.log`` can be
    followed with ``tail -f`` (a redirected stdout is otherwise block-buffered)."""
    print(msg, flush=True)


# ----------------------------------------------------------------------------- config
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


# ----------------------------------------------------------------------------- data
class _Seeded(Dataset):
    """Items addressed by (index, seed, source): item ``index`` of ``datasets[source]`` (the same
    pairs with different crops), whose augmentation depends only on its seed."""

    def __init__(self, *datasets: PairDataset):
        self.datasets = datasets

    def __len__(self):
        return len(self.datasets[0])

    def __getitem__(self, key):
        index, seed, source = key
        if index is None:  # a step whose batch does not come from the loader
            return {"skipped": torch.zeros(())}
        torch.manual_seed(seed)
        return self.datasets[source][index]


class StepBatches:
    """Batch plan as a function of (seed, step): an epoch-wise permutation of the training set,
    ``batch`` items per process and step, rank ``rank`` of ``world`` taking its own slice.
    Iterating from ``start`` resumes exactly where a run stopped. Steps for which ``skip(step)``
    is true yield a placeholder ``[(None, step)]`` (their batch is made elsewhere, e.g. from the
    fused-image cache), so the loader loads nothing for them. ``source(step)`` (default 0) picks
    the dataset of ``_Seeded`` that serves the step (0 segmentation crops, 1 fusion crops)."""

    def __init__(self, n: int, batch: int, seed: int, start: int = 0, rank: int = 0,
                 world: int = 1, skip=None, source=None):
        if n < batch * world:
            raise ValueError(f"{n} training pairs is fewer than one global batch "
                             f"({batch} x {world} processes)")
        self.n, self.batch, self.seed, self.start = n, batch, seed, start
        self.rank, self.world, self.skip = rank, world, skip
        self.source = source or (lambda step: 0)
        self.per_epoch = n // (batch * world)

    def indices(self, step: int) -> list[tuple[int, int]]:
        epoch, pos = divmod(step, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch)).tolist()
        first = (pos * self.world + self.rank) * self.batch
        return [(perm[first + j], (self.seed * 7_919 + step) * 4_096 + self.rank * 256 + j)
                for j in range(self.batch)]

    def __iter__(self):
        step = self.start
        while True:
            if self.skip is not None and self.skip(step):
                yield [(None, step, 0)]
            else:
                src = self.source(step)
                yield [(index, seed, src) for index, seed in self.indices(step)]
            step += 1

    def __len__(self):  # effectively infinite; DataLoader needs a length only for len()
        return 2 ** 62


def build_datasets(cfg: dict):
    """(train PairDataset, val PairDataset, class set) after checking every file."""
    d = cfg["data"]
    th = d["thermal"]
    layout = {"layout": d["layout"]} if d.get("layout") else {}
    common = dict(size=tuple(d["size"]), thermal_mode=th["mode"], thermal_low=th["low"],
                  thermal_high=th["high"], thermal_min=th["min"], thermal_max=th["max"],
                  **layout)
    classes = get_class_set(d["classes"])
    train_names = list_pairs(d["root"], d["train_split"], **layout)
    val_names = list_pairs(d["root"], d["val_split"], **layout)
    # every file is checked before the first step: a bad pair must not stop the run later
    for names in (train_names, val_names):
        check_pairs(d["root"], names, require_labels=True, num_classes=classes.num_classes,
                    **layout)
    train = PairDataset(d["root"], train_names, train=True, crop=tuple(d["crop"]),
                        scale_range=tuple(d["scale_range"]), brightness=d["brightness"],
                        flip=d["flip"], cache=bool(d.get("cache", False)), **common)
    val = PairDataset(d["root"], val_names, train=False, cache=bool(d.get("cache", False)),
                      **common)
    return train, val, classes


def label_counts(dataset: PairDataset, num_classes: int) -> torch.Tensor:
    counts = np.zeros(num_classes, np.int64)
    kw = {"layout": dataset.layout} if hasattr(dataset, "layout") else {}
    for n in dataset.names:
        lab = read_pair(dataset.root, n, **kw)[2]
        counts += np.bincount(lab.ravel(), minlength=num_classes)[:num_classes]
    return torch.from_numpy(counts)


# ----------------------------------------------------------------------------- helpers
def _lr(oc: dict, step: int, total: int, time_progress: float) -> float:
    """Warm-up then poly decay (see the module docstring)."""
    if step < oc["warmup_iters"]:
        return oc["warmup_lr"]
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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():  # the current device's generator only (resume may see fewer)
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if torch.is_tensor(cuda) and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device, class_names=None) -> dict:
    """Confusion-matrix metrics over the whole loader (class 0 included, absent classes
    skipped; see ``ConfusionMatrix.summary``).

    For a model with a fusion network (attribute ``fusion``) the result also has ``fusion``:
    the mean Qabf (edge preservation, Xydeas and Petrovic 2000; in [0, 1]) and SF (spatial
    frequency, grey levels of 8-bit images) of the fused luminance against the visible luminance
    and the thermal image, at the loader's image size, so that a recipe that blurs the fused
    image shows up in the validation log (Qabf of the per-pixel average of the two sources is a
    useful floor: on the MFNet val split at 240x320 it is 0.41).
    """
    was = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, class_names=class_names)
    fuses = hasattr(model, "fusion")
    qabf_sum = sf_sum = 0.0
    n = 0
    for batch in loader:
        vis, ir = batch["vis"].to(device), batch["ir"].to(device)
        out = model.predict(vis, ir)
        cm.update(out["labels"].cpu(), batch["label"])
        if fuses:
            u = split_luminance(out["fused_rgb"])[0]
            x = split_luminance(vis.float())[0]
            for ui, xi, yi in zip(_to_u8(u), _to_u8(x), _to_u8(ir.float())):
                qabf_sum += qabf(xi, yi, ui)
                sf_sum += spatial_frequency(ui)
                n += 1
    model.train(was)
    summary = cm.summary()
    if fuses and n:
        summary["fusion"] = {"Qabf": qabf_sum / n, "SF": sf_sum / n}
    return summary


def _to_u8(t: torch.Tensor) -> list[np.ndarray]:
    """(B, 1, H, W) float in [0, 1] -> B arrays (H, W) uint8 (rounded)."""
    return list((t[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def write_plots(log_csv: Path, plot_dir: Path) -> None:
    """PNG plots of losses, lambdas, val mIoU and val fusion quality from the CSV log (atomic
    writes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    plot_dir.mkdir(parents=True, exist_ok=True)
    step = np.array([int(r["step"]) for r in rows])

    def series(key):
        v = np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])
        return v

    panels = {"losses": ["seg", "fusion", "fusion_ssim", "fusion_mse", "fusion_grad"],
              "lambdas": ["lambda_fusion", "lambda_seg"], "val_miou": ["val_mIoU"],
              "val_qabf": ["val_Qabf"], "val_sf": ["val_SF"]}
    for name, keys in panels.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            if key in rows[0]:
                v = series(key)
                ok = ~np.isnan(v)
                if ok.any():
                    ax.plot(step[ok], v[ok], "o-" if name.startswith("val_") else "-", label=key,
                            lw=1)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        fig.tight_layout()
        tmp = plot_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        os.replace(tmp, plot_dir / f"{name}.png")


def _truncate_log(log_csv: Path, last_step: int) -> list[str] | None:
    """Drop the rows after ``last_step`` (logged after the last checkpoint by a run that was
    killed before it could save), so that a resumed run does not log those steps twice.
    Returns the log's columns (None for a file without a header)."""
    with open(log_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = [r for r in reader if r.get("step", "").isdigit() and int(r["step"]) <= last_step]
    if not fields:
        return None
    tmp = log_csv.with_name(f".{log_csv.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, log_csv)
    return fields


# ----------------------------------------------------------------------------- training
class Trainer:
    """Runs the schedule of the module docstring. ``run()`` returns the summary dict."""

    FIELDS = ["step", "round", "phase", "time_s", "img_per_s", "lr_seg", "lr_fusion",
              "lambda_fusion", "lambda_seg", "seg", "fusion", "fusion_ssim", "fusion_mse",
              "fusion_grad", "total", "val_mIoU", "val_Qabf", "val_SF"]

    def __init__(self, cfg: dict, log=None):
        self.cfg, self.tc, self.log = cfg, cfg["train"], log or _print_flushed
        self.out = Path(cfg["out"])
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        dev = self.tc["device"]
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if self.distributed:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if dev.startswith("cuda"):  # before the process group, so NCCL uses this GPU
                torch.cuda.set_device(local)
                dev = f"cuda:{local}"
            # rank 0 validates and writes checkpoints and the fused cache while the others wait
            # in a collective: the timeout must cover that (optional key, minutes)
            dist.init_process_group(
                "nccl" if dev.startswith("cuda") else "gloo",
                timeout=datetime.timedelta(minutes=float(self.tc.get("dist_timeout_min", 60))))
        self.device = torch.device(dev)
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.device.index is not None:  # cuda:N: the current device is N too
            torch.cuda.set_device(self.device)           # (pinned-memory thread, RNG state)
        if self.tc.get("threads"):
            torch.set_num_threads(int(self.tc["threads"]))
        torch.manual_seed(cfg["seed"])
        np.random.seed(cfg["seed"])
        random.seed(cfg["seed"])

        self.train_set, self.val_set, self.classes = build_datasets(cfg)
        mc = dict(cfg["model"]["config"], num_classes=self.classes.num_classes)
        self.model = build_model(cfg["model"]["name"], mc).to(self.device).train()
        if self.tc.get("init"):
            self._init_from(self.tc["init"])
        if self.cuda and self.tc["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.has_fusion = hasattr(self.model, "fusion")
        seg_params = self.model.segmenter
        head = [p for n, p in seg_params.named_parameters() if n.startswith("head.")]
        enc = [p for n, p in seg_params.named_parameters() if not n.startswith("head.")]
        so, fo = self.tc["seg_optim"], self.tc["fusion_optim"]
        self.opt_seg = _optimizer(so, [{"params": enc, "lr_mult": 1.0},
                                       {"params": head, "lr_mult": so["head_lr_mult"]}])
        self.opt_fusion = (_optimizer(fo, [{"params": list(self.model.fusion.parameters())}])
                           if self.has_fusion else None)
        self.weighting = make_weighting(self.tc["weighting"])
        lc = self.tc["loss"]
        self.class_weight = None
        if lc["class_weighting"] == "enet":
            self.class_weight = class_weights(label_counts(self.train_set,
                                                           self.classes.num_classes))
            self.class_weight = self.class_weight.to(self.device)
        elif lc["class_weighting"] != "none":
            raise ValueError(f"class_weighting must be 'enet' or 'none', "
                             f"got {lc['class_weighting']!r}")
        self.net = self.model
        if self.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.cuda else None,
                find_unused_parameters=True)

        r, si, fi = self.tc["rounds"], self.tc["seg_iters"], self.tc["fusion_iters"]
        self.round_len = si + fi
        self.warmup = int(self.tc["fusion_warmup_iters"]) if self.has_fusion else 0
        # a last segmentation phase on the final Phi's fused images (optional key, default 0)
        self.final_seg = int(self.tc.get("final_seg_iters", 0) or 0)
        if self.final_seg < 0:
            raise ValueError(f"final_seg_iters must be >= 0, got {self.final_seg}")
        self.total_steps = self.warmup + r * self.round_len + self.final_seg
        self.total_seg = (r * si + self.final_seg
                          if self.has_fusion and not self.tc["fusion_phase_updates_seg"]
                          else self.total_steps)
        self.total_fusion = self.warmup + r * fi
        self.fused_cache = (bool(self.tc.get("fused_cache", False)) and self.has_fusion
                            and not self.tc["fusion_phase_updates_seg"])
        self._fused: list[np.ndarray] = []
        self._fused_labels: list[np.ndarray] = []
        self._fused_round: int | None = None
        self._plan: StepBatches | None = None
        self._resumed = False
        self.state = {"step": 0, "seg_steps": 0, "fusion_steps": 0, "elapsed_s": 0.0,
                      "best": {"mIoU": -1.0}, "run_id": uuid.uuid4().hex}
        if self.tc["resume"] and (self.out / "last.pt").is_file():
            self._load_last()
        self._stop_requested = False

    def _init_from(self, init: dict) -> None:
        """Start from the weights of a release checkpoint (``best.pt``, the shipped model):
        ``init = {checkpoint: PATH, parts: [fusion, segmenter]}`` copies the named sub-networks
        (e.g. fine-tuning the shipped model on a new rig, or training Psi on a frozen trained
        Phi). Overridden by ``last.pt`` on resume.
        Raises:
            ValueError: unknown parts, another model family, or shapes that do not match (a
                different class count or model config).
        """
        parts = list(init.get("parts", ["fusion", "segmenter"]))
        known = [n for n in ("fusion", "segmenter") if hasattr(self.model, n)]
        if not parts or set(parts) - set(known):
            raise ValueError(f"train.init.parts must be a non-empty subset of {known}, "
                             f"got {parts}")
        src, _, _ = load_checkpoint(init["checkpoint"])
        if src.name != self.model.name:
            raise ValueError(f"train.init.checkpoint holds a {src.name!r} model, this run "
                             f"trains {self.model.name!r}")
        for part in parts:
            new = {k: v.float() for k, v in getattr(src, part).state_dict().items()}
            try:  # strict: missing, unexpected or differently shaped tensors are refused
                getattr(self.model, part).load_state_dict(new)
            except RuntimeError as e:
                raise ValueError(f"train.init: the {part} of {init['checkpoint']} does not fit "
                                 f"this model: {e}") from e
        self.log(f"initialised {', '.join(parts)} from {init['checkpoint']}")

    # -- schedule
    def phase_of(self, step: int) -> tuple[int, str]:
        """(round index from 0, 'seg', 'fusion' or 'warmup') of a global step. The first
        ``fusion_warmup_iters`` steps ('warmup', round -1) train Phi on L_f alone, so that Psi
        first sees fused images that carry both modalities (without it, Psi learns from the
        near-constant output of an untrained Phi and then pulls Phi towards it). The
        ``final_seg_iters`` steps after the last round (round index ``rounds``) are segmentation
        steps on the final Phi's fused images."""
        if step < self.warmup:
            return -1, "warmup"
        rnd, pos = divmod(step - self.warmup, self.round_len)
        if rnd >= self.tc["rounds"]:  # after the rounds: the final segmentation phase
            return self.tc["rounds"], "seg"
        if not self.has_fusion:
            return rnd, "seg"
        return rnd, ("seg" if pos < self.tc["seg_iters"] else "fusion")

    # -- fused-image cache of the segmentation phases (see the module docstring)
    @torch.no_grad()
    def refresh_fused_cache(self, rnd: int) -> float:
        """Fused images of round ``rnd``: loaded from ``out/fused_cache.pt`` when that file holds
        this round (a resumed run), else made by fusing every training pair at ``data.size`` with
        the current networks (Psi's guidance pass in eval mode, RNG state untouched) and saved
        atomically. Returns the seconds spent."""
        t0 = time.time()
        path = self.out / "fused_cache.pt"
        if self._fused_round is None and self._resumed and path.is_file():  # only on resume
            saved = torch.load(path, map_location="cpu", weights_only=False)
            if saved.get("round") == rnd and len(saved["fused"]) == len(self.train_set):
                self._fused, self._fused_labels = saved["fused"], saved["labels"]
                return time.time() - t0
        plain = self.train_set.without_augmentation()
        self._fused, self._fused_labels = [], []
        chunk = max(1, int(self.tc["batch_size"]))
        was = self.model.training
        self.model.eval()
        devices = [self.device.index or 0] if self.cuda else []
        with torch.random.fork_rng(devices=devices):
            self._fuse_all(plain, chunk)
        self.model.train(was)
        if self.rank == 0:
            atomic_torch_save({"round": rnd, "fused": self._fused, "labels": self._fused_labels},
                              path)
        return time.time() - t0

    def _fuse_all(self, plain, chunk: int) -> None:
        for first in range(0, len(plain), chunk):
            items = [plain[i] for i in range(first, min(first + chunk, len(plain)))]
            same = len({tuple(it["vis"].shape) for it in items}) == 1
            groups = [items] if same else [[it] for it in items]
            for group in groups:
                vis = torch.stack([it["vis"] for it in group]).to(self.device)
                ir = torch.stack([it["ir"] for it in group]).to(self.device)
                with self._autocast():
                    rgb = self.model.fuse(vis, ir)[1].float()
                rgb = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
                for it, img in zip(group, rgb.numpy()):
                    self._fused.append(np.ascontiguousarray(img))
                    self._fused_labels.append(it["label"].numpy().astype(np.uint8))

    def fused_batch(self, step: int) -> dict:
        """The segmentation batch of ``step`` from the fused-image cache: the plan's pairs, each
        augmented with a generator seeded by its item seed (so a resumed run repeats it)."""
        vis, labels = [], []
        for index, seed in self._plan.indices(step):
            img = self._fused[index].astype(np.float32) / np.float32(255.0)
            f, _, lab = self.train_set.augment(img, None, self._fused_labels[index],
                                               np.random.default_rng(seed))
            vis.append(torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))))
            labels.append(torch.from_numpy(lab.astype(np.int64)))
        return {"vis": torch.stack(vis), "label": torch.stack(labels), "fused_rgb": True}

    # -- persistence
    def _load_last(self) -> None:
        ck = torch.load(self.out / "last.pt", map_location="cpu", weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt_seg.load_state_dict(ck["opt_seg"])
        if self.opt_fusion is not None:
            self.opt_fusion.load_state_dict(ck["opt_fusion"])
        self.weighting.load_state_dict(ck["weighting"])
        self.state = ck["state"]
        # a process killed during a validation (after the stop signal's save) may have written
        # a best.pt of this run that last.pt does not know of: keep its score as the bar to beat
        best = self.out / "best.pt"
        if best.is_file() and self.state.get("run_id"):
            meta = torch.load(best, map_location="cpu", weights_only=True).get("meta", {})
            val = meta.get("val")
            if (meta.get("run_id") == self.state["run_id"] and isinstance(val, dict)
                    and val.get("mIoU", -math.inf) > self.state["best"]["mIoU"]):
                self.state["best"] = val
        self.state.setdefault("run_id", uuid.uuid4().hex)  # a last.pt of an older version
        _set_rng_state(ck["rng"])
        self._resumed = True
        self.log(f"resumed from {self.out / 'last.pt'} at step {self.state['step']}")

    def save_last(self) -> None:
        if self.rank != 0:
            return
        atomic_torch_save({
            "model": self.model.state_dict(), "opt_seg": self.opt_seg.state_dict(),
            "opt_fusion": self.opt_fusion.state_dict() if self.opt_fusion else None,
            "weighting": self.weighting.state_dict(), "state": self.state, "rng": _rng_state(),
            "config": self.cfg}, self.out / "last.pt")

    # -- one step
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=self.cuda and bool(self.tc["amp"]))

    def train_step(self, batch: dict, phase: str) -> dict:
        """One optimiser step of ``phase``; ``batch`` has ``vis``, ``ir``, ``label``, or for a
        cached segmentation step (``fused_rgb`` true) the fused RGB image as ``vis``."""
        vis, ir, label = batch["vis"], batch.get("ir"), batch["label"]
        lc = self.tc["loss"]
        row = {}
        if phase == "warmup":  # Phi on the fusion loss alone (Eq. 6), Psi untouched
            if not self.distributed:  # no graph through Psi's guidance pass
                self.model.segmenter.requires_grad_(False)
            try:
                with self._autocast():
                    # under DDP the wrapped forward keeps the gradients of the ranks in sync;
                    # phase 'fusion' returns only Phi's outputs (all of them feed the loss)
                    u = (self.net(vis, ir, phase="fusion")["fused"] if self.distributed
                         else self.model.fuse(vis, ir)[0])
                y, _ = split_luminance(vis)
                # losses outside autocast: blur, saliency histogram and SSIM in fp32
                f = fusion_loss(u.float(), y.float(), ir.float(), lc["eta"])
                self.opt_fusion.zero_grad(set_to_none=True)
                f["total"].backward()
                self.opt_fusion.step()
            finally:
                self.model.segmenter.requires_grad_(True)
            self.opt_seg.zero_grad(set_to_none=True)
            row.update(fusion=f["total"].item(), fusion_ssim=f["ssim"].item(),
                       fusion_mse=f["mse"].item(), fusion_grad=f["grad"].item(),
                       total=f["total"].item())
            return row
        if phase == "seg":
            with self._autocast():
                out = (self.net(vis, None, phase="fused") if batch.get("fused_rgb")
                       else self.net(vis, ir, phase="seg"))
            loss = segmentation_loss(out["logits"].float(), label, self.class_weight,
                                     lc["ignore_index"])
            self.opt_seg.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_seg.step()
            row.update(seg=loss.item(), total=loss.item())
            return row
        # fusion phase: Psi frozen (its gradients are not needed, only through its input), unless
        # fusion_phase_updates_seg (plain end-to-end training of both networks on Eq. 7)
        joint = bool(self.tc["fusion_phase_updates_seg"])
        # frozen Psi: eval mode (no drop path, dropout or BatchNorm statistics updates) on every
        # process; requires_grad is only switched off without DDP (DDP registered its hooks at
        # construction, so under DDP Psi's gradients are computed and simply not applied)
        freeze = not joint
        if freeze:
            if not self.distributed:
                self.model.segmenter.requires_grad_(False)
            self.model.segmenter.eval()
        try:
            with self._autocast():
                # a frozen Psi's guidance pass needs no graph (under DDP its parameters keep
                # requires_grad: without this, every fusion step would keep its activations)
                out = self.net(vis, ir, phase="joint", guidance_grad=not freeze)
            y, _ = split_luminance(vis)
            f = fusion_loss(out["fused"].float(), y.float(), ir.float(), lc["eta"])
            ls = segmentation_loss(out["logits"].float(), label, self.class_weight,
                                   lc["ignore_index"])
            lam = self.weighting.current()
            total = lam["fusion"] * f["total"] + lam["seg"] * ls
            self.opt_fusion.zero_grad(set_to_none=True)
            self.opt_seg.zero_grad(set_to_none=True)
            total.backward()
            self.opt_fusion.step()
            if joint:
                self.opt_seg.step()
        finally:
            if freeze:
                self.model.segmenter.requires_grad_(True)
                self.model.segmenter.train()
        self.opt_seg.zero_grad(set_to_none=True)
        losses = torch.tensor([f["total"].item(), ls.item()], dtype=torch.float64)
        if self.distributed:  # the same Eq. (8)-(9) weights on every process
            losses = losses.to(self.device)
            dist.all_reduce(losses)
            losses = losses.cpu() / self.world
        self.weighting.update({"fusion": float(losses[0]), "seg": float(losses[1])})
        row.update(seg=ls.item(), fusion=f["total"].item(), fusion_ssim=f["ssim"].item(),
                   fusion_mse=f["mse"].item(), fusion_grad=f["grad"].item(),
                   total=total.item(), lambda_fusion=lam["fusion"], lambda_seg=lam["seg"])
        return row

    # -- loop
    def run(self) -> dict:
        tc = self.tc
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            with open(self.out / "config.yaml", "w") as f:
                yaml.safe_dump(self.cfg, f, sort_keys=False)
        skip = ((lambda st: self.phase_of(st)[1] == "seg") if self.fused_cache else None)
        # fusion and warm-up steps load pairs cropped to data.fusion_crop, segmentation steps
        # to data.crop (the same unless fusion_crop is set)
        plan = StepBatches(len(self.train_set), tc["batch_size"], self.cfg["seed"],
                           self.state["step"], self.rank, self.world, skip=skip,
                           source=lambda st: int(self.phase_of(st)[1] != "seg"))
        self._plan = plan
        fusion_crop = self.cfg["data"].get("fusion_crop") or self.cfg["data"]["crop"]
        loader = DataLoader(_Seeded(self.train_set, self.train_set.with_crop(fusion_crop)),
                            batch_sampler=plan,
                            num_workers=tc["workers"], pin_memory=self.cuda,
                            persistent_workers=tc["workers"] > 0)
        val_loader = DataLoader(self.val_set, batch_size=1, shuffle=False)
        log_path = self.out / "log.csv"
        new_log = not (log_path.exists() and self.state["step"] > 0)
        log_f = writer = None
        if self.rank == 0:  # only rank 0 touches the log
            fields = self.FIELDS
            if not new_log:  # a resumed run keeps the columns of the log it continues (an
                # older version's log may lack some)
                fields = _truncate_log(log_path, self.state["step"]) or self.FIELDS
            log_f = open(log_path, "w" if new_log else "a", newline="")
            writer = csv.DictWriter(log_f, fieldnames=fields, extrasaction="ignore")
            if new_log:
                writer.writeheader()
        budget = 60.0 * tc["max_minutes"] if tc["max_minutes"] else math.inf
        t_start = time.time() - self.state["elapsed_s"]

        def on_signal(signum, _frame):
            self._stop_requested = True
            self.log(f"signal {signum}: saving last.pt and stopping after this step")

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = None
        if tc["progress"] and self.rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=self.total_steps, initial=self.state["step"], unit="step",
                       dynamic_ncols=True)
        try:
            t_last = time.time()
            for batch in loader:
                step = self.state["step"]
                elapsed, stop = self._agree(time.time() - t_start)
                if step >= self.total_steps or stop:
                    break
                if elapsed >= budget:
                    self.log(f"time budget of {tc['max_minutes']} min reached at step {step}")
                    break
                time_progress = elapsed / budget
                rnd, phase = self.phase_of(step)
                # the step's own RNG stream (dropout, drop path): a function of (seed, step, rank)
                # only, so a resumed run draws what an uninterrupted one draws
                torch.manual_seed((self.cfg["seed"] * 1_000_033 + step) * 64 + self.rank)
                if phase == "seg" and self.fused_cache:
                    if self._fused_round != rnd:  # made once per segmentation phase
                        secs = self.refresh_fused_cache(rnd)
                        self._fused_round = rnd
                        if self.rank == 0:
                            self.log(f"round {rnd + 1}: fused {len(self._fused)} training pairs "
                                     f"for the segmentation phase in {secs:.1f} s")
                    batch = self.fused_batch(step)
                batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                         for k, v in batch.items()}
                if self.cuda and tc["channels_last"]:
                    for k in ("vis", "ir"):
                        if k in batch:
                            batch[k] = batch[k].contiguous(memory_format=torch.channels_last)
                seg_step = self.state["seg_steps"]
                if tc["fusion_phase_updates_seg"]:  # Psi also steps in fusion phases
                    seg_step += self.state["fusion_steps"]
                lr_seg = _lr(tc["seg_optim"], seg_step, self.total_seg, time_progress)
                _set_lr(self.opt_seg, lr_seg)
                lr_fusion = None
                if self.opt_fusion is not None:
                    lr_fusion = _lr(tc["fusion_optim"], self.state["fusion_steps"],
                                    self.total_fusion, time_progress)
                    _set_lr(self.opt_fusion, lr_fusion)
                row = self.train_step(batch, phase)
                self.state["fusion_steps" if phase == "warmup" else f"{phase}_steps"] += 1
                self.state["step"] = step = step + 1
                now = time.time()
                elapsed, stop = self._agree(now - t_start)
                self.state["elapsed_s"] = elapsed
                row.update(step=step, round=rnd + 1, phase=phase,  # round 0 = warm-up
                           time_s=round(self.state["elapsed_s"], 2),
                           img_per_s=round(tc["batch_size"] * self.world / max(1e-9,
                                                                               now - t_last), 2),
                           lr_seg=lr_seg, lr_fusion=lr_fusion)
                t_last = now
                last = step >= self.total_steps or stop or elapsed >= budget
                if stop:  # a stop signal: save before validating (torchrun and SLURM kill the
                    self.save_last()  # process some 30 s after forwarding the signal)
                if step % tc["val_every"] == 0 or last:
                    row.update(self.validate(val_loader, step))  # {} on ranks other than 0
                if self.rank == 0:
                    writer.writerow(row)
                    log_f.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v)
                                     for k, v in row.items()
                                     if k in ("phase", "seg", "fusion", "lambda_fusion",
                                              "lambda_seg", "img_per_s", "val_mIoU", "val_Qabf")})
                elif self.rank == 0 and (step % tc["log_every"] == 0 or "val_mIoU" in row):
                    self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in row.items() if v is not None))
                if last:  # saved once, after the loop
                    break
                if step % tc["ckpt_every"] == 0:
                    self.save_last()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if bar is not None:
                bar.close()
            if log_f is not None:
                log_f.close()
        self.save_last()  # the final state, however the loop ended
        if self.rank == 0:
            write_plots(log_path, self.out / "plots")
        summary = {"best": self.state["best"], "steps": self.state["step"],
                   "seg_steps": self.state["seg_steps"],
                   "fusion_steps": self.state["fusion_steps"],
                   "wall_minutes": round(self.state["elapsed_s"] / 60, 2),
                   "device": str(self.device), "world_size": self.world,
                   "threads": torch.get_num_threads(),
                   "model": self.cfg["model"]}
        if self.rank == 0:
            write_json_atomic(summary, self.out / "summary.json")
        if self.distributed:
            dist.destroy_process_group()
        return summary

    def _agree(self, elapsed: float) -> tuple[float, bool]:
        """(elapsed seconds, stop requested) as all processes see them: the maximum over ranks
        under DDP, so that every rank takes the same stop decision at the same step and the same
        time-based learning rate (a rank leaving the loop alone would deadlock the others in the
        next collective). Without DDP: the arguments as they are."""
        if not self.distributed:
            return elapsed, self._stop_requested
        t = torch.tensor([elapsed, 1.0 if self._stop_requested else 0.0], dtype=torch.float64,
                         device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t[0]), bool(t[1] > 0)

    def validate(self, val_loader, step: int):
        if self.distributed:
            dist.barrier()
        scores = {}
        if self.rank == 0:
            s = evaluate(self.model, val_loader, self.classes.num_classes, self.device,
                         list(self.classes.names))
            scores["val_mIoU"] = round(s["mIoU"], 3)
            for k, v in s.get("fusion", {}).items():
                scores[f"val_{k}"] = round(v, 4)
            if s["mIoU"] > self.state["best"]["mIoU"]:
                self.state["best"] = {
                    "mIoU": s["mIoU"], "mAcc": s["mAcc"], "step": step,
                    "per_class": {k: v["iou"] for k, v in s["per_class"].items()}}
                if "fusion" in s:
                    self.state["best"]["fusion"] = s["fusion"]
                save_checkpoint(self.out / "best.pt", self.model, self.classes,
                                self.cfg["data"]["size"],
                                meta={"val": self.state["best"], "train_config": self.cfg,
                                      "run_id": self.state["run_id"]})
            write_plots(self.out / "log.csv", self.out / "plots")
        if self.distributed:
            dist.barrier()
        return scores


def train(cfg: dict, log=None) -> dict:
    """Train from a loaded config (``load_config``); returns the summary dict."""
    return Trainer(cfg, log).run()


def main(argv=None) -> int:
    """``python -m segmif_core.training.trainer --config FILE`` (also under torchrun)."""
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    print(json.dumps(train(load_config(args.config, parse_overrides(args.set))), indent=2))
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
