"""SegMiF: fusion network Phi cascaded with a SegFormer segmentation network Psi.

Liu et al., "Multi-interactive Feature Learning and a Full-time Multi-modality Benchmark for Image
Fusion and Segmentation", ICCV 2023 (arXiv 2308.02097), Sec. 3 and Fig. 2.

Data flow (``forward``): visible RGB -> YCbCr; Psi's encoder (any encoder of the registry, an
ImageNet-pretrained one by default; the paper uses MiT-B3) runs on a guidance image (the visible
image unless another one is given, e.g. the previous fused image during interactive training) and
its stride-4 and stride-8 features guide Phi through HIA; Phi fuses the visible luminance with the
thermal image into u; the fused RGB image YCbCr(u, Cb_vis, Cr_vis) goes through Psi (same
weights) to per-pixel class logits.

``predict(vis, ir, full=(vis_hi, ir_hi))`` also returns the fused image at the camera's
resolution. Two heads (``SegMiFConfig.fusion_head``, both this project's choice for that step):
- ``direct`` (the paper's Phi, which outputs the fused luminance): the guided upsampler
  (``modules.guided_filter``) carries Phi's local mix of the two sources, fitted at the network
  size, onto the full-resolution sources;
- ``pyramid`` (the shipped default): Phi's output is the visible share w of the coarsest level of
  a Laplacian-pyramid fusion (``modules.pyramid``), whose detail levels take the larger-magnitude
  coefficient of the two sources; the same composition makes the fused image at the network size
  (what Psi and the training losses see) and at the camera size (every detail of both cameras).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...choices import check_choice
from ..base import FusionSegModel
from ..modules.guided_filter import GuidedUpsampler
from ..modules.hia import AGGREGATIONS, HIA_MODES
from ..modules.pyramid import PYRAMID_BASES, PYRAMID_UPSAMPLES, PyramidComposer, weight_downs
from ..preprocessing import (check_normalization, merge_luminance, normalize_mono, normalize_rgb,
                             split_luminance)
from ..segmenter import Segmenter
from .fusion import FusionNetwork


#: Values of ``SegMiFConfig.fusion_head``.
FUSION_HEADS = ("direct", "pyramid")


@dataclass
class SegMiFConfig:
    """Configuration of SegMiF (saved inside checkpoints).

    The default is a light model for CPUs: the ImageNet-pretrained EfficientNet-Lite0 with a
    128-channel all-MLP head and a 16-channel fusion stream with one DRDB of growth 8 per group.
    ``SegMiFConfig.paper()`` gives the paper's fusion width 64 and growth 32 with MiT-B3 (about
    0.8 TFLOP per 640x480 frame).

    ``pretrained``: the encoder's weight source (see ``models.encoders``), used when a model is
    built for training; a checkpoint's weights replace it on loading (nothing is read then).
    ``normalization``: the input statistics of the encoder (None = the encoder's own, filled in
    at construction and saved with the weights). ``guided_radius`` / ``guided_eps``: the
    full-resolution fused image (``modules.guided_filter``). ``fusion_scale`` s < 1 (a speed
    option, not the paper's): Phi and its guidance pass run on the pair resized by s (area), and
    the guided upsampler carries Phi's local mix back to the network input size before Psi; it
    can be changed on a trained model (``SegMiFPredictor(fusion_scale=...)``).
    ``fusion_head`` / ``pyramid_levels`` / ``pyramid_base``: what Phi's output means (module
    docstring; ``modules.pyramid.PYRAMID_BASES``); with
    ``pyramid``, ``guided_radius`` / ``guided_eps`` are unused. ``psi_thermal``: Psi's input
    (and its guidance pass) is the fused RGB image plus the thermal image as a 4th channel (a
    documented deviation from the paper; the stem's extra filter starts as the mean of the RGB
    filters, see ``models.encoders``).
    """

    num_classes: int = 9
    encoder: str = "efficientnet-lite0"  # models.encoders.encoder_names()
    pretrained: str | None = "imagenet"  # None | imagenet | HF id | directory | .pth file
    decoder_hidden_size: int = 128      # all-MLP embedding (SegFormer: 256 for B0/B1, 768 B2+)
    normalization: dict | None = None   # {'mean': [3], 'std': [3]}; None = the encoder's
    fusion_width: int = 16              # C of the fusion streams (paper 64)
    drdb_growth: int = 8                # paper 32
    drdb_layers: int = 5                # paper 5
    drdbs_per_group: int = 1
    hia_heads: int = 2                  # paper code: 8 heads of 8 dims for C = 64
    interaction: str = "full"           # full | soam | moam | concat | sum | average | none
    hia_stride: int = 1                 # 1 = full-resolution HIA (paper); 2 = 4x cheaper (CPU)
    guided_radius: int = 4              # full-resolution fused image: window radius (net pixels)
    guided_eps: float = 1e-5            # and regularisation of the guided upsampler (chosen on
                                        # MFNet val, see docs/model_card.md)
    fusion_scale: float = 1.0           # Phi's resolution / the network input's (1 = paper;
                                        # 0.5 = 4x cheaper Phi, carried back by the upsampler)
    fusion_head: str = "direct"         # direct (paper: Phi outputs u) | pyramid (Phi outputs
                                        # the base-level weight of a Laplacian pyramid fusion)
    pyramid_levels: int = 4             # pyramid levels at the network input size (pyramid head)
    camera_extra_levels: int = 1        # and this many more at the camera size (1: the same
                                        # base scale for a camera twice the network size)
    pyramid_base: str = "visible"       # what Phi's weight is at the coarsest level: the
                                        # visible share, or the brighter source's share
                                        # ("brighter": 1 = the classical max rule; ours)
    pyramid_upsample: str = "bilinear"  # the pyramid's expand step: bilinear (before session
                                        # 18) or binomial (Burt & Adelson's EXPAND = OpenCV's
                                        # pyrUp, as the classical rule; modules.pyramid)
    psi_thermal: bool = False           # Psi sees the registered thermal image as a 4th channel
                                        # beside the fused RGB (not the paper's: Psi sees only
                                        # the fused image)

    def __post_init__(self):
        check_choice("interaction", self.interaction, HIA_MODES + AGGREGATIONS)
        if self.fusion_width < 2 or self.fusion_width % 2:
            raise ValueError(f"fusion_width must be an even number >= 2, got {self.fusion_width}")
        if self.normalization is not None:
            self.normalization = check_normalization(self.normalization)
        if not 0.0 < float(self.fusion_scale) <= 1.0:
            raise ValueError(f"fusion_scale must be in (0, 1], got {self.fusion_scale}")
        check_choice("fusion_head", self.fusion_head, FUSION_HEADS)
        check_choice("pyramid_base", self.pyramid_base, PYRAMID_BASES)
        check_choice("pyramid_upsample", self.pyramid_upsample, PYRAMID_UPSAMPLES)
        if self.pyramid_base != "visible" and self.fusion_head != "pyramid":
            raise ValueError(f"pyramid_base {self.pyramid_base!r} needs fusion_head 'pyramid', "
                             f"got {self.fusion_head!r}")
        if int(self.pyramid_levels) < 2:
            raise ValueError(f"pyramid_levels must be >= 2, got {self.pyramid_levels}")
        if self.fusion_width % self.hia_heads:
            raise ValueError(f"fusion_width ({self.fusion_width}) must be divisible by "
                             f"hia_heads ({self.hia_heads})")

    @classmethod
    def paper(cls, num_classes: int = 9) -> "SegMiFConfig":
        return cls(num_classes=num_classes, encoder="mit-b3", pretrained="nvidia/mit-b3",
                   decoder_hidden_size=768,
                   fusion_width=64, drdb_growth=32, drdbs_per_group=1, hia_heads=8)


class SegMiF(FusionSegModel):
    """SegMiF model; see the module docstring and ``FusionSegModel`` for shapes."""

    name = "segmif"

    def __init__(self, config: SegMiFConfig | None = None, load_pretrained: bool = True):
        super().__init__()
        self.config = config or SegMiFConfig()
        cfg = self.config
        self.segmenter = Segmenter(cfg.encoder, cfg.num_classes, 4 if cfg.psi_thermal else 3,
                                   cfg.decoder_hidden_size,
                                   cfg.pretrained if load_pretrained else None)
        if cfg.normalization is None:
            cfg.normalization = dict(self.segmenter.encoder.normalization)
        hidden = self.segmenter.channels
        self.fusion = FusionNetwork(cfg.fusion_width, cfg.drdb_growth, cfg.drdb_layers,
                                    cfg.drdbs_per_group, (hidden[0], hidden[1]), cfg.hia_heads,
                                    cfg.interaction, cfg.hia_stride)
        self.upsampler = GuidedUpsampler(cfg.guided_radius, cfg.guided_eps)
        self.composer = PyramidComposer()

    @property
    def pyramid(self) -> bool:
        """True when Phi's output is the base-level weight of the pyramid head."""
        return self.config.fusion_head == "pyramid"

    def fused_rgb(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Phi's fused RGB image (``fuse``'s second output), (B, 3, H, W) in [0, 1]."""
        return self.fuse(vis, ir)[1]

    def fuse(self, vis: torch.Tensor, ir: torch.Tensor, guidance: torch.Tensor | None = None,
             guidance_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Run Phi only. Returns (fused luminance (B,1,H,W), fused RGB (B,3,H,W)), both in [0, 1].

        guidance: (B, 3, H, W) RGB in [0, 1] for the semantic features; default the visible image.
        guidance_grad: False runs Psi's guidance pass without a graph even where Psi's
            parameters require gradients (fusion warm-up under DistributedDataParallel).
        With ``config.fusion_scale`` < 1, Phi runs at the reduced size and the guided upsampler
        (direct head) or the pyramid (pyramid head) gives the result at H x W.
        """
        u, rgb, _ = self._fuse(vis, ir, guidance, guidance_grad)
        return u, rgb

    def _fuse(self, vis, ir, guidance=None, guidance_grad=True):
        """``fuse`` plus Phi's raw output (the pyramid head's weight map, else None)."""
        y, cbcr = split_luminance(vis)
        h, w = vis.shape[-2:]
        scale = float(self.config.fusion_scale)
        size = (max(int(round(h * scale)), self.min_size), max(int(round(w * scale)), self.min_size))
        if scale < 1.0 and size != (h, w):
            area = lambda x: F.interpolate(x, size=size, mode="area")  # noqa: E731
            y_lo, ir_lo = area(y), area(ir)
            guide = area(vis if guidance is None else guidance)
            phi = self._phi(y_lo, ir_lo, guide, guidance_grad)
            if not self.pyramid:
                u = self.upsampler(phi, y_lo, ir_lo, y, ir)
        else:
            phi = u = self._phi(y, ir, vis if guidance is None else guidance, guidance_grad)
        if self.pyramid:
            return self._compose(phi, y, ir, cbcr, (h, w))
        return u, merge_luminance(u, cbcr), None

    def _compose(self, w, y, ir, cbcr, net_size, camera: bool = False):
        """Pyramid head: (u, fused RGB, w) at the size of y: ``pyramid_levels`` levels (plus
        ``camera_extra_levels`` at the camera size); w (Phi's output at ``net_size`` times
        ``fusion_scale``) is reduced by down steps to the scale of the network-size pyramid's
        coarsest level (a count fixed by the network size, so exports keep the camera free)."""
        levels = int(self.config.pyramid_levels)
        w_downs = weight_downs(levels, net_size[0], w.shape[-2])
        if camera:
            levels += int(self.config.camera_extra_levels)
        u = self.composer(w, y, ir, levels, w_downs, self.config.pyramid_base,
                          self.config.pyramid_upsample)
        return u, merge_luminance(u, cbcr), w

    def _phi(self, y, ir, guide, guidance_grad):
        """Phi on luminance y and thermal ir (B, 1, h, w) guided by the RGB image ``guide``."""
        sem = None
        if self.fusion.uses_semantics:
            # no graph through the guidance pass when Psi is frozen (fusion phase of training)
            track = guidance_grad and torch.is_grad_enabled() and any(
                p.requires_grad for p in self.segmenter.parameters())
            with torch.set_grad_enabled(track):
                sem = self.segmenter.features(self.psi_input(guide, ir), stages=2)
        return self.fusion(y, ir, sem)

    def psi_input(self, rgb: torch.Tensor, ir: torch.Tensor | None) -> torch.Tensor:
        """Psi's normalised input: the RGB image (B, 3, H, W) in [0, 1], plus the thermal image
        (B, 1, H, W) in [0, 1] as a 4th channel with ``psi_thermal``. Raises ValueError when
        ``psi_thermal`` is set and ``ir`` is missing or of another size."""
        x = normalize_rgb(rgb, self.config.normalization)
        if not self.config.psi_thermal:
            return x
        if ir is None or ir.shape[-2:] != rgb.shape[-2:] or ir.shape[1] != 1:
            raise ValueError("psi_thermal: Psi needs the thermal image (B, 1, H, W) at the size "
                             f"of its RGB input {tuple(rgb.shape)}, got "
                             f"{None if ir is None else tuple(ir.shape)}")
        return torch.cat([x, normalize_mono(ir, self.config.normalization)], dim=1)

    def segment(self, rgb: torch.Tensor, ir: torch.Tensor | None = None) -> torch.Tensor:
        """Run Psi on an RGB image (B, 3, H, W) in [0, 1] (with ``psi_thermal`` also the thermal
        image (B, 1, H, W)) -> logits (B, num_classes, H, W)."""
        return self.segmenter(self.psi_input(rgb, ir))

    def full_resolution_fused(self, out: dict, vis: torch.Tensor, ir: torch.Tensor,
                              vis_hi: torch.Tensor, ir_hi: torch.Tensor) -> torch.Tensor:
        """The fused RGB image at the size of ``vis_hi`` (B, 3, H, W) / ``ir_hi`` (B, 1, H, W)
        (the camera's, in [0, 1]) from the network's output ``out`` on the resized ``vis``,
        ``ir``: the guided upsampler applies Phi's local mix of Y and T to the full-resolution
        sources; the chroma is the full-resolution visible chroma. Pyramid head: the pyramid of
        the full-resolution sources with Phi's weight map ``out['fusion_weights']``."""
        y_hi, cbcr_hi = split_luminance(vis_hi)
        if self.pyramid:
            return self._compose(out["fusion_weights"], y_hi, ir_hi, cbcr_hi, vis.shape[-2:],
                                 camera=True)[1]
        y_lo, _ = split_luminance(vis)
        u_hi = self.upsampler(out["fused"], y_lo, ir, y_hi, ir_hi)
        return merge_luminance(u_hi, cbcr_hi)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None, phase: str = "joint",
                guidance_grad: bool = True) -> dict:
        """phase 'joint': Phi and Psi with gradients; 'seg': Phi without gradients (the
        segmentation step of interactive training, Sec. 3.4, on the current fused images);
        'fused': ``vis`` already is a fused RGB image (B, 3, H, W) in [0, 1] made by Phi (the
        trainer's per-round cache), only Psi runs and ``ir`` is ignored; the output then has
        ``logits`` only; 'fusion': only Phi runs (with gradients; Psi's guidance pass without),
        the output has ``fused`` and ``fused_rgb`` only (the fusion warm-up, where L_f alone
        trains Phi: under DistributedDataParallel every returned tensor must feed the loss).
        ``guidance_grad`` False (phase 'joint'): no graph through Psi's guidance pass, for the
        fusion phase with a frozen Psi under DistributedDataParallel, where Psi's parameters keep
        ``requires_grad``."""
        if phase == "fused":
            if vis.dim() != 4 or vis.shape[1] != 3:
                raise ValueError(f"phase 'fused' needs a (B, 3, H, W) fused RGB image, "
                                 f"got {tuple(vis.shape)}")
            return {"logits": self.segment(vis, ir)}
        self.check_inputs(vis, ir)
        if phase == "fusion":
            u, fused_rgb = self.fuse(vis, ir, guidance, guidance_grad=False)
            return {"fused": u, "fused_rgb": fused_rgb}
        if phase not in ("joint", "seg"):
            raise ValueError(f"phase must be 'joint', 'seg', 'fused' or 'fusion', got {phase!r}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and phase == "joint"):
            u, fused_rgb, w = self._fuse(vis, ir, guidance, guidance_grad=guidance_grad)
        out = {"logits": self.segment(fused_rgb, ir), "fused": u, "fused_rgb": fused_rgb}
        if w is not None:
            out["fusion_weights"] = w
        return out
