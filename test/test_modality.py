"""Modality dropout (data.modality_dropout) and the substitutes of a lost camera."""
import numpy as np
import pytest
import torch

from segmif_core.data.modality import draw_modality, substitute
from segmif_core.data.pairs import PairDataset, list_pairs

from conftest import MFNET, needs_mfnet


def test_substitutes_are_zeros_or_gray_thermal():
    rng = np.random.default_rng(0)
    vis = rng.random((4, 5, 3)).astype(np.float32)
    ir = rng.random((4, 5)).astype(np.float32)
    v, t = substitute(vis, ir, "visible_only")
    assert v is vis and (t == 0).all() and t.dtype == np.float32
    v, t = substitute(vis, ir, "thermal_only")
    assert t is ir and all((v[:, :, c] == ir).all() for c in range(3))
    assert substitute(vis, ir, "pair") == (vis, ir)
    with pytest.raises(ValueError, match="modality"):
        substitute(vis, ir, "none")
    with pytest.raises(ValueError, match="16-bit"):
        substitute((vis * 255).astype(np.uint8), (ir * 65535).astype(np.uint16), "thermal_only")


def test_draw_modality_frequencies():
    rng = np.random.default_rng(1)
    draws = [draw_modality(rng, 0.5) for _ in range(4000)]
    # p / 2 = 0.25 each; 4000 draws: sd 0.007, so +-0.03 is > 4 sd
    assert abs(draws.count("visible_only") / 4000 - 0.25) < 0.03
    assert abs(draws.count("thermal_only") / 4000 - 0.25) < 0.03
    assert set(draw_modality(rng, 0.0) for _ in range(50)) == {"pair"}
    with pytest.raises(ValueError):
        draw_modality(rng, 1.5)


@needs_mfnet
def test_dataset_items_lose_a_camera_at_rate_one():
    names = list_pairs(MFNET, "val.txt")[:4]
    ds = PairDataset(MFNET, names, size=(48, 64), train=True, crop=(48, 64),
                     scale_range=(1.0, 1.0), brightness=0.0, flip=False, modality_dropout=1.0)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = ds[seed % 4]
        vis, ir = item["vis"], item["ir"][0]
        if (ir == 0).all():
            seen.add("visible_only")
        else:  # thermal only: every visible channel is the thermal image
            assert all(torch.equal(vis[c], ir) for c in range(3))
            seen.add("thermal_only")
    assert seen == {"visible_only", "thermal_only"}
    with pytest.raises(ValueError, match="modality dropout"):
        PairDataset(MFNET, names, size=(48, 64), modality_dropout=-0.1)
