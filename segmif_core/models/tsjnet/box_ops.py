"""Axis-aligned box operations in pure torch: IoU, GIoU, NMS (greedy, class-wise).

Boxes are (N, 4) float tensors (x1, y1, x2, y2) in image pixels, continuous coordinates with
x2 >= x1 and y2 >= y1 (a box covering pixel columns 3..5 is x1 = 3, x2 = 6). torchvision's
``nms`` / ``box_iou`` are not usable with this machine's CPU build of torch, hence these.
"""
from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) -> (N,) areas in square pixels (negative widths/heights count as 0)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: a (N, 4), b (M, 4) -> (N, M) in [0, 1].

    Pairs whose union is empty (two degenerate boxes) give 0.
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU of matched boxes a[i], b[i] (Rezatofighi et al., CVPR 2019, Alg. 1):
    IoU - |C \\ (A u B)| / |C|, C the smallest enclosing box. a, b (N, 4) -> (N,) in [-1, 1].
    Differentiable (the detection loss is 1 - GIoU)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = box_area(a) + box_area(b) - inter
    iou = inter / (union + eps)
    c_lt = torch.minimum(a[:, :2], b[:, :2])
    c_rb = torch.maximum(a[:, 2:], b[:, 2:])
    enclosing = (c_rb - c_lt).clamp(min=0).prod(dim=-1)
    return iou - (enclosing - union) / (enclosing + eps)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: the earlier index first); a box is kept unless
    a kept box overlaps it with IoU > ``iou_threshold`` (the rule of torchvision.ops.nms).

    Args:
        boxes: (N, 4) float; scores: (N,) float; iou_threshold: in [0, 1].
    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    Raises:
        ValueError: shapes that do not match.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes must be (N, 4) and scores (N,), got {tuple(boxes.shape)}, "
                         f"{tuple(scores.shape)}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes[order], boxes[order])
    over = (iou > iou_threshold).cpu()       # the greedy loop runs on the CPU
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """Class-wise NMS: boxes of different ``classes`` (N,) int never suppress each other.

    Implemented by shifting each class's boxes by class * (largest coordinate + 1) so that boxes of
    different classes cannot overlap, then one ``nms``. Returns kept indices by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    offset = classes.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)
