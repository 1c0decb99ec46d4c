"""TSJNet (Jie et al., arXiv 2402.01212): fusion network, FCOS-style detector, DeepLabV3+-style
segmenter; see ``model``."""
from .model import TSJNet, TSJNetConfig

__all__ = ["TSJNet", "TSJNetConfig"]
