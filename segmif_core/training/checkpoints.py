"""The trainer's checkpoints: ``last.pt`` (full resumable state, RNG included), its resume
(which keeps the score of a ``best.pt`` of the same run), and initialisation from the weights of
a release checkpoint (``train.init``)."""
from __future__ import annotations

import random
import uuid

import numpy as np
import torch

from ..checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
from .validation import best_score


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


class CheckpointMixin:
    """``Trainer``'s checkpoint methods. They use the attributes ``Trainer.__init__`` sets:
    ``cfg``, ``tc``, ``out``, ``rank``, ``log``, ``model``, ``ema``, ``classes``, ``opt_seg``,
    ``opt_fusion``, ``weighting``, ``state`` and ``_resumed``."""

    def _init_from(self, init: dict) -> None:
        """Start from the weights of a release checkpoint (``best.pt``, the shipped model):
        ``init = {checkpoint: PATH, parts: [fusion, segmenter]}`` copies the named sub-networks
        (e.g. fine-tuning the shipped model on a new rig, or training Psi on a frozen trained
        Phi; default parts: every one the model has, TSJNet's ``detector`` included).
        Overridden by ``last.pt`` on resume.
        Raises:
            ValueError: unknown parts, another model family, or shapes that do not match (a
                different class count or model config).
        """
        known = [n for n in ("fusion", "segmenter", "detector") if hasattr(self.model, n)]
        parts = list(init.get("parts", known))
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

    def _load_last(self) -> None:
        ck = torch.load(self.out / "last.pt", map_location="cpu", weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt_seg.load_state_dict(ck["opt_seg"])
        if self.opt_fusion is not None:
            self.opt_fusion.load_state_dict(ck["opt_fusion"])
        self.weighting.load_state_dict(ck["weighting"])
        if self.joint:  # the detector's optimiser and the plateau schedule (tsjnet_steps.py)
            self.load_joint_state(ck["joint"])
        saved_decay = ck.get("ema_decay")
        if self.ema is not None:
            if ck.get("ema") is None:
                raise ValueError(f"{self.out / 'last.pt'} has no moving average of the weights "
                                 "(it was trained without train.ema): resume it without "
                                 "train.ema, or start a new run")
            if saved_decay is not None and float(saved_decay) != float(self.tc["ema"]):
                raise ValueError(f"{self.out / 'last.pt'} averaged the weights with train.ema "
                                 f"{saved_decay}, this config says {self.tc['ema']}: resume with "
                                 "the same decay, or start a new run")
            self.ema.load_state_dict(ck["ema"])
        elif ck.get("ema") is not None and self.rank == 0:
            self.log(f"warning: {self.out / 'last.pt'} holds a moving average of the weights "
                     f"(train.ema {saved_decay}) that this config (no train.ema) drops")
        self.state = ck["state"]
        self.state.setdefault("joint_steps", 0)  # a last.pt of an older version
        # a process killed during a validation (after the stop signal's save) may have written
        # a best.pt (best_ema.pt) of this run that last.pt does not know of: keep its score as
        # the bar to beat
        for name, key in (("best.pt", "best"), ("best_ema.pt", "best_ema")):
            best = self.out / name
            if not (best.is_file() and self.state.get("run_id")):
                continue
            meta = torch.load(best, map_location="cpu", weights_only=True).get("meta", {})
            val = meta.get("val")
            if (meta.get("run_id") == self.state["run_id"] and isinstance(val, dict)
                    and best_score(val) > best_score(self.state.get(key))):
                self.state[key] = val
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
            "joint": self.joint_state() if self.joint else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ema_decay": float(self.tc["ema"]) if self.ema is not None else None,
            "config": self.cfg}, self.out / "last.pt")

    def save_final(self) -> None:
        """``final.pt``: the weights of the last step as a release checkpoint (fp16, as
        ``best.pt``; the schedule's end, not a selection on val), and ``final_ema.pt`` with the
        moving average of the weights when ``train.ema`` is set. Their ``meta['val']`` holds the
        validation of that step (the run validates its last step), as ``best.pt``'s, with
        ``selection`` saying it is the schedule's end."""
        if self.rank != 0:
            return
        step = self.state["step"]
        size = self.cfg["data"]["size"]

        def meta(key: str) -> dict:
            val = self.state.get(key)
            val = dict(val) if val and val.get("step") == step else {"step": step}
            val["selection"] = "the final step of the schedule"
            return {"val": val, "train_config": self.cfg, "run_id": self.state["run_id"]}

        save_checkpoint(self.out / "final.pt", self.model, self.classes, size,
                        meta=meta("last_val"))
        if self.ema is not None:
            save_checkpoint(self.out / "final_ema.pt", self.ema.module, self.classes, size,
                            meta=dict(meta("last_val_ema"), ema=float(self.tc["ema"])))
