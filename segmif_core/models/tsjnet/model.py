"""TSJNet: a fusion autoencoder driven by an object detector and a segmentation network in series.

Jie, Xu, Li, Tan (v2 adds H. Li, F. Nie), "TSJNet: A Multi-modality Target and Semantic Awareness
Joint-driven Image Fusion Network", arXiv 2402.01212, Sec. 3 (Fig. 2); official code
XylonXu01/TSJNet. Facts used: docs/design note tsjnet.md.

Data flow (``forward``): the visible RGB image -> BT.601 YCbCr; its luminance Y (the paper; the
authors' code feeds the red channel) and the thermal image go through the fusion network
(``fusion.FusionNetwork``: shared encoder with split-attention blocks and the LSM, fusion layers,
decoder with spatial attention) to the fused map F (sigmoid, [0, 1]); the fused RGB image is
YCbCr(F, Cb_vis, Cr_vis) -> RGB, clipped (the paper's recombination; the code swaps BGR/RGB and
does not clip). The detector (``detector.Detector``, FCOS-style, replacing the paper's Faster
R-CNN) and the segmenter (``deeplab.DeepLabSegmenter``, DeepLabV3+-style) both see F broadcast
to 3 channels and normalised with their encoder's statistics (``task_input='rgb'``: the fused RGB
image instead). In the paper both task networks are optimised jointly with the fusion network;
the authors' code never steps their optimisers (and divides the 8-bit labels by 255, so every
segmentation target is 0) - this model leaves all three trainable, as the paper says.

Options of this project (``TSJNetConfig``, not the paper's): ``fusion_head='pyramid'`` (F
decides the low frequencies of a Laplacian pyramid that carries both cameras' detail, as SegMiF's
pyramid head), ``seg_head='mlp'`` (SegMiF's all-MLP segmentation head), ``task_input='rgb'``.

Inputs are padded (replicate) to a multiple of the NAT branch's stride (32 with 4 levels) for the
fusion network and cropped back. ``predict(vis, ir, full=...)`` gives the fused image at the
camera's resolution through the guided upsampler (``modules.guided_filter``, this project's
choice, as for SegMiF) and the detections, scaled to that resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...choices import check_choice
from ..base import FusionSegModel
from ..modules.guided_filter import GuidedUpsampler
from ..modules.pyramid import PYRAMID_BASES, PYRAMID_UPSAMPLES, PyramidComposer, weight_downs
from ..preprocessing import check_normalization, merge_luminance, normalize_rgb, split_luminance
from ..segmenter import Segmenter
from .deeplab import DeepLabSegmenter
from .detector import Detector
from .fusion import FusionNetwork

TASK_INPUTS = ("gray", "rgb")
FUSION_HEADS = ("decoder", "pyramid")
#: What F is at the pyramid head's coarsest level: 'map' the level itself, or (as SegMiF's
#: ``modules.pyramid.PYRAMID_BASES``) the visible share / the brighter source's share.
TSJ_PYRAMID_BASES = ("map",) + PYRAMID_BASES
SEG_HEADS = ("deeplab", "mlp")
_TUPLES = ("stem_channels", "reduce_channels", "nat_dims", "nat_depths", "nat_heads",
           "detection_classes", "aspp_rates")


@dataclass
class TSJNetConfig:
    """Configuration of TSJNet (saved inside checkpoints; lists are accepted for the tuples).

    The default is a light model for CPUs (fusion width 16, one NAT layer per level, narrow task
    heads on EfficientNet-Lite0). ``TSJNetConfig.paper()`` gives the paper's fusion network
    (45 M parameters, ~2.2 TMAC per 640x480 frame).

    Fusion network: ``stem_channels`` (paper 64, 64, 128), ResNeSt ``planes`` (128; blocks of
    planes * 4 channels), ``blocks`` (2), ``radix`` (2), ``reduce_channels`` (256, 128, 64; the
    last is the LSM width C), ``attention_groups`` (8, divides 2C), ``decoder_in`` (32), NAT-Mini
    ``nat_dims`` (64, 128, 256, 512) / ``nat_depths`` (3, 4, 6, 5) / ``nat_heads`` (2, 4, 8, 16),
    ``nat_kernel`` (7), ``nat_mlp_ratio`` (3), ``nat_drop_path`` (0.2), ``nat_head_hidden``
    (128).
    Task networks: ``detection_classes`` (names; detector class index i = names[i]; default the
    MFNet classes car, person, bike of ``data.boxes.MFNET_DETECTION_CLASSES``), ``det_encoder`` /
    ``seg_encoder`` (registry names), ``pretrained`` (both encoders' weight source, see
    ``models.encoders``; not read when a checkpoint loads), ``det_width`` / ``det_convs`` (FPN and
    head width, tower depth; FCOS 256, 4), ``det_border_pad`` (zero padding in pixels around the
    detector's input, a multiple of 32; 0 = none, the shipped checkpoint's; see
    ``detector.Detector``), ``seg_width`` / ``seg_low_channels`` / ``aspp_rates``
    (DeepLabV3+ 256, 48, rates (3, 6, 9) at stride 32), ``det_normalization`` /
    ``seg_normalization`` (None = the encoder's, filled in), ``task_input`` ('gray' = F as the
    paper, 'rgb' = the fused RGB image).
    ``seg_head``: 'deeplab' (the DeepLabV3+-style head above, the paper's choice) or 'mlp' (the
    SegFormer all-MLP head of SegMiF's Psi, ``models.segmenter.Segmenter``, ``seg_width``
    channels; ours).
    ``fusion_head``: 'decoder' (the paper: F is the fused map) or 'pyramid' (ours, as SegMiF's
    pyramid head): the fused luminance is a Laplacian pyramid of ``pyramid_levels`` levels at the
    network size (plus ``camera_extra_levels`` at the camera size) whose detail levels take the
    larger-magnitude coefficient of Y and the thermal image and whose coarsest level comes from
    F (``modules.pyramid.PyramidComposer``; ``pyramid_base``: 'map' F as that level itself,
    'visible' / 'brighter' F as the weight of the visible / the brighter source at that level,
    which keeps it between the two sources; ``pyramid_upsample``: the pyramid's expand step,
    'bilinear' or 'binomial' = Burt & Adelson's EXPAND, ``modules.pyramid``): the network
    decides the low frequencies, both cameras' detail reaches the fused image at full
    resolution.
    Post-processing: ``score_threshold``, ``nms_threshold`` (class-wise, IoU >), ``max_detections``;
    training: ``center_radius`` (FCOS centre sampling in strides, None = off).
    Full-resolution fused image: ``guided_radius``, ``guided_eps``.
    Speed: ``fusion_scale`` s in (0, 1] (default 1 = the paper): the fusion network runs on the
    pair area-resized to s times the network input and its fused map is brought back to the
    input size by the guided upsampler (as SegMiF's ``fusion_scale``); the task networks still
    see the input size. Changeable on a trained model (``SegMiFPredictor(fusion_scale=...)``,
    ``segmif export --fusion-scale``).
    """

    num_classes: int = 9
    stem_channels: tuple = (16, 16, 32)
    planes: int = 8
    blocks: int = 2
    radix: int = 2
    reduce_channels: tuple = (16, 16, 16)
    attention_groups: int = 8
    decoder_in: int = 8
    nat_dims: tuple = (16, 32, 64, 128)
    nat_depths: tuple = (1, 1, 1, 1)
    nat_heads: tuple = (1, 2, 4, 8)
    nat_kernel: int = 7
    nat_mlp_ratio: float = 3.0
    nat_drop_path: float = 0.1
    nat_head_hidden: int = 32
    detection_classes: tuple = ("car", "person", "bike")
    det_encoder: str = "efficientnet-lite0"
    seg_encoder: str = "efficientnet-lite0"
    pretrained: str | None = "imagenet"
    det_width: int = 64
    det_convs: int = 2
    det_border_pad: int = 0
    seg_width: int = 64
    seg_low_channels: int = 24
    aspp_rates: tuple = (3, 6, 9)
    det_normalization: dict | None = None
    seg_normalization: dict | None = None
    task_input: str = "gray"
    seg_head: str = "deeplab"
    fusion_head: str = "decoder"
    pyramid_levels: int = 4
    camera_extra_levels: int = 1
    pyramid_base: str = "map"
    pyramid_upsample: str = "bilinear"
    score_threshold: float = 0.05
    nms_threshold: float = 0.6
    max_detections: int = 100
    center_radius: float | None = 1.5
    guided_radius: int = 4
    guided_eps: float = 1e-5
    fusion_scale: float = 1.0

    def __post_init__(self):
        for key in _TUPLES:
            setattr(self, key, tuple(getattr(self, key)))
        if not 0.0 < float(self.fusion_scale) <= 1.0:
            raise ValueError(f"fusion_scale must be in (0, 1], got {self.fusion_scale}")
        for key, choices in (("task_input", TASK_INPUTS), ("fusion_head", FUSION_HEADS),
                             ("pyramid_base", TSJ_PYRAMID_BASES), ("seg_head", SEG_HEADS),
                             ("pyramid_upsample", PYRAMID_UPSAMPLES)):
            check_choice(key, getattr(self, key), choices)
        if int(self.pyramid_levels) < 2 or int(self.camera_extra_levels) < 0:
            raise ValueError(f"pyramid_levels must be >= 2 and camera_extra_levels >= 0, got "
                             f"{self.pyramid_levels}, {self.camera_extra_levels}")
        if not self.detection_classes:
            raise ValueError("detection_classes must name at least one class")
        if (2 * self.reduce_channels[-1]) % self.attention_groups:
            raise ValueError(f"2 x LSM width ({2 * self.reduce_channels[-1]}) must be divisible "
                             f"by attention_groups ({self.attention_groups})")
        if any(d % h for d, h in zip(self.nat_dims, self.nat_heads)):
            raise ValueError(f"nat_dims {self.nat_dims} must be divisible by nat_heads "
                             f"{self.nat_heads}")
        for key in ("det_normalization", "seg_normalization"):
            if getattr(self, key) is not None:
                setattr(self, key, check_normalization(getattr(self, key)))

    @classmethod
    def paper(cls, num_classes: int = 9, **overrides) -> "TSJNetConfig":
        """The paper's fusion network. The paper's task backbones (ResNet-50-FPN, ResNet-101) are
        not in the encoder registry: the largest ImageNet EfficientNet-Lite (lite2) stands in,
        with the FCOS / DeepLabV3+ head widths (256; 4 tower convs; 48 low-level channels)."""
        values = dict(num_classes=num_classes, stem_channels=(64, 64, 128), planes=128,
                      reduce_channels=(256, 128, 64), decoder_in=32,
                      nat_dims=(64, 128, 256, 512), nat_depths=(3, 4, 6, 5),
                      nat_heads=(2, 4, 8, 16), nat_drop_path=0.2, nat_head_hidden=128,
                      det_encoder="efficientnet-lite2", seg_encoder="efficientnet-lite2",
                      det_width=256, det_convs=4, seg_width=256, seg_low_channels=48)
        values.update(overrides)
        return cls(**values)


class TSJNet(FusionSegModel):
    """TSJNet; see the module docstring and ``FusionSegModel`` for the shared shapes.

    ``forward(vis, ir, phase='joint', reconstruct=False)`` returns a dict:
        'fused' (B, 1, H, W) in [0, 1]; 'fused_rgb' (B, 3, H, W) in [0, 1];
        'fusion_map' (pyramid head only) F before the pyramid, (B, 1, h, w) in [0, 1] at the
            size the fusion network ran at;
        'attention' (B, attention_groups, H, W) the decoder's spatial-attention maps of the
            fused pass (the attention-diversity loss);
        'logits' (B, num_classes, H, W); 'detections': the detector's raw outputs
            ('cls_logits', 'box_regression', 'centerness' per-level lists, 'strides'; see
            ``detector.FCOSHead``; boxes from them with ``postprocess_detections``);
        with ``reconstruct``: 'recon_vis' = D(E(Y)), 'recon_ir' = D(E(I)), (B, 1, H, W).
    phase 'fusion': only the fusion network (keys fused, fused_rgb, attention [, recon_*]);
    phase 'fused': ``vis`` is already a fused map (B, 1, H, W) (or RGB (B, 3, H, W) with
    task_input 'rgb') in [0, 1]; only the task networks run (keys logits, detections);
    phase 'segment': as 'fused' with the segmenter alone (key logits).
    Raises ValueError for another phase or a fused input of the wrong shape.
    """

    name = "tsjnet"

    def __init__(self, config: TSJNetConfig | None = None, load_pretrained: bool = True):
        super().__init__()
        self.config = cfg = config or TSJNetConfig()
        nat = dict(dims=cfg.nat_dims, depths=cfg.nat_depths, heads=cfg.nat_heads,
                   kernel=cfg.nat_kernel, mlp_ratio=cfg.nat_mlp_ratio,
                   drop_path=cfg.nat_drop_path, head_hidden=cfg.nat_head_hidden)
        self.fusion = FusionNetwork(cfg.stem_channels, cfg.planes, cfg.blocks, cfg.radix,
                                    cfg.reduce_channels, cfg.attention_groups, cfg.decoder_in, nat)
        pretrained = cfg.pretrained if load_pretrained else None
        self.detector = Detector(cfg.det_encoder, len(cfg.detection_classes), cfg.det_width,
                                 cfg.det_convs, pretrained, cfg.det_border_pad)
        if cfg.seg_head == "mlp":
            self.segmenter = Segmenter(cfg.seg_encoder, cfg.num_classes, 3, cfg.seg_width,
                                       pretrained)
        else:
            self.segmenter = DeepLabSegmenter(cfg.seg_encoder, cfg.num_classes, cfg.seg_width,
                                              cfg.seg_low_channels, cfg.aspp_rates, pretrained)
        if cfg.det_normalization is None:
            cfg.det_normalization = dict(self.detector.encoder.normalization)
        if cfg.seg_normalization is None:
            cfg.seg_normalization = dict(self.segmenter.encoder.normalization)
        self.upsampler = GuidedUpsampler(cfg.guided_radius, cfg.guided_eps)
        self.composer = PyramidComposer()

    @property
    def detection_classes(self) -> tuple[str, ...]:
        return self.config.detection_classes

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fusion.stride
        h, w = x.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def fuse(self, vis: torch.Tensor, ir: torch.Tensor) -> dict:
        """The fusion network: vis (B, 3, H, W), ir (B, 1, H, W) in [0, 1] -> dict 'fused',
        'fused_rgb', 'attention' (shapes as ``forward``). With ``config.fusion_scale`` < 1 the
        network runs at the reduced size; the guided upsampler gives F at H x W (the pyramid
        head: the pyramid of the H x W sources) and the attention maps are upsampled
        bilinearly. The pyramid head also returns 'fusion_map', F at the size the network ran
        at (the coarsest level of the camera-size pyramid, ``full_resolution_fused``)."""
        h, w = vis.shape[-2:]
        y, cbcr = split_luminance(vis)
        scale = float(self.config.fusion_scale)
        size = (max(int(round(h * scale)), self.min_size),
                max(int(round(w * scale)), self.min_size))
        pyramid = self.config.fusion_head == "pyramid"
        extra = {}
        if scale < 1.0 and size != (h, w):
            y_lo, ir_lo = (F.interpolate(x, size=size, mode="area") for x in (y, ir))
            fused, attention = self.fusion.fuse(self._pad(y_lo), self._pad(ir_lo))
            fused, attention = fused[..., :size[0], :size[1]], attention[..., :size[0], :size[1]]
            if not pyramid:
                fused = self.upsampler(fused, y_lo, ir_lo, y, ir)
            attention = F.interpolate(attention, size=(h, w), mode="bilinear",
                                      align_corners=False)
        else:
            fused, attention = self.fusion.fuse(self._pad(y), self._pad(ir))
            fused, attention = fused[..., :h, :w], attention[..., :h, :w]
        if pyramid:
            extra["fusion_map"] = fused
            fused = self._compose(fused, y, ir, (h, w))
        return {"fused": fused, "fused_rgb": merge_luminance(fused, cbcr),
                "attention": attention, **extra}

    def _compose(self, fmap: torch.Tensor, y: torch.Tensor, ir: torch.Tensor, net_size,
                 camera: bool = False) -> torch.Tensor:
        """Pyramid head: the fused luminance at the size of y from F (``fmap``, at ``net_size``
        times ``fusion_scale``): ``pyramid_levels`` levels (plus ``camera_extra_levels`` at the
        camera size); F is reduced by down steps to the scale of the network-size pyramid's
        coarsest level (a count fixed by the network size, so exports keep the camera size
        free)."""
        levels = int(self.config.pyramid_levels)
        downs = weight_downs(levels, net_size[0], fmap.shape[-2])
        if camera:
            levels += int(self.config.camera_extra_levels)
        return self.composer(fmap, y, ir, levels, downs, self.config.pyramid_base,
                             self.config.pyramid_upsample)

    def fused_rgb(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The fused RGB image (``fuse``'s 'fused_rgb'), (B, 3, H, W) in [0, 1]."""
        return self.fuse(vis, ir)["fused_rgb"]

    def reconstruct(self, img: torch.Tensor) -> torch.Tensor:
        """D(E(img)) for one modality: (B, 1, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1]."""
        h, w = img.shape[-2:]
        return self.fusion.reconstruct(self._pad(img))[0][..., :h, :w]

    def tasks(self, image: torch.Tensor, detect: bool = True) -> dict:
        """The task networks on a fused map (B, 1, H, W) or fused RGB image (B, 3, H, W) in
        [0, 1] -> dict 'logits' (B, num_classes, H, W), 'detections' (raw head outputs; absent
        with ``detect`` False, when only the segmenter runs)."""
        x = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        cfg = self.config
        out = {"logits": self.segmenter(normalize_rgb(x, cfg.seg_normalization))}
        if detect:
            out["detections"] = self.detector(normalize_rgb(x, cfg.det_normalization))
        return out

    def forward(self, vis: torch.Tensor, ir: torch.Tensor | None = None, phase: str = "joint",
                reconstruct: bool = False) -> dict:
        if phase in ("fused", "segment"):
            want = 1 if self.config.task_input == "gray" else 3
            if vis.dim() != 4 or vis.shape[1] != want:
                raise ValueError(f"phase {phase!r} needs a (B, {want}, H, W) fused image, got "
                                 f"{tuple(vis.shape)}")
            return self.tasks(vis, detect=phase == "fused")
        if phase not in ("joint", "fusion"):
            raise ValueError(f"phase must be 'joint', 'fusion', 'fused' or 'segment', got "
                             f"{phase!r}")
        self.check_inputs(vis, ir)
        out = self.fuse(vis, ir)
        if reconstruct:
            out["recon_vis"] = self.reconstruct(split_luminance(vis)[0])
            out["recon_ir"] = self.reconstruct(ir)
        if phase == "joint":
            out.update(self.tasks(out["fused"] if self.config.task_input == "gray"
                                  else out["fused_rgb"]))
        return out

    def postprocess_detections(self, raw: dict, image_size: tuple[int, int],
                               valid_sizes=None) -> list[dict]:
        """Boxes from the raw detector outputs with the config's thresholds: a list (one per
        image) of dicts 'boxes' (D, 4) float32 (x1, y1, x2, y2) in input pixels, 'scores' (D,)
        float32 in [0, 1], 'classes' (D,) int64 indices into ``detection_classes``.
        ``image_size`` (H, W) is the input's; ``valid_sizes`` (one (h, w) per image) the valid
        top-left region of each image of a padded batch. Boxes never leave that region and
        locations outside it give none (``fcos.postprocess``). Raises ValueError for bad
        ``valid_sizes``."""
        cfg = self.config
        return Detector.detect(raw, image_size, score_threshold=cfg.score_threshold,
                               nms_threshold=cfg.nms_threshold,
                               max_detections=cfg.max_detections, valid_sizes=valid_sizes)

    @torch.no_grad()
    def detect(self, vis: torch.Tensor, ir: torch.Tensor) -> list[dict]:
        """Detections on a batch in eval mode (see ``postprocess_detections``)."""
        return self.predict(vis, ir)["detections"]

    def full_resolution_fused(self, out: dict, vis: torch.Tensor, ir: torch.Tensor,
                              vis_hi: torch.Tensor, ir_hi: torch.Tensor) -> torch.Tensor:
        """Fused RGB at the size of ``vis_hi`` / ``ir_hi`` via the guided upsampler (see SegMiF);
        the pyramid head: the pyramid of the full-resolution sources on F's coarsest level."""
        y_hi, cbcr_hi = split_luminance(vis_hi)
        if self.config.fusion_head == "pyramid":
            return merge_luminance(self._compose(out["fusion_map"], y_hi, ir_hi, vis.shape[-2:],
                                                 camera=True), cbcr_hi)
        y_lo, _ = split_luminance(vis)
        return merge_luminance(self.upsampler(out["fused"], y_lo, ir, y_hi, ir_hi), cbcr_hi)

    def extra_predictions(self, out: dict, vis: torch.Tensor,
                          full: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
        """'detections' for ``FusionSegModel.predict``: one dict per image ('boxes', 'scores',
        'classes', see ``postprocess_detections``); with ``full`` the boxes are scaled to the
        full-resolution size (x by W'/W, y by H'/H)."""
        h, w = vis.shape[-2:]
        dets = self.postprocess_detections(out["detections"], (h, w))
        if full is not None:
            sy, sx = full[0].shape[-2] / h, full[0].shape[-1] / w
            scale = torch.tensor([sx, sy, sx, sy], device=vis.device)
            dets = [dict(d, boxes=d["boxes"] * scale) for d in dets]
        return {"detections": dets}
