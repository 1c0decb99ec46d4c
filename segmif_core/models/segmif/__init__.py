from .model import SegMiF, SegMiFConfig

__all__ = ["SegMiF", "SegMiFConfig"]
