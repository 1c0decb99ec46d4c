"""The interface every encoder of the registry implements, and the stem adaptation for inputs
that are not 3-channel RGB."""
from __future__ import annotations

import torch
from torch import nn

#: ImageNet statistics (RGB order), the normalisation of every ImageNet-pretrained encoder here.
IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class Encoder(nn.Module):
    """A backbone that maps an image to four feature maps.

    Subclasses set, before the first ``features`` call:
        channels: tuple of 4 ints, the channels of the stages;
        strides: (4, 8, 16, 32), the stages' output strides;
        normalization: ``{'mean': [3 floats], 'std': [3 floats]}`` that the encoder's weights
            expect for RGB in [0, 1] (stored in the model config, applied by
            ``models.preprocessing``);
        in_channels: input channels (3 RGB, 1 thermal, 4 RGB + thermal).

    ``features(x, stages=4)``: x (B, in_channels, H, W) float32, already normalised, H and
    W >= 32 -> list of the first ``stages`` (1-4) feature maps (B, channels[i], ~H / strides[i],
    ~W / strides[i]) (sizes rounded up or down by the padding of each encoder; decoders
    interpolate to the stride-4 size). Fewer stages stop the encoder early (SegMiF's guidance
    pass needs only strides 4 and 8) and give the same tensors as the first ones of all four.
    """

    channels: tuple[int, int, int, int]
    strides: tuple[int, int, int, int] = (4, 8, 16, 32)
    normalization: dict = IMAGENET_NORMALIZATION
    in_channels: int = 3

    def features(self, x: torch.Tensor, stages: int = 4
                 ) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)


@torch.no_grad()
def adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a pretrained RGB stem convolution weight (C_out, 3, k, k) to ``in_channels`` inputs.

    - 3: unchanged (a copy).
    - 1 (thermal alone): the sum of the three RGB filters, so that a gray image x gives the same
      response as the RGB image (x, x, x) it stands for (the pretrained statistics after the stem
      stay valid).
    - > 3 (early fusion, RGB + thermal [+ ...]): the RGB filters are kept for channels 0-2 and every
      extra channel gets the mean of the RGB filters (a common choice for early fusion with a
      pretrained stem; the thermal channel starts as a "gray" channel of one third the weight).
    - 2: refused (no meaning here).

    Returns a new tensor (C_out, in_channels, k, k) of the same dtype.
    Raises:
        ValueError: ``weight`` is not (C_out, 3, k, k) or ``in_channels`` is not 1 or >= 3.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected an RGB stem weight (C_out, 3, k, k), got {tuple(weight.shape)}")
    if in_channels == 3:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if in_channels < 3:
        raise ValueError(f"in_channels must be 1 or >= 3, got {in_channels}")
    extra = weight.mean(dim=1, keepdim=True).expand(-1, in_channels - 3, -1, -1)
    return torch.cat([weight, extra], dim=1).contiguous()


def check_stages(stages: int) -> int:
    """``stages`` of ``Encoder.features``: an int in 1..4, else ValueError."""
    if not isinstance(stages, int) or not 1 <= stages <= 4:
        raise ValueError(f"stages must be an int in 1..4, got {stages!r}")
    return stages
