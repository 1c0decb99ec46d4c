"""Evaluation metrics: segmentation (confusion matrix) and fusion quality (EN ... SSIM)."""
from .fusion import FUSION_METRIC_KEYS, fusion_metrics
from .segmentation import ConfusionMatrix

__all__ = ["ConfusionMatrix", "fusion_metrics", "FUSION_METRIC_KEYS"]
