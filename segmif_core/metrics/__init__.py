"""Evaluation metrics: segmentation (confusion matrix), fusion quality (EN ... SSIM) and detection
(mAP@0.5, mAP@0.5:0.95)."""
from .detection import DetectionEvaluator, mean_average_precision
from .fusion import FUSION_METRIC_KEYS, fusion_metrics
from .segmentation import ConfusionMatrix

__all__ = ["ConfusionMatrix", "fusion_metrics", "FUSION_METRIC_KEYS", "DetectionEvaluator",
           "mean_average_precision"]
