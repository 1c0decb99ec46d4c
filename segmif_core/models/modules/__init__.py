"""Building blocks of SegMiF: DRDB (dilated residual dense block) and HIA."""
from .drdb import DRDB
from .hia import HIA, Aggregation, make_interaction

__all__ = ["DRDB", "HIA", "Aggregation", "make_interaction"]
