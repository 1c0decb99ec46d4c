import numpy as np
import pytest

from segmif_core.registration import Registration, RegistrationError

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_identity_is_exact_noop(dtype):
    ir = (RNG.random((30, 40)) * 200).astype(dtype)
    for h in (None, [1, 0, 0, 0, 1, 0, 0, 0, 1], 2 * np.eye(3)):  # 2*I normalises to I
        reg = Registration(h)
        assert reg.is_identity
        out = reg.warp_thermal(ir, (30, 40, 3))
        assert out is ir
        vis = np.zeros((30, 40, 3), np.uint8)
        v2, ir2 = reg.register(vis, ir)
        assert v2 is vis and ir2 is ir


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_translation_moves_pattern(dtype):
    ir = (RNG.random((30, 40)) * 60000 % 255 + 1).astype(dtype)  # no zeros in the source
    reg = Registration([[1, 0, 5], [0, 1, 3], [0, 0, 1]])
    assert not reg.is_identity
    out = reg.warp_thermal(ir, (30, 40))
    assert out.dtype == dtype and out.shape == (30, 40)
    # thermal pixel (x, y) lands on visible pixel (x + 5, y + 3); uncovered pixels are 0
    np.testing.assert_array_equal(out[3:, 5:], ir[:-3, :-5])
    assert not out[:3].any() and not out[:, :5].any()


def test_out_size_and_channels():
    ir = np.arange(20 * 30 * 3, dtype=np.uint16).reshape(20, 30, 3)
    reg = Registration([[1, 0, -2], [0, 1, 0], [0, 0, 1]], out_size=(10, 8))
    out = reg.warp_thermal(ir, (100, 100))  # out_size wins over the visible shape
    np.testing.assert_array_equal(out, ir[:8, 2:12])


def test_homography_round_trip_interior():
    y, x = np.mgrid[0:120, 0:160].astype(np.float32)
    ir = (0.5 + 0.25 * np.sin(x / 9.0) + 0.25 * np.cos(y / 13.0)).astype(np.float32)
    a = np.deg2rad(4.0)
    h = np.array([[1.05 * np.cos(a), -np.sin(a), 6.0],
                  [np.sin(a), 0.97 * np.cos(a), -4.0],
                  [1e-4, -5e-5, 1.0]])
    fwd = Registration(h).warp_thermal(ir, ir.shape)
    back = Registration(np.linalg.inv(h)).warp_thermal(fwd, ir.shape)
    inner = (slice(25, 95), slice(25, 135))
    assert np.abs(back[inner] - ir[inner]).max() < 0.01
    assert np.abs(fwd[inner] - ir[inner]).max() > 0.1  # the warp really moved things


@pytest.mark.parametrize("h", [
    [[1, 2, 0], [2, 4, 0], [0, 0, 1]],            # singular
    np.diag([1e6, 1e-6, 1.0]),                    # det 1 but ill-conditioned
    [[0, 0, 1], [0, 1, 0], [1, 0, 0]],            # H[2,2] == 0
    np.eye(2), np.eye(4), [1, 0, 0, 0, 1, 0, 0, 0], np.ones((1, 9)),
    [[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]],
    [[1, 0, np.inf], [0, 1, 0], [0, 0, 1]],
])
def test_bad_homographies_refused(h):
    with pytest.raises(RegistrationError):
        Registration(h)


def test_crop():
    img = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    reg = Registration(crop=(2, 3, 4, 5))
    out = reg.crop(img)
    assert out.shape == (5, 4) and out.flags.c_contiguous
    assert out[0, 0] == 3 * 30 + 2 and out[4, 3] == 7 * 30 + 5
    rgb = np.stack([img] * 3, -1)
    np.testing.assert_array_equal(reg.crop(rgb)[..., 1], out)
    assert Registration(crop=(0, 0, 0, 0)).crop(img) is img
    with pytest.raises(RegistrationError):
        Registration(crop=(0, 0, 40, 5)).crop(img)


def test_register_crops_both_modalities_identically():
    vis = RNG.integers(1, 255, (40, 50, 3), dtype=np.uint8)
    ir = np.zeros((40, 50), np.uint8)
    ir[:-4, :-6] = vis[4:, 6:, 0]  # thermal camera sees the scene shifted by (-6, -4)
    reg = Registration([[1, 0, 6], [0, 1, 4], [0, 0, 1]], out_size=(50, 40), crop=(6, 4, 30, 20))
    v, t = reg.register(vis, ir)
    assert v.shape == (20, 30, 3) and t.shape == (20, 30)
    np.testing.assert_array_equal(t, v[..., 0])


@pytest.mark.parametrize("kw", [
    dict(crop=(0, 0, 60, 10), out_size=(50, 40)),  # outside the output
    dict(crop=(-1, 0, 5, 5)), dict(crop=(0, 0, 0, 5)), dict(crop=(1, 2, 3)),
    dict(out_size=(0, 10)), dict(out_size=(10,)),
])
def test_bad_crop_or_size_refused(kw):
    with pytest.raises(RegistrationError):
        Registration(**kw)


def test_bad_image_refused():
    reg = Registration([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    for img in (np.zeros((5, 5), np.float64), np.zeros((5, 5), np.int32), np.zeros(5, np.uint8)):
        with pytest.raises(RegistrationError):
            reg.warp_thermal(img, (5, 5))
