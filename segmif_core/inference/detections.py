"""Selection of a detector's boxes after the ONNX graph, in numpy (no torch, no torchvision).

The graph gives a decoded, clipped box and per-class scores for every detector location
(``onnx_io``: ``boxes`` (N, 4), ``box_scores`` (N, K)); ``select_detections`` keeps what
``models.tsjnet.fcos.postprocess`` keeps on the torch backend, with the same rules:
1. the (location, class) pairs whose score is > ``score_threshold``, at most ``pre_nms_top_k`` of
   them, best first (ties: lower flat index location * K + class first);
2. boxes of zero width or height dropped;
3. greedy class-wise NMS: by decreasing score (ties: the earlier pair first), a box is kept
   unless a kept box of its class overlaps it with IoU > ``nms_threshold`` (torchvision.ops.nms's
   rule, computed in float32 as ``models.tsjnet.box_ops``);
4. the best ``max_detections``.
"""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of (N, 4) and (M, 4) boxes (x1, y1, x2, y2) -> (N, M) float32 in
    [0, 1] (0 where the union is empty)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=-1)

    def area(x):
        return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, np.float32(1e-12)), np.float32(0))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes=None,
        max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS: (N, 4) boxes, (N,) scores -> (K,) int64 indices of the kept boxes by
    decreasing score (ties: the lower index first). With ``classes`` (N,) only boxes of one
    class suppress each other; ``max_keep`` stops after that many kept boxes (the same first
    ones: later boxes never change an earlier decision). ValueError for bad shapes."""
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes must be (N, 4) and scores (N,), got {boxes.shape}, "
                         f"{scores.shape}")
    classes = np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes)
    order = np.argsort(-scores, kind="stable")
    boxes, classes = boxes[order], classes[order]
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = slice(i + 1, None)
        over = box_iou(boxes[i:i + 1], boxes[rest])[0] > iou_threshold
        suppressed[rest] |= over & (classes[rest] == classes[i])
    return order[np.asarray(keep, np.int64)]


def select_detections(boxes: np.ndarray, scores: np.ndarray, score_threshold: float = 0.05,
                      nms_threshold: float = 0.6, pre_nms_top_k: int = 1000,
                      max_detections: int = 100) -> dict:
    """Detections of one image from the graph's per-location outputs (module docstring).

    Args:
        boxes: (N, 4) float32 (x1, y1, x2, y2) pixels; scores: (N, K) float32 in [0, 1].
    Returns:
        {'boxes' (D, 4) float32, 'scores' (D,) float32, 'classes' (D,) int64 in 0 .. K-1}, by
        decreasing score, D <= ``max_detections``.
    Raises:
        ValueError: shapes that do not match.
    """
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.ndim != 2 \
            or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"boxes must be (N, 4) and scores (N, K), got {boxes.shape}, "
                         f"{scores.shape}")
    k = scores.shape[1]
    flat = scores.reshape(-1)
    cand = np.flatnonzero(flat > score_threshold)
    cand = cand[np.argsort(-flat[cand], kind="stable")][:pre_nms_top_k]
    idx, classes, s = cand // k, (cand % k).astype(np.int64), flat[cand]
    b = boxes[idx]
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b, s, classes = b[ok], s[ok], classes[ok]
    keep = nms(b, s, nms_threshold, classes, max_keep=max_detections)
    return {"boxes": b[keep].reshape(-1, 4), "scores": s[keep], "classes": classes[keep]}
