"""Model registry: build any segmif model from a name plus a config dict.

Names: 'segmif' (SegMiF, see ``segmif.model``), 'baseline' (visible-only, thermal-only or early
fusion segmentation network, see ``baselines.model``), 'tsjnet' (TSJNet with a detector, see
``tsjnet.model``). Encoders: ``encoders`` (a registry of
names; ``encoders.encoder_names()``).
"""
from __future__ import annotations

from ..choices import check_choice
from .base import FusionSegModel
from .baselines import Baseline, BaselineConfig
from .segmif import SegMiF, SegMiFConfig
from .tsjnet import TSJNet, TSJNetConfig

MODELS = {"segmif": (SegMiF, SegMiFConfig), "baseline": (Baseline, BaselineConfig),
          "tsjnet": (TSJNet, TSJNetConfig)}


def build_model(name: str, config: dict | None = None, load_pretrained: bool = True
                ) -> FusionSegModel:
    """Build model ``name`` from a config dict (keys of its config dataclass).

    ``load_pretrained`` False builds the architecture without reading the encoder's pretrained
    weights (a checkpoint's weights are loaded next).

    Raises:
        ValueError: unknown model name or unknown / invalid config keys.
        PretrainedWeightsError (a ValueError): the encoder's pretrained weights cannot be loaded.
    """
    check_choice("model", name, sorted(MODELS))
    model_cls, config_cls = MODELS[name]
    try:
        cfg = config_cls(**(config or {}))
    except TypeError as err:
        raise ValueError(f"invalid config for model {name!r}: {err}") from err
    return model_cls(cfg, load_pretrained=load_pretrained)


__all__ = ["FusionSegModel", "SegMiF", "SegMiFConfig", "Baseline", "BaselineConfig",
           "TSJNet", "TSJNetConfig", "MODELS", "build_model"]
