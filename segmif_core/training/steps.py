"""One optimiser step of each phase (warm-up, segmentation, fusion; see the docstring of
``trainer.py``), with bf16 autocast on CUDA and the losses in fp32."""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..models.preprocessing import split_luminance
from .losses import fusion_loss, segmentation_loss
from .schedule import _lr, _set_lr


class StepMixin:
    """``Trainer``'s steps. They use the attributes ``Trainer.__init__`` sets: ``tc``, ``cuda``,
    ``distributed``, ``world``, ``device``, ``model``, ``net``, ``opt_seg``, ``opt_fusion``,
    ``weighting`` and ``class_weight``."""

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=self.cuda and bool(self.tc["amp"]))

    def set_learning_rates(self, time_progress: float) -> dict:
        """Set the optimisers' learning rates for the coming step (``schedule._lr`` on each
        optimiser's own step count; models with a detector: ``JointMixin.joint_lrs``) and return
        them for the log ({'lr_seg', 'lr_fusion'[, 'lr_det']}; None for a missing optimiser)."""
        if self.joint:
            return self.joint_lrs(time_progress)
        seg_step = self.state["seg_steps"]
        if self.tc["fusion_phase_updates_seg"]:  # Psi also steps in fusion phases
            seg_step += self.state["fusion_steps"]
        lr_seg = _lr(self.tc["seg_optim"], seg_step, self.total_seg, time_progress)
        _set_lr(self.opt_seg, lr_seg)
        lr_fusion = None
        if self.opt_fusion is not None:
            lr_fusion = _lr(self.tc["fusion_optim"], self.state["fusion_steps"],
                            self.total_fusion, time_progress)
            _set_lr(self.opt_fusion, lr_fusion)
        return {"lr_seg": lr_seg, "lr_fusion": lr_fusion}

    def _fusion_loss(self, u: torch.Tensor, y: torch.Tensor, ir: torch.Tensor) -> dict:
        """L_f (``losses.fusion_loss``) with the config's eta, intensity term and its weight, in
        fp32 (outside autocast: blur, saliency histogram and SSIM)."""
        lc = self.tc["loss"]
        return fusion_loss(u.float(), y.float(), ir.float(), lc["eta"],
                           lc.get("intensity", "vsm"), lc.get("intensity_weight", 1.0))

    def train_step(self, batch: dict, phase: str) -> dict:
        """One optimiser step of ``phase``; ``batch`` has ``vis``, ``ir``, ``label``, or for a
        cached segmentation step (``fused_rgb`` true) the fused RGB image as ``vis``. Models
        with a detector: ``JointMixin.joint_step``."""
        if self.joint:
            return self.joint_step(batch, phase)
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
                f = self._fusion_loss(u, y, ir)
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
                out = (self.net(vis, ir, phase="fused") if batch.get("fused_rgb")
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
            f = self._fusion_loss(out["fused"], y, ir)
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
