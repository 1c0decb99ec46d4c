"""MiT (Mix Transformer) encoders of SegFormer, from ``transformers`` (``SegformerModel``).

E. Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021, Table 6 (MiT-B0 ... B5). Built from config; pretrained weights come
from a Hugging Face id or directory (``from_pretrained``) or from a state-dict file in the key
layout of the authors' ImageNet ``mit_b*.pth`` files (what SegMiF's code loads), mapped onto the
``transformers`` keys by :func:`map_authors_keys`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from transformers import SegformerConfig, SegformerModel

from ...choices import check_choice
from .base import IMAGENET_NORMALIZATION, Encoder, adapt_stem_weight, check_stages
from .weights import PretrainedWeightsError, load_state_strict, read_state_file

#: MiT variants: hidden sizes per stage, blocks per stage, the all-MLP decoder width that goes
#: with them (SegFormer Table 6).
MIT_VARIANTS: dict[str, dict] = {
    "mit-b0": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "mit-b1": dict(hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "mit-b2": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768),
    "mit-b3": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 18, 3], decoder_hidden_size=768),
    "mit-b4": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 8, 27, 3], decoder_hidden_size=768),
    "mit-b5": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 6, 40, 3], decoder_hidden_size=768),
}
STEM_KEY = "stages.0.patch_embeddings.proj.weight"


def mit_config(name: str, in_channels: int = 3) -> SegformerConfig:
    """``SegformerConfig`` of MiT variant ``name`` (encoder part). Raises ValueError if unknown."""
    check_choice("MiT variant", name, sorted(MIT_VARIANTS))
    v = MIT_VARIANTS[name]
    return SegformerConfig(num_channels=in_channels, hidden_sizes=v["hidden_sizes"],
                           depths=v["depths"], decoder_hidden_size=v["decoder_hidden_size"],
                           num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1],
                           mlp_ratios=[4, 4, 4, 4])


# (pattern of the authors' key, replacement in the transformers layout); stage numbers are
# 1-based there and 0-based here. ``attn.kv`` is split in two by ``map_authors_keys``.
_AUTHORS_RULES = [
    (r"^patch_embed(\d)\.proj\.", "stages.{s}.patch_embeddings.proj."),
    (r"^patch_embed(\d)\.norm\.", "stages.{s}.patch_embeddings.layer_norm."),
    (r"^block(\d)\.(\d+)\.norm1\.", "stages.{s}.blocks.{b}.layernorm_before."),
    (r"^block(\d)\.(\d+)\.norm2\.", "stages.{s}.blocks.{b}.layernorm_after."),
    (r"^block(\d)\.(\d+)\.attn\.q\.", "stages.{s}.blocks.{b}.attention.q_proj."),
    (r"^block(\d)\.(\d+)\.attn\.proj\.", "stages.{s}.blocks.{b}.attention.o_proj."),
    (r"^block(\d)\.(\d+)\.attn\.sr\.",
     "stages.{s}.blocks.{b}.attention.sequence_reduction.sequence_reduction."),
    (r"^block(\d)\.(\d+)\.attn\.norm\.",
     "stages.{s}.blocks.{b}.attention.sequence_reduction.layer_norm."),
    (r"^block(\d)\.(\d+)\.mlp\.", "stages.{s}.blocks.{b}.mlp."),
    (r"^norm(\d)\.", "stages.{s}.layer_norm."),
]


def map_authors_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a state dict in the layout of the SegFormer authors' ``mit_b*.pth`` (``patch_embed1``,
    ``block1.0.attn.kv``, ``norm1``, ...) onto ``SegformerModel`` keys. ``attn.kv`` (2C, C) is
    split into ``k_proj`` (first C rows) and ``v_proj`` (last C rows), as in the authors'
    ``Attention.forward`` (``kv.reshape(B, -1, 2, heads, C // heads)``). The ImageNet classifier
    (``head.*``) is dropped. Returns (mapped dict, keys that matched no rule)."""
    out, unknown = {}, []
    for key, value in state.items():
        if key.startswith("head."):
            continue
        m = re.match(r"^block(\d)\.(\d+)\.attn\.kv\.(weight|bias)$", key)
        if m:
            s, b, kind = int(m[1]) - 1, m[2], m[3]
            k, v = value.chunk(2, dim=0)
            base = f"stages.{s}.blocks.{b}.attention."
            out[base + f"k_proj.{kind}"], out[base + f"v_proj.{kind}"] = k, v
            continue
        for pattern, repl in _AUTHORS_RULES:
            m = re.match(pattern, key)
            if m:
                groups = m.groups()
                new = repl.format(s=int(groups[0]) - 1, b=groups[1] if len(groups) > 1 else "")
                out[new + key[m.end():]] = value
                break
        else:
            unknown.append(key)
    return out, unknown


def _from_hugging_face(source: str) -> dict[str, torch.Tensor]:
    local = Path(source).is_dir()
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        model = SegformerModel.from_pretrained(source, local_files_only=local or offline)
    except (OSError, ValueError) as err:
        hint = ("" if local else
                " (an id needs network access or the local Hugging Face cache"
                f"{'; HF_HUB_OFFLINE is set' if offline else ''}: give a directory written by "
                "save_pretrained or an mit_b*.pth file instead)")
        raise PretrainedWeightsError(f"cannot load MiT weights {source!r}{hint}: {err}") from err
    return {k: v.detach().float() for k, v in model.state_dict().items()}


class MiTEncoder(Encoder):
    """MiT-B0 ... B5 (``name``), ``in_channels`` 1, 3 or 4, weights from ``pretrained`` (see the
    module docstring). ``features`` returns the 4 stages (channels ``hidden_sizes``, strides 4, 8,
    16, 32). Raises ValueError (unknown name) or PretrainedWeightsError."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: str | None = None):
        super().__init__()
        self.name, self.in_channels = name, in_channels
        self.config = mit_config(name, in_channels)
        self.model = SegformerModel(self.config)
        self.channels = tuple(self.config.hidden_sizes)
        self.normalization = IMAGENET_NORMALIZATION
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, source: str) -> None:
        """Load weights from a HF id / directory or an authors' state-dict file (strict keys).
        'imagenet' stands for the ImageNet weights of the SegFormer authors on the Hugging Face
        hub, ``nvidia/mit-bN`` (needs network access or the local cache)."""
        if source == "imagenet":
            source = "nvidia/" + self.name
        path = Path(source)
        if path.is_file():
            raw = read_state_file(path)
            state, unknown = map_authors_keys(raw)
            if unknown and not state:  # maybe a state dict of this project's own layout
                state, unknown = raw, []
        else:
            state, unknown = _from_hugging_face(source), []
        if STEM_KEY in state and self.in_channels != 3:
            state[STEM_KEY] = adapt_stem_weight(state[STEM_KEY], self.in_channels)
        load_state_strict(self.model, state, source, extra_unexpected=unknown)

    def features(self, x: torch.Tensor, stages: int = 4) -> list[torch.Tensor]:
        # the stages of transformers' SegformerModel one by one (its forward runs all four);
        # each returns (B, C, H, W) (reshape_last_stage is True in every config built here)
        out = []
        for stage in self.model.stages[:check_stages(stages)]:
            x = stage(x)
            out.append(x)
        return out
