"""FCOS target assignment, box decoding and post-processing, pure torch.

Z. Tian, C. Shen, H. Chen, T. He, "FCOS: Fully Convolutional One-Stage Object Detection",
ICCV 2019, Sec. 3.1-3.3 (and the centre-sampling / GIoU / normalised-regression improvements of
its v2, TPAMI 2022). TSJNet's paper uses Faster R-CNN (two stages, anchors, RoIAlign); this
project replaces it with this anchor-free detector because torchvision is not usable here (see
``detector.py`` for the differences).

Conventions: a location of a level with stride s at map index (i, j) is the image point
(x, y) = (j s + s // 2, i s + s // 2) in input pixels. Boxes are (x1, y1, x2, y2) in input
pixels. Regression targets are the distances (l, t, r, b) = (x - x1, y - y1, x2 - x, y2 - y) in
pixels. Class targets are indices 0 .. K-1 with -1 for background.
"""
from __future__ import annotations

import math

import torch

from .box_ops import batched_nms

#: size ranges of FCOS's levels (max(l, t, r, b) in pixels) for strides 8, 16, 32, ...;
#: the last level takes everything above (FCOS, Sec. 3.2, with P3-P5 only).
DEFAULT_SIZE_BOUNDS = (64.0, 128.0, 256.0, 512.0)


def level_points(size: tuple[int, int], stride: int, device=None) -> torch.Tensor:
    """Image points of a (h, w) feature map of ``stride``: (h * w, 2) float32 (x, y), row-major."""
    h, w = size
    ys = torch.arange(h, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(w, device=device, dtype=torch.float32) * stride + stride // 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def all_points(sizes, strides, device=None):
    """Points of every level concatenated, with each point's stride and size range.

    Returns (points (N, 2), stride (N,), lower (N,), upper (N,)) float32; level n covers
    max(l, t, r, b) in (bounds[n-1], bounds[n]] (0 below the first, inf above the last)."""
    pts, st, lo, hi = [], [], [], []
    for n, (size, s) in enumerate(zip(sizes, strides)):
        p = level_points(size, s, device)
        lower = 0.0 if n == 0 else DEFAULT_SIZE_BOUNDS[n - 1]
        upper = math.inf if n == len(strides) - 1 else DEFAULT_SIZE_BOUNDS[n]
        pts.append(p)
        st.append(torch.full((len(p),), float(s), device=device))
        lo.append(torch.full((len(p),), lower, device=device))
        hi.append(torch.full((len(p),), upper, device=device))
    return torch.cat(pts), torch.cat(st), torch.cat(lo), torch.cat(hi)


def assign_targets(points: torch.Tensor, strides: torch.Tensor, lower: torch.Tensor,
                   upper: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                   center_radius: float | None = 1.5):
    """FCOS assignment of one image's ground truth to the points of all levels.

    A point is positive for a box when (1) it lies strictly inside the box (all of l, t, r, b
    > 0), (2) with ``center_radius`` r: also within r * stride of the box centre in x and y
    (centre sampling, FCOS v2), and (3) max(l, t, r, b) lies in the level's range
    (lower, upper]. A point positive for several boxes takes the one of smallest area (ties: the
    first box).

    Args:
        points (N, 2), strides / lower / upper (N,): from ``all_points``.
        boxes: (M, 4) float (x1, y1, x2, y2) pixels; labels: (M,) int64 in 0 .. K-1.
        center_radius: None disables centre sampling.
    Returns:
        cls (N,) int64 (class index, -1 background), reg (N, 4) float32 (l, t, r, b) of the
        assigned box (0 for background), matched (N,) int64 box index or -1.
    """
    n = points.shape[0]
    if boxes.numel() == 0:
        return (torch.full((n,), -1, dtype=torch.int64, device=points.device),
                points.new_zeros(n, 4), torch.full((n,), -1, dtype=torch.int64,
                                                   device=points.device))
    boxes = boxes.to(points)
    x, y = points[:, 0, None], points[:, 1, None]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y],
                       dim=-1)                                            # (N, M, 4)
    inside = ltrb.min(dim=-1).values > 0
    if center_radius is not None:
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        r = center_radius * strides[:, None]
        inside &= ((x - cx).abs() < r) & ((y - cy).abs() < r)
    extent = ltrb.max(dim=-1).values
    ok = inside & (extent > lower[:, None]) & (extent <= upper[:, None])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n, -1)
    area = torch.where(ok, area, torch.full_like(area, math.inf))
    best_area, matched = area.min(dim=1)
    positive = torch.isfinite(best_area)
    matched = torch.where(positive, matched, torch.full_like(matched, -1))
    cls = torch.where(positive, labels.to(points.device)[matched.clamp(min=0)],
                      torch.full_like(matched, -1))
    reg = ltrb[torch.arange(n, device=points.device), matched.clamp(min=0)]
    reg = torch.where(positive[:, None], reg, torch.zeros_like(reg))
    return cls, reg, matched


def centerness_target(reg: torch.Tensor) -> torch.Tensor:
    """FCOS Eq. (3): sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)); (N, 4) -> (N,) in
    [0, 1] (0 where the distances are not all positive)."""
    l, t, r, b = reg.unbind(-1)
    lr = torch.minimum(l, r) / torch.maximum(l, r).clamp(min=1e-12)
    tb = torch.minimum(t, b) / torch.maximum(t, b).clamp(min=1e-12)
    return torch.sqrt((lr * tb).clamp(min=0)) * (reg.min(dim=-1).values > 0)


def decode_boxes(points: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """(l, t, r, b) distances (N, 4) at points (N, 2) -> boxes (N, 4) (x1, y1, x2, y2)."""
    return torch.stack([points[:, 0] - reg[:, 0], points[:, 1] - reg[:, 1],
                        points[:, 0] + reg[:, 2], points[:, 1] + reg[:, 3]], dim=-1)


def flatten_levels(maps) -> torch.Tensor:
    """List of per-level (B, C, h, w) -> (B, sum h w, C), levels in order, row-major."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def _valid_sizes(image_size, batch: int, valid_sizes) -> list[tuple[int, int]]:
    """Per-image (h, w) of the valid image region: ``valid_sizes`` (one per image, each within
    ``image_size``) or ``image_size`` for every image. ValueError for bad sizes."""
    h, w = (int(v) for v in image_size)
    if valid_sizes is None:
        return [(h, w)] * batch
    sizes = [tuple(int(v) for v in s) for s in valid_sizes]
    if len(sizes) != batch or any(len(s) != 2 or not (0 < s[0] <= h and 0 < s[1] <= w)
                                  for s in sizes):
        raise ValueError(f"valid_sizes must be {batch} (h, w) pairs within the input size "
                         f"{(h, w)}, got {valid_sizes}")
    return sizes


def decode_all(raw: dict, image_size: tuple[int, int], valid_sizes=None):
    """Every location's box and class scores, before selection.

    Score = sqrt(sigmoid(class logit) * sigmoid(centerness logit)) (FCOS v2). A location whose
    point (module docstring) lies outside its image's valid region scores 0 (the maps of an
    input whose size is not a multiple of the stride, or of a padded input, have such
    locations); boxes are decoded and clipped to the valid region, so every box lies inside it
    and contains its point.

    Args:
        raw: the head's dict ('cls_logits', 'box_regression', 'centerness': per-level lists of
            (B, K / 4 / 1, h, w); 'strides').
        image_size: (H, W) of the network input in pixels.
        valid_sizes: None (the whole input is image) or one (h, w) per image, the valid
            top-left region of a padded input (h <= H, w <= W).
    Returns:
        boxes (B, N, 4) float32 (x1, y1, x2, y2) pixels, scores (B, N, K) float32 in [0, 1];
        N = locations of all levels, in ``flatten_levels`` order.
    Raises:
        ValueError: ``valid_sizes`` of the wrong length or outside the input size.
    """
    sizes = [m.shape[-2:] for m in raw["cls_logits"]]
    device = raw["cls_logits"][0].device
    points, _, _, _ = all_points(sizes, raw["strides"], device)
    cls = torch.sigmoid(flatten_levels(raw["cls_logits"]).float())
    ctr = torch.sigmoid(flatten_levels(raw["centerness"]).float())
    reg = flatten_levels(raw["box_regression"]).float()
    valid = _valid_sizes(image_size, cls.shape[0], valid_sizes)
    limits = torch.tensor([[w, h, w, h] for h, w in valid], dtype=torch.float32,
                          device=device)[:, None, :]                      # (B, 1, 4)
    boxes = torch.stack([points[None, :, 0] - reg[..., 0], points[None, :, 1] - reg[..., 1],
                         points[None, :, 0] + reg[..., 2], points[None, :, 1] + reg[..., 3]],
                        dim=-1)
    boxes = torch.minimum(boxes.clamp(min=0), limits)
    inside = (points[None, :, 0] < limits[..., 0]) & (points[None, :, 1] < limits[..., 1])
    scores = torch.sqrt(cls * ctr) * inside[..., None]
    return boxes, scores


def postprocess(raw: dict, image_size: tuple[int, int], score_threshold: float = 0.05,
                nms_threshold: float = 0.6, pre_nms_top_k: int = 1000,
                max_detections: int = 100, valid_sizes=None) -> list[dict]:
    """Detections of a batch from the head's raw outputs.

    Per image (``decode_all``'s boxes and scores): keep the (location, class) pairs scoring
    above ``score_threshold`` (at most ``pre_nms_top_k``, best first), drop boxes of zero width
    or height, class-wise NMS at IoU > ``nms_threshold``, keep the best ``max_detections``. No
    box lies outside the image's valid region (``image_size``, or its entry of
    ``valid_sizes`` for a padded input), and locations outside it give none.
    ``inference.detections.select_detections`` is the same selection in numpy (ONNX Runtime).

    Args:
        raw: the head's dict ('cls_logits', 'box_regression', 'centerness': per-level lists of
            (B, K / 4 / 1, h, w); 'strides'); image_size: (H, W) of the input in pixels;
        valid_sizes: see ``decode_all``.
    Returns:
        one dict per image: 'boxes' (D, 4) float32 (x1, y1, x2, y2) pixels, 'scores' (D,)
        float32 in [0, 1], 'classes' (D,) int64 in 0 .. K-1, by decreasing score.
    Raises:
        ValueError: bad ``valid_sizes``.
    """
    all_boxes, all_scores = decode_all(raw, image_size, valid_sizes)
    results = []
    for b in range(all_scores.shape[0]):
        scores = all_scores[b]                                        # (N, K)
        flat = scores.flatten()
        cand = torch.nonzero(flat > score_threshold).squeeze(1)
        if cand.numel() > pre_nms_top_k:
            cand = cand[flat[cand].topk(pre_nms_top_k).indices]
        k = scores.shape[1]
        idx, classes, s = cand // k, cand % k, flat[cand]
        boxes = all_boxes[b, idx]
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, classes, s = boxes[ok], classes[ok], s[ok]
        keep = batched_nms(boxes, s, classes, nms_threshold)[:max_detections]
        results.append({"boxes": boxes[keep], "scores": s[keep], "classes": classes[keep]})
    return results
