"""Base class of every segmif model: input checks, a common output dict and ``predict()``."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn


def confidence_and_labels(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The softmax probability of the chosen class and the class: logits (B, K, H, W) float ->
    (confidence (B, H, W) float in (0, 1], labels (B, H, W) int64 argmax over K).

    ``softmax(logits).max(dim=1)`` without the K-channel softmax: the largest probability is
    1 / sum_k exp(l_k - l_max). Equal to it to float rounding and 5x cheaper in ONNX Runtime,
    whose Softmax over a non-last axis cost 44 ms of a 290 ms SegMiF graph (one CPU thread)."""
    top, labels = logits.max(dim=1)
    confidence = torch.exp(logits - top.unsqueeze(1)).sum(dim=1).reciprocal()
    return confidence, labels


class FusionSegModel(nn.Module):
    """A model that takes a visible and a registered thermal image and returns class logits and
    (for fusion models) a fused image.

    Subclasses set ``name`` and ``config`` (a dataclass with ``num_classes``) and implement
    ``forward(vis, ir)``.

    Inputs of ``forward`` / ``predict``:
        vis: (B, 3, H, W) float32 RGB in [0, 1].
        ir:  (B, 1, H, W) float32 thermal in [0, 1], registered onto the visible camera.
        H, W >= 32 (the MiT encoder has stride 32).
    ``forward`` returns a dict with
        'logits': (B, num_classes, H, W) float32,
        'fused': (B, 1, H, W) fused luminance in [0, 1] (fusion models) or None,
        'fused_rgb': (B, 3, H, W) RGB in [0, 1] (for models without fusion: the visible image).
    """

    name: str = "base"
    config: object

    min_size = 32

    def check_inputs(self, vis: torch.Tensor, ir: torch.Tensor) -> None:
        """Raise ValueError (naming the offending shape/dtype) if the inputs are malformed."""
        for label, t, ch in (("vis", vis, 3), ("ir", ir, 1)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{label} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise ValueError(f"{label} must be a float tensor in [0, 1], got {t.dtype}")
            if t.ndim != 4 or t.shape[1] != ch:
                raise ValueError(f"{label} must have shape (B, {ch}, H, W), got {tuple(t.shape)}")
        if vis.shape[0] != ir.shape[0] or vis.shape[-2:] != ir.shape[-2:]:
            raise ValueError(f"vis {tuple(vis.shape)} and ir {tuple(ir.shape)} must have the same "
                             "batch size and H, W (register thermal onto the visible camera first)")
        h, w = vis.shape[-2:]
        if h < self.min_size or w < self.min_size:
            raise ValueError(f"images must be at least {self.min_size}x{self.min_size}, got {h}x{w}")

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def config_dict(self) -> dict:
        """The model's configuration as a plain dict (saved in checkpoints)."""
        return dataclasses.asdict(self.config)

    def fused_rgb(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The fusion network's RGB fused image, (B, 3, H, W) in [0, 1], from vis (B, 3, H, W)
        and ir (B, 1, H, W) in [0, 1] (the fused-image cache of training). Models with a fusion
        network override this; without one it raises NotImplementedError."""
        raise NotImplementedError(f"{self.name} has no fusion network")

    def full_resolution_fused(self, out: dict, vis: torch.Tensor, ir: torch.Tensor,
                              vis_hi: torch.Tensor, ir_hi: torch.Tensor) -> torch.Tensor:
        """The shown image at the camera's size for models without a fusion network: the
        full-resolution visible image (fusion models override this)."""
        return vis_hi

    @torch.no_grad()
    def predict(self, vis: torch.Tensor, ir: torch.Tensor,
                full: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        """Inference in eval mode.

        Args:
            vis, ir: the network inputs (see the class docstring).
            full: optional (vis_hi (B, 3, H', W'), ir_hi (B, 1, H', W')), the same pair at the
                camera's resolution, float in [0, 1]: 'fused_rgb' is then made at H' x W' from
                the full-resolution sources (``full_resolution_fused``), never upscaled.
        Returns a dict: 'labels' (B, H, W) int64 class ids, 'confidence' (B, H, W) float32 softmax
        probability of the chosen class in [0, 1], 'fused_rgb' (B, 3, H, W) (or H' x W' with
        ``full``) float32 in [0, 1].
        """
        was_training = self.training
        self.eval()
        try:
            out = self(vis, ir)
            fused = out["fused_rgb"]
            if full is not None:
                vis_hi, ir_hi = full
                if vis_hi.shape[0] != vis.shape[0] or vis_hi.shape[-2:] != ir_hi.shape[-2:]:
                    raise ValueError(f"full-resolution pair {tuple(vis_hi.shape)} / "
                                     f"{tuple(ir_hi.shape)} does not match the batch")
                fused = self.full_resolution_fused(out, vis, ir, vis_hi, ir_hi)
        finally:
            self.train(was_training)
        confidence, labels = confidence_and_labels(out["logits"].float())
        return {"labels": labels, "confidence": confidence, "fused_rgb": fused.float(),
                **self.extra_predictions(out, vis, full)}

    def extra_predictions(self, out: dict, vis: torch.Tensor,
                          full: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
        """Keys a subclass adds to ``predict``'s result from the forward output ``out`` (e.g.
        TSJNet's detections); none by default."""
        return {}
