"""Building blocks of SegMiF: DRDB (dilated residual dense block), HIA, and the guided
upsampler of the full-resolution fused image."""
from .drdb import DRDB
from .guided_filter import GuidedUpsampler, box_mean
from .hia import HIA, Aggregation, make_interaction

__all__ = ["DRDB", "HIA", "Aggregation", "make_interaction", "GuidedUpsampler", "box_mean"]
