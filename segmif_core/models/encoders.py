"""MiT (Mix Transformer) encoders and the SegFormer all-MLP head, built from config.

SegFormer: E. Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021, Table 6 (MiT-B0 ... B5). The implementation is the one in
``transformers`` (``SegformerModel``, ``SegformerDecodeHead``), always built from a config and
initialised randomly: nothing is downloaded.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import SegformerConfig, SegformerModel
from transformers.models.segformer.modeling_segformer import SegformerDecodeHead

#: MiT variants: hidden sizes per stage, blocks per stage, all-MLP decoder width (SegFormer Table 6).
MIT_VARIANTS: dict[str, dict] = {
    "mit-b0": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "mit-b1": dict(hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "mit-b2": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768),
    "mit-b3": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 18, 3], decoder_hidden_size=768),
    "mit-b4": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 8, 27, 3], decoder_hidden_size=768),
    "mit-b5": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 6, 40, 3], decoder_hidden_size=768),
}


def segformer_config(encoder: str, num_classes: int, in_channels: int = 3,
                     decoder_hidden_size: int | None = None) -> SegformerConfig:
    """Return a ``SegformerConfig`` for MiT variant ``encoder`` ('mit-b0' ... 'mit-b5').

    Raises:
        ValueError: unknown encoder name or num_classes < 1.
    """
    if encoder not in MIT_VARIANTS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {sorted(MIT_VARIANTS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    v = dict(MIT_VARIANTS[encoder])
    if decoder_hidden_size is not None:
        v["decoder_hidden_size"] = decoder_hidden_size
    return SegformerConfig(num_channels=in_channels, num_labels=num_classes,
                           num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1],
                           mlp_ratios=[4, 4, 4, 4], **v)


class SegFormer(nn.Module):
    """SegFormer = MiT encoder + all-MLP decoder.

    ``features(x)`` returns the 4 encoder stages (strides 4, 8, 16, 32; channels
    ``config.hidden_sizes``); ``forward(x)`` returns class logits (B, num_classes, H, W),
    bilinearly upsampled from stride 4 to the input size.

    Args:
        x: (B, in_channels, H, W) float32, already normalised (see ``preprocessing``).
    """

    def __init__(self, config: SegformerConfig):
        super().__init__()
        self.config = config
        self.encoder = SegformerModel(config)
        self.head = SegformerDecodeHead(config)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.encoder(pixel_values=x, output_hidden_states=True, return_dict=True)
        return list(out.hidden_states)

    def decode(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        logits = self.head(feats)
        return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(x), x.shape[-2:])
