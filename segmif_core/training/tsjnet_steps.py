"""Joint training of TSJNet (models with a detector) inside ``Trainer``.

Jie et al., "TSJNet", arXiv 2402.01212, Sec. 3.4 and 4.1 (facts: ../shared/design/tsjnet.md
Sec. 4): ONE stage, every step optimises the fusion network, the detector and the segmenter
together on

    L = 20 L_int + 20 L_grad + 10 L_ssim                 (multi-facet fusion loss, MFF)
        + 6 MSE(D E Y, Y) + 1 MSE(D E I, I)               (reconstruction)
        + 0.1 L_attention                                 (attention diversity, fused pass)
        + 1 L_seg (cross entropy of Seg(F))  + 1 L_det (detection loss of Det(F))

(weights ``tsjnet_losses.LOSS_WEIGHTS``, overridable in ``train.joint.loss_weights``). The
task losses flow back into the fusion network through F. Paper vs code: the authors' code never
steps its detection and segmentation optimisers (the task nets stay frozen) and divides the
8-bit labels by 255 (every segmentation target 0); this trainer follows the paper: all three
networks are updated and the labels are the integer class ids. The detection loss is the FCOS
loss of this project's anchor-free head (``tsjnet_losses.detection_loss``), not the paper's
Faster R-CNN losses.

Boxes (this project's choice, not the paper's data): MFNet / MSRS ship no boxes, so the targets
of every training crop are the connected components of its detection classes
(``data.boxes.boxes_from_labels`` on the AUGMENTED label crop, after the random resize, crop and
flip, so boxes and image always agree; pixels padded by the crop carry the ignore id and never
form a box). ``box_min_area`` is in pixels of the network input (crop or validation image).

Optimisers: ``fusion_optim`` for the fusion network (paper: Adam lr 1e-4, L2 decay 0.01; the
code's four Adams over encoder / base fusion / detail fusion / decoder have identical settings
and are one Adam here), ``seg_optim`` for the segmenter and ``joint.det_optim`` (default
``seg_optim``) for the detector (pretrained encoder at lr, heads at lr x ``head_lr_mult``).
Gradients are clipped to norm ``joint.clip_grad`` (paper 1) per module: fusion encoder, base
fusion, detail fusion, decoder, detector, segmenter; in fp32 / bf16 there is no loss scaler, so
the limit acts on the true gradients (the code clips fp16-SCALED gradients, effectively 1/scale).
Learning rates: ``joint.lr_schedule`` 'plateau' (paper: x ``plateau_factor`` 0.1 when the epoch's
mean training loss has not improved for ``plateau_patience`` 3 epochs; the paper does not say
which quantity its ReduceLROnPlateau watches: the training loss is our reading) or 'poly' (the
trainer's warm-up + poly decay over the joint steps or the time budget).

Schedule: ``fusion_warmup_iters`` steps of the fusion network alone on MFF + reconstruction +
attention (ours; the paper has none: 0 in tsjnet_paper.yaml), then ``joint.task_iters`` task steps
(ours; default 0, the paper has none) of ``joint.task_batch_size`` pairs each (default
``batch_size``), then ``joint.iters`` joint steps (or ``joint.epochs`` x
steps per epoch; the paper: 100 epochs, batch 2). A task step trains the detector and the
segmenter alone on the fused images of the frozen, warmed-up fusion network: every training pair
is fused once at ``data.size`` when the task stage starts (the fused-image cache of
``fused_cache.py``, saved in ``out/fused_cache.pt`` for a resumed run), and each step augments
the cached images and their labels (random resize, crop to ``data.crop``, flip) and derives its
boxes from the augmented labels. The task networks then learn at the speed of two single-image
networks, without the fusion network's forward and backward passes; this stands in for the
authors' code, whose task networks arrive trained (and stay frozen), and lets the joint stage
start from task networks that already see targets in the fused image. Warm-up and joint steps
crop their pairs to ``data.fusion_crop`` (default ``data.crop``).

Config ``train.joint`` (optional for SegMiF, required keys for TSJNet: iters or epochs):
``iters`` | ``epochs``, ``task_iters``, ``task_batch_size``, ``loss_weights`` {name: weight},
``clip_grad`` (0 = off), ``box_min_area``, ``det_optim`` (optimiser dict, keys as
``seg_optim``), ``lr_schedule``, ``plateau_factor``, ``plateau_patience``, ``freeze_task_bn``,
``select``, ``det_every`` (the detector learns on every k-th task step only; default 1).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..data.boxes import boxes_from_labels, detection_class_ids, to_tensors
from ..models.preprocessing import split_luminance
from .batches import StepBatches
from .losses import segmentation_loss
from .schedule import _lr, _optimizer, _set_lr
from .tsjnet_losses import (LOSS_WEIGHTS, attention_diversity_loss, detection_loss, mff_loss,
                            reconstruction_loss)
from ..choices import check_choice

JOINT_KEYS = ("iters", "epochs", "task_iters", "task_batch_size", "loss_weights", "clip_grad",
              "box_min_area", "det_optim", "lr_schedule", "plateau_factor", "plateau_patience",
              "freeze_task_bn", "select", "det_every")
JOINT_DEFAULTS = {"task_iters": 0, "loss_weights": {}, "clip_grad": 1.0, "box_min_area": 50,
                  "lr_schedule": "plateau", "plateau_factor": 0.1, "plateau_patience": 3,
                  "freeze_task_bn": False, "select": "miou", "det_every": 1}
#: ``train.joint.select``: what ``best.pt`` is chosen on (validation.selection_score)
SELECT_SCORES = ("miou", "miou_map50")
#: log.csv columns of a joint run (after ``Trainer.FIELDS``)
JOINT_FIELDS = ["lr_det", "mff", "mff_int", "mff_grad", "mff_ssim", "recon", "attention", "det",
                "det_cls", "det_box", "det_ctr", "det_pos", "val_mAP50", "val_mAP50_95"]


def targets_from_labels(labels: torch.Tensor, class_ids, min_area: int, device=None
                        ) -> list[dict]:
    """Detection targets of a batch of (augmented) label crops.

    Args:
        labels: (B, H, W) int64 class ids (the ignore id where padded).
        class_ids: label id of detection class k at position k (``detection_class_ids``).
        min_area: smallest connected component kept, pixels of this image.
    Returns:
        one dict per image: 'boxes' (N, 4) float32 (x1, y1, x2, y2) pixel edges of this image,
        'labels' (N,) int64 detection class indices (``detection_loss``'s target format).
    """
    arr = labels.detach().cpu().numpy()
    return [to_tensors(boxes_from_labels(a.astype(np.int32), class_ids, int(min_area)), device)
            for a in arr]


class _Plateau:
    """ReduceLROnPlateau on the epoch's mean training loss (mode min, relative threshold 1e-4 as
    torch's default): ``scale`` is multiplied by ``factor`` after more than ``patience`` epochs
    without improvement. State in ``state_dict()`` (resumable)."""

    def __init__(self, factor: float, patience: int):
        if not 0 < factor < 1 or patience < 0:
            raise ValueError(f"plateau_factor must be in (0, 1) and plateau_patience >= 0, "
                             f"got {factor}, {patience}")
        self.factor, self.patience = float(factor), int(patience)
        self.state = {"scale": 1.0, "best": float("inf"), "bad": 0, "sum": 0.0, "count": 0}

    def add(self, loss: float) -> None:
        self.state["sum"] += float(loss)
        self.state["count"] += 1

    def end_epoch(self) -> None:
        s = self.state
        if not s["count"]:
            return
        mean = s["sum"] / s["count"]
        s["sum"], s["count"] = 0.0, 0
        if mean < s["best"] * (1 - 1e-4):
            s["best"], s["bad"] = mean, 0
        else:
            s["bad"] += 1
            if s["bad"] > self.patience:
                s["scale"] *= self.factor
                s["bad"] = 0

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = dict(state)


class JointMixin:
    """``Trainer``'s TSJNet schedule (module docstring). Uses the attributes ``Trainer.__init__``
    sets (``tc``, ``cfg``, ``model``, ``net``, ``classes``, ``opt_fusion``, ``opt_seg``,
    ``class_weight``, ``train_set``, ``world``, ``state``, ``distributed``, ``device``, ``warmup``)
    and ``StepMixin._autocast``."""

    def _setup_joint(self) -> None:
        jc = {k: v for k, v in (self.tc.get("joint") or {}).items() if v is not None}
        unknown = set(jc) - set(JOINT_KEYS)
        if unknown:
            raise ValueError(f"unknown train.joint keys {sorted(unknown)}; known: {JOINT_KEYS}")
        jc = {**JOINT_DEFAULTS, **jc}
        if ("iters" in jc) == ("epochs" in jc):
            raise ValueError("train.joint needs exactly one of iters or epochs (models with a "
                             "detector train in one joint stage; set the other to null)")
        self.per_epoch = max(1, len(self.train_set) // (self.tc["batch_size"] * self.world))
        iters = int(jc["iters"]) if "iters" in jc else int(jc["epochs"]) * self.per_epoch
        if iters < 0:
            raise ValueError(f"train.joint iters/epochs must be >= 0, got {iters}")
        task_iters = int(jc["task_iters"])
        if task_iters < 0:
            raise ValueError(f"train.joint.task_iters must be >= 0, got {task_iters}")
        det_every = jc["det_every"]
        if isinstance(det_every, bool) or not isinstance(det_every, int) or det_every < 1:
            raise ValueError(f"train.joint.det_every must be an integer >= 1, got {det_every!r}")
        check_choice("train.joint.select", jc["select"], SELECT_SCORES)
        check_choice("train.joint.lr_schedule", jc["lr_schedule"], ("plateau", "poly"))
        bad = set(jc["loss_weights"]) - set(LOSS_WEIGHTS)
        if bad:
            raise ValueError(f"unknown loss weights {sorted(bad)}; known: {list(LOSS_WEIGHTS)}")
        self.jc, self.joint_iters, self.task_iters = jc, iters, task_iters
        task_bs = int(jc.get("task_batch_size") or self.tc["batch_size"])
        # task steps draw their own batches (a function of (seed, step) as every plan)
        self.task_plan = StepBatches(len(self.train_set), task_bs, self.cfg["seed"],
                                     rank=self.rank, world=self.world) if task_iters else None
        self.loss_weights = {**LOSS_WEIGHTS, **jc["loss_weights"]}
        self.box_class_ids = detection_class_ids(self.model.detection_classes,
                                                 self.classes.names)
        self.fused_cache = False
        self.total_steps = self.warmup + task_iters + iters
        self.det_optim = {**self.tc["seg_optim"], **(jc.get("det_optim") or {})}
        det = self.model.detector
        enc = [p for n, p in det.named_parameters() if n.startswith("encoder.")]
        head = [p for n, p in det.named_parameters() if not n.startswith("encoder.")]
        self.opt_det = _optimizer(self.det_optim, [
            {"params": enc, "lr_mult": 1.0},
            {"params": head, "lr_mult": self.det_optim.get("head_lr_mult", 1.0)}])
        self.plateau = _Plateau(jc["plateau_factor"], jc["plateau_patience"])
        f = self.model.fusion
        self.clip_groups = [f.encoder, f.fuse_base, f.fuse_detail, f.decoder,
                            self.model.detector, self.model.segmenter]

    def joint_phase_of(self, step: int) -> tuple[int, str]:
        """(-1, 'warmup') for the first ``fusion_warmup_iters`` steps, (0, 'task') for the next
        ``joint.task_iters``, then (0, 'joint')."""
        if step < self.warmup:
            return -1, "warmup"
        return (0, "task") if step < self.warmup + self.task_iters else (0, "joint")

    # -- learning rates
    def joint_lrs(self, time_progress: float) -> dict:
        """Set and return the learning rates of this step: {'lr_fusion', 'lr_seg', 'lr_det'}
        (warm-up steps: the fusion network only, task steps: the task networks only; the others
        are reported as None). Each optimiser's schedule runs over its own steps: the fusion
        network's over warm-up + joint, the task networks' over task + joint."""
        fusion_step = self.state["fusion_steps"] + self.state["joint_steps"]
        total_f = self.warmup + self.joint_iters
        j = self.state.get("task_steps", 0) + self.state["joint_steps"]
        total_t = self.task_iters + self.joint_iters
        pairs = [("lr_fusion", self.opt_fusion, self.tc["fusion_optim"], fusion_step, total_f),
                 ("lr_seg", self.opt_seg, self.tc["seg_optim"], j, total_t),
                 ("lr_det", self.opt_det, self.det_optim, j, total_t)]
        out = {}
        for key, opt, oc, step, total in pairs:
            if self.jc["lr_schedule"] == "poly":
                lr = _lr(oc, step, total, time_progress)
            else:  # warm-up as the trainer's, then the plateau's scale of the base rate
                lr = (_lr(oc, step, total, 0.0) if step < oc["warmup_iters"]
                      else oc["lr"] * self.plateau.state["scale"])
            _set_lr(opt, lr)
            out[key] = lr
        phase = self.joint_phase_of(self.state["step"])[1]
        if phase == "warmup":
            out["lr_seg"] = out["lr_det"] = None
        elif phase == "task":
            out["lr_fusion"] = None
        return out

    def task_step(self, batch: dict) -> dict:
        """One step of the detector and the segmenter on a cached fused batch (``vis`` the
        augmented fused RGB image (B, 3, H, W) in [0, 1], ``label`` (B, H, W)); the fusion network
        is not run. With ``joint.det_every`` k > 1 the detector runs and learns on every k-th
        task step only (task steps 0, k, 2k, ...), the segmenter on every one: the segmenter gets
        more steps in the same time (a CPU choice, ours). Returns the log row (unweighted parts,
        weighted 'total'; no detection parts on a segmenter-only step)."""
        rgb, label = batch["vis"], batch["label"]
        image = split_luminance(rgb)[0] if self.model.config.task_input == "gray" else rgb
        if self.state.get("task_steps", 0) % self.jc["det_every"]:
            with self._autocast():
                out = self.net(image, None, phase="segment")
            seg = self._segmentation_loss(out["logits"], label)
            total = self.loss_weights["segmentation"] * seg
            self._optimise(total, [self.opt_seg], self.clip_groups[5:])
            return {"seg": seg.item(), "total": total.item()}
        targets = targets_from_labels(label, self.box_class_ids, self.jc["box_min_area"],
                                      self.device)
        with self._autocast():
            out = self.net(image, None, phase="fused")
        total, row = self._task_losses(out, label, targets)
        self._optimise(total, [self.opt_seg, self.opt_det], self.clip_groups[4:])
        row["total"] = total.item()
        return row

    def _segmentation_loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The segmenter's unweighted loss (class-weighted cross-entropy, float32)."""
        return segmentation_loss(logits.float(), label, self.class_weight,
                                 self.tc["loss"]["ignore_index"])

    def _task_losses(self, out: dict, label: torch.Tensor, targets: list) -> tuple:
        """(weighted segmentation + detection loss, log row of their parts) of the task
        networks' outputs ``out`` ('logits', 'detections')."""
        w = self.loss_weights
        seg = self._segmentation_loss(out["logits"], label)
        det = detection_loss(out["detections"], targets, self.model.config.center_radius)
        row = {"seg": seg.item(), "det": det["total"].item(), "det_cls": det["cls"].item(),
               "det_box": det["box"].item(), "det_ctr": det["centerness"].item(),
               "det_pos": det["positives"]}
        return w["segmentation"] * seg + w["detection"] * det["total"], row

    def _optimise(self, total: torch.Tensor, opts: list, clip_groups: list) -> None:
        """Backward of ``total``, gradients clipped to ``joint.clip_grad`` per module of
        ``clip_groups``, a step of ``opts``; every optimiser's gradients cleared before and
        after."""
        every = (self.opt_fusion, self.opt_seg, self.opt_det)
        for opt in every:
            opt.zero_grad(set_to_none=True)
        total.backward()
        clip = float(self.jc["clip_grad"] or 0)
        if clip > 0:
            for mod in clip_groups:
                torch.nn.utils.clip_grad_norm_(mod.parameters(), clip)
        for opt in opts:
            opt.step()
        for opt in every:
            opt.zero_grad(set_to_none=True)

    # -- one step
    def _freeze_task_bn(self) -> list:
        """BatchNorm layers of the detector and the segmenter put in eval mode (running
        statistics used and left as the task stage's batches of ``task_batch_size`` made them;
        their affine weights still learn) for one joint step, whose batch (2 pairs in the CPU
        recipe) is too small for batch statistics. Returns the layers switched."""
        layers = [m for net in (self.model.detector, self.model.segmenter)
                  for m in net.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
        for m in layers:
            m.eval()
        return layers

    def joint_step(self, batch: dict, phase: str) -> dict:
        """One optimiser step: 'warmup' (fusion network on MFF + reconstruction + attention),
        'task' (``task_step``) or 'joint' (all three networks on the full loss of the module
        docstring). Returns the log row (unweighted parts, weighted 'total')."""
        if phase == "task":
            return self.task_step(batch)
        w = self.loss_weights
        vis, ir, label = batch["vis"], batch["ir"], batch["label"]
        joint = phase == "joint"
        targets = (targets_from_labels(label, self.box_class_ids, self.jc["box_min_area"],
                                       self.device) if joint else None)
        frozen = self._freeze_task_bn() if joint and self.jc["freeze_task_bn"] else []
        try:
            with self._autocast():
                out = self.net(vis, ir, phase="joint" if joint else "fusion", reconstruct=True)
        finally:
            for m in frozen:
                m.train()
        y = split_luminance(vis)[0].float()
        irf = ir.float()
        # losses outside autocast, in fp32
        mff = mff_loss(out["fused"].float(), y, irf, w)
        rec = reconstruction_loss(out["recon_vis"].float(), y, out["recon_ir"].float(), irf, w)
        att = attention_diversity_loss(out["attention"].float())
        total = mff["total"] + rec["total"] + w["attention"] * att
        row = {"mff": mff["total"].item(), "mff_int": mff["intensity"].item(),
               "mff_grad": mff["gradient"].item(), "mff_ssim": mff["ssim"].item(),
               "recon": rec["total"].item(), "attention": att.item()}
        opts = [self.opt_fusion]
        if joint:
            tasks, parts = self._task_losses(out, label, targets)
            total = total + tasks
            opts += [self.opt_seg, self.opt_det]
            row.update(parts)
        self._optimise(total, opts, self.clip_groups if joint else self.clip_groups[:4])
        row["total"] = total.item()
        if joint and self.jc["lr_schedule"] == "plateau":
            loss = torch.tensor([row["total"]], dtype=torch.float64)
            if self.distributed:  # every process takes the same plateau decision
                loss = loss.to(self.device)
                dist.all_reduce(loss)
                loss = loss.cpu() / self.world
            self.plateau.add(float(loss[0]))
            if (self.state["joint_steps"] + 1) % self.per_epoch == 0:
                self.plateau.end_epoch()
        return row

    # -- resumable state (last.pt)
    def joint_state(self) -> dict:
        return {"opt_det": self.opt_det.state_dict(), "plateau": self.plateau.state_dict()}

    def load_joint_state(self, state: dict) -> None:
        self.opt_det.load_state_dict(state["opt_det"])
        self.plateau.load_state_dict(state["plateau"])
