"""Evaluation metrics."""
from .segmentation import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
