"""TSJNet losses: the multi-facet fusion (MFF) loss, reconstruction, attention diversity, and the
detection loss of this project's FCOS-style detector. Pure functions; each returns a scalar tensor
(or a dict of them with 'total').

Sources: Jie et al., "TSJNet", arXiv 2402.01212, Sec. 3.4 (MFF loss = intensity + gradient +
SSIM terms; weights of the authors' code, tsjnet.md Sec. 4, in ``LOSS_WEIGHTS``); the detection
loss follows FCOS (Tian et al., ICCV 2019, Eq. 2; v2: GIoU regression weighted by the centerness
target): sigmoid focal loss (Lin et al., ICCV 2017, Eq. 5, alpha 0.25, gamma 2) over all points
and classes / number of positives, 1 - GIoU on the positives (Rezatofighi et al., CVPR 2019),
binary cross entropy of the centerness on the positives. The paper's Faster R-CNN losses (RPN
objectness / box, RoI box) do not apply to the anchor-free head. The segmentation term is
``losses.segmentation_loss`` (cross entropy on the integer MFNet labels - not divided by 255 as
in the authors' code).

Images are float tensors (B, 1, H, W) in [0, 1]: f the fused map, v the visible luminance Y,
i the thermal image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.metrics import ssim as _ssim_map

from ..models.tsjnet.box_ops import generalized_iou
from ..models.tsjnet.fcos import (all_points, assign_targets, centerness_target, decode_boxes,
                                  flatten_levels)

#: Loss weights of TSJNet (authors' code; tsjnet.md Sec. 4). The first three form the MFF loss.
LOSS_WEIGHTS = {"intensity": 20.0, "gradient": 20.0, "ssim": 10.0, "recon_vis": 6.0,
                "recon_ir": 1.0, "attention": 0.1, "segmentation": 1.0, "detection": 1.0}


def sobel_gradient(x: torch.Tensor) -> torch.Tensor:
    """G x = |Sobel_x * x| + |Sobel_y * x| (3x3 Sobel, replicate padding); (B, 1, H, W) -> same."""
    kx = x.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.t()])[:, None]                       # (2, 1, 3, 3)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return g.abs().sum(dim=1, keepdim=True)


def intensity_loss(f: torch.Tensor, v: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """L_int = mean |F - max(V, I)|."""
    return F.l1_loss(f, torch.maximum(v, i))


def gradient_loss(f: torch.Tensor, v: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """L_grad = mean |G F - max(G V, G I)|, G = ``sobel_gradient``."""
    return F.l1_loss(sobel_gradient(f), torch.maximum(sobel_gradient(v), sobel_gradient(i)))


def ssim_loss(f: torch.Tensor, v: torch.Tensor, i: torch.Tensor, window: int = 11
              ) -> torch.Tensor:
    """L_ssim = 1 - (w_V SSIM(V, F) + w_I SSIM(I, F)), per image, batch mean; in [0, 2].

    w_V = mean(G V) / (mean(G V) + mean(G I)), w_I = 1 - w_V (the share of each source's mean
    gradient; 1/2 each when both are flat). SSIM: Gaussian window ``window`` (sigma 1.5),
    C1 = 1e-4, C2 = 9e-4 (kornia, data range 1), mean of the map.
    """
    gv, gi = sobel_gradient(v).mean(dim=(1, 2, 3)), sobel_gradient(i).mean(dim=(1, 2, 3))
    total = gv + gi
    w_v = torch.where(total > 0, gv / total.clamp(min=1e-12), torch.full_like(gv, 0.5)).detach()
    s_v = _ssim_map(v, f, window).mean(dim=(1, 2, 3))
    s_i = _ssim_map(i, f, window).mean(dim=(1, 2, 3))
    return (1.0 - (w_v * s_v + (1.0 - w_v) * s_i)).mean()


def mff_loss(f: torch.Tensor, v: torch.Tensor, i: torch.Tensor, weights: dict | None = None
             ) -> dict:
    """Multi-facet fusion loss: 20 L_int + 20 L_grad + 10 L_ssim (``LOSS_WEIGHTS``; override
    with ``weights``). Returns {'intensity', 'gradient', 'ssim' (unweighted), 'total'}."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    parts = {"intensity": intensity_loss(f, v, i), "gradient": gradient_loss(f, v, i),
             "ssim": ssim_loss(f, v, i)}
    parts["total"] = sum(w[k] * parts[k] for k in ("intensity", "gradient", "ssim"))
    return parts


def reconstruction_loss(recon_v: torch.Tensor, v: torch.Tensor, recon_i: torch.Tensor,
                        i: torch.Tensor, weights: dict | None = None) -> dict:
    """6 MSE(D E V, V) + 1 MSE(D E I, I). Returns {'recon_vis', 'recon_ir', 'total'}."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    parts = {"recon_vis": F.mse_loss(recon_v, v), "recon_ir": F.mse_loss(recon_i, i)}
    parts["total"] = w["recon_vis"] * parts["recon_vis"] + w["recon_ir"] * parts["recon_ir"]
    return parts


def attention_diversity_loss(maps: torch.Tensor) -> torch.Tensor:
    """mean(1 - max_g A_g) + mean(A) of the decoder's spatial-attention maps A (B, G, H, W) in
    [0, 1] (fused pass): some group attends everywhere, but the groups do not all at once."""
    return (1.0 - maps.max(dim=1).values).mean() + maps.mean()


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Focal loss summed over elements: logits and 0/1 targets of the same shape (float)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (a_t * (1 - p_t) ** gamma * ce).sum()


def detection_loss(raw: dict, targets: list[dict], center_radius: float | None = 1.5) -> dict:
    """FCOS loss of a batch.

    Args:
        raw: the detector's raw outputs (``TSJNet.forward(...)['detections']``: per-level lists
            'cls_logits' (B, K, h, w), 'box_regression' (B, 4, h, w) pixels, 'centerness'
            (B, 1, h, w), and 'strides').
        targets: one dict per image, 'boxes' (N, 4) float (x1, y1, x2, y2) in input pixels and
            'labels' (N,) int64 in 0 .. K-1 (``data.boxes.to_tensors``); N may be 0.
        center_radius: centre sampling (``model.config.center_radius``).
    Returns:
        {'cls': focal / max(positives, 1), 'box': centerness-weighted mean (1 - GIoU),
         'centerness': BCE mean over positives, 'total': their sum, 'positives': float count};
        the box and centerness terms are 0 (with gradients) when no point is positive.
    Raises:
        ValueError: len(targets) != batch size.
    """
    cls = flatten_levels(raw["cls_logits"]).float()          # (B, N, K)
    reg = flatten_levels(raw["box_regression"]).float()      # (B, N, 4)
    ctr = flatten_levels(raw["centerness"]).float()[..., 0]  # (B, N)
    if len(targets) != cls.shape[0]:
        raise ValueError(f"{len(targets)} targets for a batch of {cls.shape[0]}")
    sizes = [m.shape[-2:] for m in raw["cls_logits"]]
    points, strides, lower, upper = all_points(sizes, raw["strides"], cls.device)
    cls_t, reg_t = [], []
    for t in targets:
        c, r, _ = assign_targets(points, strides, lower, upper, t["boxes"], t["labels"],
                                 center_radius)
        cls_t.append(c)
        reg_t.append(r)
    cls_t, reg_t = torch.stack(cls_t), torch.stack(reg_t)
    pos = cls_t >= 0
    num_pos = float(pos.sum())
    onehot = torch.zeros_like(cls)
    onehot[pos] = F.one_hot(cls_t[pos], cls.shape[-1]).to(cls.dtype)
    loss_cls = sigmoid_focal_loss(cls, onehot) / max(num_pos, 1.0)
    if num_pos > 0:
        pts = points[None].expand(cls.shape[0], -1, -1)[pos]
        pred_boxes, true_boxes = decode_boxes(pts, reg[pos]), decode_boxes(pts, reg_t[pos])
        ctr_t = centerness_target(reg_t[pos])
        giou = generalized_iou(pred_boxes, true_boxes)
        loss_box = ((1.0 - giou) * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
        loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], ctr_t)
    else:
        loss_box = reg.sum() * 0.0
        loss_ctr = ctr.sum() * 0.0
    return {"cls": loss_cls, "box": loss_box, "centerness": loss_ctr,
            "total": loss_cls + loss_box + loss_ctr, "positives": num_pos}
