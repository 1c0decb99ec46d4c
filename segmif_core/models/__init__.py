"""Model registry: build any segmif model from a name plus a config dict.

Names: 'segmif' (SegMiF, see ``segmif.model``), 'baseline' (visible-only, thermal-only or early
fusion SegFormer, see ``baselines.model``).
"""
from __future__ import annotations

from .base import FusionSegModel
from .baselines import Baseline, BaselineConfig
from .segmif import SegMiF, SegMiFConfig

MODELS = {"segmif": (SegMiF, SegMiFConfig), "baseline": (Baseline, BaselineConfig)}


def build_model(name: str, config: dict | None = None) -> FusionSegModel:
    """Build model ``name`` from a config dict (keys of its config dataclass).

    Raises:
        ValueError: unknown model name or unknown / invalid config keys.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    model_cls, config_cls = MODELS[name]
    try:
        cfg = config_cls(**(config or {}))
    except TypeError as err:
        raise ValueError(f"invalid config for model {name!r}: {err}") from err
    return model_cls(cfg)


__all__ = ["FusionSegModel", "SegMiF", "SegMiFConfig", "Baseline", "BaselineConfig",
           "MODELS", "build_model"]
