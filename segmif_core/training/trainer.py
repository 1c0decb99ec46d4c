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
Models with a detector (TSJNet, Jie et al. 2024) train in ONE joint stage instead (paper Sec. 3.4;
``tsjnet_steps.py``): ``fusion_warmup_iters`` fusion-only steps, ``train.joint.task_iters`` steps
of the task networks alone on the cached fused images (ours, default 0), then
``train.joint.iters`` (or ``.epochs``) steps that update the fusion network, the detector and the
segmenter together on the MFF + reconstruction + attention + segmentation + detection loss, with boxes derived from each
augmented label crop; val mAP@0.5 is logged beside val mIoU (``config/train/tsjnet_*.yaml``).
Baselines (no fusion network) only run segmentation steps (``rounds * (seg_iters + fusion_iters)``
of them, so that a baseline gets the same number of steps).

Every number comes from the config (see ``config/train/paper.yaml``; other files extend it with
``base: FILE``). Learning rates: warm-up (linear from ``warmup_lr``, or constant) for ``warmup_iters`` steps, then
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

Code: this module has the ``Trainer`` (set-up, phases, run loop), ``train`` and ``main``; the
parts it is made of are ``config.py`` (loading and checking configs), ``batches.py`` (datasets
and the batch plan), ``schedule.py`` (optimisers, learning rates), ``steps.py`` (one step of
each phase), ``fused_cache.py``, ``validation.py`` (``evaluate``, ``best.pt``),
``checkpoints.py`` (``last.pt``, resume, ``train.init``) and ``logs.py`` (``log.csv``, plots).
"""
from __future__ import annotations

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
from torch.utils.data import DataLoader

from .. import atomic
from ..evaluation import write_json_atomic
from ..metrics.segmentation import ABSENT_MODES
from ..models import build_model
from .batches import StepBatches, _Seeded, build_datasets, label_counts
from .checkpoints import CheckpointMixin
from .config import load_config, parse_overrides
from .ema import make_ema, update_ema
from .fused_cache import FusedCacheMixin
from .logs import IntervalMeans, _print_flushed, _truncate_log, write_plots
from .losses import class_weights
from .schedule import _lr, _optimizer, _set_lr  # noqa: F401 (_lr, _set_lr: importable here)
from .steps import StepMixin
from .tsjnet_steps import JOINT_FIELDS, JointMixin
from .validation import VAL_ABSENT, ValidationMixin
from .weighting import make_weighting

# defined here before the split into the modules above, and still importable from here
from .checkpoints import _rng_state, _set_rng_state  # noqa: F401
from .config import OPTIONAL, REQUIRED, _read_yaml, merge  # noqa: F401
from .validation import _to_u8, evaluate  # noqa: F401
from ..choices import check_choice


# ----------------------------------------------------------------------------- training
class Trainer(JointMixin, StepMixin, FusedCacheMixin, CheckpointMixin, ValidationMixin):
    """Runs the schedule of the module docstring. ``run()`` returns the summary dict."""

    FIELDS = ["step", "round", "phase", "time_s", "img_per_s", "lr_seg", "lr_fusion",
              "lambda_fusion", "lambda_seg", "seg", "fusion", "fusion_ssim", "fusion_mse",
              "fusion_grad", "total", "val_mIoU", "val_Qabf", "val_SF", "val_mIoU_ema"]

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
        # the moving average of the weights (optional key train.ema: decay, 0 / absent = off)
        self.ema = make_ema(self.model, self.tc.get("ema")) if self.rank == 0 else None
        iw = lc.get("intensity_weight", 1.0)
        if isinstance(iw, bool) or not isinstance(iw, (int, float)) or not (
                math.isfinite(iw) and iw >= 0):
            raise ValueError(f"train.loss.intensity_weight must be a finite number >= 0, got "
                             f"{iw!r}")
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
        check_choice("train.val_absent", self.tc.get("val_absent", VAL_ABSENT), ABSENT_MODES)
        self.total_steps = self.warmup + r * self.round_len + self.final_seg
        self.total_seg = (r * si + self.final_seg
                          if self.has_fusion and not self.tc["fusion_phase_updates_seg"]
                          else self.total_steps)
        self.total_fusion = self.warmup + r * fi
        # a model with a detector (TSJNet) trains in one joint stage (tsjnet_steps.py)
        self.joint = hasattr(self.model, "detector")
        if self.joint:
            self._setup_joint()
        self.fused_cache = (bool(self.tc.get("fused_cache", False)) and self.has_fusion
                            and not self.tc["fusion_phase_updates_seg"])
        self._fused: list[np.ndarray] = []
        self._fused_labels: list[np.ndarray] = []
        self._fused_round: int | None = None
        self._plan: StepBatches | None = None
        self._resumed = False
        self.state = {"step": 0, "seg_steps": 0, "fusion_steps": 0, "joint_steps": 0,
                      "task_steps": 0,
                      "elapsed_s": 0.0,
                      "best": {"mIoU": -1.0}, "run_id": uuid.uuid4().hex}
        if self.tc["resume"] and (self.out / "last.pt").is_file():
            self._load_last()
        self._stop_requested = False

    # -- schedule
    def phase_of(self, step: int) -> tuple[int, str]:
        """(round index from 0, 'seg', 'fusion' or 'warmup') of a global step. The first
        ``fusion_warmup_iters`` steps ('warmup', round -1) train Phi on L_f alone, so that Psi
        first sees fused images that carry both modalities (without it, Psi learns from the
        near-constant output of an untrained Phi and then pulls Phi towards it). The
        ``final_seg_iters`` steps after the last round (round index ``rounds``) are segmentation
        steps on the final Phi's fused images. Models with a detector: ``joint_phase_of``."""
        if self.joint:
            return self.joint_phase_of(step)
        if step < self.warmup:
            return -1, "warmup"
        rnd, pos = divmod(step - self.warmup, self.round_len)
        if rnd >= self.tc["rounds"]:  # after the rounds: the final segmentation phase
            return self.tc["rounds"], "seg"
        if not self.has_fusion:
            return rnd, "seg"
        return rnd, ("seg" if pos < self.tc["seg_iters"] else "fusion")

    # -- loop
    def run(self) -> dict:
        tc = self.tc
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            atomic.write_text(self.out / "config.yaml", yaml.safe_dump(self.cfg, sort_keys=False))
        skip = lambda st: self._cached(self.phase_of(st)[1])  # noqa: E731
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
            fields = self.FIELDS + (JOINT_FIELDS if self.joint else [])
            if not new_log:  # a resumed run keeps the columns of the log it continues (an
                # older version's log may lack some)
                fields = _truncate_log(log_path, self.state["step"]) or fields
            log_f = open(log_path, "w" if new_log else "a", newline="")
            writer = csv.DictWriter(log_f, fieldnames=fields, extrasaction="ignore")
            if new_log:
                writer.writeheader()
        console = IntervalMeans()  # the printed line: means since the last one
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
        interrupted = False  # a stop request (signal) ended the loop: no final.pt
        try:
            t_last = time.time()
            for batch in loader:
                step = self.state["step"]
                elapsed, stop = self._agree(time.time() - t_start)
                if step >= self.total_steps or stop:
                    interrupted = interrupted or stop
                    break
                if elapsed >= budget:
                    self.log(f"time budget of {tc['max_minutes']} min reached at step {step}")
                    break
                time_progress = elapsed / budget
                rnd, phase = self.phase_of(step)
                # the step's own RNG stream (dropout, drop path): a function of (seed, step, rank)
                # only, so a resumed run draws what an uninterrupted one draws
                torch.manual_seed((self.cfg["seed"] * 1_000_033 + step) * 64 + self.rank)
                if self._cached(phase):
                    if self._fused_round != rnd:  # made once per segmentation / task phase
                        secs = self.refresh_fused_cache(rnd)
                        self._fused_round = rnd
                        if self.rank == 0:
                            self.log(f"round {rnd + 1}: fused {len(self._fused)} training pairs "
                                     f"for the {phase} phase in {secs:.1f} s")
                    batch = self.fused_batch(step)
                batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                         for k, v in batch.items()}
                if self.cuda and tc["channels_last"]:
                    for k in ("vis", "ir"):
                        if k in batch:
                            batch[k] = batch[k].contiguous(memory_format=torch.channels_last)
                lrs = self.set_learning_rates(time_progress)
                row = self.train_step(batch, phase)
                if self.ema is not None:
                    update_ema(self.ema, self.model)
                key = "fusion_steps" if phase == "warmup" else f"{phase}_steps"
                self.state[key] = self.state.get(key, 0) + 1
                self.state["step"] = step = step + 1
                now = time.time()
                elapsed, stop = self._agree(now - t_start)
                self.state["elapsed_s"] = elapsed
                row.update(step=step, round=rnd + 1, phase=phase,  # round 0 = warm-up
                           time_s=round(self.state["elapsed_s"], 2),
                           img_per_s=round(tc["batch_size"] * self.world / max(1e-9,
                                                                               now - t_last), 2),
                           **lrs)
                t_last = now
                last = step >= self.total_steps or stop or elapsed >= budget
                interrupted = interrupted or stop
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
                                              "lambda_seg", "img_per_s", "val_mIoU", "val_Qabf",
                                              "mff", "det", "val_mAP50")})
                elif self.rank == 0:
                    console.add(row)
                    if step % tc["log_every"] == 0 or "val_mIoU" in row:
                        self.log(console.line())
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
            if not interrupted:  # the schedule or the time budget ended the run
                self.save_final()  # final.pt (and final_ema.pt): the last step's weights
            write_plots(log_path, self.out / "plots")
        summary = {"best": self.state["best"], "best_ema": self.state.get("best_ema"),
                   "completed": not interrupted, "steps": self.state["step"],
                   "seg_steps": self.state["seg_steps"],
                   "fusion_steps": self.state["fusion_steps"],
                   "joint_steps": self.state.get("joint_steps", 0),
                   "task_steps": self.state.get("task_steps", 0),
                   "wall_minutes": round(self.state["elapsed_s"] / 60, 2),
                   "device": str(self.device), "world_size": self.world,
                   "threads": torch.get_num_threads(),
                   "model": self.cfg["model"]}
        if self.rank == 0:
            write_json_atomic(summary, self.out / "summary.json")
        if self.distributed:
            dist.destroy_process_group()
        return summary

    def _cached(self, phase: str) -> bool:
        """Whether a step of ``phase`` trains on the fused-image cache (no pair loaded): SegMiF's
        segmentation steps with ``fused_cache``, and always TSJNet's task steps."""
        return phase == "task" or (phase == "seg" and self.fused_cache)

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


if __name__ == "__main__":
    raise SystemExit(main())
