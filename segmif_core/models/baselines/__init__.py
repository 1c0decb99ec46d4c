from .model import Baseline, BaselineConfig

__all__ = ["Baseline", "BaselineConfig"]
