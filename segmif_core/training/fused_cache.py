"""The fused-image cache of the segmentation phases (``train.fused_cache``; see the docstring
of ``trainer.py``) and of TSJNet's task stage (``tsjnet_steps.py``): the fusion network's fused
images of every training pair, made once per round (TSJNet: once, when the task stage starts),
kept in memory and in ``out/fused_cache.pt``, and augmented into segmentation batches."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..checkpoint import atomic_torch_save


class FusedCacheMixin:
    """``Trainer``'s fused-image cache. It uses the attributes ``Trainer.__init__`` sets:
    ``out``, ``tc``, ``rank``, ``device``, ``cuda``, ``model``, ``train_set``, ``_fused``,
    ``_fused_labels``, ``_fused_round``, ``_resumed``, the batch plan ``_plan`` (set by ``run``)
    and the method ``_autocast``."""

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
        keep_ir = self._cache_thermal()
        for first in range(0, len(plain), chunk):
            items = [plain[i] for i in range(first, min(first + chunk, len(plain)))]
            same = len({tuple(it["vis"].shape) for it in items}) == 1
            groups = [items] if same else [[it] for it in items]
            for group in groups:
                vis = torch.stack([it["vis"] for it in group]).to(self.device)
                ir = torch.stack([it["ir"] for it in group]).to(self.device)
                with self._autocast():
                    rgb = self.model.fused_rgb(vis, ir).float()
                rgb = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
                for it, img in zip(group, rgb.numpy()):
                    if keep_ir:  # Psi also sees the thermal image: kept as a 4th uint8 channel
                        t8 = (it["ir"].clamp(0, 1) * 255).round().to(torch.uint8)[0].numpy()
                        img = np.concatenate([img, t8[..., None]], axis=2)
                    self._fused.append(np.ascontiguousarray(img))
                    self._fused_labels.append(it["label"].numpy().astype(np.uint8))

    def fused_batch(self, step: int) -> dict:
        """The segmentation batch of ``step`` from the fused-image cache: the plan's pairs (a
        TSJNet task step: ``task_plan``'s, ``joint.task_batch_size`` of them), each augmented
        with a generator seeded by its item seed (so a resumed run repeats it)."""
        vis, irs, labels = [], [], []
        plan = getattr(self, "task_plan", None) if self.phase_of(step)[1] == "task" else None
        for index, seed in (plan or self._plan).indices(step):
            img = self._fused[index].astype(np.float32) / np.float32(255.0)
            t = np.ascontiguousarray(img[..., 3]) if img.shape[2] == 4 else None
            f, t, lab = self.train_set.augment(np.ascontiguousarray(img[..., :3]), t,
                                               self._fused_labels[index],
                                               np.random.default_rng(seed))
            vis.append(torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))))
            if t is not None:
                irs.append(torch.from_numpy(t)[None])
            labels.append(torch.from_numpy(lab.astype(np.int64)))
        batch = {"vis": torch.stack(vis), "label": torch.stack(labels), "fused_rgb": True}
        if irs:
            batch["ir"] = torch.stack(irs)
        return batch

    def _cache_thermal(self) -> bool:
        """True when Psi also sees the thermal image (SegMiF ``psi_thermal``): the cache then
        keeps it beside each fused image (H x W x 4 uint8), augmented with the same geometry."""
        return bool(getattr(getattr(self.model, "config", None), "psi_thermal", False))
